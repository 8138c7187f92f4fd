// Unit tests for the pure health decisions: applying a probe to a node's state, choosing the primary and applying lag bans.
import { describe, it, expect } from 'vitest';
import { applyLag, applyProbe, choosePrimary, type ProbeResult, type ProbeSample } from '../../src/health/evaluate.js';
import type { LagBounds } from '../../src/health/lag.js';
import { initialNodeState, type NodeState } from '../../src/topology/topology.js';

const node = (name: string, patch: Partial<NodeState> = {}): NodeState => ({
  ...initialNodeState({ name, host: `${name}.db`, port: 5432 }),
  ...patch,
});

const sample = (patch: Partial<ProbeSample> = {}): ProbeSample => ({
  inRecovery: false,
  currentLsn: '0/3000148',
  receiveLsn: null,
  replayLsn: null,
  replayTimestamp: null,
  timeline: 1,
  systemIdentifier: '7301234567890123456',
  serverVersion: '15.18',
  replayPaused: null,
  caughtUp: null,
  replayAgeSeconds: null,
  receiverStatus: null,
  senderHost: null,
  senderPort: null,
  standbys: null,
  ...patch,
});

const ok = (at: number, s: Partial<ProbeSample> = {}): ProbeResult => ({ ok: true, at, sample: sample(s) });
const fail = (at: number, error: string): ProbeResult => ({ ok: false, at, error });

describe('initialNodeState', () => {
  it('starts unknown and down, with nothing known', () => {
    expect(initialNodeState({ name: 'pg1', host: 'h', port: 1 })).toEqual({
      name: 'pg1',
      host: 'h',
      port: 1,
      role: 'unknown',
      up: false,
      failures: 0,
      lastProbeAt: null,
      lastError: null,
      currentLsn: null,
      receiveLsn: null,
      replayLsn: null,
      replayTimestamp: null,
      timeline: null,
      systemIdentifier: null,
      serverVersion: null,
      replayLsnValue: null,
      replayPaused: null,
      caughtUp: null,
      replayAgeSeconds: null,
      lagBytes: null,
      lagSeconds: null,
      behindSince: null,
      receiverStatus: null,
      senderHost: null,
      senderPort: null,
      standbys: null,
      banned: false,
      banReason: null,
      banSince: null,
      clearSince: null,
    });
  });

  it('keeps weight, tags and delayed from the address', () => {
    expect(initialNodeState({ name: 'pg3', host: 'h', port: 1, weight: 0, tags: ['analytics'], delayed: true })).toMatchObject({
      weight: 0,
      tags: ['analytics'],
      delayed: true,
      banned: false,
    });
  });
});

describe('applyProbe: success', () => {
  it.each([
    ['primary', false, 'primary'],
    ['replica', true, 'replica'],
  ] as const)('%s sample → up, role from inRecovery', (_n, inRecovery, role) => {
    const before = node('pg1', { failures: 3, lastError: 'timeout', up: false, role: 'unknown' });
    const after = applyProbe(before, ok(1000, { inRecovery }));
    expect(after.up).toBe(true);
    expect(after.role).toBe(role);
    expect(after.failures).toBe(0);
    expect(after.lastError).toBeNull();
    expect(after.lastProbeAt).toBe(1000);
  });

  it('copies every LSN and identity field from the sample, keeping the address', () => {
    const s = sample({
      inRecovery: true,
      currentLsn: null,
      receiveLsn: '0/5000060',
      replayLsn: '0/5000028',
      replayTimestamp: '2024-05-01 12:00:00.123+00',
      timeline: 3,
      systemIdentifier: '7000000000000000001',
      serverVersion: '16.2',
      replayPaused: true,
      caughtUp: false,
      replayAgeSeconds: 12.5,
      receiverStatus: 'streaming',
      senderHost: 'pg1.db',
      senderPort: 5432,
      standbys: null,
    });
    const after = applyProbe(node('pg2'), { ok: true, at: 5, sample: s });
    expect(after).toEqual({
      name: 'pg2',
      host: 'pg2.db',
      port: 5432,
      role: 'replica',
      up: true,
      failures: 0,
      lastProbeAt: 5,
      lastError: null,
      currentLsn: null,
      receiveLsn: '0/5000060',
      replayLsn: '0/5000028',
      replayTimestamp: '2024-05-01 12:00:00.123+00',
      timeline: 3,
      systemIdentifier: '7000000000000000001',
      serverVersion: '16.2',
      replayLsnValue: 0x5000028,
      replayPaused: true,
      caughtUp: false,
      replayAgeSeconds: 12.5,
      receiverStatus: 'streaming',
      senderHost: 'pg1.db',
      senderPort: 5432,
      standbys: null,
      // lag and bans are applyLag's job, per round: applyProbe leaves them as they were
      lagBytes: null,
      lagSeconds: null,
      behindSince: null,
      banned: false,
      banReason: null,
      banSince: null,
      clearSince: null,
    });
  });

  it('parses the replay LSN into a number, and null when there is none', () => {
    expect(applyProbe(node('pg2'), ok(1, { inRecovery: true, replayLsn: '16/B374D848' })).replayLsnValue).toBe(0x16 * 2 ** 32 + 0xb374d848);
    expect(applyProbe(node('pg2'), ok(1, { inRecovery: true, replayLsn: null })).replayLsnValue).toBeNull();
  });

  it('leaves a ban in place: only applyLag lifts it', () => {
    const banned = node('pg2', { banned: true, banReason: 'probe-failed', banSince: 1 });
    expect(applyProbe(banned, ok(2, { inRecovery: true }))).toMatchObject({ up: true, banned: true, banReason: 'probe-failed', banSince: 1 });
  });

  it('a promoted replica becomes primary and its replica-only LSNs are replaced', () => {
    const replica = applyProbe(node('pg2'), ok(1, { inRecovery: true, currentLsn: null, receiveLsn: '0/1', replayLsn: '0/1' }));
    const promoted = applyProbe(replica, ok(2, { inRecovery: false, currentLsn: '0/2', receiveLsn: null, replayLsn: null, timeline: 2 }));
    expect(promoted).toMatchObject({ role: 'primary', currentLsn: '0/2', receiveLsn: null, replayLsn: null, timeline: 2 });
  });

  it('does not mutate its input', () => {
    const before = node('pg1', { failures: 2 });
    const snapshot = structuredClone(before);
    applyProbe(before, ok(1));
    applyProbe(before, fail(2, 'x'));
    expect(before).toEqual(snapshot);
  });
});

