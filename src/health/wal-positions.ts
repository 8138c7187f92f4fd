// What sessions need for read-your-writes: tickets for their commits, the LSN that covers one, and replicas' replay LSNs.
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
