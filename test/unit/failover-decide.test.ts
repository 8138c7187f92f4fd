// Unit tests for the failover state machine (decideFailover, promotable) driven by simulated probe rounds on a fake clock.
import { describe, it, expect } from 'vitest';
import { decideFailover, promotable, type FailoverDecision, type FailoverSettings, type ReplicationMode } from '../../src/failover/decide.js';
import { applyProbe, type ProbeSample } from '../../src/health/evaluate.js';
import { initialNodeState, type NodeAddress, type NodeState } from '../../src/topology/topology.js';

const ROUND_MS = 500;

const primarySample = (patch: Partial<ProbeSample> = {}): ProbeSample => ({
  inRecovery: false,
  currentLsn: '0/5000000',
  receiveLsn: null,
  replayLsn: null,
  replayTimestamp: null,
  timeline: 1,
  systemIdentifier: '7301234567890123456',
  serverVersion: '16.4',
  replayPaused: null,
  caughtUp: null,
  replayAgeSeconds: null,
  receiverStatus: null,
  senderHost: null,
  senderPort: null,
  standbys: null,
  ...patch,
});

const replicaSample = (patch: Partial<ProbeSample> = {}): ProbeSample =>
  primarySample({
    inRecovery: true,
    currentLsn: null,
    receiveLsn: '0/5000000',
    replayLsn: '0/5000000',
    caughtUp: true,
    replayPaused: false,
    replayAgeSeconds: 0,
    receiverStatus: 'streaming',
    senderHost: 'pg1.db',
    senderPort: 5432,
    ...patch,
  });

/** What one node answers in one round: a sample (patch over the default for its role), or an error string (probe failed). */
type Outcome = Partial<ProbeSample> | string;

/**
 * A tiny cluster on a fake clock: every round() applies one probe result per node, 500 ms after the previous round,
 * exactly as the health checker would, and decide() asks the failover logic what that state means.
 */
class Sim {
  now = 1_700_000_000_000;
  nodes: NodeState[];

  constructor(addresses: NodeAddress[], public elected: string | null = 'pg1') {
    this.nodes = addresses.map((a) => initialNodeState(a));
  }

  /** Outcomes for nodes not mentioned: the elected primary answers as a primary, the others as streaming replicas. */
  round(outcomes: Record<string, Outcome> = {}): this {
    this.now += ROUND_MS;
    this.nodes = this.nodes.map((n) => {
      const o = outcomes[n.name] ?? {};
      if (typeof o === 'string') return applyProbe(n, { ok: false, at: this.now, error: o });
      const base = n.name === this.elected ? primarySample() : replicaSample();
      return applyProbe(n, { ok: true, at: this.now, sample: { ...base, ...o } });
    });
    return this;
  }

  rounds(count: number, outcomes: Record<string, Outcome> = {}): this {
    for (let i = 0; i < count; i++) this.round(outcomes);
    return this;
  }

