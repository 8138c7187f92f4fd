// Unit tests for src/workers/frontend-snapshot.ts: a worker's counters as a JSON-safe snapshot, and how the coordinator sums, retires and folds them.
import { describe, it, expect } from 'vitest';
import { ProxyStats } from '../../src/frontend/stats.js';
import { BucketCounts } from '../../src/util/bucket-counts.js';
import type { PoolStatus } from '../../src/backend/pool.js';
import type { ClassifierStats, ClassificationSource } from '../../src/router/classifier.js';
import { foldSnapshots, retiredPart, sumSnapshots, takeSnapshot, type ClassifierCounters, type FrontendSnapshot, type FrontendTotals } from '../../src/workers/frontend-snapshot.js';

const BOUNDS = [0.001, 0.01, 0.1];

const COUNTERS = [
  'clientConnections', 'clientSockets', 'clientConnectionsTotal', 'clientConnectionsRefused', 'authFailures',
  'bytesFromClients', 'bytesFromServers', 'messagesFromClients', 'messagesFromServers', 'cancelRequests', 'cancelsForwarded',
  'readOnlyRetries', 'readsOnPrimary', 'readsRefused',
] as const;

function classifier(stats: Partial<ClassifierStats>, observations: Partial<Record<ClassificationSource, number[]>>): ClassifierCounters {
  const timings = {
    cache: new BucketCounts(BOUNDS),
    lexical: new BucketCounts(BOUNDS),
    parser: new BucketCounts(BOUNDS),
    'size-bound': new BucketCounts(BOUNDS),
  };
  for (const [source, values] of Object.entries(observations)) for (const v of values!) timings[source as ClassificationSource].observe(v);
  return { stats: { lexical: 0, cacheHits: 0, cacheMisses: 0, parsed: 0, parseErrors: 0, tooLong: 0, seconds: 0, ...stats }, timings };
}

const pool = (node: string, user: string, database: string, n: Partial<PoolStatus> = {}): PoolStatus => ({
  node, user, database, active: 0, idle: 0, opening: 0, waiting: 0, max: 10, draining: false, ...n,
});

/** A worker's stats with some map entries (and `more` of them), then every counter set to base + its index. */
function workerStats(base: number, more: (s: ProxyStats) => void = () => {}): ProxyStats {
  const s = new ProxyStats();
  more(s);
  s.routed('primary', 'write');
  s.routed('primary', 'write');
  s.routed('replica', 'read');
  s.readOnPrimary('no-replica');
  s.backendOpened('pg1');
  s.backendOpened('pg2');
  s.backendFailed('pg2');
  COUNTERS.forEach((k, i) => (s[k] = base + i));
  return s;
}

function snapA(): FrontendSnapshot {
  const s = workerStats(100, (x) => {
    x.readOnPrimary('lag');
    x.routed('replica', 'read');
  });
  return takeSnapshot(
    s,
    classifier({ lexical: 5, cacheHits: 7, parsed: 2, seconds: 0.5 }, { lexical: [0.0005, 0.005], parser: [0.05, 1] }),
    [pool('pg1', 'app', 'db', { active: 2, idle: 3, opening: 1, waiting: 0, max: 5 }), pool('pg2', 'app', 'db', { active: 1, max: 5 })],
    4,
    2,
  );
}

function snapB(): FrontendSnapshot {
  const s = workerStats(1000);
  s.backendOpened('pg3');
  s.backendClosed('pg1');
  return takeSnapshot(
    s,
    classifier({ lexical: 1, cacheMisses: 3, parseErrors: 1, tooLong: 2, seconds: 0.25 }, { lexical: [0.0001], cache: [0.002] }),
    [pool('pg1', 'app', 'db', { active: 1, idle: 1, opening: 0, waiting: 4, max: 5, draining: true }), pool('pg1', 'other', 'db', { idle: 2, max: 3 })],
    1,
    3,
  );
}

const entries = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
const sortedPools = (p: PoolStatus[]) => [...p].sort((a, b) => `${a.node}/${a.user}/${a.database}`.localeCompare(`${b.node}/${b.user}/${b.database}`));

/** Everything in the totals as plain data, to compare two sums. */
function plain(t: FrontendTotals) {
  return {
    counters: Object.fromEntries(COUNTERS.map((k) => [k, t.stats[k]])),
    readsOnPrimaryBy: entries(t.stats.readsOnPrimaryBy),
    primary: entries(t.stats.routes.primary),
    replica: entries(t.stats.routes.replica),
    backendConnections: entries(t.stats.backendConnections),
    backendConnectFailures: entries(t.stats.backendConnectFailures),
    classifier: t.classifier.stats,
    timings: Object.fromEntries(Object.entries(t.classifier.timings).map(([k, b]) => [k, { counts: [...b.counts], sum: b.sum, count: b.count, bounds: [...b.bounds] }])),
    pools: sortedPools(t.pools),
    waitTimeouts: t.waitTimeouts,
    pinnedClients: t.pinnedClients,
  };
}

