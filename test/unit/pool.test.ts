// The server connection pool on fake connections: size cap, waiting clients in order with a deadline, release, drain, idle and lifetime limits.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ServerPool, type PoolSettings, type PoolWaiter } from '../../src/backend/pool.js';
import type { ServerConnection } from '../../src/backend/connect.js';
import type { ServerLink } from '../../src/backend/server-link.js';
import { ReadSlot } from '../../src/util/read-slot.js';
import { createLogger } from '../../src/util/logger.js';

class FakeSocket extends EventEmitter {
  destroyed = false;
  ended = 0;
  paused = false;
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  write(): boolean {
    return true;
  }
  end(): void {
    this.ended++;
    this.destroy();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    queueMicrotask(() => this.emit('close'));
  }
}

let opened: FakeSocket[] = [];
const open = async () => {
  const socket = new FakeSocket();
  opened.push(socket);
  const conn = { node: 'pg1', socket, tls: false, slot: new ReadSlot(), pid: opened.length, secret: 0, parameters: new Map(), startupFrames: [] } as unknown as ServerConnection;
  return { conn, host: '127.0.0.1', port: 5432 };
};
const settings: PoolSettings = { size: 2, minIdle: 0, maxClientWaitMs: 1000, serverIdleTimeoutMs: 60_000, serverLifetimeMs: 0, maxPreparedStatements: 10 };
const log = createLogger('silent');

function waiter() {
  const got: ServerLink[] = [];
  const errs: Error[] = [];
  const w: PoolWaiter = { granted: (l) => got.push(l), failed: (e) => errs.push(e) };
  return { w, got, errs };
}
const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

