// Helpers for the server-pooling tests (issue 10): a proxy with a pool: section and per-user pool modes, /status pools and pins, pgsplit's backends in pg_stat_activity, background churn, raw Describe/Close.
import pg from 'pg';
import { parseConfig } from '../../src/config/load.js';
import { startPgsplit } from '../../src/main.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import type { ClusterInfo } from '../harness/cluster.js';
import { adminAuthHeaders, configYamlFor, type RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, metricValue, proxyClient, using } from './helpers.js';

/** Keys of the pool: section, written into the YAML as given (durations as strings, e.g. '300ms'). */
export interface PoolKeys {
  mode?: 'transaction' | 'session';
  size?: number;
  min_idle?: number;
  max_client_wait?: string;
  server_idle_timeout?: string;
  server_lifetime?: string;
  max_prepared_statements?: number;
}

export interface PoolProxyOptions {
  pool?: PoolKeys;
  /** users[].pool_mode by user name (the harness config lists app, md5user and pwuser). */
  userPoolModes?: Record<string, 'transaction' | 'session'>;
  listenExtra?: string;
  /** More top-level YAML (not pool:). */
  extra?: string;
  auth?: string;
}

/** The YAML of a harness config with a pool: section and per-user pool modes. */
export function poolConfigYaml(info: ClusterInfo, o: PoolProxyOptions = {}): string {
  const keys = Object.entries(o.pool ?? {}).filter(([, v]) => v !== undefined);
  const poolLine = keys.length ? `pool: { ${keys.map(([k, v]) => `${k}: ${typeof v === 'string' ? `"${v}"` : v}`).join(', ')} }` : '';
  const yaml = configYamlFor(info, { listenExtra: o.listenExtra, auth: o.auth, extra: [poolLine, o.extra ?? ''].join('\n') });
  const modes = o.userPoolModes ?? {};
  const seen = new Set<string>();
  const out = yaml.split('\n').map((line) => {
    const m = /^ {2}- \{ name: ([A-Za-z0-9_]+), .*\}$/.exec(line);
    const mode = m ? modes[m[1]!] : undefined;
    if (!m || !mode) return line;
    seen.add(m[1]!);
    return `${line.slice(0, -1).trimEnd()}, pool_mode: ${mode} }`;
  });
  for (const u of Object.keys(modes)) if (!seen.has(u)) throw new Error(`no users[] entry named ${u} in the harness config`);
  return out.join('\n');
}

/** pgsplit in this process with a pool: section (see startProxy in the harness). */
export async function startPoolProxy(info: ClusterInfo, o: PoolProxyOptions = {}): Promise<RunningProxy> {
  const config = parseConfig(poolConfigYaml(info, o), {});
  const logger = process.env.PGSPLIT_TEST_VERBOSE ? createLogger('debug') : silentLogger;
  const p = await startPgsplit(config, { logger });
  const { user, password, database } = info.app;
  return Object.assign(p, { host: '127.0.0.1', url: `postgres://${user}:${password}@127.0.0.1:${p.listenPort}/${database}` });
}

/** One entry of GET /status pools. */
export interface PoolRow {
  node: string;
  user: string;
  database: string;
  active: number;
  idle: number;
  waiting: number;
  max: number;
}

export interface PoolStatus {
  pools: PoolRow[];
  pinned_clients: number;
}

/** GET /status (authenticated), with the pooling fields checked to be there. */
export async function poolStatus(proxy: RunningProxy): Promise<PoolStatus> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) });
  if (r.status !== 200) throw new Error(`GET /status answered ${r.status}`);
  const s = (await r.json()) as Partial<PoolStatus>;
  if (!Array.isArray(s.pools)) throw new Error(`GET /status has no pools array (keys: ${Object.keys(s).join(', ')})`);
  if (typeof s.pinned_clients !== 'number') throw new Error(`GET /status has no numeric pinned_clients (got ${JSON.stringify(s.pinned_clients)})`);
  return s as PoolStatus;
}

/** The pools of one user and database. */
export function poolsOf(s: PoolStatus, user: string, database: string): PoolRow[] {
  return s.pools.filter((p) => p.user === user && p.database === database);
}

/** The sum of one field over pool rows. */
export function total(rows: PoolRow[], key: 'active' | 'idle' | 'waiting'): number {
  return rows.reduce((n, r) => n + r[key], 0);
}