describe('takeSnapshot', () => {
  it('copies every counter, map and histogram of the worker', () => {
    const s = snapA();
    COUNTERS.forEach((k, i) => expect(s.stats.counters[k]).toBe(100 + i));
    expect(Object.fromEntries(s.stats.routes.primary)).toEqual({ write: 2 });
    expect(Object.fromEntries(s.stats.routes.replica)).toEqual({ read: 2 });
    expect(Object.fromEntries(s.stats.readsOnPrimaryBy)).toEqual({ 'no-replica': 1, lag: 1 });
    expect(Object.fromEntries(s.stats.backendConnections)).toEqual({ pg1: 1, pg2: 1 });
    expect(Object.fromEntries(s.stats.backendConnectFailures)).toEqual({ pg2: 1 });
    expect(s.classifier.stats).toMatchObject({ lexical: 5, cacheHits: 7, parsed: 2, seconds: 0.5 });
    expect(s.classifier.timings.lexical).toEqual({ bounds: BOUNDS, counts: [1, 1, 0, 0], sum: 0.0055, count: 2 });
    expect(s.classifier.timings.parser).toEqual({ bounds: BOUNDS, counts: [0, 0, 1, 1], sum: 1.05, count: 2 });
    expect(s.classifier.timings.cache.count).toBe(0);
    expect(s.waitTimeouts).toBe(4);
    expect(s.pinnedClients).toBe(2);
    expect(s.pools).toHaveLength(2);
  });

  it('does not change when the worker counts on afterwards', () => {
    const stats = workerStats(0);
    const c = classifier({}, { lexical: [0.0005] });
    const s = takeSnapshot(stats, c, [], 0, 0);
    const before = JSON.stringify(s);
    stats.clientConnectionsTotal += 10;
    stats.routed('primary', 'write');
    stats.backendOpened('pg9');
    c.timings.lexical.observe(0.5);
    expect(JSON.stringify(s)).toBe(before);
  });

  it('survives JSON.stringify/parse unchanged', () => {
    const s = snapA();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });
});

describe('sumSnapshots', () => {
  it('of nothing is all zero', () => {
    const t = sumSnapshots([]);
    for (const k of COUNTERS) expect(t.stats[k]).toBe(0);
    expect(t.stats.routes.primary.size + t.stats.backendConnections.size).toBe(0);
    expect(t.classifier.stats).toEqual({ lexical: 0, cacheHits: 0, cacheMisses: 0, parsed: 0, parseErrors: 0, tooLong: 0, seconds: 0 });
    expect(t.pools).toEqual([]);
    expect(t.waitTimeouts).toBe(0);
    expect(t.pinnedClients).toBe(0);
  });

  it('adds counters, map entries, classifier stats and histogram buckets', () => {
    const t = sumSnapshots([snapA(), snapB()]);
    COUNTERS.forEach((k, i) => expect(t.stats[k]).toBe(100 + i + 1000 + i));
    expect(t.stats).toBeInstanceOf(ProxyStats);
    expect(entries(t.stats.routes.primary)).toEqual({ write: 4 });
    expect(entries(t.stats.routes.replica)).toEqual({ read: 3 });
    expect(entries(t.stats.readsOnPrimaryBy)).toEqual({ lag: 1, 'no-replica': 2 });
    expect(entries(t.stats.backendConnections)).toEqual({ pg1: 1, pg2: 2, pg3: 1 });
    expect(entries(t.stats.backendConnectFailures)).toEqual({ pg2: 2 });
    expect(t.classifier.stats).toEqual({ lexical: 6, cacheHits: 7, cacheMisses: 3, parsed: 2, parseErrors: 1, tooLong: 2, seconds: 0.75 });
    const lex = t.classifier.timings.lexical;
    expect(lex).toBeInstanceOf(BucketCounts);
    expect([...lex.counts]).toEqual([2, 1, 0, 0]);
    expect(lex.count).toBe(3);
    expect(lex.sum).toBeCloseTo(0.0056, 12);
    expect([...lex.bounds]).toEqual(BOUNDS);
    expect(lex.cumulative().map((c) => c.count)).toEqual([2, 3, 3, 3]);
    expect([...t.classifier.timings.parser.counts]).toEqual([0, 0, 1, 1]);
    expect([...t.classifier.timings.cache.counts]).toEqual([0, 1, 0, 0]);
    expect(t.classifier.timings['size-bound'].count).toBe(0);
    expect(t.waitTimeouts).toBe(5);
    expect(t.pinnedClients).toBe(5);
  });

  it('merges pool rows of the same node, user and database and keeps the others apart', () => {
    const t = sumSnapshots([snapA(), snapB()]);
    expect(sortedPools(t.pools)).toEqual([
      pool('pg1', 'app', 'db', { active: 3, idle: 4, opening: 1, waiting: 4, max: 10, draining: true }),
      pool('pg1', 'other', 'db', { idle: 2, max: 3 }),
      pool('pg2', 'app', 'db', { active: 1, max: 5 }),
    ]);
  });

  it('a row differing only in database is not merged', () => {
    const a = takeSnapshot(new ProxyStats(), classifier({}, {}), [pool('pg1', 'app', 'db1', { active: 1 })], 0, 0);
    const b = takeSnapshot(new ProxyStats(), classifier({}, {}), [pool('pg1', 'app', 'db2', { active: 2 })], 0, 0);
    expect(sortedPools(sumSnapshots([a, b]).pools).map((p) => [p.database, p.active])).toEqual([['db1', 1], ['db2', 2]]);
  });

  it('does not modify the snapshots it sums', () => {
    const a = snapA();
    const b = snapB();
    const before = JSON.stringify([a, b]);
    sumSnapshots([a, b]);
    sumSnapshots([a, b, a]);
    expect(JSON.stringify([a, b])).toBe(before);
  });

  it('gives the same totals for snapshots that crossed IPC as JSON', () => {
    const direct = [snapA(), snapB()];
    const wired = direct.map((s) => JSON.parse(JSON.stringify(s)) as FrontendSnapshot);
    expect(plain(sumSnapshots(wired))).toEqual(plain(sumSnapshots(direct)));
    // and the retired and folded forms too
    const retiredWired = wired.map((s) => JSON.parse(JSON.stringify(retiredPart(s))) as FrontendSnapshot);
    expect(plain(sumSnapshots(retiredWired))).toEqual(plain(sumSnapshots(direct.map(retiredPart))));
    expect(JSON.parse(JSON.stringify(foldSnapshots(wired)))).toEqual(foldSnapshots(direct));
  });
});

