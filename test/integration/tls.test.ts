// TLS through pgsplit: pgsplit to PostgreSQL (server_tls, nodes[].tls) and clients to pgsplit (tls.*), against the harness' test CA.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ClusterTls } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const certs = (): ClusterTls => {
  if (!info.tls) throw new Error('the test cluster has no TLS files (docker kind?)');
  return info.tls;
};

const sslOfServerConnection = async (proxy: RunningProxy, o: { user?: string; password?: string } = {}) =>
  using(proxyClient(proxy, info, o), async (c) => {
    // pg_stat_ssl on the server: is the connection pgsplit opened for this client encrypted?
    const r = await c.query<{ ssl: boolean; u: string }>('SELECT ssl, current_user AS u FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return r.rows[0]!;
  });

let scratch: string;
let otherCa: string;

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-tls-test-'));
  // A CA that did not sign the servers' certificate.
  otherCa = path.join(scratch, 'other-ca.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(scratch, 'other-ca.key'),
    '-out', otherCa, '-days', '30', '-subj', '/CN=some other CA'], { stdio: 'ignore' });
});

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('pgsplit to PostgreSQL over TLS (server_tls)', () => {
  const proxies: RunningProxy[] = [];
  const proxy = async (extra: string, nodeExtra?: Record<string, string>) => {
    const p = await startProxy(info, { extra, nodeExtra });
    proxies.push(p);
    return p;
  };
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.close(1_000)));
  });

  it('server_tls verify-full against the cluster CA: the server connection uses TLS', async () => {
    const p = await proxy(`server_tls: { mode: verify-full, ca: "${certs().ca}" }`);
    expect(await sslOfServerConnection(p)).toEqual({ ssl: true, u: 'app' });
  });

  it.each([
    ['routing on', ''],
    ['the plain relay', 'routing: { enabled: false }'],
  ])('carries large results and a transaction over a TLS server connection (%s)', async (_n, extra) => {
    const p = await proxy(`server_tls: { mode: require }\n${extra}`);
    await using(proxyClient(p, info), async (c) => {
      const big = await c.query<{ n: number; len: number }>("SELECT count(*)::int AS n, sum(length(x))::int AS len FROM (SELECT repeat('x', 200) AS x FROM generate_series(1, 20000)) s");
      expect(big.rows[0]).toEqual({ n: 20000, len: 4_000_000 });
      const rows = await c.query("SELECT g, repeat('y', 300) AS pad FROM generate_series(1, 30000) g");
      expect(rows.rowCount).toBe(30000);
      expect(rows.rows[29999]).toMatchObject({ g: 30000 });
      await c.query('BEGIN');
      await c.query('CREATE TEMP TABLE tls_t (v text)');
      await c.query("INSERT INTO tls_t SELECT repeat('z', 1000) FROM generate_series(1, 2000)");
      expect((await c.query('SELECT count(*)::int AS n FROM tls_t')).rows[0]).toEqual({ n: 2000 });
      expect((await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]).toEqual({ ssl: true });
      await c.query('ROLLBACK');
    });
  });

  it('without server_tls the server connection stays plaintext', async () => {
    const p = await proxy('');
    expect(await sslOfServerConnection(p)).toEqual({ ssl: false, u: 'app' });
  });

  it('server_tls verify-full against a wrong CA fails with a clear error', async () => {
    const p = await proxy(`server_tls: { mode: verify-full, ca: "${otherCa}" }`);
    const err = (await rejection(sslOfServerConnection(p))) as Error & { code?: string; detail?: string };
    expect(err.code).toBe('08006');
    expect(err.detail).toMatch(/TLS .*failed \(mode verify-full\)/);
    expect(err.detail).toMatch(/certificate/i);
  });

  it('verify-full checks the host name against the certificate; verify-ca does not', async () => {
    // The certificate names 127.0.0.1 and localhost. "127.1" reaches the same server under a name it does not list.
    expect(await sslOfServerConnection(await proxyAt('localhost', 'verify-full'))).toEqual({ ssl: true, u: 'app' });
    const err = (await rejection(sslOfServerConnection(await proxyAt('127.1', 'verify-full')))) as Error & { detail?: string };
    expect(err.detail).toMatch(/Hostname\/IP does not match certificate's altnames/);
    expect(await sslOfServerConnection(await proxyAt('127.1', 'verify-ca'))).toEqual({ ssl: true, u: 'app' });
  });

  it('nodes[].tls overrides server_tls', async () => {
    const nodeTls = Object.fromEntries(info.nodes.map((n) => [n.name, 'tls: { mode: require }']));
    const p = await proxy(`server_tls: { mode: verify-full, ca: "${otherCa}" }`, nodeTls);
    expect(await sslOfServerConnection(p)).toEqual({ ssl: true, u: 'app' });
  });

  it('sends a cleartext password (pwuser) over TLS without allow_cleartext_password', async () => {
    const p = await proxy('server_tls: { mode: require }');
    expect(await sslOfServerConnection(p, { user: 'pwuser', password: 'pwsecret' })).toEqual({ ssl: true, u: 'pwuser' });
  });

  it('a missing CA file stops startup with an error naming the key', async () => {
    const err = await rejection(startProxy(info, { extra: `server_tls: { mode: verify-full, ca: "${path.join(scratch, 'nope.crt')}" }` }));
    expect(err.message).toMatch(/server_tls\.ca: cannot read .*nope\.crt/);
  });

  /** A proxy whose nodes are addressed as `host`, each with nodes[].tls in `mode` against the cluster CA. */
  async function proxyAt(host: string, mode: string): Promise<RunningProxy> {
    const nodeTls = Object.fromEntries(info.nodes.map((n) => [n.name, `tls: { mode: ${mode}, ca: "${certs().ca}" }`]));
    // Quoted: the config is YAML, where 127.1 would be a number.
    const p = await startProxy({ ...info, nodes: info.nodes.map((n) => ({ ...n, host: JSON.stringify(host) })) }, { nodeExtra: nodeTls });
    proxies.push(p);
    return p;
  }
});
