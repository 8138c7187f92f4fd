// Which function calls force a statement onto the primary: built-in side effects, pg_proc VOLATILE user functions, config overrides.

/**
 * Why a built-in is not a plain read:
 * - write: changes data or cluster state, or cannot run on a hot standby at all (nextval, pg_notify, pg_switch_wal …);
 * - session: its result or effect is bound to one backend session (currval, advisory locks, large-object descriptors),
 *   so it must run where the session's other work runs, which for a fresh session is the primary;
 * - primary-only: a read, but one that only the primary can answer (WAL positions fail "during recovery").
 */
export type BuiltinEffect = 'write' | 'session' | 'primary-only';

// Matched on the last name component whatever the schema: built-ins live in pg_catalog and extension functions
// (dblink, pg_stat_statements, adminpack) in whatever schema the extension was created in. A user function that
// happens to share a name is sent to the primary too, which costs a little load and is never wrong.
const BUILTIN: ReadonlyMap<string, BuiltinEffect> = new Map<string, BuiltinEffect>([
  // sequences
  ['nextval', 'write'],
  ['setval', 'write'],
  ['currval', 'session'],
  ['lastval', 'session'],
  // transaction ids: assigning one is impossible on a standby
  ['txid_current', 'write'],
  ['pg_current_xact_id', 'write'],
  // NOTIFY and session settings
  ['pg_notify', 'write'],
  ['set_config', 'session'],
  ['setseed', 'session'],
  ['pg_listening_channels', 'session'],
  // identify this session's own backend: the one LISTEN/NOTIFY, locks and pg_stat_activity see is the primary's
  ['pg_backend_pid', 'session'],
  // a snapshot exported here is imported with SET TRANSACTION SNAPSHOT, which goes to the primary
  ['pg_export_snapshot', 'session'],
  // logical decoding, slots, replication origins
  ['pg_logical_emit_message', 'write'],
  ['pg_create_physical_replication_slot', 'write'],
  ['pg_create_logical_replication_slot', 'write'],
  ['pg_copy_physical_replication_slot', 'write'],
  ['pg_copy_logical_replication_slot', 'write'],
  ['pg_drop_replication_slot', 'write'],
  ['pg_replication_slot_advance', 'write'],
  ['pg_logical_slot_get_changes', 'write'],
  ['pg_logical_slot_get_binary_changes', 'write'],
  ['pg_logical_slot_peek_changes', 'write'],
  ['pg_logical_slot_peek_binary_changes', 'write'],
  ['pg_sync_replication_slots', 'write'],
  // server signalling and administration: act on the node they run on, which must be a predictable one
  ['pg_terminate_backend', 'write'],
  ['pg_cancel_backend', 'write'],
  ['pg_log_backend_memory_contexts', 'write'],
  ['pg_reload_conf', 'write'],
  ['pg_rotate_logfile', 'write'],
  ['pg_rotate_logfile_old', 'write'],
  ['pg_switch_wal', 'write'],
  ['pg_switch_xlog', 'write'],
  ['pg_create_restore_point', 'write'],
  ['pg_log_standby_snapshot', 'write'],
  ['pg_backup_start', 'write'],
  ['pg_backup_stop', 'write'],
  ['pg_start_backup', 'write'],
  ['pg_stop_backup', 'write'],
  // standby-only controls: through a proxy they cannot name a replica, so the primary answers with its real error
  ['pg_promote', 'write'],
  ['pg_wal_replay_pause', 'write'],
  ['pg_wal_replay_resume', 'write'],
  // index and catalog maintenance
  ['brin_summarize_new_values', 'write'],
  ['brin_summarize_range', 'write'],
  ['brin_desummarize_range', 'write'],
  ['gin_clean_pending_list', 'write'],
  ['pg_import_system_collations', 'write'],
  ['pg_extension_config_dump', 'write'],
  ['pg_nextoid', 'write'],
  ['pg_truncate_visibility_map', 'write'],
  // adminpack writes server files
  ['pg_file_write', 'write'],
  ['pg_file_rename', 'write'],
  ['pg_file_unlink', 'write'],
  ['pg_file_sync', 'write'],
  ['pg_stat_statements_reset', 'write'],
  // large objects: loread/lowrite are the descriptor-based calls without the lo_ prefix
  ['loread', 'session'],
  ['lowrite', 'session'],
  // WAL positions of the primary
  ['pg_current_wal_lsn', 'primary-only'],
  ['pg_current_wal_insert_lsn', 'primary-only'],
  ['pg_current_wal_flush_lsn', 'primary-only'],
  ['pg_walfile_name', 'primary-only'],
  ['pg_walfile_name_offset', 'primary-only'],
  ['pg_current_xlog_location', 'primary-only'],
  ['pg_current_xlog_insert_location', 'primary-only'],
  ['pg_current_xlog_flush_location', 'primary-only'],
  ['pg_xlogfile_name', 'primary-only'],
  ['pg_xlogfile_name_offset', 'primary-only'],
]);

