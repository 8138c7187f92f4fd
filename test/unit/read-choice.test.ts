// Unit tests for choosing the node that serves a read (src/router/read-choice.ts): tags, weights, delayed replicas, lag bounds and read-your-writes.
import { describe, expect, it } from 'vitest';
import { chooseRead, meetsNeeds, readWeight, type ReadCandidate, type ReadNeeds } from '../../src/router/read-choice.js';
import type { LoadBalance } from '../../src/router/route.js';

const r = (name: string, patch: Partial<ReadCandidate> = {}): ReadCandidate => ({ name, lagSeconds: 0, ...patch });
const needs = (patch: Partial<ReadNeeds> = {}): ReadNeeds => ({ tags: [], lsn: null, maxLagMs: null, ...patch });

/** Replay LSNs by node name; a name not listed has not reported one. */
const replayed = (lsns: Record<string, number>) => (name: string) => lsns[name] ?? null;

const opts = (
  patch: Partial<{
    preferred: string | null;
    bannedCount: number;
    replayLsn: (name: string) => number | null;
    strategy: LoadBalance;
    turn: number;
    connections: ReadonlyMap<string, number>;
  }> = {},
) => ({ preferred: null, bannedCount: 0, replayLsn: replayed({}), strategy: 'round-robin' as LoadBalance, turn: 0, connections: new Map<string, number>(), ...patch });

const name = (c: { node: ReadCandidate | null }) => c.node?.name ?? null;

describe('readWeight', () => {
  it.each<[string, ReadCandidate, string[], number]>([
    ['ordinary replica, default weight', r('a'), [], 1],
    ['ordinary replica, weight 5', r('a', { weight: 5 }), [], 5],
    ['weight 0 takes no ordinary reads', r('a', { weight: 0 }), [], 0],
    ['a delayed replica takes no ordinary reads', r('a', { delayed: true, weight: 5, tags: ['old'] }), [], 0],
    ['a tagged replica still takes ordinary reads', r('a', { tags: ['analytics'], weight: 2 }), [], 2],
    ['session tags: matching replica keeps its weight', r('a', { tags: ['analytics'], weight: 4 }), ['analytics'], 4],
    ['session tags: any one matching tag is enough', r('a', { tags: ['x', 'eu'] }), ['us', 'eu'], 1],
    ['session tags: weight 0 still serves the sessions that ask for its tag', r('a', { tags: ['analytics'], weight: 0 }), ['analytics'], 1],
    ['session tags: a delayed replica serves its tag', r('a', { tags: ['old'], delayed: true, weight: 3 }), ['old'], 3],
    ['session tags: a replica without that tag does not serve', r('a', { tags: ['analytics'] }), ['reports'], 0],
    ['session tags: an untagged replica does not serve', r('a'), ['reports'], 0],
    ['tags compare exactly', r('a', { tags: ['Analytics'] }), ['analytics'], 0],
  ])('%s', (_n, c, tags, want) => {
    expect(readWeight(c, tags)).toBe(want);
  });
});

describe('meetsNeeds', () => {
  it('anything qualifies with no lag bound and no LSN', () => {
    expect(meetsNeeds(r('a', { lagSeconds: null }), needs(), replayed({}))).toBe(true);
    expect(meetsNeeds(r('a', { lagSeconds: 3600 }), needs(), replayed({}))).toBe(true);
  });

  it('a max_lag bound needs a known lag within it', () => {
    const n = needs({ maxLagMs: 500 });
    expect(meetsNeeds(r('a', { lagSeconds: 0.4 }), n, replayed({}))).toBe(true);
    expect(meetsNeeds(r('a', { lagSeconds: 0.5 }), n, replayed({}))).toBe(true);
    expect(meetsNeeds(r('a', { lagSeconds: 0.6 }), n, replayed({}))).toBe(false);
    expect(meetsNeeds(r('a', { lagSeconds: null }), n, replayed({}))).toBe(false);
    expect(meetsNeeds(r('a', { lagSeconds: 0 }), needs({ maxLagMs: 0 }), replayed({}))).toBe(true);
  });

  it("read-your-writes needs the replica to have replayed the session's LSN", () => {
    const n = needs({ lsn: 1000 });
    expect(meetsNeeds(r('a'), n, replayed({ a: 999 }))).toBe(false);
    expect(meetsNeeds(r('a'), n, replayed({ a: 1000 }))).toBe(true);
    expect(meetsNeeds(r('a'), n, replayed({ a: 5000 }))).toBe(true);
    expect(meetsNeeds(r('a'), n, replayed({}))).toBe(false);
  });

  it('both must hold', () => {
    const n = needs({ lsn: 1000, maxLagMs: 500 });
    expect(meetsNeeds(r('a', { lagSeconds: 1 }), n, replayed({ a: 2000 }))).toBe(false);
    expect(meetsNeeds(r('a', { lagSeconds: 0.1 }), n, replayed({ a: 10 }))).toBe(false);
    expect(meetsNeeds(r('a', { lagSeconds: 0.1 }), n, replayed({ a: 2000 }))).toBe(true);
  });
});

