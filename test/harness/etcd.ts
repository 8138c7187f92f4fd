// Throwaway etcd cluster (3 members by default) on loopback free ports, for the multi-instance coordination tests (issue 11).
import { execFileSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { findBinary, requireBinary, type BinarySpec } from './binaries.js';
import { freePort } from './ports.js';
import { envWithout, logTail as tail, spawnToLog, terminate } from './processes.js';
import { killPidsAndRemove, makeTempDir, ownTempDir, type DirKind, type ProcessDirInfo } from './temp-dir.js';

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  /** http://127.0.0.1:clientPort (https:// with the tls option) */
  endpoint: string;
  /** PID of the running etcd process; null while the member is stopped. */
  pid: number | null;
  dataDir: string;
}

/** PEM files made with openssl in the cluster's dir (the tls option). */
export interface EtcdTls {
  /** The CA that signed the members' and the client's certificates. */
  ca: string;
  /** A client certificate and key signed by ca: the members require one (--client-cert-auth). */
  cert: string;
  key: string;
  /** The members' certificate (SAN IP:127.0.0.1) and key. */
  serverCert: string;
  serverKey: string;
  /** A second CA, which signed nothing here: a client that trusts only it must refuse the members. */
  foreignCa: string;
  /** A client certificate and key signed by foreignCa: the members must refuse it. */
  foreignCert: string;
  foreignKey: string;
}

/** The users the auth option creates before `auth enable` (random passwords, so a test can look for leaks). */
export interface EtcdAuth {
  rootUser: 'root';
  rootPassword: string;
  /** An ordinary user with readwrite on every key under prefix, and nothing else. */
  user: string;
  password: string;
  prefix: string;
}

/** How the harness's own gateway client reaches a cluster: TLS files and credentials, as needed. */
export interface EtcdClientOptions {
  /** Required for https:// endpoints; cert and key are the client certificate the members ask for. */
  tls?: { ca: string; cert?: string; key?: string };
  /** Authenticates (POST /v3/auth/authenticate) and sends the token with every call. */
  auth?: { user: string; password: string };
}

export interface EtcdCluster {
  /** The cluster's temp directory: member data dirs and one log file per member (NAME.log). */
  dir: string;
  /** Client URLs, one per member, in member order. */
  endpoints: string[];
  members: EtcdMember[];
  /** The certificates when started with tls (null otherwise). */
  tls: EtcdTls | null;
  /** The credentials when started with auth (null otherwise). */
  auth: EtcdAuth | null;
  /** What etcdPut/etcdGet/etcdCall need to reach this cluster (TLS files, root's credentials); {} for a plain one. */
  client: EtcdClientOptions;
  /** Resolves once a running member is leader and a put through the gateway succeeds. */
  ready(timeoutMs?: number): Promise<void>;
  /** Index of the member that is leader (asks the running members); waits up to timeoutMs for one. */
  leader(timeoutMs?: number): Promise<number>;
  /** Kills member i (SIGKILL unless told otherwise) and waits for it to exit. No-op when stopped. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Kills member i if it runs, then starts it again on the same ports and data dir (does not wait for ready). */
  restart(i: number): Promise<void>;
  /** Kills every member (the "etcd is down for everyone" trial). */
  stopAll(signal?: NodeJS.Signals): Promise<void>;
  /** Starts every stopped member and waits for ready(). */
  startAll(): Promise<void>;
  /** Last lines of member i's log, for failure messages. */
  logTail(i: number, lines?: number): string;
  /** Kills all members and removes dir. Idempotent, never throws. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  members?: number;
  /** Parent of the cluster's temp directory (default os.tmpdir()). */
  dir?: string;
  /** Harness progress lines (not etcd's own log, which goes to files in the cluster dir). */
  log?: (line: string) => void;
  /** How long start waits for a leader and a successful put (default 30 s). */
  readyTimeoutMs?: number;
  /**
   * Client URLs on https with a throwaway CA (openssl), and client certificates required (--client-cert-auth).
   * Peers stay on plain http. The files are in the returned `tls`.
   */
  tls?: boolean;
  /**
   * Once ready: users root and `pgsplit` (a role with readwrite on `prefix`, default "/pgsplit/"), then `auth enable`.
   * The passwords are in the returned `auth`.
   */
  auth?: boolean | { prefix?: string };
}

const READY_KEY = '/pgsplit-harness/ready';

