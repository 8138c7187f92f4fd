// The status page's history (src/compose/history.ts): the ring's bound and order, rates from counters, nodes coming and going, and samples read from a /status document.
import { describe, expect, it } from 'vitest';
import { History, nodeSamples, routedCounters, type NodeSample } from '../../src/compose/history.js';

const node = (name: string, o: Partial<NodeSample> = {}): NodeSample => ({ name, role: 'replica', up: true, banned: false, lag_bytes: 0, lag_seconds: 0, ...o });

describe('History', () => {
  it('keeps at most capacity samples, oldest first, dropping the oldest', () => {
    const h = new History(3, 2000);
    for (let i = 1; i <= 5; i++) h.add(i * 2000, 'pg1', { reads: 0, writes: 0 }, [node('pg2', { lag_bytes: i })]);
    const v = h.view();
    expect(h.length).toBe(3);
    expect(v.at).toEqual([6000, 8000, 10000]);
    expect(v.nodes).toEqual([{ name: 'pg2', role: ['replica', 'replica', 'replica'], up: [true, true, true], banned: [false, false, false], lag_bytes: [3, 4, 5], lag_seconds: [0, 0, 0] }]);
    expect(v).toMatchObject({ interval_ms: 2000, capacity: 3, primary: ['pg1', 'pg1', 'pg1'] });
  });

  it('is empty before the first sample, and columns stay as long as `at` while it fills', () => {
    const h = new History(4, 1000);
    expect(h.view()).toEqual({ interval_ms: 1000, capacity: 4, at: [], primary: [], reads_per_second: [], writes_per_second: [], nodes: [] });
    h.add(1000, null, { reads: 0, writes: 0 }, [node('pg1', { role: 'primary', lag_bytes: null })]);
    h.add(2000, 'pg1', { reads: 0, writes: 0 }, [node('pg1', { role: 'primary', lag_bytes: null })]);
    const v = h.view();
    expect(v.at).toHaveLength(2);
    for (const col of [v.primary, v.reads_per_second, v.writes_per_second, v.nodes[0]!.lag_bytes, v.nodes[0]!.up]) expect(col).toHaveLength(2);
    expect(v.primary).toEqual([null, 'pg1']);
  });

  it('turns counters into per-second rates over the time since the previous sample', () => {
    const h = new History(10, 2000);
    h.add(10_000, 'pg1', { reads: 100, writes: 10 }, []);
    h.add(12_000, 'pg1', { reads: 300, writes: 11 }, []);
    h.add(16_000, 'pg1', { reads: 300, writes: 31 }, []);
    const v = h.view();
    // The first sample has nothing to compare with.
    expect(v.reads_per_second).toEqual([null, 100, 0]);
    expect(v.writes_per_second).toEqual([null, 0.5, 5]);
  });

  it('gives no rate after counters went down or when the clock did not move forward, then rates again from there', () => {
    const h = new History(10, 1000);
    h.add(1000, 'pg1', { reads: 50, writes: 50 }, []);
    h.add(2000, 'pg1', { reads: 10, writes: 60 }, []); // reads reset
    h.add(2000, 'pg1', { reads: 20, writes: 70 }, []); // same instant
    h.add(1500, 'pg1', { reads: 30, writes: 80 }, []); // clock stepped back
    h.add(2500, 'pg1', { reads: 40, writes: 80 }, []);
    expect(h.view().reads_per_second).toEqual([null, null, null, null, 10]);
    expect(h.view().writes_per_second).toEqual([null, null, null, null, 0]);
  });

  it('rounds rates to two decimals', () => {
    const h = new History(2, 3000);
    h.add(0, 'pg1', { reads: 0, writes: 0 }, []);
    h.add(3000, 'pg1', { reads: 1, writes: 2 }, []);
    expect(h.view().reads_per_second[1]).toBe(0.33);
    expect(h.view().writes_per_second[1]).toBe(0.67);
  });

  it('lists every node seen, in order of first appearance, with null where a sample lacks it', () => {
    const h = new History(5, 1000);
    h.add(1000, 'pg1', { reads: 0, writes: 0 }, [node('pg1', { role: 'primary' }), node('pg2')]);
    h.add(2000, 'pg1', { reads: 0, writes: 0 }, [node('pg1', { role: 'primary' }), node('pg2', { banned: true, lag_bytes: 9 }), node('pg4')]);
    h.add(3000, 'pg2', { reads: 0, writes: 0 }, [node('pg2', { role: 'primary', lag_bytes: null }), node('pg4', { up: false })]);
    const v = h.view();
    expect(v.nodes.map((n) => n.name)).toEqual(['pg1', 'pg2', 'pg4']);
    const [pg1, pg2, pg4] = v.nodes;
    expect(pg1!.role).toEqual(['primary', 'primary', null]);
    expect(pg1!.up).toEqual([true, true, null]);
    expect(pg2!.role).toEqual(['replica', 'replica', 'primary']);
    expect(pg2!.banned).toEqual([false, true, false]);
    expect(pg2!.lag_bytes).toEqual([0, 9, null]);
    expect(pg4!.up).toEqual([null, true, false]);
    expect(v.primary).toEqual(['pg1', 'pg1', 'pg2']);
  });

  it('copies what it is given: changing the caller\'s objects later changes no sample', () => {
    const h = new History(2, 1000);
    const n = node('pg2', { lag_bytes: 1 });
    const counters = { reads: 5, writes: 5 };
    h.add(1000, 'pg1', counters, [n]);
    n.lag_bytes = 999;
    counters.reads = 0; // would read as a reset if the counters were kept by reference
    h.add(2000, 'pg1', { reads: 7, writes: 5 }, [node('pg2', { lag_bytes: 2 })]);
    expect(h.view().nodes[0]!.lag_bytes).toEqual([1, 2]);
    expect(h.view().reads_per_second).toEqual([null, 2]);
  });

  it('treats a node named __proto__ as any other name', () => {
    const h = new History(2, 1000);
    h.add(1000, '__proto__', { reads: 0, writes: 0 }, [node('__proto__', { role: 'primary' }), node('constructor')]);
    expect(h.view().nodes.map((x) => [x.name, x.role[0]])).toEqual([['__proto__', 'primary'], ['constructor', 'replica']]);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new History(0, 1000)).toThrow(RangeError);
    expect(() => new History(2.5, 1000)).toThrow(/positive integer/);
  });
});