// Families by prefix. txid_current_if_assigned / pg_current_xact_id_if_assigned are deliberately absent: they never
// assign an xid, return NULL outside a transaction, and inside one the transaction's backend answers anyway.
const BUILTIN_PREFIXES: readonly (readonly [string, BuiltinEffect])[] = [
  ['pg_advisory_', 'session'], // lock/unlock, shared, xact variants
  ['pg_try_advisory_', 'session'],
  ['lo_', 'session'], // lo_create, lo_import, lo_open, lo_put, lo_unlink …
  ['pg_stat_reset', 'write'], // pg_stat_reset, _shared, _single_table_counters, _slru …
  ['pg_replication_origin_', 'write'],
  ['dblink', 'session'], // named connections live in the session; dblink_exec writes elsewhere
];

/**
 * VOLATILE in pg_proc but known to have no side effect, so they stay reads once the catalog of volatile user
 * functions is loaded (uuid-ossp and pgcrypto are installed outside pg_catalog and are everywhere).
 */
const BUILTIN_READ_ONLY: ReadonlySet<string> = new Set([
  'uuid_generate_v1',
  'uuid_generate_v1mc',
  'uuid_generate_v4',
  'gen_random_uuid',
  'gen_random_bytes',
  'gen_salt',
]);

/** Session-level advisory locks outlive the statement: the session must stay where it took them. */
const SESSION_ADVISORY_LOCKS: ReadonlySet<string> = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
]);

export function builtinEffect(name: string): BuiltinEffect | undefined {
  const n = name.toLowerCase();
  const exact = BUILTIN.get(n);
  if (exact) return exact;
  for (const [prefix, effect] of BUILTIN_PREFIXES) if (n.startsWith(prefix)) return effect;
  return undefined;
}

export function isSessionAdvisoryLock(name: string): boolean {
  return SESSION_ADVISORY_LOCKS.has(name.toLowerCase());
}

/**
 * Run on the primary by the monitor: every VOLATILE function a user or extension created. Procedures are left out
 * (they are only reached through CALL, which always goes to the primary); aggregates and window functions stay in.
 * DISTINCT because overloads share a name and the classifier matches by name.
 */
export const VOLATILE_FUNCTIONS_SQL = `SELECT DISTINCT n.nspname, p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.provolatile = 'v'
  AND p.prokind <> 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
ORDER BY 1, 2`;

/** Rows of VOLATILE_FUNCTIONS_SQL as "schema.name" strings for FunctionCatalog. */
export function volatileFunctionNames(rows: readonly { nspname: string; proname: string }[]): string[] {
  return rows.map((r) => `${r.nspname}.${r.proname}`);
}

/** Why a call sends its statement to the primary; `definite` is false when pg_proc only says "might write". */
export interface FunctionVerdict {
  reason: string;
  definite: boolean;
}

/** Names from config or pg_proc: "f" (any schema) or "schema.f", compared lowercased. */
class NameSet {
  private readonly anySchema = new Set<string>();
  private readonly qualified = new Set<string>();
  // proname -> qualified entries, so that an unqualified call can be matched against every schema.
  private readonly byName = new Map<string, string[]>();

  constructor(names: Iterable<string>) {
    for (const raw of names) {
      const name = raw.trim().toLowerCase();
      if (name === '') continue;
      const dot = name.lastIndexOf('.');
      if (dot < 0) {
        this.anySchema.add(name);
        continue;
      }
      const proname = name.slice(dot + 1);
      this.qualified.add(name);
      const list = this.byName.get(proname);
      if (list) list.push(name);
      else this.byName.set(proname, [name]);
    }
  }

