// ClusterMember regressions found by review: a fresh cluster gets its primary published, a new leader never publishes from a stale state, a stale read confirms nothing.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterMember } from '../../src/coordination/cluster-member.js';
import type { ClusterState } from '../../src/coordination/cluster-state.js';
import type { CoordinationStore, LeaderKey } from '../../src/coordination/store.js';
import type { Clock } from '../../src/failover/clock.js';
import { choosePrimary } from '../../src/health/evaluate.js';
import { Topology } from '../../src/topology/topology.js';
import type { Logger } from '../../src/util/logger.js';

const TTL = 3000;
const ROUND = TTL / 3;

/** Virtual time: sleeping moves the clock; during a long sleep `background` runs every ttl/3 (the instances' tick timers). */
class FakeClock implements Clock {
  t = 1_000_000;
  background: (() => Promise<void>) | null = null;
  now = (): number => this.t;
  async sleep(ms: number): Promise<void> {
    const end = this.t + ms;
    const bg = this.background;
    this.background = null;
    while (bg && end - this.t >= ROUND) {
      this.t += ROUND;
      await bg();
    }
    this.background = bg;
    this.t = Math.max(this.t, end);
  }
}

/** What etcd holds: leases that live ttl after their last grant or keepalive, the leader key on one of them, the state. */
class Backing {
  leases = new Map<string, { ttlMs: number; expiresAt: number }>();
  key: LeaderKey | null = null;
  members = new Map<string, { info: string; lease: string }>();
  state: ClusterState | null = null;
  watchers = new Set<(s: ClusterState | null) => void>();
  ids = 0;
  constructor(readonly clock: FakeClock) {}
  /** The leader key now (as in etcd, it goes with its lease). */
  leaderKey(): LeaderKey | null {
    for (const [id, l] of this.leases) if (this.clock.now() >= l.expiresAt) this.drop(id);
    return this.key;
  }
  drop(id: string): void {
    this.leases.delete(id);
    if (this.key?.lease === id) this.key = null;
    for (const [name, m] of this.members) if (m.lease === id) this.members.delete(name);
  }
}

/** One instance's link to the shared store: `down` cuts it off (calls reject, its watch hears nothing); each answer takes `latencyMs`. */
class StoreView implements CoordinationStore {
  down = false;
  latencyMs = 5;
  constructor(private readonly b: Backing) {}
  private async call<T>(op: (key: LeaderKey | null) => T): Promise<T> {
    if (this.down) throw new Error('etcd unreachable');
    const r = op(this.b.leaderKey());
    await this.b.clock.sleep(this.latencyMs);
    return r;
  }
  grantLease = (ttlSeconds: number) =>
    this.call(() => {
      const id = `lease-${++this.b.ids}`;
      this.b.leases.set(id, { ttlMs: ttlSeconds * 1000, expiresAt: this.b.clock.now() + ttlSeconds * 1000 });
      return id;
    });
  keepAlive = (lease: string) =>
    this.call(() => {
      const l = this.b.leases.get(lease);
      if (l) l.expiresAt = this.b.clock.now() + l.ttlMs;
      return l !== undefined;
    });
  revoke = (lease: string) => this.call(() => this.b.drop(lease));
  claimLeadership = (name: string, lease: string) =>
    this.call((k) => {
      if (k === null && this.b.leases.has(lease)) this.b.key = { name, lease };
      return this.b.key?.name === name && this.b.key.lease === lease;
    });
  leader = () => this.call((k) => (k ? { ...k } : null));
  readState = () => this.call(() => structuredClone(this.b.state));
  publish = (state: ClusterState, as: LeaderKey) =>
    this.call((k) => {
      if (k?.name !== as.name || k.lease !== as.lease) return false;
      this.b.state = structuredClone(state);
      for (const w of this.b.watchers) w(structuredClone(state));
      return true;
    });
  register = (name: string, info: string, lease: string) => this.call(() => void this.b.members.set(name, { info, lease }));
  members = () => this.call(() => new Map([...this.b.members].map(([name, m]) => [name, m.info])));
  async watchState(fn: (s: ClusterState | null) => void) {
    if (this.down) throw new Error('etcd unreachable');
    const w = (s: ClusterState | null) => void (this.down || fn(s));
    this.b.watchers.add(w);
    return async () => void this.b.watchers.delete(w);
  }
  close(): void {}
}

