// The admin port locked down, through a running proxy: admin.auth on POST (401/403), JSON-only POSTs (415), Origin checks, protect_reads, masked /status, metrics on their own port, bounded requests, and a demote_command over failover.hook_timeout aborting a switchover.
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AdminServer } from '../../src/admin/server.js';
import { Topology } from '../../src/topology/topology.js';
import { TEST_ADMIN_TOKEN, startProxy, type RunningProxy } from '../harness/proxy.js';
import { proxyClient, using } from './helpers.js';

const info = inject('cluster');

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One HTTP request with exactly these headers (fetch would add or refuse some, e.g. Origin). */
function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: body === undefined ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers }, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer`)));
    req.end(body);
  });
}

const bearer = (token = TEST_ADMIN_TOKEN) => ({ authorization: `Bearer ${token}` });
const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
const JSON_TYPE = { 'content-type': 'application/json' };
const switchoverBody = JSON.stringify({ to: 'pg2' });

async function statusOf(p: RunningProxy, headers: Record<string, string> = {}): Promise<Record<string, any>> {
  const r = await request(p.adminPort!, 'GET', '/status', headers);
  expect(r.status, r.body).toBe(200);
  return JSON.parse(r.body);
}

/** Nothing was switched: pg1 is still the primary and no switchover was recorded. */
async function expectUnchanged(p: RunningProxy): Promise<void> {
  const st = await statusOf(p);
  expect(st.primary).toBe('pg1');
  expect(st.failover.events).toEqual([]);
}

const HOOK_SECRET = 'hook-s3cret-from-env';

describe('admin port with admin.auth.token (the harness default)', () => {
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy(info, {
      adminExtra: 'metrics_port: 0',
      env: { HOOK_SECRET },
      extra: 'failover: { hook_command: "curl -s -H \'X-Key: ${HOOK_SECRET}\' https://hooks.invalid/pgsplit", rejoin_command: "" }',
    });
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('POST /switchover without credentials or with a wrong token: 401 with WWW-Authenticate, and nothing happens', async () => {
    const none = await request(proxy.adminPort!, 'POST', '/switchover', JSON_TYPE, switchoverBody);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    const wrong = await request(proxy.adminPort!, 'POST', '/switchover', { ...JSON_TYPE, ...bearer('not-the-token') }, switchoverBody);
    expect(wrong.status).toBe(401);
    const prefix = await request(proxy.adminPort!, 'POST', '/switchover', { ...JSON_TYPE, ...bearer(TEST_ADMIN_TOKEN.slice(0, -1)) }, switchoverBody);
    expect(prefix.status).toBe(401);
    const basicAuth = await request(proxy.adminPort!, 'POST', '/switchover', { ...JSON_TYPE, ...basic('admin', TEST_ADMIN_TOKEN) }, switchoverBody);
    expect(basicAuth.status, 'basic auth is not configured here').toBe(401);
    // Any POST, not only /switchover, needs the credentials.
    expect((await request(proxy.adminPort!, 'POST', '/some-future-endpoint', JSON_TYPE, '{}')).status).toBe(401);
    await expectUnchanged(proxy);
  });

  it('a POST with the right token but not application/json (a cross-site form or text/plain POST) gets 415', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await request(proxy.adminPort!, 'POST', '/switchover', { 'content-type': type, ...bearer() }, switchoverBody);
      expect(r.status, type).toBe(415);
    }
    expect((await request(proxy.adminPort!, 'POST', '/switchover', bearer(), switchoverBody)).status, 'no Content-Type').toBe(415);
    await expectUnchanged(proxy);
  });

  it('refuses a request from another origin (403) even with the token; its own origin passes to the switchover itself', async () => {
    const port = proxy.adminPort!;
    for (const origin of ['http://evil.example', `http://evil.example:${port}`, 'null', `http://0.0.0.0:${port}`, `http://127.0.0.1:${port + 1}`]) {
      const r = await request(port, 'POST', '/switchover', { ...JSON_TYPE, ...bearer(), origin }, switchoverBody);
      expect(r.status, origin).toBe(403);
    }
    expect((await request(port, 'GET', '/status', { origin: 'http://evil.example' })).status).toBe(403);
    await expectUnchanged(proxy);
    // Authenticated, JSON, own origin: the switchover handler answers (an unknown node, so the cluster stays as it is).
    const ok = await request(port, 'POST', '/switchover', { 'content-type': 'application/json; charset=utf-8', ...bearer(), origin: `http://127.0.0.1:${port}` }, JSON.stringify({ to: 'pg9' }));
    expect(ok.status, ok.body).toBe(409);
    expect(JSON.parse(ok.body).error).toMatch(/no node named "pg9"/);
  });

  it('bounds the body (413) and the methods (405)', async () => {
    const big = JSON.stringify({ to: 'pg2', pad: 'x'.repeat(100 * 1024) });
    const r = await request(proxy.adminPort!, 'POST', '/switchover', { ...JSON_TYPE, ...bearer() }, big);
    expect(r.status).toBe(413);
    expect((await request(proxy.adminPort!, 'DELETE', '/status', bearer())).status).toBe(405);
    expect((await request(proxy.adminPort!, 'GET', '/switchover', bearer())).status).toBe(405);
    await expectUnchanged(proxy);
  });

  it('/status shows no secret: user passwords, the admin token, the hook command (with its ${VAR} secret); no user list unless authenticated', async () => {
    const anonymous = (await request(proxy.adminPort!, 'GET', '/status')).body;
    const authed = (await request(proxy.adminPort!, 'GET', '/status', bearer())).body;
    for (const body of [anonymous, authed]) {
      for (const secret of [HOOK_SECRET, TEST_ADMIN_TOKEN, info.app.password, 'md5secret', 'pwsecret', 'hooks.invalid']) expect(body, secret).not.toContain(secret);
      const st = JSON.parse(body);
      expect(st.config.admin.auth.token).toBe('***');
      expect(st.config.failover).toMatchObject({ hook_command: '***', rejoin_command: '', demote_command: '' });
      expect(st.primary).toBe('pg1');
    }
    expect(JSON.parse(anonymous).config.users).toBeUndefined();
    expect(anonymous).not.toContain('md5user');
    const users = JSON.parse(authed).config.users as { name: string; password: string }[];
    expect(users.map((u) => u.name)).toEqual([info.app.user, 'md5user', 'pwuser']);
    expect(users.every((u) => u.password === '***')).toBe(true);
  });

  it('serves /metrics (and /health) on admin.metrics_port, and nothing else there', async () => {
    const port = proxy.metricsPort!;
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(proxy.adminPort);
    const m = await request(port, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.body).toMatch(/^pgsplit_primary\{node="pg1"\} 1$/m);
    expect((await request(port, 'GET', '/health')).status).toBe(200);
    expect((await request(port, 'GET', '/status', bearer())).status).toBe(404);
    expect((await request(port, 'POST', '/switchover', { ...JSON_TYPE, ...bearer() }, switchoverBody)).status).toBe(405);
    // /metrics stays on the admin port too.
    expect((await request(proxy.adminPort!, 'GET', '/metrics')).status).toBe(200);
    await expectUnchanged(proxy);
  });
});

