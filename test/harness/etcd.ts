// Throwaway etcd cluster (3 members by default) on loopback free ports, for the multi-instance coordination tests (issue 11).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { isAlive, runsFrom } from './processes.js';

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  /** http://127.0.0.1:clientPort */
  endpoint: string;
  /** PID of the running etcd process; null while the member is stopped. */
  pid: number | null;
  dataDir: string;
}

export interface EtcdCluster {
  /** The cluster's temp directory: member data dirs and one log file per member (NAME.log). */
  dir: string;
  /** Client URLs, one per member, in member order. */
  endpoints: string[];
  members: EtcdMember[];
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
}

const DIR_PREFIX = 'pgsplit-etcd-';
const INFO_FILE = 'etcd.json';
const READY_KEY = '/pgsplit-harness/ready';

/** Where etcd is: PGSPLIT_ETCD_BIN, then PATH, then /usr/bin/etcd (Debian's etcd-server). Null when missing. */
export function findEtcdBin(): string | null {
  const explicit = process.env.PGSPLIT_ETCD_BIN;
  // A wrong explicit setting should fail loudly rather than silently use another install.
  if (explicit) return isExecutable(explicit) ? path.resolve(explicit) : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, 'etcd'))) return path.resolve(dir, 'etcd');
  }
  return isExecutable('/usr/bin/etcd') ? '/usr/bin/etcd' : null;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Minimal client over etcd's gRPC-gateway (JSON on the client port): enough for the harness and for
// tests that want to look at the store without a gRPC client. Keys and values travel as base64;
// 64-bit numbers come back as strings.

