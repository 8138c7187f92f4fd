// The statement statistics' pure parts: latency buckets and p99, rows from command tags, the bounded table (least used evicted), merging workers' tables, and how a unit's answers become calls.
import { describe, expect, it } from 'vitest';
import { bucketOf, LATENCY_BUCKETS, LatencyHistogram, upperBound } from '../../src/stats/latency-histogram.js';
import { rowsFromCommandTag } from '../../src/stats/command-tag.js';
import { clipText, mergeStatements, StatementStats, type StatementKey } from '../../src/stats/statement-stats.js';
import { StatementRun } from '../../src/stats/statement-run.js';

const tag = (t: string) => Buffer.from(`${t}\0`, 'latin1');
const key = (id: string, text = `SELECT ${id}`): StatementKey => ({ id, text });

describe('LatencyHistogram', () => {
  it('puts a duration in the bucket whose bounds hold it', () => {
    for (const ms of [0.0005, 0.001, 0.0011, 0.3, 1, 2.5, 17, 999, 60_000]) {
      const i = bucketOf(ms);
      expect(ms).toBeLessThanOrEqual(upperBound(i) * (1 + 1e-12));
      if (i > 0) expect(ms).toBeGreaterThan(upperBound(i - 1) * (1 - 1e-12));
    }
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(-5)).toBe(0);
    expect(bucketOf(1e12)).toBe(LATENCY_BUCKETS - 1);
    expect(upperBound(LATENCY_BUCKETS - 1)).toBe(Infinity);
  });

  it('reads p99 from the buckets: the bucket of the 99th percent value, at most 19% above it, within min and max', () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 990; i++) h.record(1);
    for (let i = 0; i < 10; i++) h.record(100);
    // rank 990 of 1000 is still a 1 ms call.
    expect(h.quantile(0.99)).toBeGreaterThanOrEqual(1);
    expect(h.quantile(0.99)).toBeLessThanOrEqual(1.19);
    h.record(100);
    // 1001 calls: rank 991 is a 100 ms one; the bucket's bound is clamped to the largest value seen.
    expect(h.quantile(0.99)).toBe(100);
    expect(h.quantile(0.5)).toBeLessThanOrEqual(1.19);
  });

  it('gives the exact value for a single call and 0 when empty', () => {
    const h = new LatencyHistogram();
    expect(h.quantile(0.99)).toBe(0);
    h.record(3.3);
    expect(h.quantile(0.99)).toBe(3.3);
  });

  it('merges bucket by bucket, from a histogram or its snapshot, into the same p99 as one histogram of every value', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 1; i <= 500; i++) {
      const x = i / 7;
      (i % 3 === 0 ? a : b).record(x);
      all.record(x);
    }
    const viaSnapshot = new LatencyHistogram();
    viaSnapshot.merge(a.snapshot());
    viaSnapshot.merge(JSON.parse(JSON.stringify(b.snapshot())));
    const direct = new LatencyHistogram();
    direct.merge(a);
    direct.merge(b);
    for (const h of [viaSnapshot, direct]) {
      expect(h.count).toBe(500);
      expect(h.quantile(0.99)).toBe(all.quantile(0.99));
      expect([...h.counts]).toEqual([...all.counts]);
      expect(h.minMs).toBe(all.minMs);
      expect(h.maxMs).toBe(all.maxMs);
      expect(h.sumMs).toBeCloseTo(all.sumMs, 9);
    }
  });
});

describe('rowsFromCommandTag', () => {
  it.each([
    ['SELECT 5', 5],
    ['SELECT 0', 0],
    ['INSERT 0 12', 12],
    ['UPDATE 3', 3],
    ['DELETE 1000000', 1_000_000],
    ['MERGE 2', 2],
    ['FETCH 10', 10],
    ['MOVE 4', 4],
    ['COPY 100', 100],
    ['BEGIN', 0],
    ['CREATE TABLE', 0],
    ['DROP TABLE', 0],
    ['SET', 0],
    ['ALTER TABLE 5', 0],
    ['SELECTX 5', 0],
    ['', 0],
  ])('%s -> %d', (t, rows) => {
    expect(rowsFromCommandTag(tag(t))).toBe(rows);
  });

  it('reads a tag without its NUL too', () => {
    expect(rowsFromCommandTag(Buffer.from('UPDATE 7'))).toBe(7);
  });
});

