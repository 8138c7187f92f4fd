// The admin HTTP port through a running proxy: /health, /ready, /status, /metrics (and that they move), 404, no secrets.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { adminAuthHeaders, startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, endQuietly, eventually, metricValue, proxyClient, using } from './helpers.js';

const info = inject('cluster');

let proxy: RunningProxy;

interface StatusNode {
  name: string;
  role: string;
  up: boolean;
  port: number;
}

describe('admin HTTP', () => {
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: 'pool: { server_idle_timeout: 1s }' });
    // Replicas are discovered by the monitor; give it a probe round or two.
    await eventually('the monitor to see every node', async () => {
      const s = JSON.parse((await adminGet(proxy, '/status')).body) as { nodes: StatusNode[] };
      return s.nodes.length === 3 && s.nodes.every((n) => n.up) ? true : undefined;
    });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('GET /health is 200', async () => {
    const r = await adminGet(proxy, '/health');
    expect(r.status).toBe(200);
  });

  it('GET /ready is 200 and names the primary', async () => {
    const r = await adminGet(proxy, '/ready');
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/pg1/);
  });

  it('GET /status lists pg1 as primary and pg2, pg3 as replicas, all up', async () => {
    const r = await adminGet(proxy, '/status');
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/application\/json/);
    const s = JSON.parse(r.body) as { primary: string; nodes: StatusNode[] };
    expect(s.primary).toBe('pg1');
    const byName = Object.fromEntries(s.nodes.map((n) => [n.name, n]));
    expect(Object.keys(byName).sort()).toEqual(['pg1', 'pg2', 'pg3']);
    expect(byName.pg1).toMatchObject({ role: 'primary', up: true, port: info.nodes[0]!.port });
    expect(byName.pg2).toMatchObject({ role: 'replica', up: true, port: info.nodes[1]!.port });
    expect(byName.pg3).toMatchObject({ role: 'replica', up: true, port: info.nodes[2]!.port });
  });

  it('never shows a password in /status', async () => {
    const body = (await adminGet(proxy, '/status')).body;
    for (const secret of [info.app.password, 'md5secret', 'pwsecret']) {
      expect(body).not.toMatch(new RegExp(`["':\\s]${secret}["'\\s,}]`));
      expect(body.includes(`"${secret}"`)).toBe(false);
    }
    expect(body).not.toContain('md5secret');
    expect(body).not.toContain('pwsecret');
    // Without admin credentials there is no user list; with them the users are listed, their passwords masked.
    expect(body).not.toContain('md5user');
    const authed = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`, { headers: adminAuthHeaders() })).text();
    expect(authed).toContain('md5user');
    for (const secret of [info.app.password, 'md5secret', 'pwsecret']) expect(authed.includes(`"${secret}"`)).toBe(false);
  });

  it('GET /metrics has the pgsplit series', async () => {
    const r = await adminGet(proxy, '/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/text\/plain/);
    const m = r.body;
    expect(metricValue(m, 'pgsplit_client_connections')).toBeDefined();
    expect(metricValue(m, 'pgsplit_backend_connections', { node: 'pg1' })).toBeDefined();
    expect(metricValue(m, 'pgsplit_bytes_total')).toBeDefined();
    expect(metricValue(m, 'pgsplit_messages_total')).toBeDefined();
    for (const node of ['pg1', 'pg2', 'pg3']) expect(metricValue(m, 'pgsplit_node_up', { node })).toBe(1);
    expect(metricValue(m, 'pgsplit_node_role', { node: 'pg1', role: 'primary' })).toBe(1);
    expect(metricValue(m, 'pgsplit_node_role', { node: 'pg1', role: 'replica' })).toBe(0);
    expect(metricValue(m, 'pgsplit_node_role', { node: 'pg2', role: 'replica' })).toBe(1);
    expect(metricValue(m, 'pgsplit_node_role', { node: 'pg3', role: 'replica' })).toBe(1);
    expect(metricValue(m, 'pgsplit_node_role', { node: 'pg2', role: 'primary' })).toBe(0);
  });

  it('metrics move with traffic: connections up while open, bytes and messages grow', async () => {
    const before = (await adminGet(proxy, '/metrics')).body;
    const c = await proxyClient(proxy, info);
    try {
      for (let i = 0; i < 20; i++) await c.query({ text: 'SELECT $1::int AS i, repeat($2, 100) AS pad', values: [i, 'x'] });
      const during = (await adminGet(proxy, '/metrics')).body;
      expect(metricValue(during, 'pgsplit_client_connections')).toBe((metricValue(before, 'pgsplit_client_connections') ?? 0) + 1);
      // A connection to the primary (the session's own through the relay; a pooled one with routing, kept idle for pool.server_idle_timeout), plus replica connections for reads.
      expect(metricValue(during, 'pgsplit_backend_connections', { node: 'pg1' })).toBe((metricValue(before, 'pgsplit_backend_connections', { node: 'pg1' }) ?? 0) + 1);
      expect(metricValue(during, 'pgsplit_backend_connections')).toBeGreaterThanOrEqual((metricValue(before, 'pgsplit_backend_connections') ?? 0) + 1);
      for (const direction of ['client_to_server', 'server_to_client']) {
        expect(metricValue(during, 'pgsplit_bytes_total', { direction })!).toBeGreaterThan(metricValue(before, 'pgsplit_bytes_total', { direction }) ?? 0);
        // 20 Parse/Bind/Describe/Execute/Sync rounds at least.
        expect(metricValue(during, 'pgsplit_messages_total', { direction })!).toBeGreaterThanOrEqual((metricValue(before, 'pgsplit_messages_total', { direction }) ?? 0) + 20);
      }
      // The 100-byte pads went server -> client 20 times.
      expect(metricValue(during, 'pgsplit_bytes_total', { direction: 'server_to_client' })! - (metricValue(before, 'pgsplit_bytes_total', { direction: 'server_to_client' }) ?? 0)).toBeGreaterThan(2_000);
    } finally {
      await endQuietly(c);
    }
    await eventually('connection gauges back down', async () => {
      const after = (await adminGet(proxy, '/metrics')).body;
      return metricValue(after, 'pgsplit_client_connections') === metricValue(before, 'pgsplit_client_connections') &&
        metricValue(after, 'pgsplit_backend_connections', { node: 'pg1' }) === metricValue(before, 'pgsplit_backend_connections', { node: 'pg1' })
        ? true
        : undefined;
    });
  });

  it('shows the open session in /status', async () => {
    await using(proxyClient(proxy, info), async () => {
      const s = JSON.parse((await adminGet(proxy, '/status')).body) as { client_connections: number; nodes: (StatusNode & { backend_connections: number })[] };
      expect(s.client_connections).toBe(1);
      expect(s.nodes.find((n) => n.name === 'pg1')!.backend_connections).toBe(1);
    });
  });

  it('answers 404 on an unknown path', async () => {
    const r = await adminGet(proxy, '/no/such/thing');
    expect(r.status).toBe(404);
  });

  it('serves every metric the Grafana dashboard in deploy/ queries', async () => {
    await using(proxyClient(proxy, info), (c) => c.query('SELECT 1'));
    const dashboard = JSON.parse(fs.readFileSync(new URL('../../deploy/grafana/dashboards/pgsplit.json', import.meta.url), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const queried = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/pgsplit_[a-z_]+/g) ?? [])));
    expect(queried.size).toBeGreaterThan(10);
    const body = (await adminGet(proxy, '/metrics')).body;
    // A labelled counter with nothing counted yet has only its HELP/TYPE lines: it is still served.
    const served = new Set([...body.matchAll(/^(?:# TYPE )?(pgsplit_[a-z_]+)/gm)].map((m) => m[1]));
    for (const m of body.matchAll(/^# TYPE (pgsplit_[a-z_]+) histogram/gm)) for (const suffix of ['_bucket', '_sum', '_count']) served.add(m[1] + suffix);
    expect([...queried].filter((name) => !served.has(name))).toEqual([]);
  });
});