describe('applyProbe: failure', () => {
  it('marks the node down, counts consecutive failures and records the error', () => {
    let n = applyProbe(node('pg1'), ok(1, { currentLsn: '0/10' }));
    n = applyProbe(n, fail(2, 'connect ECONNREFUSED'));
    expect(n).toMatchObject({ up: false, failures: 1, lastProbeAt: 2, lastError: 'connect ECONNREFUSED' });
    n = applyProbe(n, fail(3, 'timeout'));
    expect(n).toMatchObject({ up: false, failures: 2, lastProbeAt: 3, lastError: 'timeout' });
    n = applyProbe(n, fail(4, 'timeout'));
    expect(n.failures).toBe(3);
  });

  it('keeps what was last known (role, LSNs) while down', () => {
    const up = applyProbe(node('pg1'), ok(1, { currentLsn: '0/10', timeline: 4 }));
    const down = applyProbe(up, fail(2, 'gone'));
    expect(down).toMatchObject({ role: 'primary', currentLsn: '0/10', timeline: 4 });
  });

  it('a success after failures resets the count and clears the error', () => {
    let n = node('pg1');
    for (let i = 0; i < 5; i++) n = applyProbe(n, fail(i, `e${i}`));
    expect(n.failures).toBe(5);
    n = applyProbe(n, ok(10));
    expect(n).toMatchObject({ up: true, failures: 0, lastError: null, lastProbeAt: 10 });
  });
});

