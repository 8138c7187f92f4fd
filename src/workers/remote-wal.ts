// Read-your-writes in a worker: tickets and replica polls are the coordinator's (one LsnTracker for all workers); answers come back over IPC.
import type { Topology } from '../topology/topology.js';
import { bestReplayLsn, TicketAnswers, type WalPositions } from '../health/wal-positions.js';
import type { FromWorker } from './messages.js';

/** A ticket still unanswered this long is sent again (the coordinator's poll may have failed meanwhile). */
const RESEND_MS = 250;

export class RemoteWalPositions implements WalPositions {
  private issued = 0;
  private sent = 0;
  private sentAt = 0;
  private flushScheduled = false;
  private readonly answers = new TicketAnswers();
  private readonly replayed = new Map<string, number>();
  private wanted: { lsn: number; nodes: Set<string> } | null = null;

  constructor(
    private readonly topology: Topology,
    private readonly send: (m: FromWorker) => void,
    private readonly now: () => number = Date.now,
  ) {
    // A new primary's LSNs are what replicas follow from now on (see LsnTracker).
    topology.on('primary', () => {
      this.answers.clear();
    });
  }

  ticket(): number {
    const t = ++this.issued;
    this.schedule();
    return t;
  }

  lsnFor(ticket: number): number | null {
    const lsn = this.answers.lsnFor(ticket);
    if (lsn === null && (this.sent < this.issued || this.now() - this.sentAt > RESEND_MS)) {
      this.sent = 0;
      this.schedule();
    }
    return lsn;
  }

  replayLsn(node: string): number | null {
    return bestReplayLsn(this.topology.node(node)?.replayLsnValue ?? null, this.replayed.get(node));
  }

  want(lsn: number, nodes: readonly { name: string }[]): void {
    for (const n of nodes) {
      const r = this.replayLsn(n.name);
      if (r !== null && r >= lsn) continue;
      if (!this.wanted) this.wanted = { lsn, nodes: new Set() };
      if (lsn > this.wanted.lsn) this.wanted.lsn = lsn;
      this.wanted.nodes.add(n.name);
    }
    if (this.wanted) this.schedule();
  }

  /** The coordinator's answer: tickets up to `upTo` are covered by `lsn`. */
  answered(upTo: number, lsn: number): void {
    this.answers.add(upTo, lsn);
  }

  replayedTo(node: string, lsn: number): void {
    if (lsn > (this.replayed.get(node) ?? -1)) this.replayed.set(node, lsn);
  }

  // Everything asked for within one turn of the event loop goes in one message each way.
  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.sent < this.issued) {
        this.sent = this.issued;
        this.sentAt = this.now();
        this.send({ t: 'ticket', k: this.issued });
      }
      const w = this.wanted;
      this.wanted = null;
      if (w) this.send({ t: 'want', lsn: w.lsn, nodes: [...w.nodes] });
    });
  }
}
