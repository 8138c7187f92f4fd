// Unit tests for src/workers/shares.ts: how many workers run (resolveWorkers) and each one's share of the instance-wide bounds (shareOf, workerConfig).
import { describe, it, expect } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { resolveWorkers, shareOf, workerConfig } from '../../src/workers/shares.js';

const MIN = `
users: [{ name: app, password: s3cret }]
nodes: [{ name: pg1, host: db1 }]
`;

/** MIN plus extra top-level YAML. */
const cfg = (extra = ''): Config => parseConfig(MIN + extra, {});

describe('resolveWorkers', () => {
  it('workers: auto is one per core when no bound is smaller', () => {
    const c = cfg('workers: auto\n');
    expect(c.workers).toBe('auto');
    expect(resolveWorkers(c, 8)).toEqual({ count: 8, reducedBy: null });
    expect(resolveWorkers(c, 3)).toEqual({ count: 3, reducedBy: null });
  });

  it('workers: auto with no core reported still runs one worker', () => {
    expect(resolveWorkers(cfg('workers: auto\n'), 0)).toEqual({ count: 1, reducedBy: null });
  });

  it('a number is used as given, whatever the core count', () => {
    const c = cfg('workers: 4\n');
    expect(resolveWorkers(c, 1)).toEqual({ count: 4, reducedBy: null });
    expect(resolveWorkers(c, 64)).toEqual({ count: 4, reducedBy: null });
  });

  it('the default (1) stays 1', () => {
    expect(resolveWorkers(cfg(), 16)).toEqual({ count: 1, reducedBy: null });
  });

  it('is reduced to pool.size when that is smaller, and says so', () => {
    expect(resolveWorkers(cfg('workers: 8\npool: { size: 3 }\n'), 2)).toEqual({ count: 3, reducedBy: 'pool.size' });
    expect(resolveWorkers(cfg('workers: auto\npool: { size: 2 }\n'), 16)).toEqual({ count: 2, reducedBy: 'pool.size' });
  });

  it('is not reduced by listen.max_client_connections: the coordinator counts clients for the whole instance', () => {
    expect(resolveWorkers(cfg('workers: 8\nlisten: { max_client_connections: 5 }\n'), 2)).toEqual({ count: 8, reducedBy: null });
    expect(resolveWorkers(cfg('workers: auto\nlisten: { max_client_connections: 1 }\n'), 4)).toEqual({ count: 4, reducedBy: null });
  });

  it('a pool.size equal to the count does not reduce it', () => {
    expect(resolveWorkers(cfg('workers: 4\npool: { size: 4 }\n'), 1)).toEqual({ count: 4, reducedBy: null });
  });

  it('every worker gets at least one pool connection after resolving', () => {
    for (const [size, wanted] of [[1, 8], [3, 8], [20, 64], [7, 7]]) {
      const c = cfg(`workers: ${wanted}\npool: { size: ${size} }\n`);
      const { count } = resolveWorkers(c, 1);
      for (let i = 0; i < count; i++) expect(shareOf(size, i, count)).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('shareOf', () => {
  it('shares add up to the total and differ by at most 1', () => {
    for (let total = 0; total <= 130; total++) {
      for (let count = 1; count <= 17; count++) {
        const shares = Array.from({ length: count }, (_, i) => shareOf(total, i, count));
        expect(shares.reduce((a, b) => a + b, 0)).toBe(total);
        expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
        for (const s of shares) expect(Number.isInteger(s) && s >= 0).toBe(true);
      }
    }
  });

  it('large totals split the same way', () => {
    for (const [total, count] of [[Number.MAX_SAFE_INTEGER, 64], [100_000, 7], [1_000_000_007, 13]]) {
      const shares = Array.from({ length: count }, (_, i) => shareOf(total, i, count));
      expect(shares.reduce((a, b) => a + b, 0)).toBe(total);
      expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
    }
  });

  it('the first workers take the remainder', () => {
    expect([0, 1, 2, 3].map((i) => shareOf(10, i, 4))).toEqual([3, 3, 2, 2]);
    expect([0, 1, 2].map((i) => shareOf(2, i, 3))).toEqual([1, 1, 0]);
    expect([0, 1, 2].map((i) => shareOf(9, i, 3))).toEqual([3, 3, 3]);
  });

  it('one worker gets everything', () => {
    expect(shareOf(20, 0, 1)).toBe(20);
  });
});

describe('workerConfig', () => {
  it('count 1 returns the config unchanged (the same object)', () => {
    const c = cfg('pool: { size: 7, min_idle: 3 }\nlisten: { max_client_connections: 11 }\n');
    expect(workerConfig(c, 0, 1)).toBe(c);
  });

  it.each([2, 3, 4, 7])('with %i workers, each pool bound is split into shares that sum to the instance value; max_client_connections is not', (count) => {
    const c = cfg('workers: 8\npool: { size: 23, min_idle: 5 }\nlisten: { max_client_connections: 1001 }\n');
    const before = structuredClone(c);
    const ws = Array.from({ length: count }, (_, i) => workerConfig(c, i, count));
    const sum = (f: (w: Config) => number) => ws.reduce((a, w) => a + f(w), 0);
    expect(sum((w) => w.pool.size)).toBe(23);
    expect(sum((w) => w.pool.min_idle)).toBe(5);
    ws.forEach((w, i) => {
      expect(w.pool.size).toBe(shareOf(23, i, count));
      expect(w.pool.min_idle).toBe(shareOf(5, i, count));
      expect(w.listen.max_client_connections).toBe(1001);
      // a worker never keeps more idle connections than its pool may hold
      expect(w.pool.min_idle).toBeLessThanOrEqual(w.pool.size);
    });
    // the instance config is not modified
    expect(c).toEqual(before);
  });

  it('leaves every other key untouched', () => {
    const c = cfg('workers: 4\npool: { size: 10, min_idle: 2, mode: session, max_client_wait: 5s }\nlisten: { host: 0.0.0.0, port: 7000, max_client_connections: 50 }\n');
    const w = workerConfig(c, 1, 4);
    const strip = (x: Config) => {
      const { pool, ...rest } = x;
      const { size: _s, min_idle: _m, ...poolRest } = pool;
      return { rest, poolRest };
    };
    expect(strip(w)).toEqual(strip(c));
    expect(w.listen).toMatchObject({ host: '0.0.0.0', port: 7000 });
    expect(w.pool).toMatchObject({ mode: 'session', max_client_wait: 5000 });
    expect(w.users).toBe(c.users);
    expect(w.nodes).toBe(c.nodes);
    expect(w.workers).toBe(4);
    // and the split keys did change
    expect([w.pool.size, w.pool.min_idle]).toEqual([3, 1]);
    expect(w.listen.max_client_connections).toBe(50);
  });
});
