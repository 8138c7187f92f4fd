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