beforeEach(() => {
  opened = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe('ServerPool', () => {
  it('opens connections for waiting clients up to pool.size, then hands released ones to the next in line', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => settings, log);
    const [a, b, c] = [waiter(), waiter(), waiter()];
    expect(pool.acquire(a.w)).toBeNull();
    expect(pool.acquire(b.w)).toBeNull();
    expect(pool.acquire(c.w)).toBeNull();
    await flush();
    expect(opened).toHaveLength(2);
    expect(a.got).toHaveLength(1);
    expect(b.got).toHaveLength(1);
    expect(c.got).toHaveLength(0);
    pool.release(a.got[0], true);
    expect(c.got).toEqual(a.got);
    expect(pool.active).toBe(2);
    pool.release(b.got[0], true);
    expect(pool.idleCount).toBe(1);
    expect(pool.tryAcquire()).toBe(b.got[0]);
  });

  it('fails a client that waited pool.max_client_wait with 53300, and serves the others', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => ({ ...settings, size: 1 }), log);
    const [a, b] = [waiter(), waiter()];
    pool.acquire(a.w);
    pool.acquire(b.w);
    await flush();
    vi.advanceTimersByTime(1000);
    expect(b.errs).toHaveLength(1);
    expect(b.errs[0]).toMatchObject({ sqlstate: '53300', code: 'pool_timeout' });
    expect(pool.waitTimeouts).toBe(1);
    pool.release(a.got[0], true);
    expect(pool.idleCount).toBe(1);
  });

  it('closes a connection released as not reusable and opens another for a waiting client', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => ({ ...settings, size: 1 }), log);
    const [a, b] = [waiter(), waiter()];
    pool.acquire(a.w);
    await flush();
    pool.acquire(b.w);
    pool.release(a.got[0], false);
    expect(opened[0].ended).toBe(1);
    await flush();
    expect(opened).toHaveLength(2);
    expect(b.got).toHaveLength(1);
    expect(b.got[0]).not.toBe(a.got[0]);
  });

  it('keeps a released connection from everyone until the cancel sent for it is done', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => ({ ...settings, size: 1 }), log);
    const [a, b] = [waiter(), waiter()];
    pool.acquire(a.w);
    await flush();
    const link = a.got[0];
    link.cancelling = 1;
    pool.acquire(b.w);
    pool.release(link, true);
    expect(b.got).toHaveLength(0);
    link.cancelDone();
    expect(b.got).toEqual([link]);
  });

  it('drains: idle connections closed at once, active ones on release, waiting clients told to look again', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => ({ ...settings, size: 1 }), log);
    const [a, b, c] = [waiter(), waiter(), waiter()];
    pool.acquire(a.w);
    await flush();
    pool.acquire(b.w);
    pool.drain();
    expect(b.errs[0]).toMatchObject({ code: 'pool_drained' });
    pool.release(a.got[0], true);
    expect(opened[0].ended).toBe(1);
    expect(pool.acquire(c.w)).toBeNull();
    await flush();
    expect(opened).toHaveLength(1); // a draining pool opens nothing
  });

  it('closes idle connections after server_idle_timeout down to min_idle, and old ones at server_lifetime', async () => {
    const s = { ...settings, size: 3, minIdle: 1, serverIdleTimeoutMs: 5000, serverLifetimeMs: 60_000 };
    const pool = new ServerPool('pg1', 'app', 'db', open, () => s, log);
    const ws = [waiter(), waiter(), waiter()];
    for (const w of ws) pool.acquire(w.w);
    await flush();
    for (const w of ws) pool.release(w.got[0], true);
    expect(pool.idleCount).toBe(3);
    vi.advanceTimersByTime(5000);
    pool.sweep(Date.now());
    await flush();
    expect(pool.idleCount).toBe(1);
    vi.advanceTimersByTime(60_000);
    pool.sweep(Date.now());
    await flush();
    // The last one reached its lifetime; min_idle opens a fresh one.
    expect(opened.filter((o) => !o.destroyed)).toHaveLength(1);
    expect(opened).toHaveLength(4);
  });

  it('reads again from a connection its last session paused (a client that read slowly), so the next session is answered', async () => {
    const pool = new ServerPool('pg1', 'app', 'db', open, () => ({ ...settings, size: 1 }), log);
    const [a, b] = [waiter(), waiter()];
    pool.acquire(a.w);
    await flush();
    a.got[0].conn.socket.pause();
    pool.acquire(b.w);
    pool.release(a.got[0], true);
    expect(b.got).toEqual(a.got);
    expect(opened[0].paused).toBe(false);
  });

  it('tells the first waiting client why a connection could not be opened', async () => {
    const failing = async () => {
      throw new Error('connection refused');
    };
    const pool = new ServerPool('pg1', 'app', 'db', failing, () => settings, log);
    const a = waiter();
    pool.acquire(a.w);
    await flush();
    expect(a.errs[0]?.message).toBe('connection refused');
    expect(pool.total).toBe(0);
  });

  it('follows a reloaded pool.size: raised, a waiting client gets a connection at once; lowered, connections over it close on release and sweep', async () => {
    let current = { ...settings, size: 1 };
    const pool = new ServerPool('pg1', 'app', 'db', open, () => current, log);
    const [a, b, c] = [waiter(), waiter(), waiter()];
    pool.acquire(a.w);
    pool.acquire(b.w);
    await flush();
    expect(a.got).toHaveLength(1);
    expect(b.got).toHaveLength(0);
    current = { ...current, size: 3 };
    pool.grow();
    await flush();
    expect(b.got).toHaveLength(1);
    expect(opened).toHaveLength(2);
    pool.acquire(c.w);
    await flush();
    expect(pool.total).toBe(3);
    current = { ...current, size: 1 };
    // Two over the new size: the first two back are closed, the last one stays.
    pool.release(a.got[0], true);
    pool.release(b.got[0], true);
    expect(opened[0].ended + opened[1].ended).toBe(2);
    expect(pool.idleCount).toBe(0);
    pool.release(c.got[0], true);
    expect(pool.idleCount).toBe(1);
    expect(pool.total).toBe(1);
  });

  it('closes idle connections over a lowered pool.size at the next sweep', async () => {
    let current = { ...settings, size: 2 };
    const pool = new ServerPool('pg1', 'app', 'db', open, () => current, log);
    const [a, b] = [waiter(), waiter()];
    pool.acquire(a.w);
    pool.acquire(b.w);
    await flush();
    pool.release(a.got[0], true);
    pool.release(b.got[0], true);
    expect(pool.idleCount).toBe(2);
    current = { ...current, size: 1 };
    pool.sweep(Date.now());
    expect(pool.idleCount).toBe(1);
    expect(opened.filter((s) => s.ended > 0)).toHaveLength(1);
  });
});