  node(name: string): NodeState {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  decide(syncSet: readonly string[] = [], mode: ReplicationMode = 'async', strict = false): FailoverDecision {
    const s: FailoverSettings = { failureThreshold: 3, mode, strict };
    return decideFailover(this.nodes, this.elected, syncSet, s);
  }
}

const addr = (name: string, extra: Partial<NodeAddress> = {}): NodeAddress => ({ name, host: `${name}.db`, port: 5432, ...extra });
const three = (extra: Record<string, Partial<NodeAddress>> = {}) => [addr('pg1', extra.pg1), addr('pg2', extra.pg2), addr('pg3', extra.pg3)];

const DOWN = 'connect ECONNREFUSED 10.0.0.1:5432';
/** After the primary died the replicas' WAL receivers are no longer streaming from it. */
const orphaned = (receiveLsn: string, patch: Partial<ProbeSample> = {}): Partial<ProbeSample> => ({ receiveLsn, replayLsn: receiveLsn, receiverStatus: 'waiting', ...patch });

/** A healthy cluster that has been probed once, then loses its primary for `failedRounds` rounds. */
function primaryLost(failedRounds: number, replicas: Record<string, Outcome> = { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200') }, addresses = three()): Sim {
  return new Sim(addresses).round().rounds(failedRounds, { pg1: DOWN, ...replicas });
}

const promoted = (d: FailoverDecision) => (d.kind === 'promote' ? d.node : `(${d.kind})`);

describe('decideFailover: detection', () => {
  it('reports a healthy primary as healthy', () => {
    const sim = new Sim(three()).rounds(5);
    expect(sim.decide()).toEqual({ kind: 'healthy' });
  });

  it('keeps a primary that failed 1 and then 2 probes as suspect, and promotes at the 3rd failure', () => {
    const sim = new Sim(three()).round();
    const replicas = { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200') };

    sim.round({ pg1: DOWN, ...replicas });
    const one = sim.decide();
    expect(one.kind).toBe('suspect');
    expect(one.kind === 'suspect' && one.reason).toContain('1 of 3');

    sim.round({ pg1: DOWN, ...replicas });
    const two = sim.decide();
    expect(two.kind).toBe('suspect');
    expect(two.kind === 'suspect' && two.reason).toContain('2 of 3');

    sim.round({ pg1: DOWN, ...replicas });
    const three_ = sim.decide();
    expect(three_).toMatchObject({ kind: 'promote', node: 'pg3', receiveLsn: '0/5000200' });
    // The reason names the lost primary and the last error a user would look for in the logs.
    expect(three_.kind === 'promote' && three_.reason).toContain('pg1');
    expect(three_.kind === 'promote' && three_.reason).toContain(DOWN);
  });

  it('keeps promoting the most advanced replica on later rounds while the primary stays down', () => {
    const sim = primaryLost(6);
    expect(sim.node('pg1').failures).toBe(6);
    expect(promoted(sim.decide())).toBe('pg3');
  });

  it('never promotes for a flapping primary (fail, fail, ok, …): a successful probe resets the count', () => {
    const sim = new Sim(three()).round();
    const replicas = { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200') };
    const seen: string[] = [];
    for (let cycle = 0; cycle < 10; cycle++) {
      sim.round({ pg1: DOWN, ...replicas });
      seen.push(sim.decide().kind);
      sim.round({ pg1: DOWN, ...replicas });
      seen.push(sim.decide().kind);
      sim.round();
      seen.push(sim.decide().kind);
    }
    expect(seen).not.toContain('promote');
    expect(seen).not.toContain('no-candidate');
    expect(seen.filter((k) => k === 'healthy')).toHaveLength(10);
    expect(sim.node('pg1').failures).toBe(0);
  });

  it('promotes once the flapping stops and the primary fails 3 probes in a row', () => {
    const sim = new Sim(three()).round();
    const replicas = { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200') };
    sim.rounds(2, { pg1: DOWN, ...replicas }).round();
    expect(sim.decide().kind).toBe('healthy');
    sim.rounds(2, { pg1: DOWN, ...replicas });
    expect(sim.decide().kind).toBe('suspect');
    sim.round({ pg1: DOWN, ...replicas });
    expect(promoted(sim.decide())).toBe('pg3');
  });
});

describe('decideFailover: confirmation by the replicas', () => {
  it('stays suspect while a replica still streams from the primary (only pgsplit lost it)', () => {
    // pg1 is unreachable from pgsplit for 5 rounds, but the replicas keep streaming from it.
    const sim = primaryLost(5, { pg2: { receiveLsn: '0/5000100' }, pg3: { receiveLsn: '0/5000200' } });
    expect(sim.node('pg2').receiverStatus).toBe('streaming');
    const d = sim.decide();
    expect(d.kind).toBe('suspect');
    expect(d.kind === 'suspect' && d.reason).toMatch(/streams/);
  });

  it('stays suspect when only one of the replicas still streams', () => {
    const sim = primaryLost(4, { pg2: orphaned('0/5000300'), pg3: { receiveLsn: '0/5000200' } });
    expect(sim.decide().kind).toBe('suspect');
  });

  it('promotes once no replica streams any more (receiver null or waiting)', () => {
    const sim = primaryLost(4, { pg2: { receiveLsn: '0/5000100' }, pg3: { receiveLsn: '0/5000200' } });
    expect(sim.decide().kind).toBe('suspect');
    sim.round({ pg1: DOWN, pg2: orphaned('0/5000100', { receiverStatus: null }), pg3: orphaned('0/5000200') });
    expect(promoted(sim.decide())).toBe('pg3');
  });

  it('does not count a replica that is itself down as confirming the primary alive', () => {
    // pg3's last successful probe said "streaming", but it is down now: what it said then proves nothing.
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: 'timeout' });
    expect(promoted(sim.decide())).toBe('pg2');
  });
});

describe('decideFailover: choosing the replica', () => {
  it('promotes the replica with the highest receive LSN', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/6000000'), pg3: orphaned('0/5FFFFFF') });
    expect(sim.decide()).toMatchObject({ kind: 'promote', node: 'pg2', receiveLsn: '0/6000000' });
  });

  it('compares LSNs as positions, not as text', () => {
    // As strings "0/9FFFFFF" > "0/10000000" and "0/FFFFFFFF" > "1/0"; as WAL positions it is the other way round.
    expect(promoted(primaryLost(3, { pg2: orphaned('0/9FFFFFF'), pg3: orphaned('0/10000000') }).decide())).toBe('pg3');
    expect(promoted(primaryLost(3, { pg2: orphaned('0/FFFFFFFF'), pg3: orphaned('1/0') }).decide())).toBe('pg3');
  });

  it('picks the other replica when one replica is down too', () => {
    // pg3 was the most advanced, but it is unreachable now.
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: 'connection timed out' });
    expect(sim.decide()).toMatchObject({ kind: 'promote', node: 'pg2' });
  });

  it('reports no-candidate when both replicas are down', () => {
    const sim = primaryLost(3, { pg2: DOWN, pg3: DOWN });
    const d = sim.decide();
    expect(d.kind).toBe('no-candidate');
    expect(d.kind === 'no-candidate' && d.reason).toMatch(/no replica is reachable/);
  });

  it('ignores a node that is up but claims to be a primary (not a replica)', () => {
    const sim = primaryLost(3, { pg2: { inRecovery: true, ...orphaned('0/5000100') }, pg3: { inRecovery: false, currentLsn: '0/9000000' } });
    expect(sim.node('pg3').role).toBe('primary');
    expect(promoted(sim.decide())).toBe('pg2');
  });

  it('breaks an LSN tie by the higher priority', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000100') }, three({ pg2: { priority: 1 }, pg3: { priority: 5 } }));
    expect(promoted(sim.decide())).toBe('pg3');
  });