/** The members' PIDs are kept current in etcd.json, for the exit clean-up and a later run's reaper. */
const ETCD_DIR: DirKind<ProcessDirInfo> = { prefix: 'pgsplit-etcd-', infoFile: 'etcd.json', what: 'etcd cluster', teardown: killPidsAndRemove };

const ETCD_BIN: BinarySpec = { env: 'PGSPLIT_ETCD_BIN', fallbackDirs: ['/usr/bin'] };

/** Where etcd is: PGSPLIT_ETCD_BIN, then PATH, then /usr/bin/etcd (Debian's etcd-server). Null when missing. */
export function findEtcdBin(): string | null {
  return findBinary('etcd', ETCD_BIN);
}

// ---------------------------------------------------------------------------------------------
// Minimal client over etcd's gRPC-gateway (JSON on the client port): enough for the harness and for
// tests that want to look at the store without a gRPC client. Keys and values travel as base64;
// 64-bit numbers come back as strings.

export interface EtcdRequestOptions extends EtcdClientOptions {
  /** Aborts the request; default AbortSignal.timeout(timeoutMs). */
  signal?: AbortSignal;
  /** Used when no signal is given (default 5 s). */
  timeoutMs?: number;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

interface RawResponse {
  ok: boolean;
  status: number;
  statusText: string;
  text: string;
}

/** fetch cannot be given a CA or a client certificate without a dispatcher from undici (not a dependency): node:https can. */
function httpsPost(url: string, headers: Record<string, string>, body: string, tls: NonNullable<EtcdClientOptions['tls']> | undefined, signal: AbortSignal): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: 'POST',
      headers,
      ca: tls ? fs.readFileSync(tls.ca) : undefined,
      cert: tls?.cert ? fs.readFileSync(tls.cert) : undefined,
      key: tls?.key ? fs.readFileSync(tls.key) : undefined,
      // A fresh connection per call, as the tests that cut links expect of fetch's pool after a failure.
      agent: false,
      signal,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        resolve({ ok: status >= 200 && status < 300, status, statusText: res.statusMessage ?? '', text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    // Same error as fetch on a timeout (callers tell "hung" from "refused" by err.name === 'TimeoutError').
    req.on('error', (err) => reject(signal.aborted ? signal.reason : err));
    req.end(body);
  });
}

async function post(url: string, body: unknown, headers: Record<string, string>, o: EtcdRequestOptions): Promise<RawResponse> {
  const signal = o.signal ?? AbortSignal.timeout(o.timeoutMs ?? 5_000);
  const all = { 'content-type': 'application/json', ...headers };
  if (url.startsWith('https:')) return httpsPost(url, all, JSON.stringify(body), o.tls, signal);
  const res = await fetch(url, { method: 'POST', headers: all, body: JSON.stringify(body), signal });
  return { ok: res.ok, status: res.status, statusText: res.statusText, text: await res.text() };
}

// Simple tokens live until etcd's --auth-token-ttl (5 min) of disuse, so one per endpoint and user is reused;
// a rejected one is dropped and the call retried once with a new one.
const tokens = new Map<string, string>();

async function token(endpoint: string, o: EtcdRequestOptions, fresh: boolean): Promise<string> {
  const a = o.auth!;
  const k = `${endpoint}\0${a.user}\0${a.password}`;
  const cached = tokens.get(k);
  if (cached && !fresh) return cached;
  const r = await etcdCall<{ token?: string }>(endpoint, '/v3/auth/authenticate', { name: a.user, password: a.password }, { ...o, auth: undefined });
  if (!r.token) throw new Error(`etcd ${endpoint}: authenticate as ${a.user} returned no token`);
  tokens.set(k, r.token);
  return r.token;
}

/** POST to the gateway (path like '/v3/kv/put'); rejects on network errors and on etcd errors (non-2xx or an "error" field). */
export async function etcdCall<T = Record<string, unknown>>(endpoint: string, apiPath: string, body: unknown, o: EtcdRequestOptions = {}): Promise<T> {
  if (o.auth) {
    try {
      return await callOnce<T>(endpoint, apiPath, body, o, { authorization: await token(endpoint, o, false) });
    } catch (err) {
      if (!/invalid auth token/.test((err as Error).message)) throw err;
      return callOnce<T>(endpoint, apiPath, body, o, { authorization: await token(endpoint, o, true) });
    }
  }
  return callOnce<T>(endpoint, apiPath, body, o, {});
}