/** GET /metrics text. */
export async function metricsText(proxy: RunningProxy): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) });
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}`);
  return r.text();
}

/** Pinned clients as /status and /metrics (pgsplit_clients_pinned) count them. */
export async function pinnedCounts(proxy: RunningProxy): Promise<{ status: number; metric: number | undefined }> {
  const s = await poolStatus(proxy);
  return { status: s.pinned_clients, metric: metricValue(await metricsText(proxy), 'pgsplit_clients_pinned') };
}

/** Waits until /status and the metric both count `n` pinned clients; fails with the last counts. */
export async function expectPinned(proxy: RunningProxy, n: number, what: string): Promise<void> {
  let last: unknown = await pinnedCounts(proxy); // fails at once when /status has no pinned_clients at all
  await eventually(
    `${what}: pinned_clients and pgsplit_clients_pinned to be ${n}`,
    async () => {
      last = await pinnedCounts(proxy);
      const c = last as { status: number; metric: number | undefined };
      return c.status === n && c.metric === n ? true : undefined;
    },
    5_000,
    50,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
  });
}

/** Waits until the pools of user@database have `n` active server connections in all (checked-out or pinned); fails with the last rows. */
export async function expectActive(proxy: RunningProxy, user: string, database: string, n: number, what: string): Promise<void> {
  let last: PoolRow[] = poolsOf(await poolStatus(proxy), user, database); // fails at once when /status has no pools at all
  await eventually(
    `${what}: ${n} active server connections for ${user}@${database}`,
    async () => {
      last = poolsOf(await poolStatus(proxy), user, database);
      return total(last, 'active') === n ? true : undefined;
    },
    5_000,
    50,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
  });
}

/** Client backends of this user and database on a node (as the superuser sees pg_stat_activity), leaving out the caller. */
export async function serverBackends(direct: pg.Client, user: string, database: string): Promise<{ pid: number; state: string | null; application_name: string }[]> {
  const r = await direct.query<{ pid: number; state: string | null; application_name: string }>(
    "SELECT pid, state, application_name FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = $1 AND datname = $2 AND pid <> pg_backend_pid()",
    [user, database],
  );
  return r.rows;
}

/**
 * Samples, until stop(), how many backends of user@database each node has (directs: superuser clients, one per node),
 * leaving out the pids in `ignore`; stop() gives the most seen per node and how many samples were taken.
 */
export function sampleBackends(directs: pg.Client[], user: string, database: string, ignore: ReadonlySet<number> = new Set()): { stop(): Promise<{ max: number[]; samples: number }> } {
  const max = directs.map(() => 0);
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const counts = await Promise.all(directs.map(async (d) => (await serverBackends(d, user, database)).filter((b) => !ignore.has(b.pid)).length));
      counts.forEach((n, i) => (max[i] = Math.max(max[i]!, n)));
      samples++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { max, samples };
    },
  };
}

/** Creates a database owned by the app user on the primary and waits until every replica lets app connect to it. */
export async function createAppDatabase(info: ClusterInfo, name: string, setupSql: string[] = []): Promise<void> {
  const primary = info.nodes[0]!;
  await using(directClient(primary, info), async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name} OWNER ${info.app.user}`);
  });
  const asApp = { user: info.app.user, password: info.app.password, database: name };
  await using(directClient(primary, info, asApp), async (c) => {
    for (const sql of setupSql) await c.query(sql);
  });
  // Wait for the replicas to replay the set-up (a marker table created last).
  await using(directClient(primary, info, asApp), (c) => c.query('CREATE TABLE pool_test_ready AS SELECT 1 AS ok'));
  for (const node of info.nodes.slice(1)) {
    await eventually(
      `${node.name} to replay database ${name}`,
      () =>
        using(directClient(node, info, asApp), async (c) => {
          const r = await c.query("SELECT to_regclass('pool_test_ready') IS NOT NULL AS ok");
          return r.rows[0].ok ? true : undefined;
        }).catch(() => undefined),
      30_000,
      100,
    );
  }
}

