// The benchmark's tables: the pgbench matrix with ratios and CPU per transaction, one-client latency, idle-client memory, many clients.
import os from 'node:os';
import type { IdleCase, LatencyCase, StormCase } from './bench-cases.js';
import type { MatrixResults } from './bench-matrix.js';
import { medianOf, pairedRatio, type StatsCost } from './bench-stats.js';
import { isPgsplit, TARGETS } from './bench-targets.js';
import type { Workload } from './pgbench.js';
import { fmt, formatTable, mb, ratio } from './table.js';

const say = (s = ''): void => void process.stdout.write(`${s}\n`);

export interface MatrixParams {
  clients: number;
  jobs: number;
  rounds: number;
  seconds: number;
  scale: number;
}

export interface StormParams {
  clients: number;
  /** pgbench -T, connecting included. */
  seconds: number;
  maxConnections: number;
  poolSize: number;
}

export const us = (ms: number | null | undefined): string => (ms === null || ms === undefined || !Number.isFinite(ms) ? '-' : (ms * 1000).toFixed(0));
export const conns = (xs: Array<number | null>): string => (xs.length ? `${xs[0] ?? '-'} / ${xs.slice(1).map((x) => x ?? '-').join(', ')}` : '-');
/** One line of at most n characters; libpq's long "connection to server at … failed:" prefix becomes "connect:". */
export const short = (s: string | null, n = 100): string =>
  (s ?? '').replace(/\s+/g, ' ').replace(/^(?:pgbench: error: )?connection to server at "[^"]*", port \d+ failed: /, 'connect: ').slice(0, n);

export function printMatrix(results: MatrixResults, workloads: Workload[], p: MatrixParams): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = [];
  const cell = (w: Workload, t: string) => results.get(`${w.name}|${t}`);
  const tpsOf = (w: Workload, t: string): number | null => {
    const r = cell(w, t);
    return r && r.ok && r.tps ? r.tps : null;
  };
  const body: string[][] = [];
  for (const w of workloads) {
    for (const t of TARGETS) {
      const r = cell(w, t);
      if (!r) continue;
      const bouncer = cell(w, 'pgbouncer');
      const row = {
        workload: w.name,
        target: t,
        tps: r.tps,
        latency_ms: r.latencyMs,
        connection_ms: r.connectionMs,
        transactions: r.transactions,
        failed: r.failed,
        aborted: r.aborted,
        vs_direct: r.ok ? ratio(r.tps, tpsOf(w, 'direct')) : null,
        vs_pgbouncer: r.ok && t !== 'pgbouncer' ? ratio(r.tps, tpsOf(w, 'pgbouncer')) : null,
        cpu_us_per_tx: r.cpuPerTx === null ? null : r.cpuPerTx * 1e6,
        cpu_vs_pgbouncer: r.ok && t !== 'pgbouncer' ? ratio(r.cpuPerTx, bouncer?.ok ? bouncer.cpuPerTx : null) : null,
        error: r.ok ? null : r.error ?? `pgbench exited with ${r.exitCode}`,
      };
      rows.push(row);
      body.push([
        w.name,
        t,
        fmt(row.tps, 0),
        fmt(row.latency_ms, 3),
        fmt(row.vs_direct, 2),
        t === 'direct' || t === 'direct-tls' ? '' : fmt(row.vs_pgbouncer, 2),
        fmt(row.cpu_us_per_tx, 1),
        isPgsplit(t) || t === 'pgpool-II' ? fmt(row.cpu_vs_pgbouncer, 2) : '',
        row.failed === null ? '-' : String(row.failed),
        r.aborted ? `ABORTED: ${short(row.error, 90)}` : row.error && row.tps === null ? short(row.error, 90) : '',
      ]);
    }
  }
  say(`pgbench ${p.clients} clients / ${p.jobs} threads / median of ${p.rounds} x ${p.seconds}s, scale ${p.scale}, ${os.cpus().length} CPUs; TPS excludes connection time except -C (one login per transaction)`);
  say('CPU µs/tx: user+system CPU of the proxy process tree over the run / transactions (from /proc); "CPU/pgb" = that / pgbouncer\'s');
  for (const l of formatTable(['workload', 'target', 'TPS', 'avg lat ms', 'vs direct', 'vs pgbouncer', 'CPU µs/tx', 'CPU/pgb', 'failed', 'note'], body, { right: [2, 3, 4, 5, 6, 7, 8], groupBy: 0 })) say(l);
  return rows;
}

