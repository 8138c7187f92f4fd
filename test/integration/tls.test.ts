// TLS through pgsplit: pgsplit to PostgreSQL (server_tls, nodes[].tls) and clients to pgsplit (tls.*), against the harness' test CA.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ClusterTls } from '../harness/cluster.js';
import net from 'node:net';
import type tls from 'node:tls';
import { configFor, startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, firstErrorFields, proxyClient, psql, rawExchange, rejection, startupMessage, using } from './helpers.js';

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
/** A certificate for 127.0.0.1 signed by otherCa (to see a reloaded certificate in use). */
let otherCert: { cert: string; key: string };

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-tls-test-'));
  // A CA that did not sign the servers' certificate.
  otherCa = path.join(scratch, 'other-ca.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(scratch, 'other-ca.key'),
    '-out', otherCa, '-days', '30', '-subj', '/CN=some other CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], { stdio: 'ignore' });
  otherCert = { cert: path.join(scratch, 'other.crt'), key: path.join(scratch, 'other.key') };
  execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', otherCert.key, '-out', path.join(scratch, 'other.csr'), '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  fs.writeFileSync(path.join(scratch, 'other.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  execFileSync('openssl', ['x509', '-req', '-in', path.join(scratch, 'other.csr'), '-CA', otherCa, '-CAkey', path.join(scratch, 'other-ca.key'), '-CAcreateserial',
    '-out', otherCert.cert, '-days', '30', '-extfile', path.join(scratch, 'other.ext')], { stdio: 'ignore' });
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

  it('server_tls verify-full against the cluster CA: the server connection uses TLS, and so do pgsplit\'s own (probes, LSN polls)', async () => {
    const p = await proxy(`server_tls: { mode: verify-full, ca: "${certs().ca}" }`);
    expect(await sslOfServerConnection(p)).toEqual({ ssl: true, u: 'app' });
    const own = await using(directClient(info.nodes[0]!, info), async (d) =>
      (await d.query<{ ssl: boolean }>("SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'pgsplit-monitor' AND a.client_port IS NOT NULL")).rows.map((r) => r.ssl));
    // This is the first proxy of the suite with server_tls: an encrypted monitor connection can only be its own.
    expect(own).toContain(true);
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

  it('server_tls verify-full against a wrong CA: no node can be verified, so none is used, and the error says why', async () => {
    const p = await proxy(`server_tls: { mode: verify-full, ca: "${otherCa}" }\nfailover: { hold_timeout: 0s }`);
    const err = (await rejection(sslOfServerConnection(p))) as Error & { code?: string; detail?: string };
    // pgsplit's own probes verify the servers too: no primary is known, and each node reports the certificate failure.
    expect(err.code).toBe('57P03');
    expect(err.detail).toMatch(/certificate/i);
  });

  it('verify-full checks the host name against the certificate; verify-ca does not', async () => {
    // The certificate names 127.0.0.1 and localhost. "127.1" reaches the same server under a name it does not list.
    expect(await sslOfServerConnection(await proxyAt('localhost', 'verify-full'))).toEqual({ ssl: true, u: 'app' });
    const err = (await rejection(sslOfServerConnection(await proxyAt('127.1', 'verify-full', 'failover: { hold_timeout: 0s }')))) as Error & { detail?: string };
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
  async function proxyAt(host: string, mode: string, extra = ''): Promise<RunningProxy> {
    const nodeTls = Object.fromEntries(info.nodes.map((n) => [n.name, `tls: { mode: ${mode}, ca: "${certs().ca}" }`]));
    // Quoted: the config is YAML, where 127.1 would be a number.
    const p = await startProxy({ ...info, nodes: info.nodes.map((n) => ({ ...n, host: JSON.stringify(host) })) }, { nodeExtra: nodeTls, extra });
    proxies.push(p);
    return p;
  }
});

describe('clients to pgsplit over TLS (tls.*)', () => {
  const clientTls = (mode: string, c: { cert: string; key: string } = certs()) => `tls: { mode: ${mode}, cert: "${c.cert}", key: "${c.key}" }`;
  let allow: RunningProxy;
  let require: RunningProxy;
  let both: RunningProxy;
  beforeAll(async () => {
    allow = await startProxy(info, { extra: clientTls('allow') });
    require = await startProxy(info, { extra: clientTls('require') });
    both = await startProxy(info, { extra: `${clientTls('require')}\nserver_tls: { mode: verify-full, ca: "${certs().ca}" }` });
  });
  afterAll(async () => {
    await Promise.all([allow, require, both].map((p) => p?.close(1_000)));
  });

  const conninfo = (p: RunningProxy, ssl: string) => `host=127.0.0.1 port=${p.listenPort} user=app dbname=appdb connect_timeout=10 ${ssl}`;
  const conninfoLine = (stdout: string) => stdout.split('\n').find((l) => l.includes('SSL connection')) ?? stdout;

  it('psql with sslmode=require gets a TLS connection', async () => {
    const r = await psql(allow, info, ['-c', '\\conninfo', '-c', 'SELECT 42'], { conninfo: conninfo(allow, 'sslmode=require') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(conninfoLine(r.stdout)).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    expect(r.stdout).toMatch(/^42$/m);
  });

  it('psql with sslmode=verify-full against the test CA verifies pgsplit and gets in', async () => {
    const r = await psql(allow, info, ['-c', '\\conninfo', '-c', 'SELECT current_user'], { conninfo: conninfo(allow, `sslmode=verify-full sslrootcert=${certs().ca}`) });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(conninfoLine(r.stdout)).toMatch(/SSL connection/);
    expect(r.stdout).toMatch(/^app$/m);
  });

  it('psql with sslmode=verify-full against another CA refuses pgsplit', async () => {
    const r = await psql(allow, info, ['-c', 'SELECT 1'], { conninfo: conninfo(allow, `sslmode=verify-full sslrootcert=${otherCa}`), timeoutMs: 20_000 });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(124);
    expect(r.stderr).toMatch(/certificate verify failed/);
  });

  it('node-postgres with ssl { ca, rejectUnauthorized: true } connects over TLS', async () => {
    await using(proxyClient(allow, info, { ssl: { ca: fs.readFileSync(certs().ca, 'utf8'), rejectUnauthorized: true } }), async (c) => {
      const stream = (c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream;
      expect(stream.encrypted).toBe(true);
      expect(stream.authorized).toBe(true);
      const r = await c.query("SELECT current_user AS u, repeat('x', 100000) AS big");
      expect(r.rows[0].u).toBe('app');
      expect(r.rows[0].big).toHaveLength(100000);
      // Client to server through the TLS client socket: a 3 MB parameter.
      const sent = await c.query<{ n: number }>('SELECT length($1::text) AS n', ['y'.repeat(3_000_000)]);
      expect(sent.rows[0]!.n).toBe(3_000_000);
    });
  });

  it('tls.mode allow still lets plaintext clients in', async () => {
    const r = await psql(allow, info, ['-c', 'SELECT 1'], { conninfo: conninfo(allow, 'sslmode=disable') });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1');
  });

  it('tls.mode require refuses a plaintext client with 28000 and a clear message', async () => {
    const err = (await rejection(proxyClient(require, info))) as Error & { code?: string };
    expect(err.code).toBe('28000');
    expect(err.message).toBe('pgsplit: TLS is required (tls.mode = require)');
    const r = await psql(require, info, ['-c', 'SELECT 1'], { conninfo: conninfo(require, 'sslmode=disable'), timeoutMs: 20_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/pgsplit: TLS is required \(tls\.mode = require\)/);
    // The same client over TLS gets in.
    const ok = await psql(require, info, ['-c', 'SELECT 1'], { conninfo: conninfo(require, 'sslmode=require') });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('1');
  });

  it('TLS on both sides: client to pgsplit and pgsplit to PostgreSQL (verify-full)', async () => {
    const r = await psql(both, info, ['-c', '\\conninfo', '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'], {
      conninfo: conninfo(both, `sslmode=verify-full sslrootcert=${certs().ca}`),
    });
    expect(r.stderr).toBe('');
    expect(conninfoLine(r.stdout)).toMatch(/SSL connection/);
    expect(r.stdout).toMatch(/^t$/m);
  });

  it('refuses plaintext bytes sent after SSLRequest, before the handshake (CVE-2021-23214)', async () => {
    const sslRequest = Buffer.alloc(8);
    sslRequest.writeInt32BE(8, 0);
    sslRequest.writeInt32BE(80877103, 4);
    const injected = startupMessage({ user: 'app', database: 'appdb' });
    const r = await rawExchange(allow.listenPort, Buffer.concat([sslRequest, injected]));
    expect(r.closed).toBe(true);
    expect(String.fromCharCode(r.data[0]!)).toBe('E'); // no 'S': TLS never started
    expect(firstErrorFields(r.data)).toMatchObject({ S: 'FATAL', C: '08P01', M: 'received unencrypted data after SSL request' });
  });

  it('answers SSLRequest with S when TLS is on, and N when it is off', async () => {
    const sslRequest = Buffer.alloc(8);
    sslRequest.writeInt32BE(8, 0);
    sslRequest.writeInt32BE(80877103, 4);
    const firstByte = (port: number) =>
      new Promise<string>((resolve, reject) => {
        const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(sslRequest));
        sock.once('data', (d) => {
          resolve(String.fromCharCode(d[0]!));
          sock.destroy();
        });
        sock.on('error', reject);
      });
    expect(await firstByte(allow.listenPort)).toBe('S');
    const off = await startProxy(info);
    try {
      expect(await firstByte(off.listenPort)).toBe('N');
    } finally {
      await off.close(1_000);
    }
  });

  it('a bad certificate file at startup stops startup with an error naming the key', async () => {
    const err = await rejection(startProxy(info, { extra: clientTls('allow', { cert: path.join(scratch, 'missing.crt'), key: certs().key }) }));
    expect(err.message).toMatch(/tls\.cert: cannot read .*missing\.crt/);
    const mismatch = await rejection(startProxy(info, { extra: clientTls('allow', { cert: certs().cert, key: otherCert.key }) }));
    expect(mismatch.message).toMatch(/^tls: .*key values mismatch/);
  });

  it('reload re-reads the certificate files; a bad file on reload keeps the previous certificate', async () => {
    const p = await startProxy(info, { extra: clientTls('allow') });
    try {
      const verifyWith = (ca: string) => psql(p, info, ['-c', 'SELECT 1'], { conninfo: conninfo(p, `sslmode=verify-full sslrootcert=${ca}`), timeoutMs: 20_000 });
      expect((await verifyWith(certs().ca)).code).toBe(0);
      // A reload with a file that cannot be read is rejected, naming the key: the running certificate stays.
      expect(await p.reload(configFor(info, { extra: clientTls('allow', { cert: path.join(scratch, 'missing.crt'), key: certs().key }) }))).toMatchObject({ result: 'rejected', error: expect.stringMatching(/^tls\.cert: cannot read/) });
      expect((await verifyWith(certs().ca)).code).toBe(0);
      // A reload with a new certificate: new connections get it.
      expect((await p.reload(configFor(info, { extra: clientTls('allow', otherCert) }))).result).toBe('applied');
      const r = await verifyWith(otherCa);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((await verifyWith(certs().ca)).stderr).toMatch(/certificate verify failed/);
    } finally {
      await p.close(1_000);
    }
  });
});
