// Throwaway HAProxy (foreground, -db) on a loopback free port in front of pgsplit instances, health-checked through their admin /ready (as deploy/haproxy.cfg); server states read over its stats socket.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findBinary, requireBinary, type BinarySpec } from './binaries.js';
import { freePort } from './ports.js';
import { logTail as tail, spawnToLog, terminate } from './processes.js';
import { killPidsAndRemove, makeTempDir, ownTempDir, type DirKind, type ProcessDirInfo } from './temp-dir.js';

export interface HaproxyServer {
  /** Server name in the config and in "show stat" (e.g. 'p1'). */
  name: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** pgsplit's client port (listen.port). */
  port: number;
  /** pgsplit's admin port (admin.port): `GET /ready` there decides whether the server is used. */
  adminPort: number;
}

export interface StartHaproxyOptions {
  /** Default 'leastconn' as in deploy/haproxy.cfg; 'roundrobin' makes the spread of new connections predictable. */
  balance?: 'leastconn' | 'roundrobin';
  /** Health check interval (default '300ms'). */
  inter?: string;
  /** Failed checks before a server is marked down (default 2). */
  fall?: number;
  /** Passed checks before a server is marked up again (default 2). */
  rise?: number;
  /** Parent of the temp directory (default os.tmpdir()). */
  dir?: string;
  /**
   * Install the synchronous SIGINT/SIGTERM/SIGHUP clean-up (default true), as in cluster.ts. The
   * 'exit' clean-up is installed either way.
   */
  signalHandlers?: boolean;
  /** Harness progress lines (HAProxy's own log goes to haproxy.log in the temp directory). */
  log?: (line: string) => void;
}

/** One row of "show stat" for a server of the backend, the fields the tests look at. */
export interface HaproxyServerStat {
  name: string;
  /** 'UP', 'DOWN', 'UP 1/2' (going down), 'DOWN 1/2' (going up), 'MAINT', 'no check'... */
  status: string;
  /** Sessions open now. */
  scur: number;
  /** Sessions since start. */
  stot: number;
  /** Seconds since the last UP/DOWN transition. */
  lastchg: number;
  /** e.g. 'L7OK', 'L7STS' (unexpected HTTP status), 'L4CON'. */
  checkStatus: string;
  /** The HTTP status of the last check, when there was one. */
  checkCode: string;
  /** Every field of the row by its CSV header name. */
  raw: Record<string, string>;
}

export interface Haproxy {
  /** Frontend port clients connect to (127.0.0.1). */
  port: number;
  pid: number;
  dir: string;
  configFile: string;
  /** Unix socket of the runtime API (level admin). */
  socket: string;
  /** Sends one command to the runtime API ("show stat", "disable server pgsplit/p1", ...) and returns its answer. */
  command(cmd: string): Promise<string>;
  /** "show stat" rows for the servers of backend pgsplit, in config order. */
  servers(): Promise<HaproxyServerStat[]>;
  /** One server's row. */
  server(name: string): Promise<HaproxyServerStat>;
  /** Polls until `name`'s status is exactly 'UP' or 'DOWN'; resolves to the ms it took. */
  waitForStatus(name: string, status: 'UP' | 'DOWN', timeoutMs?: number): Promise<number>;
  /** Last lines of HAProxy's output (its log: health check results, server state changes, alerts). */
  logTail(lines?: number): string;
  /** Kills HAProxy (SIGTERM, SIGKILL after 5 s) and removes dir. Idempotent, never throws. */
  stop(): Promise<void>;
}

export const HAPROXY_BACKEND = 'pgsplit';

/** HAProxy's PID is kept in haproxy.json, for the exit clean-up and a later run's reaper. */
const HAPROXY_DIR: DirKind<ProcessDirInfo> = { prefix: 'pgsplit-haproxy-', infoFile: 'haproxy.json', what: 'haproxy', teardown: killPidsAndRemove };

const HAPROXY_BIN: BinarySpec = { env: 'PGSPLIT_HAPROXY_BIN', fallbackDirs: ['/usr/sbin'] };

/** Where haproxy is: PGSPLIT_HAPROXY_BIN, then PATH, then /usr/sbin/haproxy (Debian's package; sbin is often not on a user's PATH). Null when missing. */
export function findHaproxyBin(): string | null {
  return findBinary('haproxy', HAPROXY_BIN);
}

/** The config text: deploy/haproxy.cfg with loopback addresses, a runtime API socket and health-check logging. */
export function haproxyConfig(o: { port: number; socket: string; servers: HaproxyServer[]; balance?: string; inter?: string; fall?: number; rise?: number }): string {
  const inter = o.inter ?? '300ms';
  return [
    'global',
    '    maxconn 1000',
    `    stats socket ${o.socket} mode 600 level admin`,
    // Health-check results and server state changes, with timestamps, go to the log file in the temp dir.
    '    log stderr format iso local0 info',
    '',
    'defaults',
    '    mode tcp',
    '    log global',
    '    option log-health-checks',
    '    timeout connect 2s',
    '    timeout client 1h',
    '    timeout server 1h',
    '    timeout check 1s',
    '',
    'frontend postgres',
    `    bind 127.0.0.1:${o.port}`,
    `    default_backend ${HAPROXY_BACKEND}`,
    '',
    `backend ${HAPROXY_BACKEND}`,
    `    balance ${o.balance ?? 'leastconn'}`,
    '    option httpchk GET /ready',
    '    http-check expect status 200',
    ...o.servers.map(
      (s) =>
        `    server ${s.name} ${s.host ?? '127.0.0.1'}:${s.port} check port ${s.adminPort} inter ${inter} fall ${o.fall ?? 2} rise ${o.rise ?? 2} on-marked-down shutdown-sessions`,
    ),
    '',
  ].join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One runtime API command over the unix socket: HAProxy answers and closes (non-interactive mode). */
export function haproxyCommand(socket: string, cmd: string, timeoutMs = 3_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const s = net.createConnection({ path: socket });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`haproxy: no answer to "${cmd}" on ${socket} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${cmd}\n`));
    s.on('data', (d: string) => (out += d));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** Parses "show stat" CSV (first line "# pxname,svname,..."). */