export function printStatsCost(cases: StatsCost[], p: MatrixParams): void {
  const us = (x: number | null) => (x === null ? null : x * 1e6);
  const body = cases.map((c) => [
    c.workload,
    fmt(medianOf(c, 'tps', 'off'), 0),
    fmt(medianOf(c, 'tps', 'on'), 0),
    fmt(ratio(medianOf(c, 'tps', 'on'), medianOf(c, 'tps', 'off')), 3),
    fmt(pairedRatio(c), 3),
    fmt(us(medianOf(c, 'cpuPerTx', 'off')), 1),
    fmt(us(medianOf(c, 'cpuPerTx', 'on')), 1),
    c.errors.length ? short(c.errors.join('; '), 90) : '',
  ]);
  say(`Statement statistics (stats.enabled): two fresh pgsplit processes per round, off and on, back to back; pgbench ${p.clients} clients / ${p.jobs} threads, ${p.rounds} rounds x ${p.seconds}s, scale ${p.scale}; medians`);
  for (const l of formatTable(['workload', 'TPS off', 'TPS on', 'on / off', 'on / off by round', 'CPU µs/tx off', 'CPU µs/tx on', 'note'], body, { right: [1, 2, 3, 4, 5, 6] })) say(l);
}

export function printLatency(cases: LatencyCase[], seconds: number): void {
  const of = (t: string) => cases.find((c) => c.target === t && c.ok)?.stats ?? null;
  const direct = of('direct');
  const bouncer = of('pgbouncer');
  const body = cases.map((c) => [
    c.target,
    us(c.stats?.p50Ms),
    us(c.stats?.p99Ms),
    us(c.avgMs),
    c.target === 'direct' ? '' : c.stats && direct ? (1000 * (c.stats.p50Ms - direct.p50Ms)).toFixed(0) : '-',
    c.target === 'pgbouncer' || c.target === 'direct' ? '' : fmt(ratio(c.stats?.p50Ms, bouncer?.p50Ms), 2),
    c.stats ? String(c.stats.count) : '-',
    c.ok ? '' : `fails: ${short(c.error)}`,
  ]);
  say(`Latency at one client: pgbench -c 1 -S (simple) for ${seconds}s, per-transaction logs (round trip of one SELECT)`);
  for (const l of formatTable(['target', 'p50 µs', 'p99 µs', 'avg µs', 'p50 added vs direct µs', 'p50 vs pgbouncer', 'transactions', 'note'], body, { right: [1, 2, 3, 4, 5, 6] })) say(l);
}

export function printIdle(cases: IdleCase[], count: number): void {
  const body = cases.map((c) => [
    c.target,
    `${c.connected}/${c.wanted}`,
    mb(c.rssBeforeBytes),
    mb(c.rssWithClientsBytes),
    c.bytesPerClient === null ? '-' : (c.bytesPerClient / 1024).toFixed(1),
    fmt(c.loginsPerSecond, 0),
    conns(c.serverConnections),
    c.failure ? `fails: ${short(c.failure, 120)}` : 'works',
  ]);
  say(`Memory with ${count} idle clients: each logs in (SCRAM) and stays idle; RSS of the proxy's process tree from /proc`);
  for (const l of formatTable(['target', 'idle clients', 'RSS before MB', 'RSS with MB', 'KB/client', 'logins/s while opening', 'max server conns primary / replicas', 'result'], body, { right: [1, 2, 3, 4, 5] })) say(l);
}

export function printStorm(cases: StormCase[], p: StormParams, notes: string[]): void {
  const body = cases.map((c) => [
    c.target,
    c.works ? 'works' : 'fails',
    fmt(c.tps, 0),
    fmt(c.stats?.p50Ms, 1),
    fmt(c.stats?.p99Ms, 1),
    fmt(c.connectionMs, 0),
    conns(c.serverConnections),
    c.works ? '' : short(c.reason, 120),
  ]);
  say(`${p.clients} clients: pgbench -c ${p.clients} -j 4 -S (simple) -T ${p.seconds} (connecting them counts in -T) against PostgreSQL with max_connections = ${p.maxConnections}; pgsplit pool size ${p.poolSize}, pgbouncer default_pool_size ${p.poolSize}`);
  for (const l of formatTable(['target', 'result', 'TPS', 'p50 ms', 'p99 ms', 'connect all ms', 'max server conns primary / replicas', 'reason'], body, { right: [2, 3, 4, 5] })) say(l);
  for (const n of notes) say(`note: ${n}`);
}