export async function dropDatabase(info: ClusterInfo, name: string): Promise<void> {
  await using(directClient(info.nodes[0]!, info), (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
}

/** A node-postgres client through the proxy, with a connect timeout long enough for a busy pool. */
export function connectThrough(proxy: RunningProxy, info: ClusterInfo, o: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  return proxyClient(proxy, info, { connectionTimeoutMillis: 30_000, ...o });
}

/**
 * Background clients that run transactions (writes and reads on their own rows, some settings of their own) until
 * stopped, checking every answer: they keep a small pool busy so that other clients' statements move between
 * server connections. stop() returns what went wrong (empty when all was well).
 */
export class Churn {
  private running = true;
  private readonly loops: Promise<void>[] = [];
  readonly problems: string[] = [];
  private note(p: string): void {
    if (this.problems.length < 20) this.problems.push(p);
  }
  rounds = 0;
  /** Churn runs so far in this file: each run's clients write rows under names of their own. */
  private static runs = 0;

  private constructor(private readonly clients: pg.Client[]) {}

  /** `table` must exist with (who text, n int); each churner uses its own `who`. */
  static async start(proxy: RunningProxy, info: ClusterInfo, n: number, table: string, o: Partial<pg.ClientConfig> = {}): Promise<Churn> {
    const clients = await Promise.all(Array.from({ length: n }, () => connectThrough(proxy, info, o)));
    const churn = new Churn(clients);
    const run = ++Churn.runs;
    clients.forEach((c, i) => churn.loops.push(churn.loop(c, `churn-${process.pid}-${run}-${i}`, table, i)));
    return churn;
  }

  private async loop(c: pg.Client, who: string, table: string, i: number): Promise<void> {
    try {
      // A setting of its own: statements of other clients must never see it, and it must see it every time.
      const timeout = `${31_001 + 2 * i}ms`; // not a whole number of seconds, which SHOW would print as '31s'
      await c.query(`SET statement_timeout = '${timeout}'`);
      let n = 0;
      while (this.running) {
        n++;
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${table} (who, n) VALUES ($1, $2)`, [who, n]);
        const inTx = await c.query(`SELECT count(*)::int AS k, current_setting('statement_timeout') AS st FROM ${table} WHERE who = $1`, [who]);
        await c.query('COMMIT');
        if (inTx.rows[0].k !== n || inTx.rows[0].st !== timeout) this.note(`${who} round ${n} in a transaction saw ${JSON.stringify(inTx.rows[0])}`);
        const read = await c.query("SELECT current_setting('statement_timeout') AS st, 1 AS one");
        if (read.rows[0].st !== timeout) this.note(`${who} round ${n} read saw statement_timeout ${read.rows[0].st}`);
        this.rounds++;
      }
    } catch (err) {
      this.note(`${who}: ${(err as Error).message}`);
    }
  }

  /** Stops the loops (each finishes its round) and ends the clients; returns the problems seen. */
  async stop(): Promise<string[]> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => Promise.race([c.end().catch(() => {}), new Promise((r) => setTimeout(r, 3_000))])));
    return this.problems;
  }
}

// ---- raw protocol additions (cut-helpers' fe has Query/Parse/Bind/Execute/Sync) ----------------------

function msg(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** Describe ('S' statement or 'P' portal) and Close frames. */
export const feMore = {
  describe: (kind: 'S' | 'P', name: string): Buffer => msg('D', Buffer.concat([Buffer.from(kind, 'latin1'), Buffer.from(`${name}\0`, 'utf8')])),
  close: (kind: 'S' | 'P', name: string): Buffer => msg('C', Buffer.concat([Buffer.from(kind, 'latin1'), Buffer.from(`${name}\0`, 'utf8')])),
};

/** The text values of a DataRow body (null for NULL). */
export function dataRowValues(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let off = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(off);
    off += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.toString('utf8', off, off + len));
      off += len;
    }
  }
  return out;
}

/** The column names of a RowDescription body. */
export function rowDescriptionNames(body: Buffer): string[] {
  const n = body.readInt16BE(0);
  const out: string[] = [];
  let off = 2;
  for (let i = 0; i < n; i++) {
    const end = body.indexOf(0, off);
    out.push(body.toString('utf8', off, end));
    off = end + 1 + 18;
  }
  return out;
}

/** The parameter type OIDs of a ParameterDescription body. */
export function parameterTypes(body: Buffer): number[] {
  const n = body.readInt16BE(0);
  return Array.from({ length: n }, (_, i) => body.readInt32BE(2 + 4 * i));
}