describe('StatementStats', () => {
  it('counts calls, errors, rows, time and routes per statement, most total time first', () => {
    const t = new StatementStats(10);
    t.record(key('a'), 'replica', 'select', 2, 1, false);
    t.record(key('a'), 'replica', 'select', 4, 1, false);
    t.record(key('a'), 'primary', 'read-your-writes', 6, 1, false);
    t.record(key('b'), 'primary', 'write', 30, 0, true);
    const [b, a] = t.rows();
    expect(b).toMatchObject({ fingerprint: 'b', calls: 1, errors: 1, rows: 0, total_ms: 30, primary_calls: 1, replica_calls: 0 });
    expect(a).toMatchObject({ fingerprint: 'a', query: 'SELECT a', calls: 3, errors: 0, rows: 3, total_ms: 12, mean_ms: 4, min_ms: 2, max_ms: 6, primary_calls: 1, replica_calls: 2 });
    expect(a.routes).toEqual([
      { target: 'replica', reason: 'select', calls: 2 },
      { target: 'primary', reason: 'read-your-writes', calls: 1 },
    ]);
    expect(a.p99_ms).toBe(6);
    expect(t.rows(1).map((r) => r.fingerprint)).toEqual(['b']);
  });

  it('keeps at most max statements: the least used is evicted, the oldest first among equals', () => {
    const t = new StatementStats(3);
    for (let i = 0; i < 5; i++) t.record(key('a'), 'replica', 'select', 1, 0, false);
    t.record(key('rare'), 'replica', 'select', 1, 0, false);
    for (let i = 0; i < 5; i++) t.record(key('b'), 'primary', 'write', 1, 0, false);
    t.record(key('new'), 'replica', 'select', 1, 0, false);
    expect(t.size).toBe(3);
    expect(t.rows().map((r) => r.fingerprint).sort()).toEqual(['a', 'b', 'new']);
    expect(t.evictions).toBe(1);
    // Equally used: the one that came first goes.
    t.record(key('newer'), 'replica', 'select', 1, 0, false);
    expect(t.rows().map((r) => r.fingerprint).sort()).toEqual(['a', 'b', 'newer']);
  });

  it('drops a share of a large table at once, so a stream of new statements does not sort it every time', () => {
    const t = new StatementStats(100);
    for (let i = 0; i < 100; i++) t.record(key(`s${i}`), 'replica', 'select', 1, 0, false);
    t.record(key('one-more'), 'replica', 'select', 1, 0, false);
    expect(t.evictions).toBe(5);
    expect(t.size).toBe(96);
    for (let i = 0; i < 4; i++) t.record(key(`x${i}`), 'replica', 'select', 1, 0, false);
    expect(t.evictions).toBe(5);
  });

  it('applies a lowered max at the next statement that needs room', () => {
    const t = new StatementStats(10);
    for (let i = 0; i < 10; i++) t.record(key(`s${i}`), 'replica', 'select', 1, 0, false);
    t.max = 4;
    t.record(key('s1'), 'replica', 'select', 1, 0, false);
    expect(t.size).toBe(10);
    t.record(key('new'), 'replica', 'select', 1, 0, false);
    expect(t.size).toBeLessThanOrEqual(4);
    expect(t.rows().some((r) => r.fingerprint === 's1')).toBe(true);
  });

  it('forgets everything on reset', () => {
    const t = new StatementStats(10);
    t.record(key('a'), 'replica', 'select', 1, 0, false);
    t.reset();
    expect(t.rows()).toEqual([]);
    expect(t.size).toBe(0);
  });

  it('merges workers\' tables: counts, routes and latency buckets add up, the p99 comes from the sum', () => {
    const w1 = new StatementStats(10);
    const w2 = new StatementStats(10);
    const one = new StatementStats(10);
    for (let i = 0; i < 200; i++) {
      const ms = i % 50 === 0 ? 80 : 1 + (i % 5) / 10;
      const w = i % 2 === 0 ? w1 : w2;
      w.record(key('q'), i % 3 === 0 ? 'primary' : 'replica', i % 3 === 0 ? 'no-replica' : 'select', ms, 2, i === 7);
      one.record(key('q'), i % 3 === 0 ? 'primary' : 'replica', i % 3 === 0 ? 'no-replica' : 'select', ms, 2, i === 7);
    }
    w2.record(key('only-w2', 'UPDATE t SET x = ?'), 'primary', 'write', 5, 1, false);
    // As the coordinator gets them: JSON over IPC.
    const merged = mergeStatements([JSON.parse(JSON.stringify(w1.snapshot())), JSON.parse(JSON.stringify(w2.snapshot()))]);
    const q = merged.find((r) => r.fingerprint === 'q')!;
    expect(q).toEqual(one.rows()[0]);
    expect(q.calls).toBe(200);
    expect(q.errors).toBe(1);
    expect(q.rows).toBe(400);
    expect(merged.find((r) => r.fingerprint === 'only-w2')).toMatchObject({ query: 'UPDATE t SET x = ?', calls: 1, rows: 1 });
    expect(mergeStatements([w1.snapshot(), w2.snapshot()], 1).map((r) => r.fingerprint)).toEqual(['q']);
    expect(mergeStatements([])).toEqual([]);
  });
});