describe('admin port without admin.auth', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startProxy(info, { adminAuth: null });
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('refuses every POST with 403 saying to set admin.auth (secure by default); reads stay open', async () => {
    for (const headers of [JSON_TYPE, { ...JSON_TYPE, ...bearer() }, { ...JSON_TYPE, ...basic('admin', 'admin') }]) {
      const r = await request(proxy.adminPort!, 'POST', '/switchover', headers, switchoverBody);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body).error).toMatch(/admin\.auth/);
    }
    expect(proxy.metricsPort).toBeNull();
    const st = await statusOf(proxy);
    expect(st.config.users).toBeUndefined();
    await expectUnchanged(proxy);
  });
});

describe('admin port with basic auth and protect_reads', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startProxy(info, { adminAuth: 'user: ops, password: "${OPS_PW}", protect_reads: true', env: { OPS_PW: 'op-s3cret' } });
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('/status needs the credentials (401 with a Basic challenge); /health, /ready and /metrics stay open', async () => {
    const port = proxy.adminPort!;
    const anon = await request(port, 'GET', '/status');
    expect(anon.status).toBe(401);
    expect(anon.headers['www-authenticate']).toMatch(/^Basic realm=/);
    expect(anon.body).not.toContain('pg1');
    expect((await request(port, 'GET', '/status', basic('ops', 'wrong'))).status).toBe(401);
    expect((await request(port, 'GET', '/status', basic('opz', 'op-s3cret'))).status).toBe(401);
    expect((await request(port, 'GET', '/status', bearer('op-s3cret'))).status).toBe(401);
    const ok = await request(port, 'GET', '/status', basic('ops', 'op-s3cret'));
    expect(ok.status).toBe(200);
    expect(ok.body).not.toContain('op-s3cret');
    expect(JSON.parse(ok.body).config.admin.auth).toMatchObject({ user: 'ops', password: '***', protect_reads: true });
    for (const path of ['/health', '/ready', '/metrics']) expect((await request(port, 'GET', path)).status, path).toBe(200);
    const so = await request(port, 'POST', '/switchover', { ...JSON_TYPE, ...basic('ops', 'op-s3cret') }, JSON.stringify({ to: 'pg9' }));
    expect(so.status, so.body).toBe(409);
  });
});