describe('choosePrimary', () => {
  // A down node has failed at least one probe (applyProbe counts it), as in real states.
  const P = (name: string, timeline: number | null = 1, up = true): NodeState => node(name, { up, role: 'primary', timeline, failures: up ? 0 : 1 });
  const R = (name: string, up = true): NodeState => node(name, { up, role: 'replica', timeline: 1, failures: up ? 0 : 1 });
  const U = (name: string): NodeState => node(name); // never probed: unknown, down

  it.each<[string, NodeState[], string | null, { primary: string | null; conflicting: string[] }]>([
    ['no nodes', [], null, { primary: null, conflicting: [] }],
    ['only replicas', [R('pg1'), R('pg2')], null, { primary: null, conflicting: [] }],
    ['only replicas, a current is remembered', [R('pg1'), R('pg2')], 'pg1', { primary: null, conflicting: [] }],
    ['never probed', [U('pg1'), U('pg2')], null, { primary: null, conflicting: [] }],
    ['one claimant', [R('pg1'), P('pg2'), R('pg3')], null, { primary: 'pg2', conflicting: [] }],
    ['one claimant, is current', [P('pg1'), R('pg2')], 'pg1', { primary: 'pg1', conflicting: [] }],
    ['one claimant, another was current', [R('pg1'), P('pg2')], 'pg1', { primary: 'pg2', conflicting: [] }],
    ['current unknown name', [P('pg1')], 'nope', { primary: 'pg1', conflicting: [] }],
    ['two claimants: current keeps the role (first)', [P('pg1', 1), P('pg2', 2)], 'pg1', { primary: 'pg1', conflicting: ['pg2'] }],
    ['two claimants: current keeps the role (second, lower timeline)', [P('pg1', 5), P('pg2', 2)], 'pg2', { primary: 'pg2', conflicting: ['pg1'] }],
    ['two claimants, no current: higher timeline wins', [P('pg1', 1), P('pg2', 2)], null, { primary: 'pg2', conflicting: ['pg1'] }],
    ['two claimants, no current: higher timeline wins (first)', [P('pg1', 3), P('pg2', 2)], null, { primary: 'pg1', conflicting: ['pg2'] }],
    ['two claimants, current is a replica: higher timeline', [P('pg1', 1), R('pg2'), P('pg3', 7)], 'pg2', { primary: 'pg3', conflicting: ['pg1'] }],
    ['equal timelines: config order', [R('pg1'), P('pg2', 2), P('pg3', 2)], null, { primary: 'pg2', conflicting: ['pg3'] }],
    ['unknown timeline loses to a known one', [P('pg1', null), P('pg2', 1)], null, { primary: 'pg2', conflicting: ['pg1'] }],
    ['three claimants', [P('pg1', 2), P('pg2', 9), P('pg3', 4)], null, { primary: 'pg2', conflicting: ['pg1', 'pg3'] }],
    ['three claimants with current', [P('pg1', 2), P('pg2', 9), P('pg3', 4)], 'pg3', { primary: 'pg3', conflicting: ['pg1', 'pg2'] }],
    // down nodes are never chosen, whatever they last claimed
    ['down primary only', [P('pg1', 1, false), R('pg2')], 'pg1', { primary: null, conflicting: [] }],
    ['down current loses to a live claimant', [P('pg1', 9, false), P('pg2', 1)], 'pg1', { primary: 'pg2', conflicting: [] }],
    ['down node with higher timeline is not chosen nor conflicting', [P('pg1', 1), P('pg2', 9, false)], null, { primary: 'pg1', conflicting: [] }],
    ['down replica', [R('pg1', false), P('pg2')], null, { primary: 'pg2', conflicting: [] }],
  ])('%s', (_n, nodes, current, want) => {
    expect(choosePrimary(nodes, current)).toEqual(want);
  });

  it('works on states produced by applyProbe', () => {
    const pg1 = applyProbe(node('pg1'), ok(1, { inRecovery: false, timeline: 1 }));
    const pg2 = applyProbe(node('pg2'), ok(1, { inRecovery: true }));
    const pg3 = applyProbe(node('pg3'), ok(1, { inRecovery: false, timeline: 2 })); // promoted: split brain
    expect(choosePrimary([pg1, pg2, pg3], 'pg1')).toEqual({ primary: 'pg1', conflicting: ['pg3'] });
    const pg1Down = applyProbe(pg1, fail(2, 'ECONNREFUSED'));
    expect(choosePrimary([pg1Down, pg2, pg3], 'pg1')).toEqual({ primary: 'pg3', conflicting: [] });
  });

  it('does not reorder or mutate its input', () => {
    const nodes = [P('pg1', 1), P('pg2', 2)];
    const snapshot = structuredClone(nodes);
    choosePrimary(nodes, null);
    expect(nodes).toEqual(snapshot);
  });
});

