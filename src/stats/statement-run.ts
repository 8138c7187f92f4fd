// One unit's statements while their answers come back from a server: each statement's time and rows, recorded in the table once the unit's answer is complete.
//
// A simple Query is one call of its (whole) text, from the moment it was sent to its ReadyForQuery, with the rows of
// every CommandComplete it produced. In an extended-protocol batch each Execute is a call of the statement it runs:
// from the send (or the end of the previous Execute's answer) to its CommandComplete, EmptyQueryResponse or
// PortalSuspended. Nothing is recorded before the unit ends, because a read a replica refused as read-only (25006)
// is run again on the primary, and only that run counts.
import type { RouteTarget, StatementKey, StatementStats } from './statement-stats.js';

// A run keeps its statements' keys up to this many; Executes of later pieces it takes in are stepped through uncounted.
const MAX_KEYS = 1000;

export class StatementRun {
  /** Statements whose answer ended (or failed). */
  private done = 0;
  /** When the previous statement's answer ended (or the unit was sent). */
  private mark: number;
  /** Index of the statement that failed, -1 while none did. */
  private failedAt = -1;
  // The first statement's figures; a batch with more Executes keeps the others in lists made on demand.
  private firstMs = 0;
  private firstRows = 0;
  private moreMs: number[] | null = null;
  private moreRows: number[] | null = null;
  /** Executes after the keys (pieces taken in past MAX_KEYS): their answers are stepped through, never recorded. */
  private uncounted = 0;
  /** The keys list is this run's own (it starts as the unit's, which must not grow). */
  private ownKeys = false;

  constructor(
    private readonly table: StatementStats,
    /** Per Execute (or the Query's text), in order; null for one the proxy cannot name (it is not counted). */
    private keys: readonly (StatementKey | null)[],
    /** A simple Query: one call, ending at ReadyForQuery (its statements' own ends need no clock reading). */
    readonly whole: boolean,
    /** The unit ends with Sync (or is a Query): a ReadyForQuery ends it. Otherwise its last Execute's answer does. */
    readonly sync: boolean,
    /** A replica may refuse it as read-only, and it is then run again on the primary. */
    readonly retryable: boolean,
    private readonly target: RouteTarget,
    private readonly reason: string,
    private readonly sentAt: number,
  ) {
    this.mark = sentAt;
  }

  /** Nothing more of this unit can complete: a later answer belongs to the next unit (Flush-ended pieces of a batch). */
  get spent(): boolean {
    return this.failedAt >= 0 || (!this.whole && this.done >= this.keys.length + this.uncounted);
  }

  /**
   * Take in the next Flush-ended piece of the same batch while this one still waits for answers, instead of the
   * server connection keeping a run per piece. A server that skips a batch after an error answers none of its
   * pieces until Sync, so a client sending Execute+Flush without end (and no Sync) would otherwise grow the list
   * without bound. False when the two cannot be one (a Sync, a simple Query, a retryable read, or this one is spent).
   */
  absorb(next: StatementRun): boolean {
    if (this.whole || next.whole || this.sync || next.sync || this.retryable || next.retryable || this.spent) return false;
    if (this.uncounted === 0 && this.keys.length + next.keys.length <= MAX_KEYS) {
      if (!this.ownKeys) {
        this.keys = [...this.keys];
        this.ownKeys = true;
      }
      (this.keys as (StatementKey | null)[]).push(...next.keys);
    } else this.uncounted += next.keys.length;
    return true;
  }

  /** A statement's answer ended (CommandComplete with `rows` from its tag, EmptyQueryResponse, PortalSuspended). */
  completed(rows: number, now: number): void {
    if (this.whole) {
      this.firstRows += rows;
      return;
    }
    if (this.failedAt >= 0 || this.done >= this.keys.length + this.uncounted) return;
    if (this.done >= this.keys.length) {
      this.done++;
      return;
    }
    this.take(now - this.mark, rows);
    this.mark = now;
  }

  /** An ErrorResponse: the statement running now failed, and the server skips the rest of the batch. */
  failed(now: number): void {
    if (this.failedAt >= 0) return;
    if (this.whole || this.keys.length === 0) {
      this.failedAt = 0;
      return;
    }
    if (this.done < this.keys.length) this.take(now - this.mark, 0);
    // An error after the last Execute (at Sync: a deferred constraint at the implicit COMMIT) is that statement's.
    this.failedAt = this.done - 1;
  }

  /** The unit's answer is complete: record its calls; `discard` when it will run again (read-only retry on the primary). */
  end(now: number, discard: boolean): void {
    if (discard) return;
    if (this.whole) {
      const k = this.keys[0];
      if (k) this.table.record(k, this.target, this.reason, now - this.sentAt, this.firstRows, this.failedAt >= 0);
      return;
    }
    for (let i = 0; i < this.done; i++) {
      const k = this.keys[i];
      if (!k) continue;
      const ms = i === 0 ? this.firstMs : this.moreMs![i - 1];
      const rows = i === 0 ? this.firstRows : this.moreRows![i - 1];
      this.table.record(k, this.target, this.reason, ms, rows, i === this.failedAt);
    }
  }

  private take(ms: number, rows: number): void {
    if (this.done === 0) {
      this.firstMs = ms;
      this.firstRows = rows;
    } else {
      (this.moreMs ??= []).push(ms);
      (this.moreRows ??= []).push(rows);
    }
    this.done++;
  }
}
