// What failover and switchover did, kept for /status and metrics: the last events, the count of failovers, the last duration.
export interface FailoverEvent {
  at: string;
  kind: 'failover' | 'switchover';
  reason: string;
  old_primary: string | null;
  new_primary: string;
  /** From the first failed probe of the old primary to writes going to the new one. */
  duration_ms: number;
  promoted_receive_lsn: string | null;
  repointed: string[];
  error?: string;
}

const KEEP = 50;

export class FailoverHistory {
  readonly events: FailoverEvent[] = [];
  /** Automatic promotions that succeeded. */
  failovers = 0;
  /** Of the last failover or switchover that succeeded. */
  lastDurationSeconds: number | null = null;

  /** A failover or switchover finished (successfully unless `e.error`). */
  record(e: FailoverEvent): void {
    this.events.push(e);
    if (this.events.length > KEEP) this.events.shift();
  }

  /** Writes go to the new primary: counted, and its duration kept (before the re-pointing that follows). */
  tookWrites(kind: FailoverEvent['kind'], durationMs: number): void {
    if (kind === 'failover') this.failovers++;
    this.lastDurationSeconds = durationMs / 1000;
  }
}