describe('retiredPart', () => {
  it('zeroes the gauges and keeps the counters', () => {
    const s = snapA();
    const r = retiredPart(s);
    expect(r.stats.counters.clientConnections).toBe(0);
    expect(r.stats.counters.clientSockets).toBe(0);
    expect(r.stats.backendConnections).toEqual([]);
    expect(r.pools).toEqual([]);
    expect(r.pinnedClients).toBe(0);
    for (const k of COUNTERS) if (k !== 'clientConnections' && k !== 'clientSockets') expect(r.stats.counters[k]).toBe(s.stats.counters[k]);
    expect(r.stats.routes).toEqual(s.stats.routes);
    expect(r.stats.readsOnPrimaryBy).toEqual(s.stats.readsOnPrimaryBy);
    expect(r.stats.backendConnectFailures).toEqual(s.stats.backendConnectFailures);
    expect(r.classifier).toEqual(s.classifier);
    expect(r.waitTimeouts).toBe(s.waitTimeouts);
  });

  it('leaves the snapshot it was given alone', () => {
    const s = snapA();
    const before = JSON.stringify(s);
    retiredPart(s);
    expect(JSON.stringify(s)).toBe(before);
  });

  it('a live worker plus a retired one: gauges from the live one only, counters from both', () => {
    const t = sumSnapshots([snapA(), retiredPart(snapB())]);
    expect(t.stats.clientConnections).toBe(100);
    expect(t.stats.clientSockets).toBe(101);
    expect(t.stats.clientConnectionsTotal).toBe(102 + 1002);
    expect(entries(t.stats.backendConnections)).toEqual({ pg1: 1, pg2: 1 });
    expect(entries(t.stats.backendConnectFailures)).toEqual({ pg2: 2 });
    expect(t.pinnedClients).toBe(2);
    expect(t.waitTimeouts).toBe(5);
    expect(sortedPools(t.pools)).toEqual(sortedPools(snapA().pools));
  });
});

describe('foldSnapshots', () => {
  it('equals the counters of the sum (and none of the gauges)', () => {
    const list = [retiredPart(snapA()), retiredPart(snapB()), snapA()];
    const folded = foldSnapshots(list);
    expect(plain(sumSnapshots([folded]))).toEqual(plain(sumSnapshots(list.map(retiredPart))));
    const sum = sumSnapshots(list);
    for (const k of COUNTERS) expect(folded.stats.counters[k]).toBe(k === 'clientConnections' || k === 'clientSockets' ? 0 : sum.stats[k]);
    expect(folded.stats.backendConnections).toEqual([]);
    expect(folded.pools).toEqual([]);
    expect(folded.pinnedClients).toBe(0);
    expect(folded.waitTimeouts).toBe(9);
    expect(folded.classifier.stats).toEqual(sum.classifier.stats);
    expect(folded.classifier.timings.lexical.counts).toEqual([...sum.classifier.timings.lexical.counts]);
  });

  it('folding in steps gives what folding at once gives', () => {
    const a = retiredPart(snapA());
    const b = retiredPart(snapB());
    const c = retiredPart(snapA());
    expect(plain(sumSnapshots([foldSnapshots([foldSnapshots([a, b]), c])]))).toEqual(plain(sumSnapshots([foldSnapshots([a, b, c])])));
  });
});