describe('clipText', () => {
  it('keeps at most 1 KB of UTF-8, never half a character', () => {
    expect(clipText('short')).toBe('short');
    const long = 'é'.repeat(700); // 1400 bytes
    const clipped = clipText(long);
    expect(Buffer.byteLength(clipped)).toBeLessThanOrEqual(1024);
    expect(clipped).toBe('é'.repeat(512));
    expect(clipText('a' + 'é'.repeat(600))).toBe('a' + 'é'.repeat(511));
  });
});

describe('StatementRun', () => {
  const run = (t: StatementStats, keys: (StatementKey | null)[], o: { whole?: boolean; sync?: boolean; retryable?: boolean } = {}) =>
    new StatementRun(t, keys, o.whole ?? false, o.sync ?? true, o.retryable ?? false, 'replica', 'select', 100);

  it('a simple Query is one call from its send to ReadyForQuery, with the rows of every CommandComplete', () => {
    const t = new StatementStats(10);
    const r = run(t, [key('multi')], { whole: true });
    r.completed(2, 101);
    r.completed(3, 105);
    expect(r.spent).toBe(false);
    r.end(110, false);
    expect(t.rows()[0]).toMatchObject({ calls: 1, rows: 5, total_ms: 10, errors: 0 });
  });

  it('each Execute of a batch is a call of its statement, timed from the previous one\'s end', () => {
    const t = new StatementStats(10);
    const r = run(t, [key('a'), key('b'), key('a')]);
    r.completed(1, 103);
    r.completed(4, 110);
    r.completed(1, 111);
    expect(r.spent).toBe(true);
    r.completed(9, 120); // more answers than Executes: not anyone's
    r.end(112, false);
    const rows = Object.fromEntries(t.rows().map((x) => [x.fingerprint, x]));
    expect(rows.a).toMatchObject({ calls: 2, rows: 2, total_ms: 4, min_ms: 1, max_ms: 3 });
    expect(rows.b).toMatchObject({ calls: 1, rows: 4, total_ms: 7 });
  });

  it('an error is the running statement\'s; the rest of the batch was skipped and is not counted', () => {
    const t = new StatementStats(10);
    const r = run(t, [key('a'), key('b'), key('c')]);
    r.completed(1, 101);
    r.failed(104);
    r.completed(1, 105); // nothing after an error in the batch counts
    r.end(106, false);
    const rows = Object.fromEntries(t.rows().map((x) => [x.fingerprint, x]));
    expect(rows.a).toMatchObject({ calls: 1, errors: 0 });
    expect(rows.b).toMatchObject({ calls: 1, errors: 1, total_ms: 3 });
    expect(rows.c).toBeUndefined();
  });

  it('an error after the last Execute (at Sync) is the last statement\'s', () => {
    const t = new StatementStats(10);
    const r = run(t, [key('a')]);
    r.completed(1, 102);
    r.failed(103);
    r.end(103, false);
    expect(t.rows()[0]).toMatchObject({ calls: 1, errors: 1, total_ms: 2 });
  });

  it('a failed Query counts one call with an error', () => {
    const t = new StatementStats(10);
    const r = run(t, [key('q')], { whole: true });
    r.failed(102);
    expect(r.spent).toBe(true);
    r.end(103, false);
    expect(t.rows()[0]).toMatchObject({ calls: 1, errors: 1, total_ms: 3 });
  });

  it('records nothing for a run to be retried, for statements it cannot name, or for a unit without any', () => {
    const t = new StatementStats(10);
    const retried = run(t, [key('a')], { retryable: true });
    retried.failed(101);
    retried.end(102, true);
    const unnamed = run(t, [null, key('b')]);
    unnamed.completed(0, 101);
    unnamed.completed(3, 102);
    unnamed.end(102, false);
    const empty = run(t, [], { sync: false });
    expect(empty.spent).toBe(true);
    empty.failed(101);
    empty.end(101, false);
    expect(t.rows().map((r) => r.fingerprint)).toEqual(['b']);
  });
});
