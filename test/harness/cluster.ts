// Throwaway PostgreSQL streaming-replication cluster (1 primary + N hot standbys) built from local server binaries; used by tests, demo and bench.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findPgBinDir } from './binaries.js';
import { freePort } from './ports.js';
import { asUser, isAlive, isRoot, logTail as tail, pgFreeEnv, runCommand, userIds, type RunResult } from './processes.js';
import { makeTempDir, ownTempDir, removeDir, type DirKind, type OwnedDir } from './temp-dir.js';

export { findPgBinDir };

export interface ClusterNode {
  name: string;
  host: string;
  port: number;
  dataDir: string;
}

export type { RunResult };

export interface RunOptions {
  env?: Record<string, string>;
  input?: string;
  timeoutMs?: number;
}

export interface Cluster {
  dir: string;
  binDir: string;
  /** nodes[0] is the initial primary ('pg1'), then replicas 'pg2', 'pg3', ... */
  nodes: ClusterNode[];
  /** Trusted over 127.0.0.1; for the monitor and test setup. */
  superuser: string;
  /** SCRAM-SHA-256 login. */
  app: { user: 'app'; password: 'secret'; database: 'appdb' };
  stopNode(name: string, mode?: 'fast' | 'immediate'): Promise<void>;
  startNode(name: string): Promise<void>;
  /** Absolute path of a PostgreSQL binary, e.g. bin('pgbench'). */
  bin(name: string): string;
  /**
   * Runs a command as the PostgreSQL server user (via runuser when we are root). A bare name that
   * exists in binDir (e.g. 'psql') is resolved to that binary. Never rejects on a non-zero exit;
   * a timeout yields code 124.
   */
  runAsServerUser(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Stops all servers (immediate) and removes dir. Idempotent, never throws. */
  stop(): Promise<void>;
}

/** Plain JSON data describing a running cluster, so another process can attach to it. */
export interface ClusterInfo {
  kind: 'local' | 'docker';
  dir: string;
  binDir: string;
  nodes: ClusterNode[];
  superuser: string;
  app: { user: 'app'; password: 'secret'; database: 'appdb' };
  /** OS user that owns the server processes when we run as root, else null. */
  serverUser: string | null;
  /** PID of the process that started the cluster; lets a later run reap clusters whose owner was SIGKILLed. */
  ownerPid: number;
  /** docker kind only: node name -> container id. */
  containers?: Record<string, string>;
  /** Local clusters: the test CA and the servers' certificate (CN 127.0.0.1, SAN IP:127.0.0.1 and DNS:localhost); servers run with ssl = on. */
  tls?: ClusterTls;
}

/** PEM files in the cluster's directory. The server certificate also suits anything else listening on 127.0.0.1 (pgsplit in tests). */
export interface ClusterTls {
  ca: string;
  cert: string;
  key: string;
}

export interface StartClusterOptions {
  replicas?: number;
  baseDir?: string;
  log?: (line: string) => void;
  /**
   * Install the synchronous SIGINT/SIGTERM/SIGHUP clean-up (default true). Scripts with their own
   * asynchronous handler pass false: under tsx a handler that blocks is SIGKILLed half-way through.
   * The 'exit' clean-up is installed either way.
   */
  signalHandlers?: boolean;
}

const SERVER_USER = 'postgres';
const APP = { user: 'app', password: 'secret', database: 'appdb' } as const;
const PG_CTL_TIMEOUT_S = 60;
const STREAMING_TIMEOUT_MS = 60_000;

// Inherited PG* variables would silently redirect the setup tools away from the cluster we are building.
async function runProcess(
  file: string,
  args: string[],
  opts: RunOptions & { cwd?: string } = {},
): Promise<RunResult> {
  // Own process group so a timeout can kill runuser together with the tool it started.
  const { code, stdout, stderr, timedOut } = await runCommand(file, args, { cwd: opts.cwd, env: pgFreeEnv(opts.env), input: opts.input ?? '', timeoutMs: opts.timeoutMs, group: true });
  return { code, stdout, stderr: timedOut ? `${stderr}\n[timed out after ${opts.timeoutMs} ms]` : stderr };
}

function logTail(file: string, lines = 25): string {
  return tail(file, lines, '(no server log)');
}

function lookupUser(user: string): { uid: number; gid: number } {
  const ids = userIds(user);
  if (!ids) {
    throw new Error(
      `Running as root, but there is no '${user}' OS user to run PostgreSQL as (it refuses to run as root). ` +
        `Install the server package (apt-get install postgresql) or create the user.`,
    );
  }
  return ids;
}


function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    return Number.isFinite(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

// --- synchronous teardown: usable from process 'exit' handlers, where async work never runs ---

function stopInfoSync(info: ClusterInfo): void {
  if (info.kind !== 'local') return;
  for (const node of info.nodes) {
    try {
      if (!fs.existsSync(path.join(node.dataDir, 'postmaster.pid'))) continue;
      const [file, args] = asUser(info.serverUser, path.join(info.binDir, 'pg_ctl'), [
        'stop', '-D', node.dataDir, '-m', 'immediate', '-w', '-t', '10',
      ]);
      const r = spawnSync(file, args, { cwd: info.dir, env: pgFreeEnv(), stdio: 'ignore', timeout: 15_000 });
      if (r.status !== 0) {
        const pid = postmasterPid(node.dataDir);
        if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
      }
    } catch {
      /* best effort */
    }
  }
  removeDir(info.dir);
}

/** cluster.json is the whole ClusterInfo: attachCluster's callers get the same, and the reaper needs its nodes and binDir. */
const CLUSTER_DIR: DirKind<ClusterInfo> = { prefix: 'pgsplit-cluster-', infoFile: 'cluster.json', what: 'cluster', teardown: stopInfoSync };

// --- the Cluster object, shared by startCluster (owner) and attachCluster (workers) ---

/** owned: the clean-up registration of the process that started the cluster (null in workers that attach to it). */
function buildCluster(info: ClusterInfo, owned: OwnedDir | null): Cluster {
  const nodeByName = (name: string): ClusterNode => {
    const n = info.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`unknown cluster node '${name}' (have ${info.nodes.map((x) => x.name).join(', ')})`);
    return n;
  };

  const bin = (name: string): string => {
    const p = path.join(info.binDir, name);
    return fs.existsSync(p) ? p : name;
  };

  const runAsServerUser = (cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> => {
    const file = !cmd.includes('/') && info.binDir && fs.existsSync(path.join(info.binDir, cmd)) ? bin(cmd) : cmd;
    const [f, a] = asUser(info.serverUser, file, args);
    // The server user cannot necessarily enter our cwd (e.g. /root), which makes pg tools complain.
    const cwd = info.dir && fs.existsSync(info.dir) ? info.dir : os.tmpdir();
    return runProcess(f, a, { ...opts, cwd });
  };

  const pgCtl = (args: string[], timeoutMs = (PG_CTL_TIMEOUT_S + 10) * 1000): Promise<RunResult> =>
    runAsServerUser(bin('pg_ctl'), args, { timeoutMs });

  const logFile = (n: ClusterNode): string => path.join(info.dir, `${n.name}.log`);

  const isRunning = async (n: ClusterNode): Promise<boolean> => {
    // pg_ctl status: 0 = running, 3 = not running, 4 = no usable data directory.
    const r = await pgCtl(['status', '-D', n.dataDir], 15_000);
    return r.code === 0;
  };

  const docker = async (args: string[]): Promise<void> => {
    const r = await runProcess('docker', args, { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr.trim()}`);
  };

  const stopNode = async (name: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    const n = nodeByName(name);
    if (info.kind === 'docker') {
      const id = info.containers?.[name];
      if (!id) throw new Error(`no container for node '${name}'`);
      await docker(mode === 'immediate' ? ['kill', id] : ['stop', '-t', '30', id]);
      return;
    }
    if (!(await isRunning(n))) return;
    const r = await pgCtl(['stop', '-D', n.dataDir, '-m', mode, '-w', '-t', String(PG_CTL_TIMEOUT_S)]);
    if (r.code !== 0) {
      throw new Error(`pg_ctl stop ${name} failed (code ${r.code}): ${r.stderr.trim()}\n--- ${logFile(n)} ---\n${logTail(logFile(n))}`);
    }
  };

  const startNode = async (name: string): Promise<void> => {
    const n = nodeByName(name);
    if (info.kind === 'docker') {
      const id = info.containers?.[name];
      if (!id) throw new Error(`no container for node '${name}'`);
      await docker(['start', id]);
      await waitForConnect(n, 60_000);
      return;
    }
    if (await isRunning(n)) return;
    const r = await pgCtl(['start', '-D', n.dataDir, '-l', logFile(n), '-w', '-t', String(PG_CTL_TIMEOUT_S)]);
    if (r.code !== 0) {
      throw new Error(
        `pg_ctl start ${name} failed (code ${r.code}): ${(r.stderr || r.stdout).trim()}\n--- ${logFile(n)} ---\n${logTail(logFile(n))}`,
      );
    }
  };

  // Used for docker nodes, where pg_ctl -w is not available to us.
  const waitForConnect = async (n: ClusterNode, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    const { default: pg } = await import('pg');
    let lastErr: unknown;
    while (Date.now() < deadline) {
      const c = new pg.Client({ host: n.host, port: n.port, user: info.superuser, database: 'postgres' });
      try {
        await c.connect();
        await c.end();
        return;
      } catch (err) {
        lastErr = err;
        await c.end().catch(() => {});
        await sleep(250);
      }
    }
    throw new Error(`node ${n.name} did not accept connections within ${timeoutMs} ms: ${String(lastErr)}`);
  };

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        if (info.kind === 'docker') {
          await Promise.all(Object.values(info.containers ?? {}).map((id) => docker(['rm', '-f', '-v', id]).catch(() => {})));
          return;
        }
        await Promise.all(
          info.nodes.map(async (n) => {
            try {
              if (!fs.existsSync(path.join(n.dataDir, 'postmaster.pid'))) return;
              const r = await pgCtl(['stop', '-D', n.dataDir, '-m', 'immediate', '-w', '-t', '20'], 30_000);
              if (r.code !== 0) {
                const pid = postmasterPid(n.dataDir);
                if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
              }
            } catch {
              /* best effort */
            }
          }),
        );
        await fs.promises.rm(info.dir, { recursive: true, force: true }).catch(() => {});
      } catch {
        /* never throws */
      } finally {
        owned?.release();
      }
    })();
    return stopping;
  };

  return {
    dir: info.dir,
    binDir: info.binDir,
    nodes: info.nodes.map((n) => ({ ...n })),
    superuser: info.superuser,
    app: { ...APP },
    stopNode,
    startNode,
    bin,
    runAsServerUser,
    stop,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function clusterInfo(c: Cluster): ClusterInfo {
  const info = infoByCluster.get(c);
  if (!info) throw new Error('clusterInfo: not a cluster created by startCluster/attachCluster');
  return JSON.parse(JSON.stringify(info)) as ClusterInfo;
}

export function attachCluster(info: ClusterInfo): Cluster {
  const c = buildCluster(info, null);
  infoByCluster.set(c, info);
  return c;
}

const infoByCluster = new WeakMap<Cluster, ClusterInfo>();

/**
 * A test CA and a server certificate signed by it, made with openssl in `dir` (EC P-256 keys: quick to make and to
 * handshake). The key belongs to the server user with mode 0600, as PostgreSQL insists.
 */
async function makeTestCertificates(dir: string, ids: { uid: number; gid: number } | null): Promise<ClusterTls> {
  fs.mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const openssl = async (args: string[]): Promise<void> => {
    const r = await runProcess('openssl', args, { cwd: dir, timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (code ${r.code}): ${r.stderr.trim()}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '3650', '-subj', '/CN=pgsplit test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await openssl(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.crt'), '-days', '3650', '-extfile', f('server.ext')]);
  fs.chmodSync(f('server.key'), 0o600);
  if (ids) fs.chownSync(f('server.key'), ids.uid, ids.gid);
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}

function sslConf(t: ClusterTls): string {
  return `ssl = on
ssl_cert_file = '${t.cert}'
ssl_key_file = '${t.key}'
`;
}

function primaryConf(port: number, socketDir: string): string {
  return `
# --- pgsplit test cluster ---
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${socketDir}'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
wal_keep_size = 256MB
# Throwaway data: durability is not worth the IO on a 2-core CI box.
fsync = off
full_page_writes = on
synchronous_commit = on
shared_buffers = 32MB
max_connections = 200
logging_collector = off
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d/%a '
`;
}

// Order matters: the first matching line wins, so the per-user methods come before the SCRAM catch-all.
const PG_HBA = `# pgsplit test cluster
local   all          all                     trust
host    all          postgres  127.0.0.1/32  trust
host    replication  postgres  127.0.0.1/32  trust
host    all          md5user   127.0.0.1/32  md5
host    all          pwuser    127.0.0.1/32  password
host    all          all       127.0.0.1/32  scram-sha-256
`;

const SETUP_SQL = `
CREATE ROLE app LOGIN PASSWORD 'secret';
CREATE DATABASE appdb OWNER app;
-- Stored as md5 (not SCRAM) so the proxy's MD5 authentication path gets exercised.
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5secret';
RESET password_encryption;
CREATE ROLE pwuser LOGIN PASSWORD 'pwsecret';
GRANT CONNECT ON DATABASE appdb TO app, md5user, pwuser;
\\connect appdb
-- PostgreSQL 15 no longer grants CREATE on public to everyone.
GRANT USAGE, CREATE ON SCHEMA public TO app, md5user, pwuser;
`;

export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const replicas = opts.replicas ?? 2;
  const binDir = findPgBinDir();
  if (!binDir) {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres, psql) not found. ' +
        'Install them (e.g. `apt-get install postgresql`) or set PGSPLIT_PG_BINDIR to their directory' +
        (process.env.PGSPLIT_PG_BINDIR ? ` (PGSPLIT_PG_BINDIR=${process.env.PGSPLIT_PG_BINDIR} lacks them)` : '') +
        '.',
    );
  }
  const serverUser = isRoot() ? SERVER_USER : null;
  const ids = serverUser ? lookupUser(serverUser) : null;

  const dir = makeTempDir(CLUSTER_DIR, { baseDir: opts.baseDir, log });
  if (ids) fs.chownSync(dir, ids.uid, ids.gid);

  const names = ['pg1', ...Array.from({ length: replicas }, (_, i) => `pg${i + 2}`)];
  const nodes: ClusterNode[] = [];
  for (const name of names) {
    nodes.push({ name, host: '127.0.0.1', port: await freePort(), dataDir: path.join(dir, name) });
  }
  const info: ClusterInfo = {
    kind: 'local',
    dir,
    binDir,
    nodes,
    superuser: 'postgres',
    app: { ...APP },
    serverUser,
    ownerPid: process.pid,
    tls: { ca: path.join(dir, 'tls', 'ca.crt'), cert: path.join(dir, 'tls', 'server.crt'), key: path.join(dir, 'tls', 'server.key') },
  };
  const owned = ownTempDir(CLUSTER_DIR, info, { signals: opts.signalHandlers ?? true });

  const cluster = buildCluster(info, owned);
  infoByCluster.set(cluster, info);

  const must = async (what: string, file: string, args: string[], input?: string, node?: ClusterNode): Promise<RunResult> => {
    const r = await cluster.runAsServerUser(file, args, { input, timeoutMs: 120_000 });
    if (r.code !== 0) {
      const tail = node ? `\n--- ${node.name}.log ---\n${logTail(path.join(dir, `${node.name}.log`))}` : '';
      throw new Error(`${what} failed (code ${r.code}):\n${(r.stderr || r.stdout).trim()}${tail}`);
    }
    return r;
  };
  const psql = (node: ClusterNode, sql: string, what: string): Promise<RunResult> =>
    must(what, cluster.bin('psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', node.host, '-p', String(node.port), '-U', 'postgres', '-d', 'postgres', '-f', '-'], sql, node);

  try {
    const access = await cluster.runAsServerUser('test', ['-w', dir, '-a', '-x', dir]);
    if (access.code !== 0) {
      throw new Error(`the '${serverUser ?? os.userInfo().username}' user cannot write to ${dir}; pass a baseDir it can reach`);
    }

    const primary = nodes[0]!;
    log(`initdb ${primary.name} in ${primary.dataDir} (${binDir})`);
    await must('initdb', cluster.bin('initdb'), [
      '-D', primary.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ]);
    // TLS is on (replicas inherit it with the copied postgresql.conf); plaintext clients are still accepted.
    const tls = await makeTestCertificates(path.join(dir, 'tls'), ids);
    fs.appendFileSync(path.join(primary.dataDir, 'postgresql.conf'), primaryConf(primary.port, dir) + sslConf(tls));
    fs.writeFileSync(path.join(primary.dataDir, 'pg_hba.conf'), PG_HBA);

    log(`starting ${primary.name} on port ${primary.port}`);
    await cluster.startNode(primary.name);
    await psql(primary, SETUP_SQL, 'creating roles and appdb');

    // Concurrent base backups are fine: each takes its own WAL sender and checkpoint request.
    await Promise.all(
      nodes.slice(1).map(async (replica) => {
        log(`pg_basebackup ${replica.name} from ${primary.name}`);
        await must(`pg_basebackup ${replica.name}`, cluster.bin('pg_basebackup'), [
          '-h', primary.host, '-p', String(primary.port), '-U', 'postgres', '-D', replica.dataDir,
          '-X', 'stream', '-R', '-c', 'fast', '--no-sync',
        ], undefined, primary);
        // Later settings win, so these override the copied port and -R's primary_conninfo; the
        // application_name is what synchronous_standby_names refers to.
        fs.appendFileSync(
          path.join(replica.dataDir, 'postgresql.auto.conf'),
          `\n# pgsplit test cluster\nport = ${replica.port}\n` +
            `primary_conninfo = 'host=${primary.host} port=${primary.port} user=postgres application_name=${replica.name}'\n`,
        );
        fs.chmodSync(replica.dataDir, 0o700);
        log(`starting ${replica.name} on port ${replica.port}`);
        await cluster.startNode(replica.name);
      }),
    );

    if (replicas > 0) {
      const want = nodes.slice(1).map((n) => n.name);
      const deadline = Date.now() + STREAMING_TIMEOUT_MS;
      let streaming: string[] = [];
      while (true) {
        const r = await psql(primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming';", 'checking pg_stat_replication');
        streaming = r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
        if (want.every((w) => streaming.includes(w))) break;
        if (Date.now() > deadline) {
          const missing = want.filter((w) => !streaming.includes(w));
          throw new Error(
            `replicas not streaming after ${STREAMING_TIMEOUT_MS} ms: ${missing.join(', ')}\n` +
              missing.map((m) => `--- ${m}.log ---\n${logTail(path.join(dir, `${m}.log`))}`).join('\n'),
          );
        }
        await sleep(100);
      }
    }
    log(`cluster ready in ${((Date.now() - started) / 1000).toFixed(1)}s: ${nodes.map((n) => `${n.name}=${n.host}:${n.port}`).join(' ')}`);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
