// WAL positions for read-your-writes, polled on demand: the primary's LSN after a session's commit, and replicas' replay LSNs while sessions wait for them.
//
// How it works: a session whose write has committed takes a ticket. The next poll of the primary
// (`SELECT pg_current_wal_lsn()`) starts after that commit was acknowledged, so the LSN it answers covers
// the commit; every ticket taken before the poll was sent shares that answer. Until it arrives the
// session's reads go to the primary, so no client ever waits for it. A session whose replica has not yet
// replayed its LSN asks for a replica poll (`SELECT pg_last_wal_replay_lsn()`), which runs only while
// someone waits, at most one per POLL_GAP_MS. Both polls share one connection per node, apart from the
// monitor's, and are rate-limited: under a write-heavy load one poll answers many sessions' tickets.
import type pg from 'pg';
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import { parseLsn } from '../topology/lsn.js';
import { bestReplayLsn, TicketAnswers, type WalPositions } from './wal-positions.js';
import { monitorClient, type MonitorSettings } from './monitor-client.js';

/** Minimum time between two polls of one node (each is a ~0.1 ms query). */
const POLL_GAP_MS = 2;
/** After a failed poll, the node is left alone this long (reads meanwhile go to the primary, which is safe). */
const ERROR_BACKOFF_MS = 1000;
class NodePoller {
  private client: pg.Client | null = null;
  private inFlight = false;
  private again = false;
  private lastStart = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly sql: string,
    private readonly settings: () => MonitorSettings,
    private readonly onAnswer: (lsn: number | null, sentAfter: number) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Poll soon; a request while a poll is in flight gets a new poll after it (the running one may predate it). */
  request(): void {
    if (this.inFlight || this.timer) {
      this.again = true;
      return;
    }
    const wait = this.lastStart + POLL_GAP_MS - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.start();
      }, wait);
      return;
    }
    this.start();
  }

  private start(): void {
    this.inFlight = true;
    this.again = false;
    this.lastStart = Date.now();
    const sentAfter = this.onStart();
    void this.query()
      .then((lsn) => this.onAnswer(lsn, sentAfter))
      .catch((err: Error) => {
        this.close();
        this.lastStart = Date.now() + ERROR_BACKOFF_MS;
        this.onError(err);
      })
      .finally(() => {
        this.inFlight = false;
        if (this.again) this.request();
      });
  }

  /** Replaced by the tracker for the primary: the ticket count at the moment the poll is sent. */
  onStart: () => number = () => 0;

  private async query(): Promise<number | null> {
    if (!this.client) {
      const s = this.settings();
      const c = monitorClient({ host: this.host, port: this.port }, s, 'pgsplit-lsn', s.probe_timeout, true);
      c.on('error', () => this.close());
      this.client = c;
      try {
        await c.connect();
      } catch (err) {
        this.close();
        throw err;
      }
    }
    const r = await this.client.query({ text: this.sql, rowMode: 'array' });
    return parseLsn(r.rows[0]?.[0] as string | null);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const c = this.client;
    this.client = null;
    if (c) c.end().catch(() => {});
  }
}

export class LsnTracker implements WalPositions {
  private issued = 0;
  private readonly answers = new TicketAnswers();
  private primaryPoller: { node: string; host: string; port: number; poller: NodePoller } | null = null;
  private readonly replicaPollers = new Map<string, { host: string; port: number; poller: NodePoller }>();
  /** Replay LSNs from our own polls, fresher than the monitor's between its rounds. */
  private readonly replayed = new Map<string, number>();
  private closed = false;
  /** Polls sent, for metrics. */
  primaryPolls = 0;
  /** A coordinator passes answers on to its workers: tickets up to `upTo` are covered by `lsn`. */
  onAnswer: ((upTo: number, lsn: number) => void) | null = null;
  onReplayed: ((node: string, lsn: number) => void) | null = null;
  replicaPolls = 0;

  constructor(
    private readonly topology: Topology,
    private readonly settings: () => MonitorSettings,
    private readonly log: Logger,
  ) {
    topology.on('primary', () => {
      // A new primary: old answers stay valid for old tickets only as long as its WAL continues the old one;
      // after a failover the new primary's LSNs are what replicas follow, so start over.
      this.answers.clear();
      this.primaryPoller?.poller.close();
      this.primaryPoller = null;
    });
  }

  /** Call when a session's write has been acknowledged; pass the ticket to lsnFor(). */
  ticket(): number {
    const t = ++this.issued;
    this.pollPrimary();
    return t;
  }

  /** The LSN that covers the commit behind `ticket`, or null while it is not known yet. */
  lsnFor(ticket: number): number | null {
    const lsn = this.answers.lsnFor(ticket);
    if (lsn === null) this.pollPrimary();
    return lsn;
  }

  /** The best known replay LSN of a replica: the monitor's, or a fresher one from our own polls. */
  replayLsn(node: string): number | null {
    return bestReplayLsn(this.topology.node(node)?.replayLsnValue ?? null, this.replayed.get(node));
  }

  /** A session waits for some replica in `nodes` to replay `lsn`: poll those that have not yet. */
  want(lsn: number, nodes: readonly { name: string; host: string; port: number }[]): void {
    if (this.closed) return;
    for (const n of nodes) {
      const r = this.replayLsn(n.name);
      if (r !== null && r >= lsn) continue;
      let p = this.replicaPollers.get(n.name);
      if (!p || p.host !== n.host || p.port !== n.port) {
        p?.poller.close();
        const name = n.name;
        const poller = new NodePoller(n.host, n.port, 'SELECT pg_last_wal_replay_lsn()::text', this.settings,
          (l) => {
            if (l !== null && l > (this.replayed.get(name) ?? -1)) {
              this.replayed.set(name, l);
              this.onReplayed?.(name, l);
            }
          },
          (err) => this.log.debug({ node: name, err: err.message }, 'replay LSN poll failed'));
        poller.onStart = () => {
          this.replicaPolls++;
          return 0;
        };
        p = { host: n.host, port: n.port, poller };
        this.replicaPollers.set(name, p);
      }
      p.poller.request();
    }
  }

  private pollPrimary(): void {
    if (this.closed) return;
    const primary = this.topology.primary;
    if (!primary) return;
    let p = this.primaryPoller;
    if (!p || p.node !== primary.name || p.host !== primary.host || p.port !== primary.port) {
      p?.poller.close();
      const poller = new NodePoller(primary.host, primary.port, 'SELECT pg_current_wal_lsn()::text', this.settings,
        (lsn, sentAfter) => this.answer(lsn, sentAfter),
        (err) => this.log.debug({ node: primary.name, err: err.message }, 'primary LSN poll failed'));
      poller.onStart = () => {
        this.primaryPolls++;
        return this.issued;
      };
      p = { node: primary.name, host: primary.host, port: primary.port, poller };
      this.primaryPoller = p;
    }
    p.poller.request();
  }

  /** Nodes removed from the config: their polls stop and their connections close. */
  forget(names: readonly string[]): void {
    for (const name of names) {
      this.replicaPollers.get(name)?.poller.close();
      this.replicaPollers.delete(name);
      this.replayed.delete(name);
    }
  }

  private answer(lsn: number | null, upTo: number): void {
    if (lsn === null || !this.answers.add(upTo, lsn)) return;
    this.onAnswer?.(upTo, lsn);
  }

  close(): void {
    this.closed = true;
    this.primaryPoller?.poller.close();
    for (const p of this.replicaPollers.values()) p.poller.close();
    this.replicaPollers.clear();
  }
}