describe('applyLag', () => {
  const bounds: LagBounds = { bytes: 1000, timeMs: 2000, unbanAfterMs: 2000 };
  const primary = (lsn: string, at = 1) => applyProbe(node('pg1'), ok(at, { inRecovery: false, currentLsn: lsn }));
  const replica = (name: string, replayLsn: string | null, s: Partial<ProbeSample> = {}, at = 1, base: NodeState = node(name)) =>
    applyProbe(base, ok(at, { inRecovery: true, currentLsn: null, receiveLsn: replayLsn, replayLsn, caughtUp: true, replayAgeSeconds: 0, ...s }));
  const byName = (nodes: NodeState[]) => Object.fromEntries(nodes.map((n) => [n.name, n]));

  it('counts a replica whose WAL receiver is not streaming as falling behind, so it is banned for time (e.g. it cannot follow a new primary)', () => {
    let nodes = [primary('0/5000'), replica('pg2', '0/5000', { receiverStatus: null, replayAgeSeconds: 3600 }), replica('pg3', '0/5000', { receiverStatus: 'streaming' })];
    for (let at = 0; at <= 3000; at += 500) nodes = applyLag(nodes, 'pg1', at, bounds);
    const out = byName(nodes);
    expect(out.pg2).toMatchObject({ banned: true, banReason: 'lag-time' });
    expect(out.pg2.lagSeconds).toBeGreaterThan(2);
    expect(out.pg3).toMatchObject({ banned: false, lagSeconds: 0 });
  });

  it("measures each replica's bytes against the primary's current LSN of the same round", () => {
    const out = byName(applyLag([primary('0/5000'), replica('pg2', '0/4F00'), replica('pg3', '0/4000')], 'pg1', 10, bounds));
    expect(out.pg2).toMatchObject({ lagBytes: 0x100, lagSeconds: 0, banned: false, banReason: null });
    expect(out.pg3).toMatchObject({ lagBytes: 0x1000, banned: true, banReason: 'lag-bytes', banSince: 10 });
    // the next round: the primary moved on, pg2 did not replay further
    const next = byName(applyLag([primary('0/6000', 2), out.pg2, out.pg3], 'pg1', 20, bounds));
    expect(next.pg2).toMatchObject({ lagBytes: 0x1100, banned: true, banReason: 'lag-bytes', banSince: 20 });
  });

  it('never bans the primary, and clears the lag it carried as a replica', () => {
    const wasReplica = node('pg2', { lagBytes: 5000, lagSeconds: 9, behindSince: 3, banned: true, banReason: 'lag-bytes', banSince: 3, clearSince: null });
    const promoted = applyProbe(wasReplica, ok(5, { inRecovery: false, currentLsn: '0/9000' }));
    const [p] = applyLag([promoted, replica('pg1', '0/9000')], 'pg2', 5, bounds);
    expect(p).toMatchObject({ name: 'pg2', role: 'primary', lagBytes: null, lagSeconds: null, behindSince: null, banned: false, banReason: null, banSince: null, clearSince: null });
  });

  it('bans a down node as probe-failed and forgets its lag', () => {
    const measured = applyLag([primary('0/5000'), replica('pg2', '0/4F00')], 'pg1', 1, bounds)[1];
    expect(measured.lagBytes).toBe(0x100);
    const down = applyProbe(measured, fail(2, 'ECONNREFUSED'));
    const [, after] = applyLag([primary('0/5000', 2), down], 'pg1', 2, bounds);
    expect(after).toMatchObject({ up: false, banned: true, banReason: 'probe-failed', banSince: 2, lagBytes: null, lagSeconds: null, behindSince: null });
  });

  it('unbans a recovered node only after it has been fine for unban_after', () => {
    let pg2 = applyLag([primary('0/5000'), applyProbe(node('pg2'), fail(0, 'down'))], 'pg1', 0, bounds)[1];
    expect(pg2.banned).toBe(true);
    for (const at of [1000, 2000, 2999]) {
      pg2 = applyLag([primary('0/5000', at), replica('pg2', '0/5000', {}, at, pg2)], 'pg1', at, bounds)[1];
      expect(pg2.banned, `at ${at}`).toBe(true);
    }
    pg2 = applyLag([primary('0/5000', 3000), replica('pg2', '0/5000', {}, 3000, pg2)], 'pg1', 3000, bounds)[1];
    expect(pg2).toMatchObject({ banned: false, banReason: null, lagBytes: 0 });
  });

  it('bans on time lag once a replica has been behind what it received for longer than the bound', () => {
    let pg2 = node('pg2');
    const round = (at: number) => (pg2 = applyLag([primary('0/5000', at), replica('pg2', '0/5000', { caughtUp: false, replayAgeSeconds: 3600 }, at, pg2)], 'pg1', at, bounds)[1]);
    expect(round(10_000)).toMatchObject({ lagSeconds: 0, behindSince: 10_000, banned: false });
    expect(round(12_000)).toMatchObject({ lagSeconds: 2, banned: false });
    expect(round(12_500)).toMatchObject({ lagSeconds: 2.5, banned: true, banReason: 'lag-time', banSince: 12_500 });
  });

  it('has no byte lag when there is no primary or the primary is down', () => {
    const noPrimary = applyLag([replica('pg2', '0/1'), replica('pg3', '0/1')], null, 1, bounds);
    expect(noPrimary.map((n) => [n.lagBytes, n.banned])).toEqual([
      [null, false],
      [null, false],
    ]);
    const downPrimary = applyProbe(primary('0/FFFFFF'), fail(2, 'gone'));
    const [, pg2] = applyLag([downPrimary, replica('pg2', '0/1')], 'pg1', 2, bounds);
    expect(pg2).toMatchObject({ lagBytes: null, banned: false });
  });

  it('leaves up nodes that are neither primary nor replica alone, and does not mutate its input', () => {
    const conflicting = applyProbe(node('pg3'), ok(1, { inRecovery: false, currentLsn: '0/1' }));
    const nodes = [primary('0/5000'), replica('pg2', '0/1'), conflicting];
    const snapshot = structuredClone(nodes);
    const out = applyLag(nodes, 'pg1', 1, bounds);
    expect(out[2]).toEqual(conflicting);
    expect(out[1].banned).toBe(true);
    expect(nodes).toEqual(snapshot);
  });
});
