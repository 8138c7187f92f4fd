// The statement statistics as GET /statements and the admin console read them: one process's table, or (workers: N) every worker's merged by the coordinator.
import type { StatementRow, StatementStats } from './statement-stats.js';

/** Rows GET /statements returns without a `limit`. */
export const DEFAULT_STATEMENT_ROWS = 100;

export interface StatementsSource {
  /** stats.enabled (fixed at start); when false, rows() is empty and reset() does nothing. */
  readonly enabled: boolean;
  /** Every statement of the instance (all workers added up), the most total time first, at most `limit` rows. */
  rows(limit?: number): Promise<StatementRow[]>;
  /** Forget every statement (every worker's too): POST /statements/reset, the console's RESET STATS. */
  reset(): Promise<void>;
}

/** The source of a single-process pgsplit: its own table (null when stats are off). */
export function localStatements(table: StatementStats | null): StatementsSource {
  return {
    enabled: table !== null,
    rows: async (limit) => (table === null ? [] : table.rows(limit)),
    reset: async () => table?.reset(),
  };
}
