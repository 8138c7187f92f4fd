// Starts pgbouncer (transaction pooling) and pgpool-II in temp dirs in front of the primary, for the benchmark; each returns an endpoint and stop().
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Endpoint } from './pgbench.js';
import { freePort } from '../../test/harness/ports.js';
import { asServiceUser, run, serviceUserIds, sleep, startService, which, type Service } from './proc.js';

export interface Pooler {
  name: string;
  version: string;
  /** Caveats worth printing next to the results (e.g. missing prepared-statement support). */
  notes: string[];
  port: number;
  dir: string;
  /** The process we started (runuser when we are root; the pooler is then its child): CPU and RSS are read for its process tree. */
  pid: number;
  stop(): Promise<void>;
}

export interface PoolerOptions {
  /** Where the pooler sends traffic: the primary, reached as the app user with its password. */
  server: Endpoint;
  /** pgbench -c; pools are sized so that no client waits for a server connection (unless poolSize says otherwise). */
  clients: number;
  /** Server connections per pool (pgbouncer default_pool_size); default `clients`. */
  poolSize?: number;
  /** Client connections the pooler accepts (pgbouncer max_client_conn); default 1000. */
  maxClientConn?: number;
  /**
   * The user's SCRAM secret exactly as pg_authid holds it (what auth_query would return): pgbouncer then checks
   * logins without a PBKDF2 of its own and logs in to PostgreSQL with the client's SCRAM keys. Without it the
   * auth_file holds the plain password and every login costs pgbouncer a PBKDF2 (4096 rounds).
   */
  scramSecret?: string;
}

/** Thrown when a pooler is not installed or cannot be started; the message is the reason to print. */
export class PoolerUnavailable extends Error {}

/**
 * The command line that starts a pooler: as SERVICE_USER when we are root, with the soft open-file limit raised to
 * the hard one first (runuser's pam_limits drops it to PID 1's, 1024 here, and 10,000 idle clients need more).
 */
function serviceCommand(file: string, args: string[]): [string, string[]] {
  return asServiceUser('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', file, ...args]);
}

/** Temp dir the service user can read and write (PostgreSQL's user when we are root). */
function serviceDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const ids = serviceUserIds();
  if (ids) fs.chownSync(dir, ids.uid, ids.gid);
  return dir;
}

function writeFile(dir: string, name: string, text: string, mode = 0o600): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text, { mode });
  const ids = serviceUserIds();
  if (ids) fs.chownSync(file, ids.uid, ids.gid);
  return file;
}

