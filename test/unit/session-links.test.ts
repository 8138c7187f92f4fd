// Unit tests for the session's primary-connection state machine (SessionLinks): where a statement goes, and when, through pool waits, holds, pauses and failovers.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SessionLinks } from '../../src/frontend/session-links.js';
import { ProxyStats } from '../../src/frontend/stats.js';
import { pump } from '../../src/frontend/unit-dispatch.js';
import { addFrame, newUnit, type Unit } from '../../src/frontend/unit.js';
import { query } from '../../src/protocol/frontend-messages.js';
import { TX } from '../../src/protocol/codes.js';
import { decodeErrorFields } from '../../src/protocol/backend-messages.js';
import { errors } from '../../src/errors.js';
import type { SessionCore } from '../../src/frontend/session-core.js';
import type { LinkOwner, ServerLink } from '../../src/backend/server-link.js';
import type { PoolWaiter } from '../../src/backend/pool.js';

type FakeNode = { name: string; up: boolean; role: string };

/** Like src/topology/topology.ts: every change bumps `version`; the primary changing emits 'primary', writes resuming 'resume'. */
class FakeTopology extends EventEmitter {
  version = 1;
  writesPaused = false;
  primary: FakeNode | null = null;
  readonly nodes: FakeNode[] = [
    { name: 'pg1', up: true, role: 'replica' },
    { name: 'pg2', up: true, role: 'replica' },
  ];
  all = (): FakeNode[] => this.nodes;
  setPrimary(name: string | null): void {
    const previous = this.primary?.name ?? null;
    for (const n of this.nodes) n.role = n.name === name ? 'primary' : 'replica';
    this.primary = this.nodes.find((n) => n.name === name) ?? null;
    this.version++;
    this.emit('primary', name, previous);
    this.emit('change');
  }
  pauseWrites(): void {
    this.writesPaused = true;
    this.version++;
    this.emit('pause');
  }
  resumeWrites(): void {
    this.writesPaused = false;
    this.version++;
    this.emit('resume');
  }
}

type FakeLink = ReturnType<typeof makeLink>;

function makeLink(pool: FakePool) {
  return {
    node: pool.node, closed: false, busy: false, mode: 'relay', owner: null as unknown, pool,
    owed: 0, privateOwed: 0, prepared: new Map(), unnamed: null, settings: '',
    conn: { socket: { resume: vi.fn(), destroyed: false, end: vi.fn(), write: vi.fn((_out: Buffer) => true), writableLength: 0 } },
  };
}

class FakePool {
  retired = false;
  /** Connections handed out at once; when empty, acquire keeps the waiter and returns null. */
  readonly free: FakeLink[] = [];
  readonly waiters: PoolWaiter[] = [];
  readonly acquire = vi.fn((w: PoolWaiter): FakeLink | null => {
    const l = this.free.shift();
    if (l) return l;
    this.waiters.push(w);
    return null;
  });
  readonly cancelWait = vi.fn();
  readonly release = vi.fn();
  constructor(readonly node: string) {}
  newLink = (): FakeLink => makeLink(this);
}

function setup(opts: { primary?: string | null; freeLink?: boolean; holdTimeoutMs?: number } = {}) {
  const topology = new FakeTopology();
  topology.setPrimary(opts.primary === undefined ? 'pg1' : opts.primary);
  const pools = { pg1: new FakePool('pg1'), pg2: new FakePool('pg2') };
  const link1 = pools.pg1.newLink();
  const link2 = pools.pg2.newLink();
  if (opts.freeLink !== false) {
    pools.pg1.free.push(link1);
    pools.pg2.free.push(link2);
  }
  const owner = {} as LinkOwner;
  const s = {
    poolMode: 'session', closed: false, txStatus: TX.Idle, sticky: null, cut: null, discardUntilSync: false, hint: 'auto',
    inflight: [] as Unit[], queue: [] as Unit[], pipelined: 0, clientPaused: false, writeBlocked: false, copyLink: null,
    user: 'app', database: 'app', key: { pid: 7, secret: 1 }, clientSlot: { fresh: true },
    state: { pins: new Set<string>(), replayFor: () => null },
    prepared: { prepareOn: () => false },
    replicas: { leaveAlone() {} },
    client: { write: vi.fn((_out: Buffer) => true), pause: vi.fn(), resume: vi.fn() },
    ctx: {
      topology,
      pools: { get: vi.fn((node: 'pg1' | 'pg2') => pools[node]) },
      routing: () => ({ holdTimeoutMs: opts.holdTimeoutMs ?? 1000, primaryReads: 'fallback' }),
      log: { warn() {}, debug() {}, info() {}, error() {} },
      limits: () => ({ maxPipeline: 1 << 20 }),
      maxPreparedPerServer: () => 100,
      maxPreparedBytes: () => 1 << 24,
      stats: Object.assign(new ProxyStats(), { routed: vi.fn(), readOnPrimary: vi.fn() }),
    },
    links: null as unknown as SessionLinks,
    get home(): ServerLink | null {
      return this.links.home;
    },
  };
  const links = new SessionLinks(s as unknown as SessionCore, owner);
  s.links = links;
  /** A statement that must run on the primary, sent by the client. */
  const ask = (): Unit => {
    const u = newUnit();
    addFrame(u, query('insert into t values (1)'));
    u.sync = true;
    u.forcePrimary = true;
    s.queue.push(u);
    pump(s as unknown as SessionCore);
    return u;
  };
  /** The server answered everything in flight (its ReadyForQuery arrived). */
  const done = (): void => {
    for (const u of s.inflight) if (u.link) (u.link as unknown as FakeLink).owed = 0;
    s.inflight.length = 0;
  };
  return { s, links, topology, pools, link1, link2, owner, ask, done };
}