describe('a demote_command over failover.hook_timeout', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: 'failover: { demote_command: "sleep 100", hook_timeout: 500ms, switchover_timeout: 10s }' });
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('is killed, the switchover is aborted and writes go on to the old primary', async () => {
    const t0 = Date.now();
    const r = await request(proxy.adminPort!, 'POST', '/switchover', { ...JSON_TYPE, ...bearer() }, switchoverBody);
    const took = Date.now() - t0;
    expect(r.status, r.body).toBe(500);
    expect(JSON.parse(r.body).error).toMatch(/demote_command/);
    expect(took).toBeLessThan(5_000);
    const st = await statusOf(proxy);
    expect(st.primary).toBe('pg1');
    expect(st.failover.events).toHaveLength(1);
    expect(st.failover.events[0]).toMatchObject({ kind: 'switchover', new_primary: 'pg2' });
    expect(st.failover.events[0].error).toMatch(/demote_command/);
    const port = await using(proxyClient(proxy, info), async (c) => (await c.query('/* pgsplit:primary */ SELECT inet_server_port() AS port, pg_is_in_recovery() AS r')).rows[0]);
    expect(port).toEqual({ port: info.nodes[0]!.port, r: false });
  });
});

describe('the admin HTTP server itself', () => {
  let server: AdminServer;
  let port: number;
  beforeAll(async () => {
    server = new AdminServer({ registry: new Registry(), topology: new Topology([{ name: 'pg1', host: '127.0.0.1', port: 1 }]), status: () => ({}) }, { headersTimeoutMs: 300, requestTimeoutMs: 600, maxConnections: 3 });
    port = await server.listen('127.0.0.1', 0);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** Resolves with how long the server kept the socket open (Infinity: still open after 5 s; then it is destroyed). */
  const closedAfter = (s: net.Socket): Promise<number> => {
    const t0 = Date.now();
    s.resume(); // read what the server sends (a 408), so its end reaches 'close'
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        resolve(Infinity);
        s.destroy();
      }, 5_000);
      s.on('close', () => {
        clearTimeout(t);
        resolve(Date.now() - t0);
      }).on('error', () => {});
    });
  };

  it('drops a client that sends its headers too slowly', async () => {
    const s = net.connect(port, '127.0.0.1');
    s.write('GET /health HTTP/1.1\r\nHost: x\r\n'); // never finishes its headers
    const ms = await closedAfter(s);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(3_000);
  });

  it('holds at most maxConnections sockets', async () => {
    const idle = await Promise.all([0, 1, 2].map(() => new Promise<net.Socket>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', () => {});
    })));
    await new Promise((r) => setTimeout(r, 100));
    const extra = net.connect(port, '127.0.0.1');
    const ms = await closedAfter(extra);
    expect(ms).toBeLessThan(250);
    for (const s of idle) s.destroy();
  });
});
