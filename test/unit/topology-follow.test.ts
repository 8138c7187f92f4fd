// Unit tests for Topology.snapshot() and Topology.follow(): a worker's topology mirrors the coordinator's and emits the same kinds of events.
import { describe, it, expect } from 'vitest';
import { Topology, type NodeAddress, type TopologySnapshot } from '../../src/topology/topology.js';

const ADDRESSES: NodeAddress[] = [
  { name: 'pg1', host: 'db1', port: 5432 },
  { name: 'pg2', host: 'db2', port: 5432, weight: 2, tags: ['eu'] },
  { name: 'pg3', host: 'db3', port: 5432 },
  { name: 'pg4', host: 'db4', port: 5432, delayed: true },
];

/** A coordinator's topology: pg1 primary, pg2 and pg3 replicas (pg3 banned for lag), pg4 down. */
function leader(): Topology {
  const t = new Topology(ADDRESSES);
  t.update('pg1', { role: 'primary', up: true, currentLsn: '0/3000000' });
  t.update('pg2', { role: 'replica', up: true, replayLsn: '0/2000000', replayLsnValue: 0x2000000, lagBytes: 0x1000000, lagSeconds: 0.5 });
  t.update('pg3', { role: 'replica', up: true, replayLsnValue: 0x1000000, banned: true, banReason: 'lag-bytes', banSince: 1234 });
  t.update('pg4', { role: 'unknown', up: false, failures: 3, lastError: 'connection refused' });
  t.setPrimary('pg1');
  return t;
}

/** A snapshot as a worker receives it: through IPC, as JSON. */
const wire = (s: TopologySnapshot): TopologySnapshot => JSON.parse(JSON.stringify(s));

function record(t: Topology): string[] {
  const events: string[] = [];
  t.on('change', () => events.push('change'));
  t.on('primary', (name, previous) => events.push(`primary ${name} ${previous}`));
  t.on('pause', () => events.push('pause'));
  t.on('resume', () => events.push('resume'));
  return events;
}

const names = (ns: readonly { name: string }[]) => ns.map((n) => n.name);

describe('Topology.snapshot', () => {
  it('holds the nodes, the primary, the fenced set and writesPaused as plain data', () => {
    const t = leader();
    t.setFenced(['pg3']);
    t.pauseWrites();
    const s = t.snapshot();
    expect(s.primary).toBe('pg1');
    expect(s.fenced).toEqual(['pg3']);
    expect(s.writesPaused).toBe(true);
    expect(names(s.nodes)).toEqual(['pg1', 'pg2', 'pg3', 'pg4']);
    expect(s.nodes[2]).toMatchObject({ banned: true, banReason: 'lag-bytes', replayLsnValue: 0x1000000 });
    // Infinity (writes not bounded by coordination) crosses IPC as null and is read back as Infinity.
    expect(s.writableUntil).toBe(Infinity);
    expect(wire(s)).toEqual({ ...s, writableUntil: null });
  });

  it('an empty topology snapshots as no primary, nothing fenced, writes not paused', () => {
    const s = new Topology(ADDRESSES).snapshot();
    expect(s.primary).toBeNull();
    expect(s.fenced).toEqual([]);
    expect(s.writesPaused).toBe(false);
    expect(s.nodes.every((n) => n.role === 'unknown' && !n.up)).toBe(true);
  });
});