export function parseShowStat(csv: string): Record<string, string>[] {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift();
  if (!header || !header.startsWith('# ')) throw new Error(`haproxy: unexpected "show stat" answer: ${csv.slice(0, 200)}`);
  const names = header.slice(2).split(',');
  return lines.map((l) => {
    const f = l.split(',');
    return Object.fromEntries(names.map((n, i) => [n, f[i] ?? '']));
  });
}

export async function startHaproxy(servers: HaproxyServer[], opts: StartHaproxyOptions = {}): Promise<Haproxy> {
  const log = opts.log ?? (() => {});
  const bin = requireBinary(
    'haproxy',
    HAPROXY_BIN,
    'Install it: apt-get install haproxy (Debian/Ubuntu; then stop and disable the haproxy service it starts), or set PGSPLIT_HAPROXY_BIN to a haproxy >= 2.2 binary.',
  );
  if (servers.length === 0) throw new Error('startHaproxy: no servers');

  const dir = makeTempDir(HAPROXY_DIR, { baseDir: opts.dir, log });
  const port = await freePort();
  const socket = path.join(dir, 'admin.sock');
  const configFile = path.join(dir, 'haproxy.cfg');
  const logFile = path.join(dir, 'haproxy.log');
  fs.writeFileSync(configFile, haproxyConfig({ port, socket, servers, balance: opts.balance, inter: opts.inter, fall: opts.fall, rise: opts.rise }));

  const info: ProcessDirInfo = { dir, ownerPid: process.pid, pid: null };
  const owned = ownTempDir(HAPROXY_DIR, info, { signals: opts.signalHandlers ?? true });

  const logTail = (lines = 30): string => tail(logFile, lines);

  // -db: foreground, no daemon, no master-worker; logs and alerts go to stderr (the log file).
  const child = spawnToLog(bin, ['-f', configFile, '-db'], logFile, { cwd: dir });
  let stopped = false;
  let exited = false;
  let spawnError: Error | null = null;
  const exitedP = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      info.pid = null;
      owned.save();
      if (!stopped) log(`haproxy exited (${signal ?? `code ${code}`})`);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      exited = true;
      resolve();
    });
  });
  info.pid = child.pid ?? null;
  owned.save();

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) await terminate(child, { graceMs: 5_000, exited: exitedP });
    owned.dispose();
  };

  const command = (cmd: string): Promise<string> => haproxyCommand(socket, cmd);
  const serverStats = async (): Promise<HaproxyServerStat[]> =>
    parseShowStat(await command('show stat'))
      .filter((r) => r.pxname === HAPROXY_BACKEND && r.svname !== 'BACKEND')
      .map((r) => ({
        name: r.svname,
        status: r.status,
        scur: Number(r.scur || 0),
        stot: Number(r.stot || 0),
        lastchg: Number(r.lastchg || 0),
        checkStatus: r.check_status,
        checkCode: r.check_code,
        raw: r,
      }));
  const server = async (name: string): Promise<HaproxyServerStat> => {
    const s = (await serverStats()).find((x) => x.name === name);
    if (!s) throw new Error(`haproxy: no server ${name} in backend ${HAPROXY_BACKEND}`);
    return s;
  };
  const waitForStatus = async (name: string, status: 'UP' | 'DOWN', timeoutMs = 10_000): Promise<number> => {
    const started = Date.now();
    let last = '';
    for (;;) {
      last = (await server(name)).status;
      if (last === status) return Date.now() - started;
      if (Date.now() - started > timeoutMs) throw new Error(`haproxy: ${name} still "${last}" after ${timeoutMs} ms (wanted ${status})\n${logTail()}`);
      await sleep(50);
    }
  };

  // Up once the runtime API answers: HAProxy binds its listeners before it serves the socket.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) {
      const why = spawnError ? (spawnError as Error).message : logTail();
      await stop();
      throw new Error(`haproxy did not start (${bin} -f ${configFile} -db):\n${why}`);
    }
    try {
      // (Not a test connection to the frontend: it would count as a session on one of the servers.)
      await serverStats();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`haproxy not answering within 10 s: ${(err as Error).message}\n${logTail()}`);
      }
      await sleep(50);
    }
  }
  log(`haproxy pid ${child.pid} on 127.0.0.1:${port} in front of ${servers.map((s) => `${s.name}=${s.port}/${s.adminPort}`).join(' ')}`);

  return { port, pid: child.pid!, dir, configFile, socket, command, servers: serverStats, server, waitForStatus, logTail, stop };
}
