// Session state that must hold on every server a session uses: the settings to replay there, and the pins that keep it on the primary.
import { UNKNOWN_SETTINGS, type ServerLink } from '../backend/server-link.js';
import { query } from '../protocol/frontend-messages.js';
import type { Classification, Unpin } from '../router/classification.js';

/** The pins each statement that ends some state may drop (DISCARD ALL ends everything a server held for the session). */
const UNPINS: Readonly<Record<Unpin, readonly string[]>> = {
  'advisory-unlock-all': ['advisory-lock'],
  'unlisten-all': ['listen'],
  'discard-temp': ['temp-table'],
  'discard-all': ['temp-table', 'advisory-lock', 'listen', 'hold-cursor', 'prepared-write', 'untracked-setting', 'replay-failed', 'sql-prepared', 'session-authorization'],
  'deallocate-all': ['prepared-write', 'sql-prepared'],
  'reset-session-authorization': ['session-authorization'],
  'close-all': ['hold-cursor'],
};

// RESET ALL leaves the role alone (as DISCARD ALL does not): a server another session used must not keep its SET ROLE.
const RESET = 'RESET ALL;\nRESET ROLE';

/**
 * The settings are kept as the text that replays them (`text`); every server knows the text of the settings it
 * carries (ServerLink.settings), so a server whose text is the session's needs nothing (the usual case: most
 * sessions never SET anything), and any other gets RESET ALL and the session's text before its next unit. The
 * methods that change the settings take the link that ran the statements (`ranOn`) and keep it counted as up to
 * date if it was.
 *
 * Startup parameters (application_name, options=-c …) are settings like SET ones: servers are opened with only
 * the user and database, so pooled servers can serve every client. RESET of such a parameter goes back to the
 * client's startup value, as on PostgreSQL.
 */
export class SessionState {
  /** Settings that hold (made outside a transaction, or in one that committed), one per name, in the order they were made. */
  private entries: { key: string | null; sql: string }[] = [];
  /** Settings made inside the open transaction, recorded if it commits. */
  private txEntries: { key: string; sql: string }[] = [];
  /** The replay text of `entries` ('' = nothing beyond a fresh server's own). */
  private text = '';
  /** The startup parameters, as entries. */
  private startup: { key: string; sql: string }[] = [];
  /** SQL-level PREPAREd names (pooled sessions keep their server while there are some). */
  private sqlPrepared: Set<string> | null = null;
  /** Savepoints of the open transaction, with how many txEntries were made before each. */
  private savepoints: { name: string; made: number }[] = [];
  /** State that lives only on the primary connection (temp tables, advisory locks, LISTEN, …), and 'replay-failed'. */
  readonly pins = new Set<string>();

  /** `pooled`: the session's servers are shared (transaction pooling), so SQL-level PREPARE pins too. */
  constructor(private readonly pooled = false) {}

  /** The client's startup parameters become the first settings (see the class comment). */
  setStartup(entries: { key: string; sql: string }[]): void {
    this.startup = entries;
    this.entries = entries.map((e) => ({ ...e }));
    this.text = entries.map((e) => e.sql).join(';\n');
  }

  get hasSettings(): boolean {
    return this.text !== '';
  }

  /**
   * Session state a successful unit leaves behind: pins at once; settings to replay at once, or, inside a
   * transaction, when it commits (a rolled-back SET never happened).
   */
  applyEffects(parts: readonly Classification[], inTransaction: boolean, ranOn: ServerLink): boolean {
    let droppedStatements = false;
    for (const cls of parts) {
      for (const s of cls.statements) {
        if (s.pin) this.pins.add(s.pin);
        if (s.unpin) this.unpin(s.unpin);
        if (s.unpin === 'deallocate-all' || s.unpin === 'discard-all') {
          droppedStatements = true;
          this.sqlPrepared = null;
        }
        if (this.pooled && s.kind === 'prepare' && s.prepareName) {
          (this.sqlPrepared ??= new Set()).add(s.prepareName);
          this.pins.add('sql-prepared');
        } else if (this.pooled && s.kind === 'deallocate' && s.deallocateName) {
          this.sqlPrepared?.delete(s.deallocateName);
          if (!this.sqlPrepared?.size) this.pins.delete('sql-prepared');
        }
        if (s.intercept) continue;
        if (s.kind === 'savepoint') {
          if (inTransaction) this.savepoint(s.reason, s.savepointName ?? '');
          continue;
        }
        let key: string | null = null;
        if (s.kind === 'discard' && s.discard === 'all') key = 'all';
        else if (s.setting?.name === 'session_authorization') {
          // Lives in the server session and RESET ALL does not undo it: the session keeps its server until RESET SESSION AUTHORIZATION.
          if (s.setting.value === null) this.unpin('reset-session-authorization');
          else this.pins.add('session-authorization');
          continue;
        } else if (s.setting && !s.setting.local && s.text) {
          // A value that arrives as a Bind parameter cannot be replayed from the text: stay on the primary.
          if (s.setting.valueParam !== undefined) {
            this.pins.add('untracked-setting');
            continue;
          }
          key = s.setting.name;
        } else continue;
        if (inTransaction) this.pending(key, s.text ?? '');
        else this.record(key, s.text ?? '', ranOn);
      }
    }
    return droppedStatements;
  }

