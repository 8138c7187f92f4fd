// Shared helpers for the proxy integration tests: clients through the proxy and direct, async child processes, polling, metrics parsing.
import net from 'node:net';
import pg from 'pg';
import type { ClusterInfo, ClusterNode } from '../harness/cluster.js';
import { pgFreeEnv, runCommand, type RunResult } from '../harness/processes.js';
import type { RunningProxy } from '../harness/proxy.js';

export type ClientOptions = Partial<pg.ClientConfig>;

/** A connected node-postgres client through the proxy (app/secret/appdb unless overridden). */
export async function proxyClient(proxy: RunningProxy, info: ClusterInfo, o: ClientOptions = {}): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: proxy.listenPort,
    user: info.app.user,
    password: info.app.password,
    database: info.app.database,
    connectionTimeoutMillis: 10_000,
    ...o,
  });
  // An 'error' event without a listener would crash the worker when the proxy closes a connection.
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => {});
    throw err;
  }
  return c;
}

/** A connected client straight to a node, as the trusted superuser (postgres db unless overridden). */
export async function directClient(node: ClusterNode, info: ClusterInfo, o: ClientOptions = {}): Promise<pg.Client> {
  const c = new pg.Client({
    host: node.host,
    port: node.port,
    user: info.superuser,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
    ...o,
  });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** Runs fn with a client and always ends the client afterwards. */
export async function using<T>(client: Promise<pg.Client>, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await client;
  try {
    return await fn(c);
  } finally {
    await endQuietly(c);
  }
}

/** Ends a client, never throws and never waits more than a couple of seconds. */
export async function endQuietly(c: pg.Client | null | undefined): Promise<void> {
  if (!c) return;
  await Promise.race([c.end().catch(() => {}), sleep(3_000)]);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The error a promise rejects with (fails if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the operation to fail, but it succeeded');
}

/** Polls fn until it returns something other than undefined, or fails after timeoutMs. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

export type { RunResult };

/**
 * Runs a program asynchronously (never spawnSync: the proxy lives in this process and must keep
 * serving). Inherited PG* variables are dropped; a timeout kills the process and yields code 124.
 */
export async function run(file: string, args: string[], o: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const { code, stdout, stderr, timedOut } = await runCommand(file, args, { env: pgFreeEnv(o.env), input: o.input ?? '', timeoutMs });
  return { code, stdout, stderr: timedOut ? `${stderr}\n[timed out after ${timeoutMs} ms]` : stderr };
}

/** psql through the proxy as app (no psqlrc, unaligned, tuples only, stop on error). */
export function psql(proxy: RunningProxy, info: ClusterInfo, args: string[], o: { input?: string | Buffer; timeoutMs?: number; env?: Record<string, string>; conninfo?: string } = {}): Promise<RunResult> {
  const conninfo = o.conninfo ?? `host=127.0.0.1 port=${proxy.listenPort} user=${info.app.user} dbname=${info.app.database} sslmode=disable connect_timeout=10`;
  return run('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, ...args], {
    input: o.input,
    timeoutMs: o.timeoutMs ?? 60_000,
    env: { PGPASSWORD: info.app.password, ...o.env },
  });
}

/** One raw TCP exchange: connect, write, collect everything until the peer closes (or timeout). */
export function rawExchange(port: number, payload: Buffer, timeoutMs = 5_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, timeoutMs);
    sock.on('connect', () => sock.write(payload));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return; // close follows
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

/** Sends a 16-byte CancelRequest to the given port and waits until the proxy closes the socket. */
export async function sendCancelRequest(port: number, pid: number, secret: number): Promise<void> {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret | 0, 12);
  await rawExchange(port, b, 5_000);
}

/** The fields of the first ErrorResponse ('E') message in a buffer of backend messages, or null. */
export function firstErrorFields(data: Buffer): Record<string, string> | null {
  let off = 0;
  while (off + 5 <= data.length) {
    const type = String.fromCharCode(data[off]!);
    const len = data.readInt32BE(off + 1);
    if (len < 4) return null;
    if (type === 'E') {
      const body = data.subarray(off + 5, off + 1 + len);
      const fields: Record<string, string> = {};
      let p = 0;
      while (p < body.length && body[p] !== 0) {
        const code = String.fromCharCode(body[p]!);
        const end = body.indexOf(0, p + 1);
        if (end < 0) break;
        fields[code] = body.subarray(p + 1, end).toString('utf8');
        p = end + 1;
      }
      return fields;
    }
    off += 1 + len;
  }
  return null;
}

/** A StartupMessage for protocol 3.0 with the given parameters. */
export function startupMessage(params: Record<string, string>, version = 196608): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

/** GET on the admin port: status and body text. */
export async function adminGet(proxy: RunningProxy, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, { signal: AbortSignal.timeout(5_000) });
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') };
}

/**
 * The value of one Prometheus sample: `name` plus labels that must all match (other labels allowed).
 * Returns the sum over matching samples, or undefined when none matched.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const lm of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[lm[1]!] = lm[2]!;
    if (!Object.entries(labels).every(([k, v]) => got[k] === v)) continue;
    sum = (sum ?? 0) + Number(m[4]);
  }
  return sum;
}

/** Backends on the given node(s) (excluding the callers) whose query text contains `needle`; reads may run on any node. */
export async function backendsRunning(direct: pg.Client | pg.Client[], needle: string): Promise<{ pid: number; state: string; query: string }[]> {
  const out: { pid: number; state: string; query: string }[] = [];
  for (const d of Array.isArray(direct) ? direct : [direct]) {
    const r = await d.query<{ pid: number; state: string; query: string }>(
      "SELECT pid, state, query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1 AND query NOT LIKE '%pg_stat_activity%'",
      [`%${needle}%`],
    );
    out.push(...r.rows);
  }
  return out;
}

/** Direct superuser connections to every node, for looking at pg_stat_activity wherever a statement ran. */
export async function usingAllNodes<T>(info: ClusterInfo, fn: (clients: pg.Client[]) => Promise<T>): Promise<T> {
  const clients = await Promise.all(info.nodes.map((n) => directClient(n, info)));
  try {
    return await fn(clients);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

/**
 * A fresh database `db` owned by the app user, initialised by `init` (pgbench -i -s 1 on the primary), once every
 * replica has replayed it (connecting is part of what is retried: a replica may not have CREATE DATABASE yet).
 */
export async function pgbenchDatabase(info: ClusterInfo, db: string, init: () => Promise<RunResult>): Promise<void> {
  await using(directClient(info.nodes[0]!, info), async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${db} OWNER ${info.app.user}`);
  });
  const r = await init();
  if (r.code !== 0) throw new Error(`pgbench -i failed: ${r.stderr}`);
  for (const node of info.nodes.slice(1)) {
    await eventually(
      `${node.name} to replay pgbench_accounts`,
      () =>
        using(directClient(node, info, { user: info.app.user, password: info.app.password, database: db }), async (c) => {
          if (!(await c.query("SELECT to_regclass('pgbench_history') IS NOT NULL AS ok")).rows[0].ok) return undefined;
          return (await c.query('SELECT count(*)::int AS n FROM pgbench_accounts')).rows[0].n === 100_000 ? true : undefined;
        }).catch(() => undefined),
      30_000,
      200,
    );
  }
}