  /**
   * The entry a call matches, or undefined. An unqualified call matches an entry in any schema because the search
   * path decides at run time which one it reaches; a qualified call matches its own schema or a schema-less entry.
   */
  match(schema: string | undefined, name: string): string | undefined {
    if (this.anySchema.has(name)) return name;
    if (schema !== undefined) {
      const q = `${schema}.${name}`;
      return this.qualified.has(q) ? q : undefined;
    }
    return this.byName.get(name)?.[0];
  }

  /** The first entry for `name` that `cover` does not match in its own schema (schema-less entries count too). */
  uncovered(name: string, cover: NameSet): string | undefined {
    if (this.anySchema.has(name) && cover.match(undefined, name) !== name) return name;
    for (const q of this.byName.get(name) ?? []) {
      if (cover.match(q.slice(0, q.length - name.length - 1), name) === undefined) return q;
    }
    return undefined;
  }
}

export interface FunctionCatalogOptions {
  /** VOLATILE user functions from pg_proc ("schema.name"; see VOLATILE_FUNCTIONS_SQL). */
  volatile?: Iterable<string>;
  /** routing.read_only_functions: never a write, whatever pg_proc or the built-in list say. */
  readOnly?: Iterable<string>;
  /** routing.write_functions: always a write. Wins over readOnly when a name is in both. */
  write?: Iterable<string>;
}

/** Decides, by name, whether calling a function makes a statement a write. Immutable; build a new one to refresh. */
export class FunctionCatalog {
  private readonly volatile: NameSet;
  private readonly readOnly: NameSet;
  private readonly write: NameSet;
  // Kept as arrays: the options may be one-shot iterables, and withVolatile() needs the overrides again.
  private readonly overrides: { readOnly: string[]; write: string[] };
  readonly volatileCount: number;

  constructor(options: FunctionCatalogOptions = {}) {
    const volatile = [...(options.volatile ?? [])];
    this.overrides = { readOnly: [...(options.readOnly ?? [])], write: [...(options.write ?? [])] };
    this.volatile = new NameSet(volatile);
    this.readOnly = new NameSet(this.overrides.readOnly);
    this.write = new NameSet(this.overrides.write);
    this.volatileCount = volatile.length;
  }

  /** The same overrides with a fresh list of volatile functions (the monitor refreshes it from pg_proc). */
  withVolatile(volatile: Iterable<string>): FunctionCatalog {
    return new FunctionCatalog({ ...this.overrides, volatile });
  }

  /**
   * `funcname` as the parser gives it (["nextval"], ["pg_catalog", "nextval"], ["db", "s", "f"]); undefined
   * when the call is a plain read.
   */
  lookup(funcname: readonly string[]): FunctionVerdict | undefined {
    const name = (funcname[funcname.length - 1] ?? '').toLowerCase();
    const schemaRaw = funcname.length > 1 ? funcname[funcname.length - 2].toLowerCase() : undefined;
    const shown = schemaRaw === undefined || schemaRaw === 'pg_catalog' ? name : `${schemaRaw}.${name}`;

    const forced = this.write.match(schemaRaw, name);
    if (forced !== undefined) return { reason: `write-function:${shown}`, definite: true };
    // A schema-less override, or one naming the schema the call names, covers the call entirely. A qualified
    // override ("public.f") only partly covers an unqualified call f(): the search path might reach another f.
    const override = this.readOnly.match(schemaRaw, name);
    if (override !== undefined && (schemaRaw !== undefined || override === name)) return undefined;

    const effect = builtinEffect(name);
    if (effect !== undefined) {
      return { reason: `${effect === 'primary-only' ? 'primary-function' : 'write-function'}:${name}`, definite: true };
    }
    // pg_catalog holds no user functions (VOLATILE_FUNCTIONS_SQL leaves it out), so random(), clock_timestamp() … stay reads.
    if (schemaRaw === 'pg_catalog' || BUILTIN_READ_ONLY.has(name)) return undefined;

    const hit = schemaRaw !== undefined ? this.volatile.match(schemaRaw, name) : this.volatile.uncovered(name, this.readOnly);
    return hit === undefined ? undefined : { reason: `volatile-function:${hit}`, definite: false };
  }
}
