// The server connections one session holds, and how it gets its primary connection through failovers and switchovers.
//
// The primary side is a small state machine driven by the topology's events, never by polling:
//   none      no primary connection held (transaction pooling between units, or after a loss);
//   opening   a pool is finding one (first use, after a release, after a loss);
//   connected the session holds one, found current at the topology version it was last checked at;
//   paused    a switchover holds new writes back; the topology's 'resume' wakes the session;
//   holding   no primary is known or it could not be reached; the topology's 'primary' event (or a short retry)
//             wakes the session, and after failover.hold_timeout the statement in front fails.
import { errors, ProxyError } from '../errors.js';
import { TX } from '../protocol/codes.js';
import { terminate } from '../protocol/frontend-messages.js';
import type { LinkOwner, ServerLink } from '../backend/server-link.js';
import type { PoolWaiter, ServerPool } from '../backend/pool.js';
import { REPLICA_RETRY_AFTER, type SessionCore } from './session-core.js';
import { failHead, pump } from './unit-dispatch.js';

export type PrimaryLinkState = 'none' | 'opening' | 'connected' | 'paused' | 'holding';

// A primary that is known but could not be reached is tried again this often while the session holds.
const HOLD_RETRY_MS = 50;

export class SessionLinks {
  /** Server connections the session holds now, by node. */
  private readonly held = new Map<string, ServerLink>();
  /** The session's connection to the primary while it holds one (in transaction pooling, only while something runs there). */
  home: ServerLink | null = null;
  primaryState: PrimaryLinkState = 'none';
  /** A pool the session waits on for a connection (primary or replica; one at a time). */
  private waitingOn: ServerPool | null = null;
  /** Pools this session used, by node (saves a lookup per statement). */
  private pools: Map<string, ServerPool> | null = null;
  /** Topology version at which the primary link was last found current. */
  private homeChecked = -1;
  /** Holding: statements wait until this time (failover.hold_timeout), then the one in front fails. */
  private holdUntil = 0;
  private holdTimer: NodeJS.Timeout | null = null;
  /** Why the last attempt to reach the primary failed (reported if the hold runs out). */
  private primaryError: string | null = null;

  constructor(
    private readonly s: SessionCore,
    /** Who hears of the connections' output and closes (the session). */
    private readonly owner: LinkOwner,
  ) {}

  get size(): number {
    return this.held.size;
  }

  get(node: string): ServerLink | undefined {
    return this.held.get(node);
  }

  all(): IterableIterator<ServerLink> {
    return this.held.values();
  }

  /** A server connection (from a pool, or the login's own) now serves this session. */
  adopt(link: ServerLink): ServerLink {
    link.owner = this.owner;
    link.mode = 'relay';
    link.adoptedAt = Date.now();
    // Its reads may have been paused for a client that read slowly; this session's own client decides from now on.
    link.conn.socket.resume();
    this.held.set(link.node, link);
    return link;
  }

  /** The login's first connection: it is the primary's. */
  adoptHome(link: ServerLink): void {
    this.connected(this.adopt(link));
  }

  /** Give a server connection back to its pool: reusable if it is idle and holds nothing of this session's that must not move. */
  release(link: ServerLink, reusable: boolean): void {
    if (this.held.get(link.node) !== link) return;
    this.forget(link);
    if (link.pool) link.pool.release(link, reusable && !link.closed && !link.busy);
    else if (!link.conn.socket.destroyed) link.conn.socket.end(terminate());
  }

  /** A held connection closed: it is gone from the session (and its pool). Says whether it was the primary's. */
  lost(link: ServerLink): boolean {
    const wasHome = this.home === link;
    if (this.held.get(link.node) !== link) return false;
    this.forget(link);
    link.pool?.release(link, false);
    return wasHome;
  }

  private forget(link: ServerLink): void {
    this.held.delete(link.node);
    if (this.home === link) {
      this.home = null;
      if (this.primaryState === 'connected') this.primaryState = 'none';
    }
    if (this.s.copyLink === link) this.s.copyLink = null;
  }

