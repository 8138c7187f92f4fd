// Unit tests for the pure routing decisions in src/router/route.ts: routeUnit's target/reason table and pickReplica's weighted load balancing.
import { describe, expect, it } from 'vitest';
import { pickReplica, routeUnit, type LoadBalance, type ReplicaCandidate, type RouteContext } from '../../src/router/route.js';
import type { Classification, Target } from '../../src/router/classification.js';

const none = new Map<string, number>();

/** Names picked for turns 0..n-1. */
function picks(candidates: ReplicaCandidate[], strategy: LoadBalance, n: number, connections = none): (string | undefined)[] {
  return Array.from({ length: n }, (_, turn) => pickReplica(candidates, strategy, turn, connections)?.name);
}

function counts(names: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[String(n)] = (out[String(n)] ?? 0) + 1;
  return out;
}

describe('pickReplica: round-robin', () => {
  it('without weights, takes each replica in turn', () => {
    expect(picks([{ name: 'a' }, { name: 'b' }, { name: 'c' }], 'round-robin', 7)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('weights 3 and 1 over turns 0..39 give exactly 30 and 10', () => {
    const got = picks([{ name: 'big', weight: 3 }, { name: 'small', weight: 1 }], 'round-robin', 40);
    expect(counts(got)).toEqual({ big: 30, small: 10 });
    expect(got.slice(0, 8)).toEqual(['big', 'big', 'big', 'small', 'big', 'big', 'big', 'small']);
  });

  it('a missing weight counts as 1', () => {
    expect(counts(picks([{ name: 'a', weight: 2 }, { name: 'b' }], 'round-robin', 30))).toEqual({ a: 20, b: 10 });
  });

  it('never picks a replica with weight 0 (or a negative weight)', () => {
    const got = picks([{ name: 'off', weight: 0 }, { name: 'on', weight: 1 }, { name: 'neg', weight: -3 }, { name: 'on2', weight: 1 }], 'round-robin', 20);
    expect(counts(got)).toEqual({ on: 10, on2: 10 });
  });

  it('returns null when there is nothing to pick', () => {
    expect(pickReplica([], 'round-robin', 0, none)).toBeNull();
    expect(pickReplica([{ name: 'a', weight: 0 }, { name: 'b', weight: 0 }], 'round-robin', 3, none)).toBeNull();
  });

  it('returns the candidate object itself', () => {
    const b = { name: 'b', weight: 1, extra: 42 };
    expect(pickReplica([{ name: 'a', weight: 1, extra: 1 }, b], 'round-robin', 1, none)).toBe(b);
  });
});

describe('pickReplica: random', () => {
  const cands = [{ name: 'big', weight: 3 }, { name: 'small', weight: 1 }];
  const pick = (r: number) => pickReplica(cands, 'random', 0, none, () => r)?.name;

  it("maps the injected random() onto each replica's share of the total weight", () => {
    expect([0, 0.5, 0.749, 0.75, 0.999].map(pick)).toEqual(['big', 'big', 'big', 'small', 'small']);
  });

  it('ignores the turn counter', () => {
    expect([0, 1, 2, 3].map((turn) => pickReplica(cands, 'random', turn, none, () => 0.9)?.name)).toEqual(['small', 'small', 'small', 'small']);
  });

  it('spreads evenly-spaced random values by weight, and never picks weight 0', () => {
    const c = [{ name: 'a', weight: 1 }, { name: 'zero', weight: 0 }, { name: 'b', weight: 4 }];
    const got = Array.from({ length: 100 }, (_, i) => pickReplica(c, 'random', 0, none, () => i / 100)?.name);
    expect(counts(got)).toEqual({ a: 20, b: 80 });
  });

  it('returns null with no candidates, without calling random()', () => {
    let called = false;
    expect(pickReplica([], 'random', 0, none, () => ((called = true), 0))).toBeNull();
    expect(called).toBe(false);
  });
});

describe('pickReplica: least-connections', () => {
  const conns = (o: Record<string, number>) => new Map(Object.entries(o));

  it('picks the fewest connections', () => {
    expect(pickReplica([{ name: 'a' }, { name: 'b' }, { name: 'c' }], 'least-connections', 0, conns({ a: 5, b: 2, c: 3 }))?.name).toBe('b');
  });

  it('counts connections per unit of weight', () => {
    const c = [{ name: 'big', weight: 3 }, { name: 'small', weight: 1 }];
    expect(pickReplica(c, 'least-connections', 0, conns({ big: 6, small: 1 }))?.name).toBe('small'); // 2 vs 1 per unit
    expect(pickReplica(c, 'least-connections', 0, conns({ big: 2, small: 1 }))?.name).toBe('big'); // 0.67 vs 1
  });

  it('a node missing from the map has no connections; ties go to the first listed', () => {
    expect(pickReplica([{ name: 'a' }, { name: 'b' }], 'least-connections', 5, conns({ a: 1 }))?.name).toBe('b');
    expect(pickReplica([{ name: 'a' }, { name: 'b' }], 'least-connections', 5, conns({ a: 2, b: 2 }))?.name).toBe('a');
  });

  it('fills replicas in proportion to their weights', () => {
    const c = [{ name: 'big', weight: 3 }, { name: 'small', weight: 1 }];
    const open = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const p = pickReplica(c, 'least-connections', i, open)!;
      open.set(p.name, (open.get(p.name) ?? 0) + 1);
    }
    expect(Object.fromEntries(open)).toEqual({ big: 30, small: 10 });
  });

  it('never picks weight 0, even with no connections', () => {
    expect(pickReplica([{ name: 'off', weight: 0 }, { name: 'on', weight: 1 }], 'least-connections', 0, conns({ on: 100 }))?.name).toBe('on');
    expect(pickReplica([{ name: 'off', weight: 0 }], 'least-connections', 0, none)).toBeNull();
    expect(pickReplica([], 'least-connections', 0, none)).toBeNull();
  });
});

describe('routeUnit', () => {
  const cls = (target: Target, reason: string): Classification => ({ target, reason, statements: [], via: 'lexical' });
  const ctx = (patch: Partial<RouteContext> = {}): RouteContext => ({ pinned: false, hint: 'auto', ...patch });
  const read = cls('replica', 'select');

  it.each<[string, Classification[], RouteContext, { target: 'primary' | 'replica'; reason: string }]>([
    ['one read', [read], ctx(), { target: 'replica', reason: 'select' }],
    ['several reads', [read, cls('replica', 'show')], ctx(), { target: 'replica', reason: 'batch-read' }],
    ['pinned session', [read], ctx({ pinned: true }), { target: 'primary', reason: 'pinned' }],
    ['pinned beats a replica hint', [read], ctx({ pinned: true, hint: 'replica' }), { target: 'primary', reason: 'pinned' }],
    ['a write', [cls('primary', 'write')], ctx(), { target: 'primary', reason: 'write' }],
    ['a write after a read: its reason', [read, cls('primary', 'ddl')], ctx(), { target: 'primary', reason: 'ddl' }],
    ['a session statement', [cls('session', 'set')], ctx(), { target: 'primary', reason: 'session:set' }],
    ['the first non-replica part decides', [read, cls('session', 'execute'), cls('primary', 'write')], ctx(), { target: 'primary', reason: 'session:execute' }],
    ['primary hint', [read], ctx({ hint: 'primary' }), { target: 'primary', reason: 'route-hint' }],
    ['primary hint on a batch', [read, read], ctx({ hint: 'primary' }), { target: 'primary', reason: 'route-hint' }],
    ['replica hint does not move a write', [cls('primary', 'write')], ctx({ hint: 'replica' }), { target: 'primary', reason: 'write' }],
    ['replica hint on a read', [read], ctx({ hint: 'replica' }), { target: 'replica', reason: 'select' }],
    ['no statement', [], ctx(), { target: 'primary', reason: 'no-statement' }],
  ])('%s', (_n, parts, c, want) => {
    expect(routeUnit(parts, c)).toEqual(want);
  });
});