type Fixture = ReturnType<typeof setup>;

function expectSentTo(f: Fixture, u: Unit, link: FakeLink): void {
  expect(f.s.queue).not.toContain(u);
  expect(f.s.inflight).toContain(u);
  expect(u.link).toBe(link as unknown as ServerLink);
  expect(link.conn.socket.write).toHaveBeenLastCalledWith(u.frames[0]);
  expect(f.s.client.write).not.toHaveBeenCalled();
}

function expectWaiting(f: Fixture, u: Unit): void {
  expect(f.s.queue[0]).toBe(u);
  expect(u.link).toBeNull();
  expect(u.local).toBeNull();
  expect(f.s.inflight).toHaveLength(0);
  expect(f.s.client.write).not.toHaveBeenCalled();
}

/** What the proxy answered the client itself: the messages of its one write, as type letters and bodies. */
function localReply(f: Fixture): { type: string; body: Buffer }[] {
  expect(f.s.client.write).toHaveBeenCalledTimes(1);
  const buf = f.s.client.write.mock.calls[0][0];
  const out: { type: string; body: Buffer }[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const len = buf.readInt32BE(pos + 1);
    out.push({ type: String.fromCharCode(buf[pos]), body: buf.subarray(pos + 5, pos + 1 + len) });
    pos += 1 + len;
  }
  return out;
}

function expectErrorThenReady(f: Fixture, sqlstate: string): Record<string, string> {
  const msgs = localReply(f);
  expect(msgs.map((m) => m.type)).toEqual(['E', 'Z']);
  expect(msgs[1].body.toString()).toBe('I');
  const fields = decodeErrorFields(msgs[0].body);
  expect(fields.C).toBe(sqlstate);
  expect(fields.S).toBe('ERROR'); // the session goes on
  expect(f.s.queue).toHaveLength(0);
  return fields;
}

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