  /** Transaction pooling: hand back every server connection the session does not need between its units. */
  releaseIdle(): void {
    const s = this.s;
    if (s.poolMode !== 'transaction' || s.closed || this.held.size === 0) return;
    if (s.txStatus !== TX.Idle || s.sticky !== null || s.state.pins.size > 0 || s.cut !== null) return;
    for (const link of this.held.values()) {
      if (link.busy || s.inflight.some((u) => u.link === link)) continue;
      this.release(link, true);
    }
  }

  /** The primary link, or null while one is being found (the session is pumped again then). */
  primary(): ServerLink | null {
    const s = this.s;
    const t = s.ctx.topology;
    const home = this.home;
    if (t.writableUntil !== Infinity && Date.now() >= t.writableUntil) {
      // Several instances: this one has not confirmed the published state within lease_ttl (cut off from etcd, or
      // paused): another may have promoted a new primary meanwhile, so nothing more goes to this one's.
      // A transaction open there cannot go on (its next statement would be held, and one skipped statement must
      // not let the rest commit): its connection is closed, the server rolls it back, and the client sees the
      // transaction fail as on a lost primary (see link-loss.ts).
      if (home !== null && (s.txStatus !== TX.Idle || s.sticky === home)) home.conn.socket.destroy();
      if (this.primaryState !== 'holding') this.hold();
      return null;
    }
    if (home !== null && this.homeChecked === t.version) return home;
    // A switchover holds new writes back (a transaction already open finishes first) ...
    if (t.writesPaused && s.txStatus === TX.Idle && s.sticky === null) {
      if (this.primaryState !== 'paused') {
        this.primaryState = 'paused';
        t.once('resume', this.resumed);
      }
      return null;
    }
    if (this.primaryState === 'paused') {
      // Writes resumed without the event reaching this session (it cannot today; kept safe all the same).
      t.off('resume', this.resumed);
      this.primaryState = home !== null ? 'connected' : 'none';
    }
    const p = t.primary;
    if (home !== null) {
      // ... and then the primary is another node: move there between transactions (state replayed), unless the
      // session holds state that lives only on the old one.
      if (!p || !p.up || p.name === home.node) {
        this.homeChecked = t.version;
        return home;
      }
      // Not remembered as current: the session moves as soon as it is free to.
      if (s.txStatus !== TX.Idle || s.inflight.length > 0 || s.state.pins.size > 0) return home;
      this.release(home, false);
    }
    if (this.waitingOn !== null || this.primaryState === 'holding') return null;
    if (!p || !p.up) {
      this.hold();
      return null;
    }
    // A replica just promoted: the session's connection to it becomes its primary connection.
    const held = this.held.get(p.name);
    if (held !== undefined && !held.closed) return this.connected(held);
    const pool = this.poolFor(p.name);
    const link = pool.acquire(this.primaryWaiter);
    if (link === null) {
      this.waitingOn = pool;
      this.primaryState = 'opening';
      return null;
    }
    return this.connected(this.adopt(link));
  }

  /** The connection to read on from `node` (the primary's own when it is the primary), or 'wait' while the pool finds one. */
  readConnection(node: string, primaryName: string | null): ServerLink | 'wait' {
    if (node === primaryName || (this.home !== null && node === this.home.node)) return this.primary() ?? 'wait';
    const held = this.held.get(node);
    if (held !== undefined) return held;
    if (this.waitingOn !== null) return 'wait';
    const pool = this.poolFor(node);
    const link = pool.acquire(this.replicaWaiter);
    if (link === null) {
      this.waitingOn = pool;
      return 'wait';
    }
    return this.adopt(link);
  }

  private connected(link: ServerLink): ServerLink {
    this.holdUntil = 0;
    this.primaryError = null;
    this.home = link;
    this.primaryState = 'connected';
    this.homeChecked = this.s.ctx.topology.version;
    return link;
  }

  private poolFor(node: string): ServerPool {
    this.pools ??= new Map();
    let pool = this.pools.get(node);
    if (pool === undefined || pool.retired) {
      pool = this.s.ctx.pools.get(node, this.s.user, this.s.database);
      this.pools.set(node, pool);
    }
    return pool;
  }

