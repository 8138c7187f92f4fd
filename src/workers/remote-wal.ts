// Read-your-writes in a worker: tickets and replica polls are the coordinator's (one LsnTracker for all workers); answers come back over IPC.
import type { Topology } from '../topology/topology.js';
import type { WalPositions } from '../health/wal-positions.js';
import type { FromWorker } from './messages.js';

/** Answers kept; a ticket older than all of them gets the oldest kept (a later LSN: stricter, still correct). */
const KEEP_ANSWERS = 1024;
/** A ticket still unanswered this long is sent again (the coordinator's poll may have failed meanwhile). */
const RESEND_MS = 250;

export class RemoteWalPositions implements WalPositions {
  private issued = 0;
  private sent = 0;
  private sentAt = 0;
  private flushScheduled = false;
  private readonly answers: { upTo: number; lsn: number }[] = [];
  private readonly replayed = new Map<string, number>();
  private wanted: { lsn: number; nodes: Set<string> } | null = null;

  constructor(
    private readonly topology: Topology,
    private readonly send: (m: FromWorker) => void,
    private readonly now: () => number = Date.now,
  ) {
    // A new primary's LSNs are what replicas follow from now on (see LsnTracker).
    topology.on('primary', () => {
      this.answers.length = 0;
    });
  }

  ticket(): number {
    const t = ++this.issued;
    this.schedule();
    return t;
  }

  lsnFor(ticket: number): number | null {
    const a = this.answers;
    if (a.length === 0 || a[a.length - 1].upTo < ticket) {
      if (this.sent < this.issued || this.now() - this.sentAt > RESEND_MS) {
        this.sent = 0;
        this.schedule();
      }
      return null;
    }
    for (let i = a.length - 1; i > 0; i--) if (a[i - 1].upTo < ticket) return a[i].lsn;
    return a[0].lsn;
  }

  replayLsn(node: string): number | null {
    const fromMonitor = this.topology.node(node)?.replayLsnValue ?? null;
    const own = this.replayed.get(node);
    if (own === undefined) return fromMonitor;
    return fromMonitor === null || own > fromMonitor ? own : fromMonitor;
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
    const a = this.answers;
    if (a.length > 0 && a[a.length - 1].upTo >= upTo) return;
    a.push({ upTo, lsn });
    if (a.length > KEEP_ANSWERS) a.splice(0, a.length - KEEP_ANSWERS);
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