describe('Topology.follow', () => {
  it('a follower given the snapshot has the same primary, nodes, fenced set and replicas', () => {
    const l = leader();
    l.setFenced(['pg2']);
    const f = new Topology([]);
    f.follow(wire(l.snapshot()));
    expect(f.primary?.name).toBe('pg1');
    expect(f.all()).toEqual(l.all());
    expect(f.node('pg2')).toMatchObject({ up: true, banned: false, lagBytes: 0x1000000, lagSeconds: 0.5, replayLsnValue: 0x2000000, weight: 2, tags: ['eu'] });
    expect(f.node('pg3')).toMatchObject({ up: true, banned: true, banReason: 'lag-bytes', banSince: 1234 });
    expect(f.node('pg4')).toMatchObject({ up: false, failures: 3, lastError: 'connection refused', delayed: true });
    expect([...f.fenced]).toEqual(['pg2']);
    expect(f.writesPaused).toBe(false);
    // pg2 fenced, pg3 banned, pg4 down: no replica is usable, on either side
    expect(names(f.replicas())).toEqual(names(l.replicas()));
    expect(f.replicas()).toEqual([]);
    expect(names(f.bannedReplicas())).toEqual(['pg3']);
  });

  it('replicas() follows later snapshots (no stale cache)', () => {
    const l = leader();
    const f = new Topology([]);
    f.follow(wire(l.snapshot()));
    expect(names(f.replicas())).toEqual(['pg2']);
    l.update('pg3', { banned: false, banReason: null });
    f.follow(wire(l.snapshot()));
    expect(names(f.replicas())).toEqual(['pg2', 'pg3']);
    l.setFenced(['pg2']);
    f.follow(wire(l.snapshot()));
    expect(names(f.replicas())).toEqual(['pg3']);
    l.update('pg3', { up: false });
    f.follow(wire(l.snapshot()));
    expect(names(f.replicas())).toEqual([]);
    expect(names(f.replicas())).toEqual(names(l.replicas()));
  });

  it("emits 'primary' (name, previous) only when the primary changes, and 'change' every time", () => {
    const l = leader();
    const f = new Topology([]);
    const events = record(f);
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['primary pg1 null', 'change']);
    events.length = 0;
    l.update('pg2', { replayLsnValue: 0x2500000 });
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['change']);
    events.length = 0;
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['change']);
    events.length = 0;
    // failover
    l.setPrimary('pg2');
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['primary pg2 pg1', 'change']);
    expect(f.primary?.name).toBe('pg2');
    events.length = 0;
    // no primary at all
    l.setPrimary(null);
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['primary null pg2', 'change']);
    expect(f.primary).toBeNull();
  });

  it("emits 'pause' when writesPaused becomes true and 'resume' when it becomes false again, once each", () => {
    const l = leader();
    const f = new Topology([]);
    f.follow(wire(l.snapshot()));
    const events = record(f);
    l.pauseWrites();
    f.follow(wire(l.snapshot()));
    expect(f.writesPaused).toBe(true);
    expect(events.filter((e) => e !== 'change')).toEqual(['pause']);
    expect(events.filter((e) => e === 'change')).toHaveLength(1);
    events.length = 0;
    // still paused: no second 'pause'
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['change']);
    events.length = 0;
    // switchover completes: new primary, writes resumed
    l.setPrimary('pg2');
    l.resumeWrites();
    f.follow(wire(l.snapshot()));
    expect(f.writesPaused).toBe(false);
    expect(events).toEqual(['primary pg2 pg1', 'change', 'resume']);
    events.length = 0;
    // not paused: no 'resume'
    f.follow(wire(l.snapshot()));
    expect(events).toEqual(['change']);
  });

  it("a session waiting for 'resume' is released when the follower sees writes resumed", () => {
    const l = leader();
    l.pauseWrites();
    const f = new Topology([]);
    f.follow(wire(l.snapshot()));
    let released = 0;
    f.once('resume', () => released++);
    l.resumeWrites();
    f.follow(wire(l.snapshot()));
    expect(released).toBe(1);
  });

  it('version increases on every follow', () => {
    const l = leader();
    const f = new Topology([]);
    const s = wire(l.snapshot());
    let v = f.version;
    for (let i = 0; i < 3; i++) {
      f.follow(s);
      expect(f.version).toBeGreaterThan(v);
      v = f.version;
    }
    l.setPrimary('pg2');
    f.follow(wire(l.snapshot()));
    expect(f.version).toBeGreaterThan(v);
  });

  it('nodes the leader no longer has are dropped, and new ones appear', () => {
    const l = leader();
    const f = new Topology([]);
    f.follow(wire(l.snapshot()));
    l.setAddresses([ADDRESSES[0], ADDRESSES[1], { name: 'pg5', host: 'db5', port: 5432 }]);
    f.follow(wire(l.snapshot()));
    expect(names(f.all())).toEqual(['pg1', 'pg2', 'pg5']);
    expect(f.node('pg3')).toBeUndefined();
    expect(f.node('pg5')).toMatchObject({ role: 'unknown', up: false });
  });
});
