// ClusterMember on an in-memory etcd and a fake clock: who leads, what every instance follows, until when it may write, and fencing.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterMember } from '../../src/coordination/cluster-member.js';
import type { ClusterState } from '../../src/coordination/cluster-state.js';
import type { CoordinationStore, LeaderKey } from '../../src/coordination/store.js';
import type { Clock } from '../../src/failover/clock.js';
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
  /** When the last readState call was made (the confirming read: write windows count from its start). */
  lastReadAt = 0;
  readState = () => {
    this.lastReadAt = this.b.clock.now();
    return this.call(() => structuredClone(this.b.state));
  };
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
    const i = { store, topo, busy: false, m: null as unknown as ClusterMember, lastTick: 0, lastRead: 0 };
    const settings = { name, leaseTtlMs: ttl, failsafe: false };
    i.m = new ClusterMember(store, topo, clock, log, settings, () => 'async', () => i.busy);
    i.m.observe({ primary: 'pg1', conflicting: [] });
    return i;
  };
  type Instance = ReturnType<typeof member>;
  /** One round of each instance, in order; remembers when each tick started (its keepalive) and when its confirming read of the state started. */
  const tick = async (...xs: Instance[]) => {
    for (const x of xs) {
      x.lastTick = clock.now();
      await x.m.tick();
      x.lastRead = x.store.lastReadAt;
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

describe('ClusterMember', () => {
  it('the first instance leads and publishes what its monitor sees; the next follows it; both may write until ttl after their last read of the state began', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    expect(A.topo.writableUntil).toBe(0);
    await tick(A);
    expect(A.m.role).toBe('leader');
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1', leader: 'A' });
    expect(A.m.state?.epoch).toBe(1);
    await tick(B);
    expect([B.m.role, B.m.leaderName, B.topo.primary?.name]).toEqual(['follower', 'A', 'pg1']);
    expect(B.m.state).toMatchObject({ epoch: 1, primary: 'pg1' });
    await clock.sleep(100);
    await tick(A);
    for (const x of [A, B]) {
      expect(x.topo.writableUntil).toBe(x.lastRead + TTL);
      expect(x.m.confirmedAt).toBe(x.lastRead);
    }
    expect(backing.state?.epoch).toBe(1);
  });

  it('an instance that keeps ticking keeps the leadership; cut off, or without the key, it may not act', async () => {
    const { backing, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await rounds(10, A, B);
    expect([A.m.role, B.m.role]).toEqual(['leader', 'follower']);
    expect([A.m.leadershipChanges, B.m.leadershipChanges]).toEqual([1, 0]);
    expect(await A.m.leadership.confirm()).toBe(true);
    expect(await B.m.leadership.confirm()).toBe(false);
    expect(backing.state).toMatchObject({ epoch: 1, leader: 'A' });
    A.store.down = true;
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.down = false;
    backing.key = null; // an operator deletes the leader key
    await tick(B, A);
    expect([A.m.role, B.m.role]).toEqual(['follower', 'leader']);
    expect(await A.m.leadership.confirm()).toBe(false);
  });

  it('a follower cut off from etcd stops writing ttl after its last confirmation, and writes again once a read succeeds', async () => {
    const { clock, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const until = B.topo.writableUntil;
    expect(until).toBe(B.lastRead + TTL);
    B.store.down = true;
    await rounds(2, A, B);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeLessThan(until);
    await rounds(2, A, B);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeGreaterThanOrEqual(B.topo.writableUntil); // no writes from B any more
    expect(A.topo.writableUntil).toBe(A.lastRead + TTL); // A still confirms
    expect(clock.now()).toBeLessThan(A.topo.writableUntil);
    B.store.down = false;
    await tick(B);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
    expect(clock.now()).toBeLessThan(B.topo.writableUntil);
    expect(B.topo.primary?.name).toBe('pg1');
  });

  it('when the leader stops ticking, its lease expires and a follower takes over without publishing a new epoch', async () => {
    const { backing, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await rounds(2, B); // A stopped (SIGSTOP, killed): its lease runs out ttl after its last keepalive
    expect(B.m.role).toBe('follower');
    expect(backing.leaderKey()?.name).toBe('A');
    await rounds(1, B);
    expect(B.m.role).toBe('leader');
    expect(B.m.leadershipChanges).toBe(1);
    expect(B.m.leaderName).toBe('B');
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1', leader: 'A' });
    expect(B.m.state?.epoch).toBe(1);
  });

  it('a leader paused past its lease may no longer act, and its next tick makes it a follower', async () => {
    const { member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    expect(await A.m.leadership.confirm()).toBe(true);
    await rounds(3, B);
    expect(B.m.role).toBe('leader');
    expect(A.m.leadership.leading()).toBe(true); // A has not noticed yet…
    expect(await A.m.leadership.confirm()).toBe(false); // …but may not act
    await tick(A);
    expect(A.m.role).toBe('follower');
    expect(A.m.leadershipChanges).toBe(2);
    expect(A.m.leaderName).toBe('B');
    await rounds(2, A, B);
    expect([A.m.role, B.m.role]).toEqual(['follower', 'leader']);
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
  });

  it('confirm() goes by the local lease arithmetic, even while etcd still shows the key (lease rounded up to whole seconds)', async () => {
    const { clock, backing, member, tick } = setup(2500);
    const A = member('A');
    await tick(A);
    clock.t = A.lastTick + 2500; // ttl after the start of the grant: etcd's lease (3 s) still holds the key
    A.store.latencyMs = 0;
    expect(backing.leaderKey()).toMatchObject({ name: 'A' });
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.latencyMs = 5;
    await tick(A); // a keepalive, in time for etcd
    expect(A.m.role).toBe('leader');
    A.store.latencyMs = 0;
    clock.t = A.lastTick + 2500 - 1; // valid until ttl after the *start* of the keepalive
    expect(await A.m.leadership.confirm()).toBe(true);
    A.store.latencyMs = 1; // the answer comes back once that has passed
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.latencyMs = 0;
    expect(clock.now()).toBe(A.lastTick + 2500);
    expect(backing.leaderKey()).toMatchObject({ name: 'A' }); // etcd's lease is 3 s
    expect(await A.m.leadership.confirm()).toBe(false);
  });

  it('beforePromotion publishes "no primary" and waits ttl, past every write window that did not see it; then the new primary is published', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await clock.sleep(ROUND);
    await tick(B, A); // B's last confirmation comes right before the promotion
    const before = clock.now();
    A.busy = true;
    B.store.down = true; // B is cut off and never reads "no primary"
    clock.background = () => tick(A); // A's own timer keeps its lease alive meanwhile
    await A.m.beforePromotion();
    clock.background = null;
    B.store.down = false;
    expect(backing.state).toMatchObject({ epoch: 2, primary: null });
    expect(clock.now() - before).toBeGreaterThanOrEqual(TTL);
    expect(B.m.state?.primary).toBe('pg1'); // B has not read it…
    expect(clock.now()).toBeGreaterThanOrEqual(B.topo.writableUntil); // …and no longer writes
    expect(A.topo.primary).toBeNull();
    await tick(A); // busy: the leader does not put its observed primary back meanwhile
    expect(backing.state?.epoch).toBe(2);
    expect(await A.m.publishPrimary('pg3')).toMatchObject({ epoch: 3, primary: 'pg3', leader: 'A' });
    expect(backing.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    expect(A.topo.primary?.name).toBe('pg3');
    await tick(B);
    expect(B.topo.primary?.name).toBe('pg3');
    expect(B.m.state?.epoch).toBe(3);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
  });

  it('a leader whose promotion was never published puts its observed primary back once not busy', async () => {
    const { clock, backing, member, tick } = setup();
    const A = member('A');
    await tick(A);
    clock.background = () => tick(A);
    await A.m.beforePromotion(); // then the promotion failed, or the leader died before publishing
    await tick(A);
    expect(backing.state).toMatchObject({ epoch: 3, primary: 'pg1' });
  });

  it('the watch moves a follower to the published primary without a tick, but only a read extends its write window', async () => {
    vi.useFakeTimers();
    const { clock, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A);
    await B.m.start();
    expect(B.m.role).toBe('follower');
    const until = B.topo.writableUntil;
    expect(until).toBeGreaterThan(0);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    expect(B.topo.primary).toBeNull();
    expect(B.m.state?.epoch).toBe(2);
    await A.m.publishPrimary('pg3');
    expect(B.topo.primary?.name).toBe('pg3');
    expect(B.m.state?.epoch).toBe(3);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeGreaterThanOrEqual(until);
    await tick(B);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
    await B.m.stop();
  });

  it('publishing without the leader key throws and makes the instance a follower; a follower cannot publish', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await clock.sleep(TTL); // A's lease (and the leader key on it) expired; A has not noticed
    expect(backing.leaderKey()).toBeNull();
    expect(A.m.role).toBe('leader');
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow(/lost the leadership/);
    expect(A.m.role).toBe('follower');
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
    await expect(B.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
    const t = clock.now();
    await expect(B.m.beforePromotion()).rejects.toThrow('not the leader');
    expect(clock.now()).toBe(t);
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1' });
  });

  it('a node that claims to be primary against the published state is fenced; the published primary never is', async () => {
    const { member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    for (const x of [A, B]) {
      expect([...x.topo.fenced]).toEqual([]);
      x.topo.update('pg2', { up: true, role: 'primary' });
      x.m.observe({ primary: 'pg1', conflicting: ['pg2'] });
      expect([...x.topo.fenced]).toEqual(['pg2']);
      x.m.observe({ primary: 'pg2', conflicting: ['pg1'] }); // whatever this monitor concludes
      expect([...x.topo.fenced]).toEqual(['pg2']);
      expect(x.topo.primary?.name).toBe('pg1');
    }
    await tick(A, B);
    expect([...A.topo.fenced, ...B.topo.fenced]).toEqual(['pg2', 'pg2']);
    B.topo.update('pg2', { role: 'replica' });
    B.m.observe({ primary: 'pg1', conflicting: [] });
    expect([...B.topo.fenced]).toEqual([]);
  });

  it('a state older than the one followed is ignored', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const old = structuredClone(backing.state);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg3');
    await tick(B);
    expect(B.m.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    backing.state = old; // a stale read
    await tick(B);
    expect(B.m.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    expect(B.topo.primary?.name).toBe('pg3');
  });
});
