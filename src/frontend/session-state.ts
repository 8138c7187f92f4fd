// Session state that must hold on every server a session uses: the settings to replay there, and the pins that keep it on the primary.
import type { ServerLink } from '../backend/server-link.js';
import { query } from '../protocol/frontend-messages.js';
import type { Classification, Unpin } from '../router/classification.js';

/** The pins each statement that ends some state may drop (DISCARD ALL ends everything a server held for the session). */
const UNPINS: Readonly<Record<Unpin, readonly string[]>> = {
  'advisory-unlock-all': ['advisory-lock'],
  'unlisten-all': ['listen'],
  'discard-temp': ['temp-table'],
  'discard-all': ['temp-table', 'advisory-lock', 'listen', 'hold-cursor', 'prepared-write', 'untracked-setting', 'replay-failed'],
  'deallocate-all': ['prepared-write'],
  'close-all': ['hold-cursor'],
};

/**
 * Settings are versioned: a server whose ServerLink.appliedVersion is the current version has them all, any
 * other gets RESET ALL and the whole list before its next unit. The methods that change the list take the
 * link that ran the statements (`ranOn`: the primary, or the replica of a read-only transaction) and count
 * it as up to date only if it was before; every other server gets the replay.
 */
export class SessionState {
  /** Settings that hold (made outside a transaction, or in one that committed), one per name, in the order they were made. */
  private entries: { key: string | null; sql: string }[] = [];
  /** Settings made inside the open transaction, recorded if it commits. */
  private txEntries: { key: string; sql: string }[] = [];
  private version = 0;
  /** Savepoints of the open transaction, with how many txEntries were made before each. */
  private savepoints: { name: string; made: number }[] = [];
  /** State that lives only on the primary connection (temp tables, advisory locks, LISTEN, …), and 'replay-failed'. */
  readonly pins = new Set<string>();

  /**
   * Session state a successful unit leaves behind: pins at once; settings to replay at once, or, inside a
   * transaction, when it commits (a rolled-back SET never happened).
   */
  applyEffects(parts: readonly Classification[], inTransaction: boolean, ranOn: ServerLink): void {
    for (const cls of parts) {
      for (const s of cls.statements) {
        if (s.pin) this.pins.add(s.pin);
        if (s.unpin) this.unpin(s.unpin);
        if (s.intercept) continue;
        if (s.kind === 'savepoint') {
          if (inTransaction) this.savepoint(s.reason, s.savepointName ?? '');
          continue;
        }
        let key: string | null = null;
        if (s.kind === 'discard' && s.discard === 'all') key = 'all';
        else if (s.setting && !s.setting.local && s.text) {
          // A value that arrives as a Bind parameter cannot be replayed from the text: stay on the primary.
          if (s.setting.valueParam !== undefined) {
            this.pins.add('untracked-setting');
            continue;
          }
          key = s.setting.name;
        } else continue;
        if (inTransaction) this.txEntries.push({ key, sql: s.text ?? '' });
        else this.record(key, s.text ?? '', ranOn);
      }
    }
  }

  /** How many distinct settings would be recorded (held or pending in the transaction) once `parts` ran. */
  settingsAfter(parts: readonly Classification[]): number {
    const keys = new Set<string | null>();
    for (const e of this.entries) keys.add(e.key);
    for (const e of this.txEntries) keys.add(e.key);
    for (const cls of parts) for (const s of cls.statements) if (s.setting && !s.setting.local && s.text && s.setting.valueParam === undefined) keys.add(s.setting.name);
    return keys.size;
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
    if (link.appliedVersion === this.version) return null;
    link.appliedVersion = this.version;
    return query(['RESET ALL', ...this.entries.map((e) => e.sql)].join(';\n'));
  }

  /** The pins that stand for state on the primary connection ('replay-failed' is the proxy's own and lives nowhere). */
  serverPins(): string[] {
    return [...this.pins].filter((p) => p !== 'replay-failed');
  }

  private record(key: string, sql: string, ranOn: ServerLink): void {
    if (key === 'all') this.setEntries([], ranOn);
    else this.setEntries([...this.entries.filter((e) => e.key !== key), { key, sql }], ranOn);
  }

  private setEntries(next: { key: string | null; sql: string }[], ranOn: ServerLink): void {
    const current = ranOn.appliedVersion === this.version;
    this.entries = next;
    this.version++;
    if (current) ranOn.appliedVersion = this.version;
  }

  private unpin(what: Unpin): void {
    for (const p of UNPINS[what] ?? []) this.pins.delete(p);
  }
}