  private readonly resumed = (): void => {
    if (this.primaryState !== 'paused') return;
    this.primaryState = this.home !== null ? 'connected' : 'none';
    if (!this.s.closed) pump(this.s);
  };

  private readonly primaryWaiter: PoolWaiter = {
    granted: (link) => {
      this.waitingOn = null;
      if (this.s.closed) {
        link.pool?.release(link, true);
        return;
      }
      this.connected(this.adopt(link));
      pump(this.s);
      this.releaseIdle();
    },
    failed: (err) => {
      this.waitingOn = null;
      this.primaryState = 'none';
      if (this.s.closed) return;
      const code = err instanceof ProxyError ? err.code : '';
      if (code === 'pool_timeout') {
        // This statement's wait is over; the next one that finds no primary waits its own failover.hold_timeout.
        this.holdUntil = 0;
        this.primaryError = null;
        failHead(this.s, err as ProxyError);
      }
      else if (code !== 'pool_drained') {
        // The primary cannot be reached (it may be failing): wait for it, or for a new one, up to failover.hold_timeout.
        this.primaryError = err.message;
        this.hold();
        return;
      }
      // A pool drained by a change of primary: look again.
      pump(this.s);
    },
  };

  private readonly replicaWaiter: PoolWaiter = {
    granted: (link) => {
      this.waitingOn = null;
      if (this.s.closed) {
        link.pool?.release(link, true);
        return;
      }
      this.adopt(link);
      pump(this.s);
      // Nothing may need it any more (the statement was answered otherwise meanwhile): then it goes straight back.
      this.releaseIdle();
    },
    failed: (err) => {
      const node = this.waitingOn?.node ?? '';
      this.waitingOn = null;
      if (this.s.closed) return;
      // Reads use other nodes (or the primary) for a while.
      this.s.replicas.leaveAlone(node, REPLICA_RETRY_AFTER);
      this.s.ctx.log.warn({ pid: this.s.key.pid, node, err: err.message }, 'no connection to a replica; reads use other nodes for a while');
      pump(this.s);
    },
  };

  /** No primary can be used: wait for one up to failover.hold_timeout, then the statement in front fails. */
  private hold(): void {
    const s = this.s;
    const holdMs = s.ctx.routing().holdTimeoutMs;
    const now = Date.now();
    if (this.holdUntil === 0) this.holdUntil = now + holdMs;
    if (now >= this.holdUntil) {
      this.holdUntil = 0;
      this.primaryState = 'none';
      const seen = s.ctx.topology.all().map((n) => `${n.name}: ${n.up ? n.role : 'down'}`).join('; ');
      const cutOff = s.ctx.topology.writableUntil !== Infinity && now >= s.ctx.topology.writableUntil;
      const why = cutOff ? 'this pgsplit instance could not confirm the cluster state with the other instances (coordination.etcd.lease_ttl)' : (this.primaryError ?? 'no node is known to be out of recovery');
      this.primaryError = null;
      failHead(s, errors.noPrimary(`${why} (waited ${holdMs} ms, failover.hold_timeout); ${seen}`));
      queueMicrotask(() => pump(s));
      return;
    }
    this.primaryState = 'holding';
    // A new primary wakes the session at once; the timer retries a primary that is known but could not be reached.
    this.holdTimer = setTimeout(this.wake, HOLD_RETRY_MS);
    s.ctx.topology.once('primary', this.wake);
  }

  private readonly wake = (): void => {
    if (this.primaryState !== 'holding') return;
    this.stopHolding();
    this.primaryState = 'none';
    if (!this.s.closed) pump(this.s);
  };

  private stopHolding(): void {
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.s.ctx.topology.off('primary', this.wake);
  }

  /** The session ended: stop waiting for a pool, a primary or a resume. */
  finish(): void {
    if (this.waitingOn !== null) {
      this.waitingOn.cancelWait(this.primaryWaiter);
      this.waitingOn.cancelWait(this.replicaWaiter);
      this.waitingOn = null;
    }
    if (this.primaryState === 'holding') this.stopHolding();
    if (this.primaryState === 'paused') this.s.ctx.topology.off('resume', this.resumed);
    this.primaryState = 'none';
  }
}
