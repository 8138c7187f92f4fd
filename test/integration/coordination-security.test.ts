// coordination.etcd's TLS (ca/cert/key) and user/password against a real etcd: right settings lead and write, wrong ones never write and the log says why, and no password reaches the log or /status.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import type { ClusterNode } from '../harness/cluster.js';
import { REPO_ROOT, adminAuthHeaders, configYamlFor, type RunningProxy } from '../harness/proxy.js';
import { etcdGet, startEtcd, type EtcdCluster } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { terminate } from '../harness/processes.js';
import { directClient, endQuietly, eventually, proxyClient, using } from './helpers.js';

const info = inject('cluster');

const LEASE_TTL_MS = 2000;
const HOLD_MS = 2000;
const TABLE = `coord_sec_${process.pid}`;

interface Coordination { instance: string; role: string; leader: string | null; published_primary: string | null; writes_allowed: boolean }
interface Status { coordination: Coordination }

/** pgsplit as a child process, with its log kept: spawnProxy waits for /ready, which a misconfigured instance never reaches. */
interface Instance {
  name: string;
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** Everything it printed so far (pino's JSON lines go to stderr). */
  log(): string;
  stop(): Promise<void>;
}

const started: Instance[] = [];

/** Before its etcd goes away, so that no instance outlives its store (and its log stays about the test). */
async function stopInstances(): Promise<void> {
  await Promise.all(started.splice(0).map((i) => i.stop().catch(() => {})));
}

async function launch(name: string, etcd: string): Promise<Instance> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-coordsec-'));
  const configFile = path.join(dir, 'pgsplit.yaml');
  const extra = [
    `coordination: { name: ${name}, etcd: { ${etcd}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
    `failover: { hold_timeout: ${HOLD_MS}ms }`,
  ].join('\n');
  // info level: whatever pgsplit logs in normal operation is searched for secrets.
  fs.writeFileSync(configFile, configYamlFor(info, { port, adminPort, logLevel: 'info', extra }));
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/pgsplit.js'), '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (process.env.PGSPLIT_TEST_VERBOSE) process.stderr.write(d);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const stop = async () => {
    await terminate(child, { graceMs: 10_000 });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const inst: Instance = { name, child, port, adminPort, log: () => out, stop };
  started.push(inst);
  await eventually(`${name} to serve its admin port`, async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${out}`);
    const r = await fetch(`http://127.0.0.1:${adminPort}/health`).catch(() => null);
    return r?.status === 200 ? true : undefined;
  }, 20_000);
  return inst;
}

const target = (i: Instance) => ({ listenPort: i.port }) as RunningProxy;

async function statusText(i: Instance): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${i.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) });
  expect(r.status).toBe(200);
  return r.text();
}
const status = async (i: Instance): Promise<Status> => JSON.parse(await statusText(i)) as Status;
const readyCode = async (i: Instance): Promise<number> => (await fetch(`http://127.0.0.1:${i.adminPort}/ready`)).status;

/** INSERT through the instance: the port of the server that took it. */
const write = (c: pg.Client) => c.query<{ port: number }>(`INSERT INTO ${TABLE} (v) VALUES (1) RETURNING inet_server_port() AS port`).then((r) => r.rows[0]!);

let primary: ClusterNode;

/** A correctly configured instance: it leads, follows the published primary, may write, and a write through it lands on the primary. */
async function expectLeadsAndWrites(i: Instance): Promise<Status> {
  const s = await eventually(`${i.name} to lead and publish the state`, async () => {
    const x = await status(i);
    return x.coordination.role === 'leader' && x.coordination.published_primary !== null && x.coordination.writes_allowed ? x : undefined;
  }, 20_000);
  expect(s.coordination.leader).toBe(i.name);
  expect(s.coordination.published_primary).toBe(primary.name);
  expect(await readyCode(i)).toBe(200);
  expect((await using(proxyClient(target(i), info), write)).port).toBe(primary.port);
  return s;
}

/**
 * A misconfigured instance: its log says why (`why`), and while a write through it waits out hold_timeout and then
 * fails with 57P03, it is never writable (sampled all along) and /ready stays 503.
 */
async function expectNeverWritable(i: Instance, why: RegExp[]): Promise<void> {
  // The log, not the client's error, is where the reason is: the client is told only that no primary is available.
  const line = await eventually(`${i.name} to log why it cannot use etcd`, () => i.log().split('\n').find((l) => l.includes('cannot read the cluster state from etcd')), 15_000);
  for (const re of why) expect(line, line).toMatch(re);
  const seen: boolean[] = [];
  const readies: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      seen.push((await status(i)).coordination.writes_allowed);
      readies.push(await readyCode(i));
      await new Promise((r) => setTimeout(r, 200));
    }
  })().then(() => null, (e: unknown) => e);
  try {
    // With no primary ever confirmed, the login already waits for one (a client connected earlier would wait at its write).
    const t0 = Date.now();
    const err = await using(proxyClient(target(i), info), write).then(() => null, (e: Error & { code?: string; severity?: string; detail?: string }) => e);
    const took = Date.now() - t0;
    expect(err?.code, err?.message).toBe('57P03');
    expect(err?.message).toBe('pgsplit: no primary server is available');
    // The client is told it is this instance's view of etcd, not the cluster, that is missing.
    expect(err?.detail).toMatch(/^this instance could not confirm the cluster state in etcd/);
    expect(took).toBeGreaterThanOrEqual(HOLD_MS - 100);
  } finally {
    sampling = false;
  }
  // A sampling that failed (the instance died) proves nothing about "never writable".
  const samplingError = await sampler;
  if (samplingError) throw samplingError;
  expect(seen.length).toBeGreaterThan(3);
  expect(seen.every((w) => w === false)).toBe(true);
  expect(readies.every((r) => r === 503)).toBe(true);
  const s = await status(i);
  expect(s.coordination.role).not.toBe('leader');
  expect(s.coordination.published_primary).toBeNull();
}