  it('lets a missing priority count as 0 against a negative one', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000100') }, three({ pg2: { priority: -1 } }));
    expect(promoted(sim.decide())).toBe('pg3');
  });

  it('prefers a higher LSN over a higher priority', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000101'), pg3: orphaned('0/5000100') }, three({ pg3: { priority: 100 } }));
    expect(promoted(sim.decide())).toBe('pg2');
  });

  it('breaks an LSN and priority tie by config order (first listed wins)', () => {
    const replicas = { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000100') };
    expect(promoted(primaryLost(3, replicas, three()).decide())).toBe('pg2');
    // Same nodes, pg3 listed before pg2.
    const reordered = [addr('pg1'), addr('pg3'), addr('pg2')];
    expect(promoted(primaryLost(3, replicas, reordered).decide())).toBe('pg3');
    // Equal explicit priorities behave the same.
    const both2 = [addr('pg1'), addr('pg3', { priority: 2 }), addr('pg2', { priority: 2 })];
    expect(promoted(primaryLost(3, replicas, both2).decide())).toBe('pg3');
  });

  it('falls back to the replay LSN when a replica reports no receive LSN', () => {
    const sim = primaryLost(3, {
      pg2: orphaned('0/5000100'),
      pg3: { receiveLsn: null, replayLsn: '0/7000000', receiverStatus: null },
    });
    expect(sim.node('pg3').receiveLsn).toBeNull();
    expect(sim.decide()).toMatchObject({ kind: 'promote', node: 'pg3', receiveLsn: null });
  });

  it('uses the replay LSN fallback in the other direction too (lower replay LSN loses)', () => {
    const sim = primaryLost(3, {
      pg2: orphaned('0/5000100'),
      pg3: { receiveLsn: null, replayLsn: '0/5000000', receiverStatus: null },
    });
    expect(promoted(sim.decide())).toBe('pg2');
  });
});

describe('decideFailover: replicas that may not be promoted', () => {
  it('never promotes a delayed replica, even the most advanced one', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/9000000') }, three({ pg3: { delayed: true } }));
    expect(promoted(sim.decide())).toBe('pg2');
  });

  it('never promotes a replica tagged nofailover, even the most advanced one', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/9000000') }, three({ pg3: { tags: ['reports', 'nofailover'] } }));
    expect(promoted(sim.decide())).toBe('pg2');
  });

  it('reports no-candidate when the only reachable replicas are delayed or nofailover', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/9000000') }, three({ pg2: { delayed: true }, pg3: { tags: ['nofailover'] } }));
    const d = sim.decide();
    expect(d.kind).toBe('no-candidate');
    expect(d.kind === 'no-candidate' && d.reason).toMatch(/may be promoted/);
  });

  it('reports no-candidate when the promotable replica is down and only a delayed one is left', () => {
    const sim = primaryLost(3, { pg2: DOWN, pg3: orphaned('0/9000000') }, three({ pg3: { delayed: true } }));
    expect(sim.decide().kind).toBe('no-candidate');
  });

  it('promotable() excludes delayed and nofailover nodes only', () => {
    const n = (a: Partial<NodeAddress>) => initialNodeState(addr('pgx', a));
    expect(promotable(n({}))).toBe(true);
    expect(promotable(n({ tags: ['reports'] }))).toBe(true);
    expect(promotable(n({ delayed: false, tags: [] }))).toBe(true);
    expect(promotable(n({ delayed: true }))).toBe(false);
    expect(promotable(n({ tags: ['reports', 'nofailover'] }))).toBe(false);
  });
});

