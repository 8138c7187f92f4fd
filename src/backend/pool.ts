// Server connection pools, one per node, user and database: checkout and release, clients waiting with a deadline, idle and lifetime limits.
import { errors, ProxyError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { terminate } from '../protocol/frontend-messages.js';
import type { ServerConnection } from './connect.js';
import { ServerLink, type LinkOwner } from './server-link.js';

export interface PoolSettings {
  size: number;
  minIdle: number;
  /** 0: no limit. */
  maxClientWaitMs: number;
  /** 0: never. */
  serverIdleTimeoutMs: number;
  /** 0: never. */
  serverLifetimeMs: number;
  maxPreparedStatements: number;
}

/** A session waiting for a server connection. */
export interface PoolWaiter {
  granted(link: ServerLink): void;
  /** A ProxyError (pool_timeout, pool_drained, backend_connect_failed), or the server's own refusal (ServerStartupError). */
  failed(err: Error): void;
}

interface Waiting {
  waiter: PoolWaiter;
  timer: NodeJS.Timeout | null;
}

/** Opens a server connection for a pool; the pool makes it a ServerLink. */
export type OpenServer = (node: string, user: string, database: string) => Promise<{ conn: ServerConnection; host: string; port: number }>;

export class ServerPool implements LinkOwner {
  /** Idle connections, the most recently used last (taken first: warm caches, and the rest can time out). */
  private readonly idle: ServerLink[] = [];
  /** Checked out by sessions. */
  active = 0;
  opening = 0;
  private readonly waiting: Waiting[] = [];
  /** Its node stopped being what it was (a failover): idle connections are closed, active ones on release. */
  private draining = false;
  /** Sessions waiting that gave up (pool.max_client_wait). */
  waitTimeouts = 0;

  constructor(
    readonly node: string,
    readonly user: string,
    readonly database: string,
    private readonly open: OpenServer,
    private readonly settings: () => PoolSettings,
    private readonly log: Logger,
    private readonly onWaitTimeout: () => void = () => {},
  ) {}

  get idleCount(): number {
    return this.idle.length;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /** The idle connections, as SHOW SERVERS lists them. */
  idleServers(): ServerInfo[] {
    return this.idle.map((l) => ({ node: this.node, user: this.user, database: this.database, state: 'idle', client: null, backendPid: l.conn.pid, connectedAt: l.createdAt, since: l.releasedAt }));
  }

  get total(): number {
    return this.idle.length + this.active + this.opening;
  }

  /** An idle connection now, or null. */
  tryAcquire(): ServerLink | null {
    const now = Date.now();
    while (this.idle.length > 0) {
      const link = this.idle.pop()!;
      if (link.closed) continue;
      if (this.expired(link, now)) {
        this.close(link);
        continue;
      }
      this.active++;
      return link;
    }
    return null;
  }

  /**
   * A connection for `waiter`: returned at once when one is idle; otherwise null, and the waiter is granted one
   * later (a new connection while the pool is under pool.size, else the next one released) or fails at
   * pool.max_client_wait.
   */
  acquire(waiter: PoolWaiter): ServerLink | null {
    if (this.waiting.length === 0) {
      const link = this.tryAcquire();
      if (link) return link;
    }
    const wait = this.settings().maxClientWaitMs;
    const entry: Waiting = { waiter, timer: null };
    if (wait > 0) {
      entry.timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i < 0) return;
        this.waiting.splice(i, 1);
        this.waitTimeouts++;
        this.onWaitTimeout();
        waiter.failed(errors.poolTimeout(this.node, wait, this.settings().size));
      }, wait);
      entry.timer.unref();
    }
    this.waiting.push(entry);
    this.grow();
    return null;
  }

  /** A waiting session went away. */
  cancelWait(waiter: PoolWaiter): void {
    const i = this.waiting.findIndex((w) => w.waiter === waiter);
    if (i < 0) return;
    const [w] = this.waiting.splice(i, 1);
    if (w.timer) clearTimeout(w.timer);
  }

  /**
   * A session is done with `link`. `reusable`: it is idle (ReadyForQuery said so, nothing owed) and holds no
   * state of the session that the next one must not see (see Session); otherwise it is closed.
   */
  release(link: ServerLink, reusable: boolean): void {
    this.active--;
    link.owner = this;
    link.mode = 'relay';
    // A session may have paused its reads (its client read slowly): idle here, it must still see a close.
    link.conn.socket.resume();
    if (link.closed) {
      this.grow();
      return;
    }
    // Over pool.size (lowered by a reload): the pool shrinks as connections come back.
    if (!reusable || this.draining || this.expired(link, Date.now()) || link.busy || this.total >= this.settings().size) {
      this.close(link);
      this.grow();
      return;
    }
    if (link.cancelling > 0) {
      // A cancel sent for what the session ran may still arrive: nobody else gets the connection before it did.
      link.onCancelsDone = () => this.handBack(link);
      return;
    }
    this.handBack(link);
  }

  private handBack(link: ServerLink): void {
    link.onCancelsDone = null;
    if (link.closed) {
      this.grow();
      return;
    }
    link.releasedAt = Date.now();
    const next = this.waiting.shift();
    if (next) {
      if (next.timer) clearTimeout(next.timer);
      this.active++;
      next.waiter.granted(link);
      return;
    }
    this.idle.push(link);
  }

  /** Open connections while sessions wait and the pool is under its size (also after a reload raised it). */
  grow(): void {
    const { size } = this.settings();
    while (this.waiting.length > this.opening && this.total < size && !this.draining) this.openOne(true);
  }

  private openOne(forWaiter: boolean): void {
    this.opening++;
    this.open(this.node, this.user, this.database).then(
      ({ conn, host, port }) => {
        this.opening--;
        const link = new ServerLink(conn, host, port, this);
        link.pool = this;
        if (this.draining) {
          this.close(link);
          return;
        }
        this.active++;
        this.release(link, true);
      },
      (err: unknown) => {
        this.opening--;
        // The session that asked first learns why (a bad database, too many connections, the node is down).
        const next = forWaiter ? this.waiting.shift() : undefined;
        if (next) {
          if (next.timer) clearTimeout(next.timer);
          next.waiter.failed(err instanceof Error ? err : errors.backendConnect(this.node, String(err)));
        } else this.log.warn({ node: this.node, user: this.user, database: this.database, err: (err as Error).message }, 'could not open a pooled server connection');
      },
    );
  }

  /** Idle timeout, lifetime and min_idle; true when the pool is empty and can be forgotten. */
  sweep(now: number): boolean {
    const s = this.settings();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const link = this.idle[i];
      const idleTooLong = s.serverIdleTimeoutMs > 0 && now - link.releasedAt >= s.serverIdleTimeoutMs && this.total > s.minIdle;
      if (link.closed || idleTooLong || this.expired(link, now) || this.total > s.size) {
        this.idle.splice(i, 1);
        if (!link.closed) this.close(link);
      }
    }
    if (!this.draining) while (this.idle.length + this.opening < s.minIdle && this.total < s.size) this.openOne(false);
    return this.total === 0 && this.waiting.length === 0;
  }

  /** The node's role changed (failover, fencing): close what is idle now and the rest when released. */
  drain(): void {
    this.draining = true;
    for (const link of this.idle.splice(0)) this.close(link);
    // Sessions waiting here want this node no longer: they look again (the next primary, another replica).
    for (const w of this.waiting.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.waiter.failed(errors.poolDrained(this.node));
    }
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** No longer in Pools (drained, or empty and forgotten): sessions that kept a reference must look it up again. */
  retired = false;

  private expired(link: ServerLink, now: number): boolean {
    const life = this.settings().serverLifetimeMs;
    return life > 0 && now - link.createdAt >= life;
  }

  private close(link: ServerLink): void {
    const s = link.conn.socket;
    if (!s.destroyed) s.end(terminate());
  }

  // LinkOwner, while the connection is idle here.
  linkClosed(link: ServerLink): void {
    const i = this.idle.indexOf(link);
    if (i >= 0) this.idle.splice(i, 1);
    this.grow();
  }

  linkFailed(link: ServerLink, err: unknown): void {
    this.log.warn({ node: this.node, err: (err as Error)?.message ?? String(err) }, 'error on an idle pooled server connection; closing it');
    link.conn.socket.destroy();
  }

  linkDrained(): void {}

  linkError(link: ServerLink, err: Error): void {
    this.log.debug({ node: this.node, err: err.message }, 'idle pooled server connection error');
  }

  forward(link: ServerLink, chunk: Buffer): void {
    // An idle server has nothing to say to anyone (a NOTICE, a FATAL before it closes): dropped.
    this.log.debug({ node: this.node, bytes: chunk.length }, 'dropped output of an idle pooled server connection');
  }

  ready(): void {}

  messages(): void {}
}