/** No secret in what the instance printed or in its /status (both are what an operator shares when asking for help). */
async function expectNoSecret(i: Instance, secrets: string[]): Promise<void> {
  const st = await statusText(i);
  for (const secret of secrets) {
    expect(i.log().includes(secret), `${i.name}'s log shows a password`).toBe(false);
    expect(st.includes(secret), `${i.name}'s /status shows a password`).toBe(false);
  }
}

beforeAll(async () => {
  // Other files may have failed over the shared cluster: whichever node is out of recovery is the primary now.
  for (const n of info.nodes) {
    const inRecovery = await using(directClient(n, info), async (d) => (await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean).catch(() => true);
    if (!inRecovery) primary = n;
  }
  expect(primary, 'a primary in the shared cluster').toBeDefined();
  await using(directClient(primary, info, { database: info.app.database }), async (d) => {
    await d.query(`CREATE TABLE ${TABLE} (id serial PRIMARY KEY, v int NOT NULL)`);
    await d.query(`GRANT ALL ON ${TABLE}, ${TABLE}_id_seq TO ${info.app.user}`);
  });
});

afterAll(async () => {
  await stopInstances();
  if (primary) await using(directClient(primary, info, { database: info.app.database }), (d) => d.query(`DROP TABLE IF EXISTS ${TABLE}`)).catch(() => {});
});

describe('coordination.etcd over TLS with client certificates', () => {
  let etcd: EtcdCluster;
  const prefix = `/pgsplit/tls-${process.pid}`;

  beforeAll(async () => {
    etcd = await startEtcd({ members: 1, tls: true });
  });

  afterAll(async () => {
    await stopInstances();
    await etcd?.stop();
  });

  it('with the right CA and a client certificate: the instance leads, publishes the state, and writes reach the primary', async () => {
    const t = etcd.tls!;
    expect(etcd.endpoints[0]).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const i = await launch('tls-good', `endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, ca: ${t.ca}, cert: ${t.cert}, key: ${t.key}`);
    await expectLeadsAndWrites(i);
    // What it published is in this etcd (read back over TLS by the harness).
    expect(await etcdGet(etcd.endpoints[0]!, `${prefix}/leader`, etcd.client)).toBe('tls-good');
    expect(JSON.parse((await etcdGet(etcd.endpoints[0]!, `${prefix}/state`, etcd.client))!).primary).toBe(primary.name);
  });

  it('trusting another CA: the instance never becomes writable, writes fail with 57P03 after hold_timeout, and the log names the CA setting', async () => {
    const t = etcd.tls!;
    const i = await launch('tls-wrong-ca', `endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, ca: ${t.foreignCa}, cert: ${t.cert}, key: ${t.key}`);
    await expectNeverWritable(i, [/certificate/i, /coordination\.etcd\.ca/]);
  });

  it('without a client certificate: etcd refuses the handshake, the instance never becomes writable, and the log names the cert setting', async () => {
    const t = etcd.tls!;
    const i = await launch('tls-no-cert', `endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, ca: ${t.ca}`);
    await expectNeverWritable(i, [/coordination\.etcd\.cert and key/]);
  });
});

describe('coordination.etcd with user and password', () => {
  let etcd: EtcdCluster;
  const prefix = `/pgsplit/auth-${process.pid}`;
  // Random, so finding it anywhere can only mean it leaked.
  const wrongPassword = `wrong-${crypto.randomBytes(12).toString('hex')}`;

  beforeAll(async () => {
    etcd = await startEtcd({ members: 1, auth: { prefix: '/pgsplit/' } });
  });

  afterAll(async () => {
    await stopInstances();
    await etcd?.stop();
  });

  it('the right password: the instance leads and writes; the password is in neither its log nor /status', async () => {
    const a = etcd.auth!;
    const i = await launch('auth-good', `endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, user: ${a.user}, password: "${a.password}"`);
    await expectLeadsAndWrites(i);
    expect(await etcdGet(etcd.endpoints[0]!, `${prefix}/leader`, etcd.client)).toBe('auth-good');
    // The store really is closed to anyone without credentials.
    await expect(etcdGet(etcd.endpoints[0]!, `${prefix}/leader`)).rejects.toThrow(/user name is empty|permission denied/);
    await expectNoSecret(i, [a.password, a.rootPassword]);
  });

  it('a wrong password: the instance never becomes writable and its log names the authentication failure, without the password', async () => {
    const a = etcd.auth!;
    const i = await launch('auth-wrong', `endpoints: [${etcd.endpoints.join(', ')}], prefix: ${prefix}, user: ${a.user}, password: "${wrongPassword}"`);
    await expectNeverWritable(i, [/authentication failed/, /coordination\.etcd\.user and password/]);
    await expectNoSecret(i, [wrongPassword, a.password]);
    // Meanwhile the instance with the right password still leads.
    const good = started.find((x) => x.name === 'auth-good')!;
    expect((await status(good)).coordination.role).toBe('leader');
  });
});