export interface EtcdRequestOptions {
  /** Aborts the request; default AbortSignal.timeout(timeoutMs). */
  signal?: AbortSignal;
  /** Used when no signal is given (default 5 s). */
  timeoutMs?: number;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/** POST to the gateway (path like '/v3/kv/put'); rejects on network errors and on etcd errors (non-2xx or an "error" field). */
export async function etcdCall<T = Record<string, unknown>>(endpoint: string, apiPath: string, body: unknown, o: EtcdRequestOptions = {}): Promise<T> {
  const res = await fetch(endpoint + apiPath, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: o.signal ?? AbortSignal.timeout(o.timeoutMs ?? 5_000),
  });
  const text = await res.text();
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

// ---------------------------------------------------------------------------------------------
// Synchronous teardown for process 'exit' and signals, where async work never runs (same scheme as
// the PostgreSQL harness in cluster.ts): every live member's PID is SIGKILLed and the dir removed.

interface EtcdInfo {
  dir: string;
  ownerPid: number;
  pids: number[];
}

const live = new Map<string, EtcdInfo>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;



function killInfoSync(info: EtcdInfo): void {
  for (const pid of info.pids) {
    try {
      if (isAlive(pid) && (info.ownerPid === process.pid || runsFrom(pid, info.dir))) process.kill(pid, 'SIGKILL');
    } catch {
      /* best effort */
    }
  }
  try {
    fs.rmSync(info.dir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

function cleanupAllSync(): void {
  for (const info of live.values()) killInfoSync(info);
  live.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  cleanupAllSync();
  uninstallHandlers();
  // Our listener replaced the default "terminate" action; restore it unless someone else handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // Prepended because vitest's own 'exit' listener calls process.exit() again, which skips later listeners.
  process.prependListener('exit', cleanupAllSync);
  for (const s of SIGNALS) process.prependListener(s, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  process.off('exit', cleanupAllSync);
  for (const s of SIGNALS) process.off(s, onSignal);
  handlersInstalled = false;
}

/** Removes clusters left behind by processes that died without cleaning up (SIGKILL of the test worker). */
function reapStale(baseDir: string, log: (l: string) => void): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(baseDir).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const e of entries) {
    let info: EtcdInfo;
    try {
      info = JSON.parse(fs.readFileSync(path.join(baseDir, e, INFO_FILE), 'utf8')) as EtcdInfo;
    } catch {
      continue;
    }
    if (!info.ownerPid || isAlive(info.ownerPid)) continue;
    log(`reaping stale etcd cluster ${info.dir} (owner pid ${info.ownerPid} is gone)`);
    killInfoSync(info);
  }
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// Inherited ETCD_* variables are read by etcd as flags (ETCD_NAME, ETCD_DATA_DIR, ...) and would
// change or break the members we start.
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD')) env[k] = v;
  // etcd 3.4 refuses to start on architectures other than amd64/ppc64le unless this names the arch.
  const goArch: Record<string, string> = { arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', riscv64: 'riscv64' };
  if (process.arch !== 'x64' && process.arch !== 'ppc64') env.ETCD_UNSUPPORTED_ARCH = goArch[process.arch] ?? process.arch;
  return env;
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const count = opts.members ?? 3;
  const log = opts.log ?? (() => {});
  const bin = findEtcdBin();
  if (!bin) {
    throw new Error(
      'etcd not found (looked in PATH and /usr/bin/etcd' +
        (process.env.PGSPLIT_ETCD_BIN ? `; PGSPLIT_ETCD_BIN=${process.env.PGSPLIT_ETCD_BIN} is not executable` : '') +
        '). Install it: apt-get install etcd-server (Debian/Ubuntu), or set PGSPLIT_ETCD_BIN to an etcd >= 3.4 binary.',
    );
  }

  const baseDir = path.resolve(opts.dir ?? os.tmpdir());
  fs.mkdirSync(baseDir, { recursive: true });
  reapStale(baseDir, log);
  const dir = fs.mkdtempSync(path.join(baseDir, DIR_PREFIX));

  const members: EtcdMember[] = [];
  for (let i = 0; i < count; i++) {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const name = `etcd${i + 1}`;
    members.push({ name, clientPort, peerPort, endpoint: `http://127.0.0.1:${clientPort}`, pid: null, dataDir: path.join(dir, name) });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const info: EtcdInfo = { dir, ownerPid: process.pid, pids: [] };
  const children: (ChildProcess | null)[] = members.map(() => null);
  const exited: (Promise<void> | null)[] = members.map(() => null);
  const logFile = (i: number): string => path.join(dir, `${members[i].name}.log`);
  let stopped = false;

  const saveInfo = (): void => {
    info.pids = members.map((m) => m.pid).filter((p): p is number => p !== null);
    try {
      fs.writeFileSync(path.join(dir, INFO_FILE), JSON.stringify(info));
    } catch {
      /* the dir may be going away during stop() */
    }
  };
  live.set(dir, info);
  installHandlers();
  saveInfo();

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
    ];
    const fd = fs.openSync(logFile(i), 'a');
    let child: ChildProcess;
    try {
      child = spawn(bin, args, { cwd: dir, env: childEnv(), stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    // Do not hold the test process open; the exit handler kills it if stop() is never called.
    child.unref();
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
    const done = exited[i];
    // Unref'd children do not keep the event loop alive: without this a script whose only pending work
    // is this wait would exit before the child's 'exit' event arrives.
    child.ref();
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
    await done;
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
          return { i, s: await etcdStatus(members[i].endpoint, { timeoutMs: 1_000 }) };
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
          await etcdPut(members[l].endpoint, READY_KEY, String(Date.now()), { timeoutMs: 2_000 });
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
    live.delete(dir);
    if (live.size === 0) uninstallHandlers();
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const cluster: EtcdCluster = {
    dir,
    endpoints: members.map((m) => m.endpoint),
    members,
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
    // All members at once: a new cluster elects its first leader only once a quorum has come up.
    for (let i = 0; i < members.length; i++) spawnMember(i);
    await ready(opts.readyTimeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  log(`etcd cluster of ${count} ready in ${Date.now() - started} ms (${dir})`);
  return cluster;
}