const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), debug: vi.fn() } as unknown as Logger;

/** pg1 primary, pg2 and pg3 replicas, as every instance's monitor sees them. */
function nodes(): Topology {
  const t = new Topology([1, 2, 3].map((i) => ({ name: `pg${i}`, host: `h${i}`, port: 5430 + i })));
  (['primary', 'replica', 'replica'] as const).forEach((role, i) => t.update(`pg${i + 1}`, { up: true, role }));
  return t;
}

function setup(ttl = TTL) {
  const clock = new FakeClock();
  const backing = new Backing(clock);
  const member = (name: string) => {
    const store = new StoreView(backing);
    const topo = nodes();
    const i = { store, topo, busy: false, m: null as unknown as ClusterMember, lastTick: 0 };
    const settings = { name, leaseTtlMs: ttl, failsafe: false };
    i.m = new ClusterMember(store, topo, clock, log, settings, () => 'async', () => i.busy);
    i.m.observe({ primary: 'pg1', conflicting: [] });
    return i;
  };
  type Instance = ReturnType<typeof member>;
  /** One round of each instance, in order; remembers when each tick started. */
  const tick = async (...xs: Instance[]) => {
    for (const x of xs) {
      x.lastTick = clock.now();
      await x.m.tick();
    }
  };
  /** `n` times: ttl/3 passes, then the given instances tick (the others are stopped, paused or dead). */
  const rounds = async (n: number, ...xs: Instance[]) => {
    for (let k = 0; k < n; k++) {
      await clock.sleep(ROUND);
      await tick(...xs);
    }
  };
  return { clock, backing, member, tick, rounds };
}

afterEach(() => void vi.useRealTimers());

describe('ClusterMember regressions', () => {
  it('a fresh cluster: nothing is fenced before a state is published, so the monitor sees the primary and the leader publishes it', async () => {
    const { backing, member, tick, rounds } = setup(5000);
    const A = member('A'); // setup calls observe({ primary: 'pg1' }) as the monitor's first round would
    const monitorRound = () => A.m.observe(choosePrimary(A.topo.all(), A.topo.primary?.name ?? null, 1, A.topo.fenced));
    expect([...A.topo.fenced]).toEqual([]);
    monitorRound(); // second round (monitor every 1 s; member ticks every lease_ttl/3 = 1.67 s)
    await tick(A);
    for (let k = 0; k < 5; k++) {
      monitorRound();
      await rounds(1, A);
    }
    expect(A.m.role).toBe('leader');
    expect(backing.state?.primary).toBe('pg1');
  });

  it('a new leader that has not read the latest state reads it before publishing: the epoch only grows, and followers stop writing to the old primary', async () => {
    const { clock, backing, member, tick, rounds } = setup();
    const [A, B, C] = [member('A'), member('B'), member('C')];
    await tick(A, B, C);
    B.store.down = true; // B misses the next failover
    A.busy = true;
    clock.background = () => tick(A, C);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg2');
    clock.background = null;
    await rounds(1, A, C);
    expect(C.m.state).toMatchObject({ epoch: 3, primary: 'pg2' });
    // A dies. B comes back, but its first state read after taking the key fails (a timeout; or the controller runs
    // between leadershipRound and readState in the same tick).
    B.store.down = false;
    const readState = B.store.readState;
    B.store.readState = () => Promise.reject(new Error('deadline exceeded'));
    await rounds(4, B, C);
    expect(B.m.role).toBe('leader');
    expect(B.m.state?.epoch).toBe(1); // stale
    B.store.readState = readState;
    B.busy = true;
    clock.background = () => tick(B, C);
    await B.m.beforePromotion(); // B's controller saw "its" primary pg1 down
    clock.background = null;
    expect(backing.state).toMatchObject({ epoch: 4, primary: null });
    expect(C.topo.primary).toBeNull();
  });

  it('a read that returns an older epoch than the one followed does not extend the write window', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const old = structuredClone(backing.state);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg3');
    await tick(B);
    const until = B.topo.writableUntil;
    backing.state = old;
    await clock.sleep(ROUND);
    await tick(B);
    expect(B.topo.writableUntil).toBe(until);
  });
});