describe('chooseRead', () => {
  it('keeps the preferred replica when it qualifies, whatever the turn', () => {
    const list = [r('a'), r('b'), r('c')];
    for (let turn = 0; turn < 6; turn++) expect(name(chooseRead(list, needs(), opts({ preferred: 'b', turn })))).toBe('b');
  });

  it('moves off the preferred replica when it no longer qualifies', () => {
    const list = [r('a'), r('b', { lagSeconds: 5 })];
    expect(name(chooseRead(list, needs({ maxLagMs: 1000 }), opts({ preferred: 'b', turn: 1 })))).toBe('a');
    // not among the replicas at all (banned or gone)
    expect(name(chooseRead([r('a'), r('c')], needs(), opts({ preferred: 'b', turn: 1 })))).toBe('c');
    // does not serve the session's tags
    expect(name(chooseRead([r('a', { tags: ['x'] }), r('b')], needs({ tags: ['x'] }), opts({ preferred: 'b', turn: 1 })))).toBe('a');
    // has not replayed the session's write
    expect(name(chooseRead([r('a'), r('b')], needs({ lsn: 50 }), opts({ preferred: 'b', replayLsn: replayed({ a: 50, b: 49 }), turn: 1 })))).toBe('a');
  });

  it('with no replica serving the read: no-replica, or replica-lag when some are banned', () => {
    expect(chooseRead([], needs(), opts())).toEqual({ node: null, reason: 'no-replica', waitingFor: [] });
    expect(chooseRead([], needs(), opts({ bannedCount: 2 }))).toEqual({ node: null, reason: 'replica-lag', waitingFor: [] });
    // replicas exist but none serves these tags / ordinary reads
    expect(chooseRead([r('a'), r('b', { tags: ['y'] })], needs({ tags: ['x'] }), opts())).toEqual({ node: null, reason: 'no-replica', waitingFor: [] });
    expect(chooseRead([r('a', { weight: 0 }), r('d', { delayed: true })], needs(), opts())).toEqual({ node: null, reason: 'no-replica', waitingFor: [] });
  });

  it("read-your-writes: replicas within the lag bound that have not replayed the session's LSN are waited for", () => {
    const a = r('a', { lagSeconds: 0.1 });
    const b = r('b', { lagSeconds: 0.2 });
    const slow = r('slow', { lagSeconds: 9 });
    const choice = chooseRead([a, slow, b], needs({ lsn: 100, maxLagMs: 1000 }), opts({ replayLsn: replayed({ a: 99, b: 50, slow: 500 }) }));
    expect(choice).toEqual({ node: null, reason: 'read-your-writes', waitingFor: [a, b] });
    expect((choice as { waitingFor: ReadCandidate[] }).waitingFor[0]).toBe(a);
  });

  it('read-your-writes without a lag bound waits for every serving replica', () => {
    const list = [r('a'), r('b', { tags: ['x'] }), r('d', { delayed: true })];
    expect(chooseRead(list, needs({ lsn: 100 }), opts({ replayLsn: replayed({ a: 1, b: 2 }) }))).toEqual({
      node: null,
      reason: 'read-your-writes',
      waitingFor: [list[0], list[1]],
    });
  });

  it('max-lag: every serving replica is over the session bound', () => {
    const list = [r('a', { lagSeconds: 3 }), r('b', { lagSeconds: null })];
    expect(chooseRead(list, needs({ maxLagMs: 1000 }), opts())).toEqual({ node: null, reason: 'max-lag', waitingFor: [] });
    // with an LSN too, but none within the bound: still max-lag (waiting would not help)
    expect(chooseRead(list, needs({ maxLagMs: 1000, lsn: 10 }), opts({ replayLsn: replayed({ a: 1, b: 1 }) }))).toEqual({
      node: null,
      reason: 'max-lag',
      waitingFor: [],
    });
  });

  it('picks a replica that replayed the LSN over one that did not', () => {
    for (let turn = 0; turn < 4; turn++) {
      expect(name(chooseRead([r('a'), r('b'), r('c')], needs({ lsn: 100 }), opts({ turn, replayLsn: replayed({ a: 99, b: 100, c: 1 }) })))).toBe('b');
    }
  });

  it('spreads reads by weight (round-robin 3:1 over 40 turns)', () => {
    const list = [r('big', { weight: 3 }), r('small', { weight: 1 }), r('off', { weight: 0 })];
    const got: Record<string, number> = {};
    for (let turn = 0; turn < 40; turn++) {
      const n = name(chooseRead(list, needs(), opts({ turn })))!;
      got[n] = (got[n] ?? 0) + 1;
    }
    expect(got).toEqual({ big: 30, small: 10 });
  });

  it('spreads tagged reads over the tagged replicas only, a weight-0 one included', () => {
    const list = [r('plain', { weight: 10 }), r('t1', { tags: ['analytics'], weight: 0 }), r('t2', { tags: ['analytics'], weight: 1 })];
    const got = new Set<string | null>();
    for (let turn = 0; turn < 10; turn++) got.add(name(chooseRead(list, needs({ tags: ['analytics'] }), opts({ turn }))));
    expect(got).toEqual(new Set(['t1', 't2']));
  });

  it('uses the load-balancing strategy it is given', () => {
    const list = [r('a'), r('b')];
    const connections = new Map([
      ['a', 5],
      ['b', 1],
    ]);
    expect(name(chooseRead(list, needs(), opts({ strategy: 'least-connections', connections })))).toBe('b');
    expect(name(chooseRead(list, needs(), opts({ strategy: 'round-robin', connections, turn: 0 })))).toBe('a');
  });

  it('returns the candidate object itself', () => {
    const b = { ...r('b'), extra: 'x' };
    const choice = chooseRead([b], needs(), opts());
    expect(choice.node).toBe(b);
  });
});