/** Waits until `SELECT 1` works through the pooler as the app user (or the process dies / time runs out). */
async function waitUsable(name: string, svc: Service, port: number, server: Endpoint, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  while (Date.now() < deadline) {
    if (svc.exited()) throw new PoolerUnavailable(`${name} exited during startup: ${tail(svc.output())}`);
    const c = new pg.Client({ host: '127.0.0.1', port, user: server.user, password: server.password, database: server.database, connectionTimeoutMillis: 2_000 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch (err) {
      lastErr = (err as Error).message;
      await c.end().catch(() => {});
      await sleep(200);
    }
  }
  throw new PoolerUnavailable(`${name} did not accept app connections within ${timeoutMs / 1000}s (last error: ${lastErr}); output: ${tail(svc.output())}`);
}

const tail = (s: string, n = 8): string => s.trim().split('\n').slice(-n).join(' | ') || '(no output)';

async function versionOf(bin: string, args: string[]): Promise<string> {
  const r = await run(bin, args, { timeoutMs: 10_000 });
  return (r.stdout || r.stderr).split('\n')[0]?.trim() ?? '';
}

function cleanup(svc: Service | null, dir: string, signal: NodeJS.Signals): () => Promise<void> {
  return async () => {
    await svc?.stop(signal, 10_000);
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

export function pgbouncerBinary(): string | null {
  return which('pgbouncer');
}

export async function startPgbouncer(o: PoolerOptions): Promise<Pooler> {
  const bin = pgbouncerBinary();
  if (!bin) throw new PoolerUnavailable('pgbouncer is not installed (apt-get install pgbouncer)');
  const version = await versionOf(bin, ['--version']);
  // Protocol-level prepared statements in transaction pooling arrived in pgbouncer 1.21.
  const [maj = 0, min = 0] = (/(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
  const preparedSupport = maj > 1 || (maj === 1 && min >= 21);
  const notes = preparedSupport
    ? []
    : [`${version} has no prepared-statement support in transaction pooling (max_prepared_statements needs >= 1.21), so -M prepared through it is expected to abort`];
  const port = await freePort();
  const dir = serviceDir('pgsplit-bench-pgbouncer-');
  let svc: Service | null = null;
  try {
    const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
    writeFile(dir, 'userlist.txt', `${q(o.server.user)} ${q(o.scramSecret ?? o.server.password)}\n`);
    const ini = writeFile(
      dir,
      'pgbouncer.ini',
      [
        '; pgbouncer for the pgsplit benchmark: transaction pooling in front of the primary',
        '[databases]',
        `${o.server.database} = host=${o.server.host} port=${o.server.port} dbname=${o.server.database}`,
        '',
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        `unix_socket_dir = ${dir}`,
        `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
        'auth_type = scram-sha-256',
        `auth_file = ${path.join(dir, 'userlist.txt')}`,
        'pool_mode = transaction',
        `default_pool_size = ${Math.max(o.poolSize ?? o.clients, 1)}`,
        `max_client_conn = ${o.maxClientConn ?? 1000}`,
        'ignore_startup_parameters = extra_float_digits',
        ...(preparedSupport ? ['max_prepared_statements = 200'] : []),
        'log_connections = 0',
        'log_disconnections = 0',
        'log_pooler_errors = 1',
        '',
      ].join('\n'),
    );
    const [file, args] = serviceCommand(bin, [ini]);
    svc = startService(file, args, { cwd: dir });
    await waitUsable('pgbouncer', svc, port, o.server);
    // SIGTERM: immediate shutdown (SIGINT would wait for clients).
    return { name: 'pgbouncer', version, notes, port, dir, pid: svc.child.pid!, stop: cleanup(svc, dir, 'SIGTERM') };
  } catch (err) {
    await cleanup(svc, dir, 'SIGTERM')();
    if (err instanceof PoolerUnavailable) throw err;
    throw new PoolerUnavailable(`pgbouncer could not be started: ${(err as Error).message}`);
  }
}

export function pgpoolBinary(): string | null {
  return which('pgpool');
}

export async function startPgpool(o: PoolerOptions): Promise<Pooler> {
  const bin = pgpoolBinary();
  if (!bin) throw new PoolerUnavailable('pgpool-II is not installed (apt-get install pgpool2)');
  const version = await versionOf(bin, ['--version']);
  const port = await freePort();
  const pcpPort = await freePort();
  const dir = serviceDir('pgsplit-bench-pgpool-');
  let svc: Service | null = null;
  try {
    // Clients authenticate with SCRAM against pool_passwd, and pgpool uses the same (clear text)
    // entry to do SCRAM towards PostgreSQL; the superuser is trusted by the test cluster.
    writeFile(dir, 'pool_passwd', `${o.server.user}:TEXT${o.server.password}\n`);
    const hba = writeFile(dir, 'pool_hba.conf', 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n');
    const pcp = writeFile(dir, 'pcp.conf', '');
    const children = Math.max(o.clients * 2, 4);
    const conf = writeFile(
      dir,
      'pgpool.conf',
      [
        '# pgpool-II for the pgsplit benchmark: the primary only, no load balancing, no checks',
        "backend_clustering_mode = 'streaming_replication'",
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        `socket_dir = '${dir}'`,
        "pcp_listen_addresses = ''",
        `pcp_port = ${pcpPort}`,
        `pcp_socket_dir = '${dir}'`,
        `wd_ipc_socket_dir = '${dir}'`,
        `pid_file_name = '${path.join(dir, 'pgpool.pid')}'`,
        `logdir = '${dir}'`,
        `backend_hostname0 = '${o.server.host}'`,
        `backend_port0 = ${o.server.port}`,
        'backend_weight0 = 1',
        "backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'",
        `num_init_children = ${children}`,
        'max_pool = 1',
        'reserved_connections = 0',
        'child_life_time = 0',
        'child_max_connections = 0',
        'connection_life_time = 0',
        'client_idle_limit = 0',
        'connection_cache = on',
        'load_balance_mode = off',
        'sr_check_period = 0',
        "sr_check_user = 'postgres'",
        "sr_check_password = ''",
        'health_check_period = 0',
        "health_check_user = 'postgres'",
        'failover_on_backend_error = off',
        'use_watchdog = off',
        'memory_cache_enabled = off',
        'enable_pool_hba = on',
        "pool_passwd = 'pool_passwd'",
        'allow_clear_text_frontend_auth = off',
        'ssl = off',
        "log_destination = 'stderr'",
        'logging_collector = off',
        'log_min_messages = warning',
        'log_connections = off',
        'log_statement = off',
        'log_per_node_statement = off',
        '',
      ].join('\n'),
    );
    const [file, args] = serviceCommand(bin, ['-n', '-f', conf, '-F', pcp, '-a', hba]);
    svc = startService(file, args, { cwd: dir });
    await waitUsable('pgpool-II', svc, port, o.server);
    // SIGINT: fast shutdown (SIGTERM is "smart" and waits for clients).
    return { name: 'pgpool-II', version, notes: [], port, dir, pid: svc.child.pid!, stop: cleanup(svc, dir, 'SIGINT') };
  } catch (err) {
    await cleanup(svc, dir, 'SIGINT')();
    if (err instanceof PoolerUnavailable) throw err;
    throw new PoolerUnavailable(`pgpool-II could not be started: ${(err as Error).message}`);
  }
}