async function callOnce<T>(endpoint: string, apiPath: string, body: unknown, o: EtcdRequestOptions, headers: Record<string, string>): Promise<T> {
  const res = await post(endpoint + apiPath, body, headers, o);
  const text = res.text;
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    /* e.g. "404 page not found" as plain text */
  }
  if (!res.ok || typeof json.error === 'string') {
    const msg = typeof json.error === 'string' ? json.error : text.trim() || res.statusText;
    throw new Error(`etcd ${endpoint}${apiPath}: HTTP ${res.status}: ${msg}`);
  }
  return json as T;
}

/** Puts key=value; resolves to the store revision after the put. */
export async function etcdPut(endpoint: string, key: string, value: string, o: EtcdRequestOptions = {}): Promise<number> {
  const r = await etcdCall<{ header?: { revision?: string } }>(endpoint, '/v3/kv/put', { key: b64(key), value: b64(value) }, o);
  return Number(r.header?.revision ?? 0);
}

/** Linearizable read of one key (so a member without quorum fails rather than answer stale); null when absent. */
export async function etcdGet(endpoint: string, key: string, o: EtcdRequestOptions = {}): Promise<string | null> {
  const r = await etcdCall<{ kvs?: { value?: string }[] }>(endpoint, '/v3/kv/range', { key: b64(key) }, o);
  return r.kvs && r.kvs.length > 0 ? unb64(r.kvs[0].value) : null;
}

export interface EtcdStatus {
  memberId: string;
  /** '0' when this member knows no leader. */
  leader: string;
  raftTerm: string;
  version: string;
}