describe('routedCounters', () => {
  it('counts replica units and reads that fell back to the primary as reads, the rest of the primary\'s units as writes', () => {
    const routes = {
      primary: new Map([['write', 40], ['transaction', 15], ['select', 5]]),
      replica: new Map([['select', 100], ['batch-read', 3]]),
    };
    expect(routedCounters(routes, 5)).toEqual({ reads: 108, writes: 55 });
  });

  it('is zero with nothing routed (routing off: the plain relay routes nothing)', () => {
    expect(routedCounters({ primary: new Map(), replica: new Map() }, 0)).toEqual({ reads: 0, writes: 0 });
  });
});

describe('nodeSamples', () => {
  it('reads the primary and each node\'s role, up, banned and lag from a /status document', () => {
    const doc = {
      primary: 'pg1',
      nodes: [
        { name: 'pg1', role: 'primary', up: true, banned: false, lag_bytes: null, lag_seconds: null, host: 'h', last_error: null },
        { name: 'pg2', role: 'replica', up: false, banned: true, ban_reason: 'probe-failed', lag_bytes: 4096, lag_seconds: 1.5 },
      ],
    };
    expect(nodeSamples(doc)).toEqual({
      primary: 'pg1',
      nodes: [
        { name: 'pg1', role: 'primary', up: true, banned: false, lag_bytes: null, lag_seconds: null },
        { name: 'pg2', role: 'replica', up: false, banned: true, lag_bytes: 4096, lag_seconds: 1.5 },
      ],
    });
  });

  it('makes the safe reading of anything missing or malformed: no primary, no nodes, down, not banned, no lag', () => {
    expect(nodeSamples(undefined)).toEqual({ primary: null, nodes: [] });
    expect(nodeSamples({ primary: 3, nodes: 'x' })).toEqual({ primary: null, nodes: [] });
    expect(nodeSamples({ nodes: [null, 7, { role: 'replica' }, { name: 'pg2', up: 'yes', banned: 1, lag_bytes: NaN, lag_seconds: '2' }] })).toEqual({
      primary: null,
      nodes: [{ name: 'pg2', role: 'unknown', up: false, banned: false, lag_bytes: null, lag_seconds: null }],
    });
  });
});