  /**
   * A setting made inside the transaction, kept until it commits. One made again since the last savepoint replaces
   * its earlier entry (the last value wins either way): a transaction repeating a SET (a client looping, or hostile)
   * would otherwise add an entry per statement, and only distinct settings are bounded (limits.max_session_settings).
   */
  private pending(key: string, sql: string): void {
    const floor = this.savepoints.length > 0 ? this.savepoints[this.savepoints.length - 1].made : 0;
    for (let i = this.txEntries.length - 1; i >= floor; i--) {
      if (this.txEntries[i].key !== key) continue;
      this.txEntries.splice(i, 1);
      break;
    }
    this.txEntries.push({ key, sql });
  }

  /**
   * The distinct settings that would be recorded (held or pending in the transaction) once `parts` ran: how many, and
   * the length of the text that replays them (what limits.max_session_settings and max_session_settings_bytes bound).
   */
  settingsAfter(parts: readonly Classification[]): { count: number; bytes: number } {
    const latest = new Map<string | null, string>();
    for (const e of this.entries) latest.set(e.key, e.sql);
    for (const e of this.txEntries) latest.set(e.key, e.sql);
    for (const cls of parts) for (const s of cls.statements) if (s.setting && !s.setting.local && s.text && s.setting.valueParam === undefined) latest.set(s.setting.name, s.text);
    let bytes = 0;
    for (const sql of latest.values()) bytes += sql.length;
    return { count: latest.size, bytes };
  }

  /** The open transaction committed: the settings made in it now hold. */
  commitTransaction(ranOn: ServerLink): void {
    for (const e of this.txEntries) this.record(e.key, e.sql, ranOn);
    this.txEntries = [];
    this.savepoints = [];
  }

  /** The open transaction rolled back, or died with its server: the settings made in it never happened. */
  abortTransaction(): void {
    this.txEntries = [];
    this.savepoints = [];
  }

  /** ROLLBACK TO undoes the settings made since the savepoint; RELEASE keeps them and forgets the savepoint. */
  private savepoint(action: string, name: string): void {
    let i = this.savepoints.length - 1;
    if (action === 'savepoint') {
      this.savepoints.push({ name, made: this.txEntries.length });
      return;
    }
    while (i >= 0 && this.savepoints[i].name !== name) i--;
    if (i < 0) return;
    if (action === 'rollback-to-savepoint') {
      this.txEntries.length = this.savepoints[i].made;
      this.savepoints.length = i + 1;
    } else this.savepoints.length = i;
  }

  /** The Query that brings `link` to the session's settings, or null if it has them; from now on it counts as having them. */
  replayFor(link: ServerLink): Buffer | null {
    if (link.settings === this.text) return null;
    const fresh = link.settings === '';
    link.settings = this.text;
    return query(fresh ? this.text : this.text === '' ? RESET : `${RESET};\n${this.text}`);
  }

  /** The pins that stand for state on the primary connection ('replay-failed' is the proxy's own and lives nowhere). */
  serverPins(): string[] {
    return [...this.pins].filter((p) => p !== 'replay-failed');
  }

  private record(key: string, sql: string, ranOn: ServerLink): void {
    const current = ranOn.settings === this.text;
    if (key === 'all') {
      // RESET ALL / DISCARD ALL: back to the startup values; the server is back to its own defaults.
      this.setEntries(this.startup.map((e) => ({ ...e })));
      if (current) ranOn.settings = '';
      return;
    }
    const start = /^\s*reset\b/i.test(sql) ? this.startup.find((e) => e.key === key) : undefined;
    this.setEntries([...this.entries.filter((e) => e.key !== key), start ? { ...start } : { key, sql }]);
    // RESET of a startup parameter took the server to its default, not the client's value: replayed next time.
    if (current) ranOn.settings = start ? UNKNOWN_SETTINGS : this.text;
  }

  private setEntries(next: { key: string | null; sql: string }[]): void {
    this.entries = next;
    this.text = next.map((e) => e.sql).join(';\n');
  }

  private unpin(what: Unpin): void {
    for (const p of UNPINS[what] ?? []) this.pins.delete(p);
  }
}
