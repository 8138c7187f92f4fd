// The result of classifying one Query string: where a fresh session sends it, why, and what each statement does to session state.

/**
 * - primary / replica: where the statement runs when the session has no open transaction and no pin.
 * - session: the session's own state decides. SET/RESET/DISCARD/SET ROLE (and set_config(…, false)) must hold
 *   on every backend the session uses; EXECUTE/FETCH/MOVE/CLOSE/DEALLOCATE act on an object that lives on the
 *   backend that created it; intercepted `SET pgsplit.*` is answered by the proxy itself.
 */
export type Target = 'primary' | 'replica' | 'session';

export type StatementKind =
  | 'read'
  | 'write'
  | 'begin'
  | 'commit'
  | 'rollback'
  | 'savepoint'
  | 'set-transaction'
  | 'set'
  | 'reset'
  | 'discard'
  | 'prepare'
  | 'execute'
  | 'deallocate'
  | 'declare'
  | 'fetch-close'
  | 'listen'
  | 'unlisten'
  | 'other';

/** A setting to record for the session (and apply to every backend that serves it). */
export interface Setting {
  /** GUC name, lowercased; "all" for RESET ALL; "session characteristics", "constraints" for those SET forms. */
  name: string;
  /** null means back to the default: RESET, SET … TO DEFAULT, set_config(name, NULL, …). */
  value: string | null;
  /** SET LOCAL, SET CONSTRAINTS, set_config(…, true): ends with the transaction. */
  local: boolean;
  /** set_config(name, $n, …): the value is Bind parameter n (1-based), known only at Bind time; `value` is null. */
  valueParam?: number;
}

/** State that lives in one backend session: the session must stay on the primary while it lives (DESIGN.md §4). */
export type Pin =
  | 'temp-table'
  | 'advisory-lock'
  | 'listen'
  | 'hold-cursor'
  | 'prepared-write'
  // a setting the proxy cannot replay elsewhere: set_config() with a computed name or is_local, or several at once
  | 'untracked-setting';

/** State that goes away; the session may drop the matching pins once nothing else holds them. */
export type Unpin =
  | 'advisory-unlock-all'
  | 'unlisten-all'
  | 'discard-temp'
  | 'discard-all' // DISCARD ALL: everything above plus prepared statements and cursors
  | 'deallocate-all'
  | 'close-all'
  | 'reset-session-authorization';

export interface StatementInfo {
  kind: StatementKind;
  /** This statement alone; the Classification's target accounts for the whole string. */
  target: Target;
  reason: string;
  /** BEGIN/START … READ ONLY|READ WRITE, SET TRANSACTION, SET SESSION CHARACTERISTICS, SET default_transaction_read_only. */
  readOnly?: boolean;
  /** COMMIT AND CHAIN / ROLLBACK AND CHAIN: a new transaction starts at once with the same characteristics. */
  chain?: boolean;
  setting?: Setting;
  discard?: 'all' | 'plans' | 'sequences' | 'temp';
  pin?: Pin;
  unpin?: Unpin;
  prepareName?: string;
  /** SAVEPOINT / RELEASE / ROLLBACK TO: which savepoint (a SET undone by ROLLBACK TO must not be replayed). */
  savepointName?: string;
  /** For PREPARE: where EXECUTE of it must run (a write, or anything not a plain read, is 'primary'). */
  preparedTarget?: 'primary' | 'replica';
  executeName?: string;
  /** null = DEALLOCATE ALL. */
  deallocateName?: string | null;
  /** DECLARE/FETCH/MOVE/CLOSE cursor name; null = CLOSE ALL. */
  portalName?: string | null;
  /** LISTEN/UNLISTEN channel; null = UNLISTEN *. */
  channel?: string | null;
  /** SET pgsplit.route = … (RESET gives 'auto'). */
  routeHint?: 'primary' | 'replica' | 'auto';
  /** SET pgsplit.max_lag = '500ms'; null = RESET (back to the configured threshold). */
  maxLagMs?: number | null;
  /** SET pgsplit.read_tags = 'a,b'; null = RESET (back to the user's or the configured tags). */
  readTags?: string[] | null;
  /** SET/RESET/SHOW pgsplit.*: the proxy answers it itself and never forwards it. */
  intercept?: true;
  /** For an intercepted statement the proxy must reject (bad value, unknown pgsplit.* name). */
  interceptError?: { sqlstate: string; message: string };
  /** SHOW pgsplit.*: which one. */
  show?: string;
  /** The statement's own text, for statements the session may need to replay on another backend (SET, PREPARE …). */
  text?: string;
}

export interface Classification {
  target: Target;
  /** Short stable code: 'select', 'write', 'ddl', 'locking-read', 'write-function:nextval', 'hint', … */
  reason: string;
  statements: StatementInfo[];
  /** How the answer was reached: cheap keyword check, full parse, or the size bound (unparsed). */
  via: 'lexical' | 'parser' | 'size-bound';
  /** Every statement is an intercepted pgsplit.* command: the proxy answers the whole string itself. */
  intercept?: true;
  /** Route hint found in a leading comment, whether or not it changed the target. */
  hint?: 'primary' | 'replica';
  /** Lag bound for this statement from a leading `/* pgsplit:max_lag=500ms *\/` comment. */
  maxLagMs?: number;
  /** A leading pgsplit: comment that could not be understood (ignored). */
  hintError?: string;
  /** The parser's message for reason 'parse-error'. */
  error?: string;
  /** effectFlags() of the statements, computed once when the classification is made (sessions read it per unit). */
  flags?: number;
}

/** Opens a transaction (BEGIN, COMMIT/ROLLBACK AND CHAIN). */
export const OPENS_TRANSACTION = 1;
/** Leaves session state behind when it succeeds: a pin, an unpin, a setting to replay, DISCARD ALL. */
export const SESSION_EFFECTS = 2;
/** Contains COMMIT (settings made in the transaction then hold). */
export const COMMITS = 4;

/** May change data: once it commits, the session's later reads must see it (read-your-writes). */
export const MAY_WRITE = 8;

/** What a session must look at after running these statements; 0 for a plain read. */
export function effectFlags(c: Classification): number {
  // SET and other session statements change no data; EXECUTE runs whatever was prepared.
  let f = c.target === 'primary' ? MAY_WRITE : 0;
  for (const s of c.statements) {
    if (s.kind === 'begin' || ((s.kind === 'commit' || s.kind === 'rollback') && s.chain)) f |= OPENS_TRANSACTION;
    if (s.kind === 'commit') f |= COMMITS;
    if (s.kind === 'execute') f |= MAY_WRITE;
    if (s.pin || s.unpin || s.kind === 'savepoint' || s.kind === 'prepare' || s.kind === 'deallocate' || (s.kind === 'discard' && s.discard === 'all') || (s.setting && !s.setting.local)) f |= SESSION_EFFECTS;
  }
  return f;
}