describe('decideFailover: synchronous replication modes', () => {
  // pg3 is the most advanced, but only pg2 was synchronous.
  const lost = () => primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/9000000') });

  for (const mode of ['semi-sync', 'sync'] as const) {
    for (const strict of [false, true]) {
      it(`${mode}${strict ? ' (strict)' : ''}: promotes only a member of the sync set, even over a higher LSN`, () => {
        expect(promoted(lost().decide(['pg2'], mode, strict))).toBe('pg2');
      });
    }
  }

  it('async: ignores the sync set and promotes the highest LSN', () => {
    expect(promoted(lost().decide(['pg2'], 'async', true))).toBe('pg3');
  });

  it('picks the most advanced among several sync set members', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200') }, [...three(), addr('pg4')]);
    sim.round({ pg1: DOWN, pg2: orphaned('0/5000100'), pg3: orphaned('0/5000200'), pg4: orphaned('0/9000000') });
    expect(promoted(sim.decide(['pg2', 'pg3'], 'sync', false))).toBe('pg3');
    expect(promoted(sim.decide(['pg2', 'pg3'], 'semi-sync', true))).toBe('pg3');
  });

  for (const mode of ['semi-sync', 'sync'] as const) {
    it(`${mode} (strict) with an empty sync set: no-candidate`, () => {
      const d = lost().decide([], mode, true);
      expect(d.kind).toBe('no-candidate');
      expect(d.kind === 'no-candidate' && d.reason).toContain(mode);
    });

    it(`${mode} (not strict) with an empty sync set: promotes the highest LSN`, () => {
      expect(promoted(lost().decide([], mode, false))).toBe('pg3');
    });
  }

  it('semi-sync (strict) with a sync set member unreachable: no-candidate, even though another member is up', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: DOWN });
    const d = sim.decide(['pg2', 'pg3'], 'semi-sync', true);
    expect(d.kind).toBe('no-candidate');
    expect(d.kind === 'no-candidate' && d.reason).toContain('pg3');
  });

  it('semi-sync (strict) with a sync set member that may not be promoted: no-candidate', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: orphaned('0/9000000') }, three({ pg3: { tags: ['nofailover'] } }));
    expect(sim.decide(['pg2', 'pg3'], 'semi-sync', true).kind).toBe('no-candidate');
  });

  it('semi-sync (not strict) with a sync set member unreachable: promotes the best reachable member', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: DOWN }, [...three(), addr('pg4')]);
    sim.round({ pg1: DOWN, pg2: orphaned('0/5000100'), pg3: DOWN, pg4: orphaned('0/9000000') });
    // pg4 is more advanced but was never synchronous.
    expect(promoted(sim.decide(['pg2', 'pg3'], 'semi-sync', false))).toBe('pg2');
  });

  it('sync (strict) with a sync set member unreachable: promotes a reachable member (each holds every commit)', () => {
    const sim = primaryLost(3, { pg2: orphaned('0/5000100'), pg3: DOWN });
    expect(promoted(sim.decide(['pg2', 'pg3'], 'sync', true))).toBe('pg2');
  });
});

describe('decideFailover: nothing to fail over from', () => {
  it('is healthy with no elected primary, even when every node is down', () => {
    const sim = new Sim(three(), null).rounds(5, { pg1: DOWN, pg2: DOWN, pg3: DOWN });
    expect(sim.decide()).toEqual({ kind: 'healthy' });
  });

  it('is healthy when the elected node is up and now a replica (demoted on purpose)', () => {
    const sim = new Sim(three()).round();
    sim.round({ pg1: { inRecovery: true, currentLsn: null, receiveLsn: '0/5000000', replayLsn: '0/5000000', receiverStatus: 'streaming' }, pg2: orphaned('0/5000100') });
    expect(sim.node('pg1')).toMatchObject({ up: true, role: 'replica' });
    expect(sim.decide()).toEqual({ kind: 'healthy' });
    expect(sim.decide(['pg2'], 'semi-sync', true)).toEqual({ kind: 'healthy' });
  });

  it('is healthy again as soon as a lost primary answers', () => {
    const sim = primaryLost(5);
    expect(sim.decide().kind).toBe('promote');
    sim.round();
    expect(sim.decide()).toEqual({ kind: 'healthy' });
  });
});
