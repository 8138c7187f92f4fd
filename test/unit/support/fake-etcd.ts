// Fakes for coordination unit tests: an in-memory etcd (leases, leader key, state, members, watches) on a virtual clock, and instances driven tick by tick.
import { vi } from 'vitest';
import { ClusterMember } from '../../../src/coordination/cluster-member.js';
import type { ClusterState } from '../../../src/coordination/cluster-state.js';
import type { CoordinationStore, LeaderKey } from '../../../src/coordination/store.js';
import type { Clock } from '../../../src/failover/clock.js';
import { Topology } from '../../../src/topology/topology.js';
import type { Logger } from '../../../src/util/logger.js';

export const TTL = 3000;
export const ROUND = TTL / 3;

/** Virtual time: sleeping moves the clock; during a long sleep `background` runs every ttl/3 (the instances' tick timers). */
export class FakeClock implements Clock {
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
export class Backing {
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
export class StoreView implements CoordinationStore {
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
export function nodes(): Topology {
  const t = new Topology([1, 2, 3].map((i) => ({ name: `pg${i}`, host: `h${i}`, port: 5430 + i })));
  (['primary', 'replica', 'replica'] as const).forEach((role, i) => t.update(`pg${i + 1}`, { up: true, role }));
  return t;
}

export function setup(ttl = TTL) {
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