/** One server connection as the admin console lists it: idle in a pool, or serving the client with that pid. */
export interface ServerInfo {
  node: string;
  user: string;
  database: string;
  state: 'idle' | 'active';
  /** The BackendKeyData pid pgsplit gave the client it serves. */
  client: number | null;
  /** The server process (pg_stat_activity.pid). */
  backendPid: number;
  connectedAt: number;
  /** In this state since. */
  since: number;
}

export interface PoolStatus {
  node: string;
  user: string;
  database: string;
  active: number;
  idle: number;
  opening: number;
  waiting: number;
  max: number;
  draining: boolean;
}

/** Every pool of the process, by node, user and database. */
export class Pools {
  private readonly pools = new Map<string, ServerPool>();
  private timer: NodeJS.Timeout | null = null;
  /** Sessions that gave up waiting, over all pools (also those since forgotten). */
  waitTimeouts = 0;

  constructor(
    private readonly open: OpenServer,
    private readonly settings: () => PoolSettings,
    private readonly log: Logger,
  ) {}

  get(node: string, user: string, database: string): ServerPool {
    const key = `${node}\u0000${user}\u0000${database}`;
    let pool = this.pools.get(key);
    if (pool === undefined || pool.isDraining) {
      pool = new ServerPool(node, user, database, this.open, this.settings, this.log, () => this.waitTimeouts++);
      this.pools.set(key, pool);
      this.start();
    }
    return pool;
  }

