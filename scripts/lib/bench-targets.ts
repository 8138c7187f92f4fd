// What the benchmark measures against: PostgreSQL direct, pgsplit (as its own process, in several configurations), pgbouncer and pgpool-II; each with an endpoint, the pid whose CPU and RSS count, and stop().
import pg from 'pg';
import type { ClusterInfo } from '../../test/harness/cluster.js';
import { spawnProxy } from '../../test/harness/proxy.js';
import type { Endpoint } from './pgbench.js';
import { PoolerUnavailable, startPgbouncer, startPgpool } from './poolers.js';

// pgsplit routes (reads to replicas, the default); pgsplit-2w is the same with workers: 2 (a coordinator and two worker
// processes sharing the client port; pool.size is split between them); pgsplit-relay is routing.enabled: false, bytes
// relayed to the primary. direct-tls and pgsplit-tls (client TLS and server_tls require, routing on) run -S simple only,
// with sslmode=require. pgsplit-stats-off and pgsplit-stats-on are pgsplit with stats.enabled false and true, for the
// stats case only (what statement statistics cost).
export const TARGETS = ['direct', 'pgsplit', 'pgsplit-2w', 'pgsplit-relay', 'pgbouncer', 'pgpool-II', 'direct-tls', 'pgsplit-tls', 'pgsplit-stats-off', 'pgsplit-stats-on'] as const;
export const STATS_TARGETS = ['pgsplit-stats-off', 'pgsplit-stats-on'] as const satisfies readonly TargetName[];
export type TargetName = (typeof TARGETS)[number];
export const isPgsplit = (t: string): boolean => t.startsWith('pgsplit');
/** Worker processes of pgsplit-2w. */
export const TWO_WORKERS = 2;
export const TLS_WORKLOAD = '-S simple';

export interface Target {
  name: TargetName;
  version: string;
  notes?: string[];
  endpoint: Endpoint;
  /** The proxy's process (its tree's CPU and RSS are read: pgsplit's coordinator and its workers); null for PostgreSQL direct. */
  pid: number | null;
  /** pgsplit's admin port, for its metrics. */
  adminPort?: number;
  /** Run only these workloads (by name); all when absent. */
  workloads?: string[];
  stop(): Promise<void>;
}

export interface TargetContext {
  info: ClusterInfo;
  /** The primary, as the app user. */
  direct: Endpoint;
  pgVersion: string;
  /** Why pgsplit cannot run (dist/ could not be built), or null. */
  buildError: string | null;
  /** The app user's SCRAM secret from pg_authid, for pgbouncer's auth_file (null: the plain password). */
  scramSecret: string | null;
  /** YAML added to every pgsplit config except the relay's routing line: pgsplit's defaults spelled out (routing, pool) plus BENCH_PGSPLIT_EXTRA. */
  pgsplitExtra: string;
}

export interface TargetSizing {
  /** pgbench -c of the runs (pgbouncer's and pgpool-II's pools are sized for it unless poolSize is given). */
  clients: number;
  /** pgbouncer default_pool_size (default: clients). */
  poolSize?: number;
  /** pgbouncer max_client_conn and pgsplit listen.max_client_connections (default: each one's own default). */
  maxClientConn?: number;
  /** pgsplit log level (default warn). */
  logLevel?: string;
}

async function startPgsplit(ctx: TargetContext, s: TargetSizing, name: TargetName, label: string, extra: string, endpointExtra: Partial<Endpoint> = {}): Promise<Target> {
  if (ctx.buildError) throw new PoolerUnavailable(ctx.buildError);
  const p = await spawnProxy(ctx.info, {
    logLevel: s.logLevel ?? 'warn',
    extra,
    listenExtra: s.maxClientConn ? `max_client_connections: ${s.maxClientConn}` : undefined,
  });
  return { name, version: `pgsplit 0.1.0 (own process, ${label})`, endpoint: { ...ctx.direct, host: '127.0.0.1', port: p.port, ...endpointExtra }, pid: p.child.pid ?? null, adminPort: p.adminPort, stop: () => p.stop() };
}

