// What sessions need for read-your-writes (WalPositions), and the ticket answers and replay LSNs its two implementations (LsnTracker, RemoteWalPositions) keep alike.
// LsnTracker answers in one process; in a worker, RemoteWalPositions asks the coordinator's tracker.

export interface WalPositions {
  /** Call when a session's write has been acknowledged; pass the ticket to lsnFor(). */
  ticket(): number;
  /** The LSN that covers the commit behind `ticket`, or null while it is not known yet. */
  lsnFor(ticket: number): number | null;
  /** The best known replay LSN of a replica. */
  replayLsn(node: string): number | null;
  /** A session waits for some replica in `nodes` to replay `lsn`: poll those that have not yet. */
  want(lsn: number, nodes: readonly { name: string; host: string; port: number }[]): void;
}

/** Answers kept; a ticket older than all of them gets the oldest kept (a later LSN: stricter, still correct). */
const KEEP_ANSWERS = 1024;

/** Answers to read-your-writes tickets, in ticket order: each says the tickets up to `upTo` are covered by `lsn`. */
export class TicketAnswers {
  private readonly list: { upTo: number; lsn: number }[] = [];

  /** Keeps an answer that covers more tickets than the last one; returns whether it did. */
  add(upTo: number, lsn: number): boolean {
    const a = this.list;
    if (a.length > 0 && a[a.length - 1].upTo >= upTo) return false;
    a.push({ upTo, lsn });
    if (a.length > KEEP_ANSWERS) a.splice(0, a.length - KEEP_ANSWERS);
    return true;
  }

  /** The LSN of the first answer that covers `ticket`, or null while none does. */
  lsnFor(ticket: number): number | null {
    const a = this.list;
    if (a.length === 0 || a[a.length - 1].upTo < ticket) return null;
    for (let i = a.length - 1; i > 0; i--) if (a[i - 1].upTo < ticket) return a[i].lsn;
    return a[0].lsn;
  }

  /** A new primary: its LSNs are what replicas follow from now on. */
  clear(): void {
    this.list.length = 0;
  }
}

/** A replica's best known replay LSN: the monitor's, or a fresher one from an on-demand poll. */
export function bestReplayLsn(fromMonitor: number | null, polled: number | undefined): number | null {
  if (polled === undefined) return fromMonitor;
  return fromMonitor === null || polled > fromMonitor ? polled : fromMonitor;
}