  /** Drain every pool of `node` (its role changed); new checkouts get fresh pools. */
  drainNode(node: string): void {
    for (const [key, pool] of this.pools) {
      if (pool.node !== node) continue;
      pool.drain();
      pool.retired = true;
      this.pools.delete(key);
    }
  }

  /** pool.* reloaded: a raised size serves waiting sessions at once (a lowered one shrinks on release and sweep). */
  settingsChanged(): void {
    for (const pool of this.pools.values()) pool.grow();
    this.sweep();
  }

  status(): PoolStatus[] {
    const size = this.settings().size;
    return [...this.pools.values()].map((p) => ({
      node: p.node,
      user: p.user,
      database: p.database,
      active: p.active,
      idle: p.idleCount,
      opening: p.opening,
      waiting: p.waitingCount,
      max: size,
      draining: p.isDraining,
    }));
  }

  /** Idle connections of every pool, at most `max`. */
  idleServers(max: number): ServerInfo[] {
    const out: ServerInfo[] = [];
    for (const p of this.pools.values()) {
      if (out.length >= max) break;
      out.push(...p.idleServers().slice(0, max - out.length));
    }
    return out;
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), 1000);
    this.timer.unref();
  }

  sweep(now = Date.now()): void {
    for (const [key, pool] of this.pools) {
      if (!pool.sweep(now)) continue;
      pool.retired = true;
      this.pools.delete(key);
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const pool of this.pools.values()) pool.drain();
    this.pools.clear();
  }
}