/** One member's own view (maintenance/status): its id, the leader it believes in, its term. */
export async function etcdStatus(endpoint: string, o: EtcdRequestOptions = {}): Promise<EtcdStatus> {
  const r = await etcdCall<{ header?: { member_id?: string }; leader?: string; raftTerm?: string; version?: string }>(
    endpoint, '/v3/maintenance/status', {}, o,
  );
  return { memberId: r.header?.member_id ?? '', leader: r.leader ?? '0', raftTerm: r.raftTerm ?? '0', version: r.version ?? '' };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Inherited ETCD_* variables are read by etcd as flags (ETCD_NAME, ETCD_DATA_DIR, ...) and would
// change or break the members we start.
function childEnv(): NodeJS.ProcessEnv {
  const env = envWithout(/^ETCD/);
  // etcd 3.4 refuses to start on architectures other than amd64/ppc64le unless this names the arch.
  const goArch: Record<string, string> = { arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', riscv64: 'riscv64' };
  if (process.arch !== 'x64' && process.arch !== 'ppc64') env.ETCD_UNSUPPORTED_ARCH = goArch[process.arch] ?? process.arch;
  return env;
}

/** openssl, synchronously (a few EC P-256 keys take milliseconds); its stderr in the error when it fails. */
function openssl(dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${stderr || (err as Error).message}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string, cn: string): { crt: string; key: string } {
  const crt = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  openssl(dir, ['req', '-x509', ...EC, '-keyout', key, '-out', crt, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { crt, key };
}

function makeLeaf(dir: string, name: string, subject: string, ca: { crt: string; key: string }, ext: string): { crt: string; key: string } {
  const crt = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const extFile = path.join(dir, `${name}.ext`);
  openssl(dir, ['req', ...EC, '-keyout', key, '-out', csr, '-subj', subject]);
  fs.writeFileSync(extFile, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n${ext}\n`);
  // A random serial rather than -CAcreateserial, which leaves a .srl file beside the CA.
  openssl(dir, ['x509', '-req', '-in', csr, '-CA', ca.crt, '-CAkey', ca.key, '-set_serial', `0x${crypto.randomBytes(8).toString('hex')}`,
    '-out', crt, '-days', '2', '-extfile', extFile]);
  return { crt, key };
}

function makeEtcdTls(dir: string): EtcdTls {
  const pki = path.join(dir, 'pki');
  fs.mkdirSync(pki, { mode: 0o700 });
  const ca = makeCa(pki, 'ca', 'pgsplit etcd test CA');
  // clientAuth too: etcd 3.4's gRPC gateway dials its own member with the server certificate, which
  // --client-cert-auth then checks as a client certificate.
  const server = makeLeaf(pki, 'server', '/CN=127.0.0.1', ca, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth');
  // No CommonName: with auth enabled etcd's gateway refuses (HTTP 400) a client certificate that has one, since it
  // cannot pass the name on as the user; users are then told apart by name and password alone.
  const client = makeLeaf(pki, 'client', '/O=pgsplit test client', ca, 'extendedKeyUsage=clientAuth');
  const foreign = makeCa(pki, 'foreign-ca', 'pgsplit etcd foreign test CA');
  const foreignClient = makeLeaf(pki, 'foreign-client', '/O=pgsplit test client', foreign, 'extendedKeyUsage=clientAuth');
  return {
    ca: ca.crt, cert: client.crt, key: client.key, serverCert: server.crt, serverKey: server.key,
    foreignCa: foreign.crt, foreignCert: foreignClient.crt, foreignKey: foreignClient.key,
  };
}

/** Users and a role through the gateway, then `auth enable` (what etcdctl does: root needs the root role first). */
async function enableAuth(endpoint: string, client: EtcdClientOptions, a: EtcdAuth): Promise<void> {
  const call = (p: string, body: unknown) => etcdCall(endpoint, p, body, { ...client, timeoutMs: 10_000 });
  await call('/v3/auth/user/add', { name: 'root', password: a.rootPassword });
  await call('/v3/auth/role/add', { name: 'root' });
  await call('/v3/auth/user/grant', { user: 'root', role: 'root' });
  const role = `${a.user}-rw`;
  await call('/v3/auth/role/add', { name: role });
  // range_end = prefix with its last byte + 1: every key that starts with the prefix.
  const p = Buffer.from(a.prefix, 'utf8');
  const end = Buffer.from(p);
  end[end.length - 1]++;
  await call('/v3/auth/role/grant', { name: role, perm: { permType: 'READWRITE', key: p.toString('base64'), range_end: end.toString('base64') } });
  await call('/v3/auth/user/add', { name: a.user, password: a.password });
  await call('/v3/auth/user/grant', { user: a.user, role });
  await call('/v3/auth/enable', {});
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const count = opts.members ?? 3;
  const log = opts.log ?? (() => {});
  const bin = requireBinary('etcd', ETCD_BIN, 'Install it: apt-get install etcd-server (Debian/Ubuntu), or set PGSPLIT_ETCD_BIN to an etcd >= 3.4 binary.');
  const dir = makeTempDir(ETCD_DIR, { baseDir: opts.dir, log });

  const scheme = opts.tls ? 'https' : 'http';
  const members: EtcdMember[] = [];
  for (let i = 0; i < count; i++) {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const name = `etcd${i + 1}`;
    members.push({ name, clientPort, peerPort, endpoint: `${scheme}://127.0.0.1:${clientPort}`, pid: null, dataDir: path.join(dir, name) });
  }
  let tls: EtcdTls | null = null;
  const auth: EtcdAuth | null = opts.auth
    ? {
        rootUser: 'root',
        rootPassword: `root-${crypto.randomBytes(12).toString('hex')}`,
        user: 'pgsplit',
        password: `pgsplit-${crypto.randomBytes(12).toString('hex')}`,
        prefix: (typeof opts.auth === 'object' ? opts.auth.prefix : undefined) ?? '/pgsplit/',
      }
    : null;
  // Filled in as the cluster gets TLS and then auth, so every later call (ready(), tests) can reach it.
  const client: EtcdClientOptions = {};
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const info: ProcessDirInfo = { dir, ownerPid: process.pid, pids: [] };
  const children: (ChildProcess | null)[] = members.map(() => null);
  const exited: (Promise<void> | null)[] = members.map(() => null);
  const logFile = (i: number): string => path.join(dir, `${members[i].name}.log`);
  let stopped = false;

  const owned = ownTempDir(ETCD_DIR, info);
  const saveInfo = (): void => {
    info.pids = members.map((m) => m.pid).filter((p): p is number => p !== null);
    owned.save();
  };

  const spawnMember = (i: number): void => {
    const m = members[i];
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.endpoint,
      '--advertise-client-urls', m.endpoint,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initialCluster,
      // Ignored once the data dir holds a WAL, so restart() reuses the same arguments.
      '--initial-cluster-state', 'new',
      // Unique per cluster so members never join a stranger reusing one of our ports.
      '--initial-cluster-token', path.basename(dir),
      // Quick elections: a leader loss is noticed in ~1 s rather than the default's several.
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      // 3.4's default logger (capnslog) prints a deprecation warning on every start.
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
    ];
    const child = spawnToLog(bin, args, logFile(i), { cwd: dir, env: childEnv() });
    children[i] = child;
    m.pid = child.pid ?? null;
    exited[i] = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        if (children[i] === child) {
          children[i] = null;
          m.pid = null;
          saveInfo();
        }
        if (!stopped) log(`${m.name} exited (${signal ?? `code ${code}`})`);
        resolve();
      });
      child.once('error', (err) => {
        log(`${m.name} failed to start: ${err.message}`);
        if (children[i] === child) {
          children[i] = null;
          m.pid = null;
        }
        resolve();
      });
    });
    saveInfo();
    log(`${m.name} started (pid ${m.pid}, client ${m.clientPort}, peer ${m.peerPort})`);
  };

  const kill = async (i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const child = children[i];
    if (!child) return;
    await terminate(child, { signal, exited: exited[i]! });
  };

  const running = (): number[] => members.map((_, i) => i).filter((i) => children[i] !== null);

  const logTail = (i: number, lines = 20): string => tail(logFile(i), lines);

  const describeFailure = (what: string, last: unknown): Error => {
    const logs = members.map((m, i) => `--- ${m.name}.log (${children[i] ? `pid ${m.pid}` : 'not running'}) ---\n${logTail(i, 15)}`).join('\n');
    const cause = last instanceof Error ? last.message : String(last ?? 'no answer');
    return new Error(`${what}; last error: ${cause}\n${logs}`);
  };

  // Leader as seen by the leader itself: a member reporting its own id as leader. A follower's view can
  // lag an election by up to the election timeout.
  const findLeader = async (): Promise<number | null> => {
    const views = await Promise.all(
      running().map(async (i) => {
        try {
          return { i, s: await etcdStatus(members[i].endpoint, { ...client, timeoutMs: 1_000 }) };
        } catch {
          return null;
        }
      }),
    );
    for (const v of views) if (v && v.s.leader !== '0' && v.s.leader === v.s.memberId) return v.i;
    return null;
  };

  const leader = async (timeoutMs = 10_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = await findLeader();
      if (i !== null) return i;
      if (Date.now() > deadline) throw describeFailure(`etcd: no leader within ${timeoutMs} ms`, null);
      await sleep(100);
    }
  };

  const ready = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last: unknown = null;
    for (;;) {
      if (running().length === 0) throw describeFailure('etcd: no member is running', last);
      const l = await findLeader();
      if (l !== null) {
        try {
          await etcdPut(members[l].endpoint, READY_KEY, String(Date.now()), { ...client, timeoutMs: 2_000 });
          return;
        } catch (err) {
          last = err;
        }
      } else {
        last = new Error('no member reports itself leader');
      }
      if (Date.now() > deadline) throw describeFailure(`etcd: not ready within ${timeoutMs} ms`, last);
      await sleep(100);
    }
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((_, i) => kill(i)));
    owned.dispose();
  };

  const cluster: EtcdCluster = {
    dir,
    endpoints: members.map((m) => m.endpoint),
    members,
    get tls() {
      return tls;
    },
    auth,
    client,
    ready,
    leader,
    kill,
    restart: async (i) => {
      if (stopped) throw new Error('etcd cluster was stopped');
      await kill(i);
      spawnMember(i);
    },
    stopAll: async (signal = 'SIGKILL') => {
      await Promise.all(members.map((_, i) => kill(i, signal)));
    },
    startAll: async () => {
      if (stopped) throw new Error('etcd cluster was stopped');
      for (let i = 0; i < members.length; i++) if (!children[i]) spawnMember(i);
      await ready(opts.readyTimeoutMs);
    },
    logTail,
    stop,
  };

  const started = Date.now();
  try {
    if (opts.tls) {
      tls = makeEtcdTls(dir);
      client.tls = { ca: tls.ca, cert: tls.cert, key: tls.key };
    }
    // All members at once: a new cluster elects its first leader only once a quorum has come up.
    for (let i = 0; i < members.length; i++) spawnMember(i);
    await ready(opts.readyTimeoutMs);
    if (auth) {
      await enableAuth(members[await leader()].endpoint, client, auth);
      client.auth = { user: auth.rootUser, password: auth.rootPassword };
      // A put as root proves the switch (auth enable is applied through raft, like any write).
      await ready(opts.readyTimeoutMs);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  log(`etcd cluster of ${count}${tls ? ' (TLS)' : ''}${auth ? ' (auth)' : ''} ready in ${Date.now() - started} ms (${dir})`);
  return cluster;
}
