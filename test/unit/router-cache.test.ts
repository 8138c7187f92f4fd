// The LRU cache of decisions and the Classifier around it: cache use, counters, timing, catalog refresh.
import { beforeAll, describe, expect, it } from 'vitest';
import { LruCache } from '../../src/router/cache.js';
import { Classifier } from '../../src/router/classifier.js';
import { FunctionCatalog } from '../../src/router/functions.js';
import { initParser } from '../../src/router/parser.js';

beforeAll(async () => {
  await initParser();
});

describe('LruCache', () => {
  it('counts hits and misses', () => {
    const c = new LruCache<number>(2);
    expect(c.get('a')).toBeUndefined();
    c.set('a', 1);
    expect(c.get('a')).toBe(1);
    expect([c.hits, c.misses]).toEqual([1, 1]);
  });

  it('evicts the least recently used entry', () => {
    const c = new LruCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    c.get('a'); // a is now the most recent
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
    expect(c.size).toBe(2);
    expect(c.evictions).toBe(1);
  });

  it('replacing a key does not evict', () => {
    const c = new LruCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    c.set('a', 10);
    expect(c.size).toBe(2);
    expect(c.get('b')).toBe(2);
    expect(c.get('a')).toBe(10);
  });

  it('capacity 0 keeps nothing', () => {
    const c = new LruCache<number>(0);
    c.set('a', 1);
    expect(c.get('a')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('rejects a bad capacity', () => {
    expect(() => new LruCache(-1)).toThrow(RangeError);
    expect(() => new LruCache(1.5)).toThrow(RangeError);
  });

  it('clear empties it', () => {
    const c = new LruCache<number>(3);
    c.set('a', 1);
    c.clear();
    expect(c.size).toBe(0);
  });
});

describe('Classifier', () => {
  it('parses once, then answers from the cache with the same frozen object', () => {
    const k = new Classifier();
    const first = k.classify('SELECT * FROM t WHERE id = $1');
    const second = k.classify('SELECT * FROM t WHERE id = $1');
    expect(second).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.statements[0])).toBe(true);
    expect(k.stats).toMatchObject({ parsed: 1, cacheHits: 1, cacheMisses: 1, lexical: 0 });
  });

  it('answers obvious writes lexically, caching DML under its literal-free shape only', () => {
    const k = new Classifier();
    expect(k.classify('INSERT INTO t VALUES (1)')).toMatchObject({ target: 'primary', via: 'lexical' });
    expect(k.stats).toMatchObject({ lexical: 1, parsed: 0, cacheHits: 0, cacheMisses: 0 });
    expect(k.cacheSize).toBe(1);
    // Another inlined value: the same shape, answered from the cache.
    expect(k.classify("INSERT INTO t VALUES ('temp')")).toMatchObject({ target: 'primary', reason: 'write' });
    expect(k.stats).toMatchObject({ lexical: 1, cacheHits: 1 });
    // DO is not: its body is a literal, and one body may LISTEN where another does not.
    k.classify("DO $$ BEGIN PERFORM 1; END $$");
    expect(k.cacheSize).toBe(1);
    const listening = k.classify("DO $$ BEGIN LISTEN chan; END $$");
    expect(listening.statements.some((st) => st.pin === 'listen')).toBe(true);
  });

  it('counts parse errors and too-long statements', () => {
    const k = new Classifier({ maxParseLength: 32 });
    k.classify('SELEC 1');
    k.classify('SELEC 1');
    k.classify(`SELECT '${'x'.repeat(40)}'`);
    expect(k.stats).toMatchObject({ parsed: 1, parseErrors: 1, cacheHits: 1, tooLong: 1 });
  });

  it('respects the cache size', () => {
    const k = new Classifier({ cacheSize: 2 });
    for (const sql of ['SELECT a FROM t1', 'SELECT b FROM t2', 'SELECT c FROM t3', 'SELECT a FROM t1']) k.classify(sql);
    expect(k.cacheSize).toBe(2);
    expect(k.stats.parsed).toBe(4);
  });

  it('measures the time spent, and reports it per call', () => {
    let t = 0;
    const seen: [number, string][] = [];
    const k = new Classifier({ now: () => (t += 2), observe: (seconds, source) => seen.push([seconds, source]) });
    k.classify('SELECT 1');
    k.classify('SELECT 1');
    k.classify('DELETE FROM t');
    expect(seen).toEqual([
      [0.002, 'parser'],
      [0.002, 'cache'],
      [0.002, 'lexical'],
    ]);
    expect(k.lastSeconds).toBe(0.002);
    expect(k.stats.seconds).toBeCloseTo(0.006);
  });

  it('a new catalog clears decisions that depended on the old one', () => {
    const k = new Classifier();
    expect(k.classify('SELECT f()').target).toBe('replica');
    k.setCatalog(k.catalog.withVolatile(['public.f']));
    expect(k.cacheSize).toBe(0);
    expect(k.classify('SELECT f()')).toMatchObject({ target: 'primary', reason: 'volatile-function:public.f' });
  });

  it('new limits (a reload) drop every cached decision: a read cached under a larger bound is too long now', () => {
    const k = new Classifier({ maxParseLength: 1024, cacheSize: 10 });
    const sql = `SELECT '${'x'.repeat(100)}' AS pad`;
    expect(k.classify(sql).target).toBe('replica');
    expect(k.classify(sql).target).toBe('replica');
    k.setLimits({ maxParseLength: 64, cacheSize: 0 });
    expect(k.classify(sql)).toMatchObject({ target: 'primary', reason: 'too-long' });
    k.classify('SELECT a FROM t1');
    k.classify('SELECT a FROM t1');
    expect(k.cacheSize).toBe(0);
    // Counters are cumulative for /metrics: they carry on across the new cache.
    expect(k.stats).toMatchObject({ cacheHits: 1, parsed: 3, tooLong: 1 });
  });

  it('builds from the routing config', () => {
    const k = Classifier.fromConfig({ read_only_functions: ['f'], write_functions: ['g'], max_parse_length: 1024, parse_cache_size: 5 }, ['public.f', 'public.h']);
    expect(k.classify('SELECT f()').target).toBe('replica');
    expect(k.classify('SELECT g()').target).toBe('primary');
    expect(k.classify('SELECT h()').target).toBe('primary');
    expect(k.classify(`SELECT '${'x'.repeat(2000)}'`).reason).toBe('too-long');
  });

  it('a catalog passed in is used as it is', () => {
    const k = new Classifier({ catalog: new FunctionCatalog({ write: ['audit'] }) });
    expect(k.classify('SELECT audit()').reason).toBe('write-function:audit');
  });
});

describe('Classifier cache by literal-free shape', () => {
  it('parses once for texts that differ only in constants, as pgbench -S sends them', () => {
    const k = new Classifier({});
    for (let i = 0; i < 50; i++) expect(k.classify(`SELECT abalance FROM pgbench_accounts WHERE aid = ${i * 37};`).target).toBe('replica');
    expect(k.stats.parsed).toBe(1);
    expect(k.stats.cacheHits).toBe(49);
  });

  it('keeps decisions that depend on a value apart (SET, set_config, advisory locks)', () => {
    const k = new Classifier({});
    const a = k.classify("SET search_path TO 'a'");
    const b = k.classify("SET search_path TO 'b'");
    expect(a.statements[0].setting?.value).toBe('a');
    expect(b.statements[0].setting?.value).toBe('b');
    expect(k.classify("SELECT set_config('x.y', '1', false)").statements[0].setting?.value).toBe('1');
    expect(k.classify("SELECT set_config('x.y', '2', false)").statements[0].setting?.value).toBe('2');
    expect(k.classify('SELECT pg_advisory_lock(1)').statements[0].pin).toBe('advisory-lock');
    expect(k.classify('SELECT pg_advisory_lock(2)').statements[0].pin).toBe('advisory-lock');
  });

  it('does not let a literal hide a write: strings with semicolons and quotes stay one literal', () => {
    const k = new Classifier({});
    expect(k.classify("SELECT 'x; DELETE FROM t' AS s").target).toBe('replica');
    expect(k.classify("SELECT 'it''s; ok' AS s").target).toBe('replica');
    expect(k.classify("SELECT 'a' AS s; DELETE FROM t").target).toBe('primary');
  });
});