/** `extra` with `workers: n` instead of any top-level workers: line of its own (BENCH_PGSPLIT_EXTRA may set one; a key twice is a YAML error). */
export function withWorkers(extra: string, n: number): string {
  return [`workers: ${n}`, ...extra.split('\n').filter((l) => !/^workers\s*:/.test(l))].join('\n');
}

/** The user's password as pg_authid stores it on the primary (a SCRAM secret in this cluster), or null. */
export async function storedSecret(info: ClusterInfo, user: string): Promise<string | null> {
  const primary = info.nodes[0]!;
  const c = new pg.Client({ host: primary.host, port: primary.port, user: info.superuser, database: 'postgres', ssl: false });
  c.on('error', () => {});
  try {
    await c.connect();
    const r = await c.query<{ p: string | null }>('SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1', [user]);
    const p = r.rows[0]?.p ?? null;
    return p && p.startsWith('SCRAM-SHA-256$') ? p : null;
  } catch {
    return null;
  } finally {
    await c.end().catch(() => {});
  }
}

export async function startTarget(name: TargetName, ctx: TargetContext, s: TargetSizing): Promise<Target> {
  const { info, direct } = ctx;
  switch (name) {
    case 'direct':
      return { name, version: ctx.pgVersion, endpoint: direct, pid: null, stop: async () => {} };
    case 'pgsplit':
      return startPgsplit(ctx, s, name, 'routing on, pool transaction/20', `routing: { enabled: true }\n${ctx.pgsplitExtra}`);
    case 'pgsplit-2w':
      return startPgsplit(ctx, s, name, `routing on, pool transaction/20 split over ${TWO_WORKERS} workers`, `routing: { enabled: true }\n${withWorkers(ctx.pgsplitExtra, TWO_WORKERS)}`);
    case 'pgsplit-relay':
      return startPgsplit(ctx, s, name, 'routing off', `routing: { enabled: false }\n${ctx.pgsplitExtra}`);
    case 'pgsplit-stats-off':
    case 'pgsplit-stats-on': {
      const on = name === 'pgsplit-stats-on';
      return startPgsplit(ctx, s, name, `routing on, pool transaction/20, stats ${on ? 'on' : 'off'}`, `routing: { enabled: true }\nstats: { enabled: ${on} }\n${ctx.pgsplitExtra}`);
    }
    case 'pgbouncer': {
      const p = await startPgbouncer({ server: direct, clients: s.clients, poolSize: s.poolSize, maxClientConn: s.maxClientConn, scramSecret: ctx.scramSecret ?? undefined });
      const how = ctx.scramSecret ? 'auth_file holds the SCRAM secret from pg_authid (as auth_query would return it): no PBKDF2 per login' : 'auth_file holds the plain password: a PBKDF2 per login';
      return { name, version: p.version, notes: [...p.notes, `pgbouncer: transaction pooling, ${how}`], endpoint: { ...direct, host: '127.0.0.1', port: p.port }, pid: p.pid, stop: p.stop };
    }
    case 'pgpool-II': {
      const p = await startPgpool({ server: direct, clients: s.clients });
      return { name, version: p.version, endpoint: { ...direct, host: '127.0.0.1', port: p.port }, pid: p.pid, stop: p.stop };
    }
    // TLS's cost: PostgreSQL's own (the cluster runs with ssl = on), and pgsplit's with TLS on both sides.
    case 'direct-tls':
      return { name, version: `${ctx.pgVersion}, sslmode=require`, endpoint: { ...direct, sslmode: 'require' }, pid: null, workloads: [TLS_WORKLOAD], stop: async () => {} };
    case 'pgsplit-tls': {
      if (!info.tls) throw new PoolerUnavailable('the cluster has no test certificates');
      const t = await startPgsplit(
        ctx,
        s,
        name,
        'routing on, pool transaction/20, tls.mode require, server_tls require',
        `routing: { enabled: true }\ntls: { mode: require, cert: "${info.tls.cert}", key: "${info.tls.key}" }\nserver_tls: { mode: require }\n${ctx.pgsplitExtra}`,
        { sslmode: 'require' },
      );
      return { ...t, workloads: [TLS_WORKLOAD] };
    }
  }
}