describe('SessionLinks: the primary connection', () => {
  it('first use: a connection the pool has free is taken at once, and kept while the topology does not change', () => {
    const f = setup();
    expect(f.links.primaryState).toBe('none');
    const u = f.ask();
    expect(f.links.primaryState).toBe('connected');
    expect(f.links.home).toBe(f.link1);
    expectSentTo(f, u, f.link1);
    expect(f.link1.owner).toBe(f.owner);
    expect(f.link1.conn.socket.resume).toHaveBeenCalled();
    expect(f.links.primary()).toBe(f.link1);
    const next = f.ask(); // pipelined behind the first on the same connection
    expectSentTo(f, next, f.link1);
    expect(f.pools.pg1.acquire).toHaveBeenCalledTimes(1);
  });

  it('no free connection: the statement waits (opening) until the pool grants one, then goes to it', () => {
    const f = setup({ freeLink: false });
    const u = f.ask();
    expect(f.links.primaryState).toBe('opening');
    expectWaiting(f, u);
    expect(f.links.primary()).toBeNull(); // no second request while one is pending
    expect(f.pools.pg1.acquire).toHaveBeenCalledTimes(1);
    f.pools.pg1.waiters[0].granted(f.link1 as unknown as ServerLink);
    expect(f.links.primaryState).toBe('connected');
    expectSentTo(f, u, f.link1);
  });

  it('no primary known: the statement is held, and goes as soon as the topology names a primary (no 50 ms retry needed)', () => {
    const f = setup({ primary: null });
    const u = f.ask();
    expect(f.links.primaryState).toBe('holding');
    expectWaiting(f, u);
    expect(f.pools.pg1.acquire).not.toHaveBeenCalled();
    expect(f.topology.listenerCount('primary')).toBe(1);
    f.topology.setPrimary('pg2');
    expect(f.links.primaryState).toBe('connected');
    expectSentTo(f, u, f.link2);
    expect(f.topology.listenerCount('primary')).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // the retry timer was cleared
  });

  it('holding past failover.hold_timeout: the statement gets 57P03 (no primary) and ReadyForQuery, then the state is none', () => {
    const f = setup({ primary: null, holdTimeoutMs: 1000 });
    const u = f.ask();
    for (let t = 0; t < 950; t += 50) vi.advanceTimersByTime(50);
    expect(f.links.primaryState).toBe('holding');
    expectWaiting(f, u);
    vi.advanceTimersByTime(50);
    const fields = expectErrorThenReady(f, errors.noPrimary('').sqlstate);
    expect(fields.C).toBe('57P03');
    expect(fields.D).toContain('no node is known to be out of recovery');
    expect(fields.D).toContain('waited 1000 ms');
    expect(f.links.primaryState).toBe('none');
    expect(f.topology.listenerCount('primary')).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(f.pools.pg1.acquire).not.toHaveBeenCalled();
  });

  it('writes paused by a switchover: the idle session waits (paused) and continues on resume', () => {
    const f = setup();
    f.ask();
    f.done();
    f.topology.pauseWrites();
    const u = f.ask();
    expect(f.links.primaryState).toBe('paused');
    expectWaiting(f, u);
    expect(f.topology.listenerCount('resume')).toBe(1);
    f.topology.resumeWrites();
    expect(f.links.primaryState).toBe('connected');
    expectSentTo(f, u, f.link1);
    expect(f.topology.listenerCount('resume')).toBe(0);
    expect(f.pools.pg1.acquire).toHaveBeenCalledTimes(1);
  });

  it('writes paused from the start: the first statement waits, then opens its connection on resume', () => {
    const f = setup();
    f.topology.pauseWrites();
    const u = f.ask();
    expect(f.links.primaryState).toBe('paused');
    expectWaiting(f, u);
    expect(f.pools.pg1.acquire).not.toHaveBeenCalled();
    f.topology.resumeWrites();
    expectSentTo(f, u, f.link1);
  });

  describe('the primary moved to another node', () => {
    it('an idle session lets its old connection go (not reusable) and sends the next statement to the new primary', () => {
      const f = setup();
      f.ask();
      f.done();
      f.topology.setPrimary('pg2');
      const u = f.ask();
      expect(f.pools.pg1.release).toHaveBeenCalledWith(f.link1, false);
      expect(f.links.get('pg1')).toBeUndefined();
      expect(f.links.home).toBe(f.link2);
      expect(f.links.primaryState).toBe('connected');
      expectSentTo(f, u, f.link2);
    });

    it('a session with a pin (state only its old connection has) stays there', () => {
      const f = setup();
      f.ask();
      f.done();
      f.s.state.pins.add('temp-table');
      f.topology.setPrimary('pg2');
      const u = f.ask();
      expect(f.pools.pg1.release).not.toHaveBeenCalled();
      expect(f.pools.pg2.acquire).not.toHaveBeenCalled();
      expect(f.links.home).toBe(f.link1);
      expectSentTo(f, u, f.link1);
    });

    it('a pinned session moves to the new primary as soon as the pin is gone, without waiting for another topology change', () => {
      const f = setup();
      f.ask();
      f.done();
      f.s.state.pins.add('temp-table');
      f.topology.setPrimary('pg2');
      f.ask();
      f.done();
      f.s.state.pins.delete('temp-table');
      const u = f.ask();
      expect(f.pools.pg1.release).toHaveBeenCalledWith(f.link1, false);
      expectSentTo(f, u, f.link2);
    });
  });

  describe('the pool fails to give a connection', () => {
    it('pool_timeout: the waiting statement gets that error, and the state is none', () => {
      const f = setup({ freeLink: false });
      const u = f.ask();
      expectWaiting(f, u);
      const err = errors.poolTimeout('pg1', 5000, 10);
      f.pools.pg1.waiters[0].failed(err);
      expectErrorThenReady(f, err.sqlstate);
      expect(err.sqlstate).toBe('53300');
      expect(f.links.primaryState).toBe('none');
      expect(u.link).toBeNull();
    });

    it('the primary cannot be reached: the statement is held (retried every 50 ms), and the hold timeout reports why', async () => {
      const f = setup({ freeLink: false, holdTimeoutMs: 1000 });
      const u = f.ask();
      f.pools.pg1.waiters[0].failed(new Error('connection refused'));
      expect(f.links.primaryState).toBe('holding');
      expectWaiting(f, u);
      vi.advanceTimersByTime(50);
      expect(f.pools.pg1.acquire).toHaveBeenCalledTimes(2);
      expect(f.links.primaryState).toBe('opening');
      vi.advanceTimersByTime(1000);
      f.pools.pg1.waiters[1].failed(new Error('connection refused'));
      await Promise.resolve();
      const fields = expectErrorThenReady(f, '57P03');
      expect(fields.D).toContain('connection refused');
      expect(f.links.primaryState).toBe('none');
    });

    it('after a pool_timeout ends a hold, the next statement that finds no primary waits a whole failover.hold_timeout again', async () => {
      const f = setup({ freeLink: false, holdTimeoutMs: 1000 });
      f.ask();
      f.pools.pg1.waiters[0].failed(new Error('connection refused'));
      vi.advanceTimersByTime(600);
      const pending = f.pools.pg1.waiters[f.pools.pg1.waiters.length - 1];
      pending.failed(errors.poolTimeout('pg1', 5000, 10));
      expectErrorThenReady(f, '53300');
      f.s.client.write.mockClear();
      vi.advanceTimersByTime(2000);
      f.topology.setPrimary(null);
      const u = f.ask();
      expect(f.links.primaryState).toBe('holding');
      expectWaiting(f, u);
      vi.advanceTimersByTime(900);
      await Promise.resolve();
      expectWaiting(f, u);
      vi.advanceTimersByTime(200);
      await Promise.resolve();
      expectErrorThenReady(f, '57P03');
    });

    it('pool_drained (the primary changed): the session looks again at once', () => {
      const f = setup({ freeLink: false });
      const u = f.ask();
      f.pools.pg1.free.push(f.link1);
      f.pools.pg1.waiters[0].failed(errors.poolDrained('pg1'));
      expect(f.pools.pg1.acquire).toHaveBeenCalledTimes(2);
      expectSentTo(f, u, f.link1);
    });
  });

  describe('finish()', () => {
    it('while holding: stops listening for a primary and stops the retry timer', () => {
      const f = setup({ primary: null });
      f.ask();
      expect(f.topology.listenerCount('primary')).toBe(1);
      f.links.finish();
      expect(f.topology.listenerCount('primary')).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      expect(f.links.primaryState).toBe('none');
    });

    it('while paused: stops listening for resume', () => {
      const f = setup();
      f.topology.pauseWrites();
      f.ask();
      expect(f.topology.listenerCount('resume')).toBe(1);
      f.links.finish();
      expect(f.topology.listenerCount('resume')).toBe(0);
      expect(f.links.primaryState).toBe('none');
    });

    it('while opening: cancels the wait on the pool', () => {
      const f = setup({ freeLink: false });
      f.ask();
      f.links.finish();
      expect(f.pools.pg1.cancelWait).toHaveBeenCalledWith(f.pools.pg1.waiters[0]);
      expect(f.links.primaryState).toBe('none');
    });
  });

  it('lost(home): says it was the primary connection, forgets it, and its pool does not reuse it', () => {
    const f = setup();
    f.ask();
    f.done();
    expect(f.links.lost(f.link2 as unknown as ServerLink)).toBe(false); // not held
    expect(f.links.lost(f.link1 as unknown as ServerLink)).toBe(true);
    expect(f.links.primaryState).toBe('none');
    expect(f.links.home).toBeNull();
    expect(f.links.size).toBe(0);
    expect(f.pools.pg1.release).toHaveBeenCalledWith(f.link1, false);
    // The next statement gets a new connection.
    const again = f.pools.pg1.newLink();
    f.pools.pg1.free.push(again);
    const u = f.ask();
    expectSentTo(f, u, again);
  });
});
