// Routing on the real cluster with no replica configured: reads fall back to the primary, succeed, and the stats and metrics say so.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster, type ClusterInfo } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, metricValue, proxyClient, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const primaryOnly: ClusterInfo = { ...info, nodes: info.nodes.slice(0, 1) };

let proxy: RunningProxy;

const withClient = <T>(fn: (c: pg.Client) => Promise<T>) => using(proxyClient(proxy, primaryOnly), fn);

describe('routing with only the primary configured', () => {
  beforeAll(async () => {
    proxy = await startProxy(primaryOnly, { extra: 'routing: { enabled: true }' });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('knows the primary and no replica', () => {
    expect(proxy.topology.primary?.name).toBe(primary.name);
    expect(proxy.topology.replicas()).toEqual([]);
  });

  it('sends reads to the primary and they succeed, in both protocols and from several sessions', async () => {
    const before = proxy.stats.readsOnPrimary;
    for (let s = 0; s < 3; s++) {
      await withClient(async (c) => {
        const simple = await c.query('SELECT inet_server_port() AS port, 40 + 2 AS answer');
        expect(simple.rows).toEqual([{ port: primary.port, answer: 42 }]);
        const ext = await c.query({ text: 'SELECT inet_server_port() AS port, $1::text AS echo', values: ['x'] });
        expect(ext.rows).toEqual([{ port: primary.port, echo: 'x' }]);
        const named = await c.query({ name: 'routing_fallback_named', text: 'SELECT inet_server_port() AS port, $1::int AS n', values: [s] });
        expect(named.rows).toEqual([{ port: primary.port, n: s }]);
        await c.query('BEGIN READ ONLY');
        expect((await c.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(primary.port);
        await c.query('COMMIT');
      });
    }
    expect(proxy.stats.readsOnPrimary - before).toBeGreaterThanOrEqual(3 * 4);
    expect(proxy.stats.routes.replica.size).toBe(0);
    expect(proxy.stats.routes.primary.get('no-replica')).toBeGreaterThanOrEqual(3 * 4);
    expect(proxy.stats.readOnlyRetries).toBe(0);
  });

  it('still runs writes and session state on the primary', async () => {
    await withClient(async (c) => {
      await c.query("SET statement_timeout = '2s'");
      const r = await c.query('SELECT current_setting($1) AS v, inet_server_port() AS port', ['statement_timeout']);
      expect(r.rows).toEqual([{ v: '2s', port: primary.port }]);
      const t = await c.query('CREATE TEMP TABLE routing_fb (x int); INSERT INTO routing_fb VALUES (1); SELECT count(*)::int AS n FROM routing_fb');
      expect((t as unknown as pg.QueryResult[])[2]!.rows).toEqual([{ n: 1 }]);
    });
  });

  it('shows the fallback in /metrics', async () => {
    await withClient((c) => c.query('SELECT 1'));
    const m = await adminGet(proxy, '/metrics');
    expect(m.status).toBe(200);
    expect(metricValue(m.body, 'pgsplit_reads_on_primary_total')).toBe(proxy.stats.readsOnPrimary);
    expect(metricValue(m.body, 'pgsplit_reads_on_primary_total')).toBeGreaterThan(0);
    expect(metricValue(m.body, 'pgsplit_statements_routed_total', { target: 'primary', reason: 'no-replica' })).toBeGreaterThan(0);
    expect(metricValue(m.body, 'pgsplit_statements_routed_total', { target: 'replica' })).toBeUndefined();
  });
});

describe('routing.primary_reads: never with no replica', () => {
  let strict: RunningProxy;
  const withStrict = <T>(fn: (c: pg.Client) => Promise<T>) => using(proxyClient(strict, primaryOnly), fn);

  beforeAll(async () => {
    strict = await startProxy(primaryOnly, { extra: 'routing: { enabled: true, primary_reads: never }' });
  });

  afterAll(async () => {
    await strict?.close(1_000);
  });

  it('refuses reads with 57P03 in both protocols, runs writes, and the session goes on', async () => {
    await withStrict(async (c) => {
      await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '57P03', message: expect.stringContaining('no replica') });
      await expect(c.query({ text: 'SELECT $1::int AS n', values: [1] })).rejects.toMatchObject({ code: '57P03' });
      await expect(c.query('BEGIN READ ONLY')).rejects.toMatchObject({ code: '57P03' });
      const w = await c.query('SELECT inet_server_port() AS port, txid_current() > 0 AS wrote');
      expect(w.rows).toEqual([{ port: primary.port, wrote: true }]);
      // A read inside an explicit read-write transaction belongs to the primary as a whole, so it is served.
      await c.query('BEGIN');
      expect((await c.query('SELECT 7 AS n')).rows).toEqual([{ n: 7 }]);
      await c.query('COMMIT');
    });
    expect(strict.stats.readsRefused).toBe(3);
    expect(strict.stats.readsOnPrimary).toBe(0);
    const m = await adminGet(strict, '/metrics');
    expect(metricValue(m.body, 'pgsplit_reads_refused_total')).toBe(3);
  });
});

describe('classification time histogram', () => {
  it('counts every classification by source, with cumulative buckets ending at +Inf', async () => {
    const p = await startProxy(primaryOnly, { extra: 'routing: { enabled: true }' });
    try {
      await using(proxyClient(p, primaryOnly), async (c) => {
        for (let i = 0; i < 5; i++) await c.query(`SELECT ${i} AS n FROM pg_class LIMIT 1`);
        await c.query('DELETE FROM routing_histogram_missing').catch(() => {});
      });
      const m = await adminGet(p, '/metrics');
      const count = (source: string) => metricValue(m.body, 'pgsplit_classification_seconds_count', { source });
      // The first SELECT is parsed; the other four share its literal-free shape and come from the cache.
      expect(count('parser')).toBeGreaterThanOrEqual(1);
      expect(count('cache')).toBeGreaterThanOrEqual(4);
      expect(count('lexical')).toBeGreaterThanOrEqual(1);
      for (const source of ['parser', 'cache', 'lexical']) {
        expect(metricValue(m.body, 'pgsplit_classification_seconds_bucket', { source, le: '+Inf' })).toBe(count(source));
        expect(metricValue(m.body, 'pgsplit_classification_seconds_sum', { source })).toBeGreaterThan(0);
      }
      const st = p.classifier.stats;
      expect(count('parser')! + count('cache')! + count('lexical')! + count('size_bound')!).toBe(st.parsed + st.cacheHits + st.lexical + st.tooLong);
    } finally {
      await p.close(1_000);
    }
  });
});
