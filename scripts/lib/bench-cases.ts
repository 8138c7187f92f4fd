// The benchmark's cases beyond the pgbench matrix: latency at one client, 1,000 clients against max_connections = 100, and RSS with 10,000 idle clients.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { ClusterNode } from '../../test/harness/cluster.js';
import type { Target } from './bench-targets.js';
import { holdIdleClients, type IdleResult } from './idle-clients.js';
import { readPgbenchLogs, statsOf, type LatencyStats } from './latency.js';
import { pgbench, type Workload } from './pgbench.js';

const SELECT_SIMPLE: Workload = { name: '-S simple', key: 'simple', select: true, mode: 'simple' };

function logDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-bench-log-'));
}

export interface LatencyCase {
  target: string;
  ok: boolean;
  error: string | null;
  stats: LatencyStats | null;
  avgMs: number | null;
}

/** pgbench -c 1 -j 1 -S (simple) for `seconds` with per-transaction logs: p50/p99 of one client's round trips. */
export async function oneClientLatency(pgbenchBin: string, t: Target, seconds: number): Promise<LatencyCase> {
  const dir = logDir();
  try {
    const r = await pgbench(pgbenchBin, t.endpoint, { workload: SELECT_SIMPLE, clients: 1, jobs: 1, seconds, logPrefix: path.join(dir, 'lat') });
    const stats = statsOf(readPgbenchLogs(path.join(dir, 'lat')));
    return { target: t.name, ok: r.ok && stats !== null, error: r.ok ? null : r.error ?? `pgbench exited with ${r.exitCode}`, stats, avgMs: r.latencyMs };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Watches pg_stat_activity on every node and keeps the most backends `user` had at once on each. */
export async function watchServerConnections(nodes: ClusterNode[], superuser: string, user: string, everyMs = 250): Promise<{ stop(): Promise<Array<number | null>> }> {
  const clients = await Promise.all(
    nodes.map(async (n) => {
      const c = new pg.Client({ host: n.host, port: n.port, user: superuser, database: 'postgres', ssl: false, application_name: 'pgsplit-bench-watch' });
      c.on('error', () => {});
      try {
        await c.connect();
        return c;
      } catch {
        return null;
      }
    }),
  );
  const max: Array<number | null> = nodes.map(() => null);
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    await Promise.all(
      clients.map(async (c, i) => {
        if (!c) return;
        try {
          const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [user]);
          max[i] = Math.max(max[i] ?? 0, Number(r.rows[0]!.n));
        } catch {
          /* the node is busy or gone; keep what we have */
        }
      }),
    );
    busy = false;
  };
  await tick();
  const timer = setInterval(() => void tick(), everyMs);
  let stopped: Promise<Array<number | null>> | null = null;
  return {
    stop() {
      stopped ??= (async () => {
        clearInterval(timer);
        while (busy) await new Promise((r) => setTimeout(r, 10));
        await tick();
        await Promise.all(clients.map((c) => c?.end().catch(() => {})));
        return max;
      })();
      return stopped;
    },
  };
}

export interface StormCase {
  target: string;
  works: boolean;
  /** Why it does not work (pgbench's first error line), or null. */
  reason: string | null;
  tps: number | null;
  connectionMs: number | null;
  stats: LatencyStats | null;
  /** Most backends the app user had on each node during the run (primary first). */
  serverConnections: Array<number | null>;
  /** pgbench's output when it did not work (for .tmp/bench.json). */
  output?: string;
}

/**
 * pgbench -c `clients` -j 4 -S -T `seconds` through `t`, with per-transaction logs and the servers' connection counts
 * watched. pgbench's -T clock includes connecting all clients first, so pass the time the logins may take too.
 */
export async function manyClients(pgbenchBin: string, t: Target, o: { clients: number; seconds: number; nodes: ClusterNode[]; superuser: string }): Promise<StormCase> {
  const dir = logDir();
  const watch = await watchServerConnections(o.nodes, o.superuser, t.endpoint.user);
  try {
    const r = await pgbench(pgbenchBin, t.endpoint, {
      workload: SELECT_SIMPLE,
      clients: o.clients,
      jobs: 4,
      seconds: o.seconds,
      logPrefix: path.join(dir, 'storm'),
      timeoutMs: (o.seconds + 120) * 1000,
    });
    const stats = statsOf(readPgbenchLogs(path.join(dir, 'storm')));
    const works = r.ok && !r.failed && !!r.transactions;
    const reason = works
      ? null
      : r.error ??
        (r.failed
          ? `${r.failed} failed transactions`
          : r.exitCode === 0 && !r.transactions
            ? `no transaction ran within -T ${o.seconds}: connecting the clients took ${r.connectionMs === null ? 'all of it' : `${(r.connectionMs / 1000).toFixed(1)}s`}`
            : `pgbench exited with ${r.exitCode}`);
    return { target: t.name, works, reason, tps: r.ok ? r.tps : null, connectionMs: r.connectionMs, stats: works ? stats : null, serverConnections: await watch.stop(), ...(works ? {} : { output: r.output.slice(-2000) }) };
  } finally {
    await watch.stop().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface IdleCase extends IdleResult {
  target: string;
  serverConnections: Array<number | null>;
}

/** `count` idle SCRAM-authenticated clients through `t`, opened `concurrency` at a time; the proxy's RSS before and with them. */
export async function idleClients(t: Target, o: { count: number; concurrency: number; openDeadlineMs: number; holdMs: number; nodes: ClusterNode[]; superuser: string; progress: (line: string) => void }): Promise<IdleCase> {
  if (t.pid === null) throw new Error(`${t.name} has no process to measure`);
  const watch = await watchServerConnections(o.nodes, o.superuser, t.endpoint.user, 1_000);
  try {
    const r = await holdIdleClients({ endpoint: t.endpoint, pid: t.pid, count: o.count, concurrency: o.concurrency, openDeadlineMs: o.openDeadlineMs, holdMs: o.holdMs, progress: o.progress });
    return { ...r, target: t.name, serverConnections: await watch.stop() };
  } finally {
    await watch.stop().catch(() => {});
  }
}
