// `npm run bench`: pgsplit (one process, and with workers: 2) against PostgreSQL direct, pgbouncer and pgpool-II on one cluster in one run (TPS, proxy CPU, logins, latency, 1,000 clients, idle memory); prints tables with ratios, writes .tmp/bench.json.
//
// Cases, in the order they run (BENCH_ONLY=<comma list> runs a subset, e.g. BENCH_ONLY=simple,cpu,latency):
//   simple, extended, prepared  pgbench -S in that protocol mode, BENCH_CLIENTS clients; TPS, and the proxy's CPU per
//                               transaction (utime+stime of its process tree in /proc, over the run / transactions)
//   tpcb                        pgbench TPC-B (simple mode)
//   connect                     pgbench -C -S: a new SCRAM login per transaction; TPS = logins per second
//   tls                         -S simple with sslmode=require, direct and through pgsplit with TLS on both sides
//   cpu                         the CPU columns (measured during the runs above; alone it means `simple`)
//   latency                     one client (pgbench -c 1 -S, per-transaction logs): p50/p99 round trip per target
//   stats                       what statement statistics cost: pgsplit with stats.enabled false and true
//                               (pgsplit-stats-off, pgsplit-stats-on), both started afresh for each of BENCH_STATS_ROUNDS
//                               rounds, back to back on -S simple, -S extended and a 9:1 mix of -S and TPC-B-like;
//                               prints TPS on / off per workload (of the medians, and round by round)
//   idle                        BENCH_IDLE_CLIENTS (10,000) idle SCRAM-authenticated clients through pgsplit, pgsplit-2w and
//                               pgbouncer: RSS before and with them, bytes per client
//   c1000                       BENCH_STORM_CLIENTS (1,000) pgbench clients (-j 4 -S) against PostgreSQL restarted with
//                               max_connections = 100: works/fails for direct, pgsplit, pgsplit-2w, pgbouncer; p50/p99
//                               latency. Runs last: it restarts every node of the bench's cluster with that setting.
// pgsplit runs with its defaults spelled out (routing on, pool: transaction, size 20, one process); pgsplit-2w is the same
// with workers: 2 (a coordinator and two workers sharing the client port, the pool split between them), and the summary
// gives its TPS over pgsplit's and pgbouncer's per workload: what the second worker buys. A proxy's CPU and RSS are
// those of its whole process tree (pgsplit's coordinator and workers, a pooler's children). The poolers run when installed
// (apt-get install pgbouncer pgpool2) and are skipped with the reason otherwise. A case that does not work through a
// target is reported as "fails" with the reason; nothing here asserts a figure.
//
// Environment (defaults in brackets): BENCH_CLIENTS [8], BENCH_SECONDS [5] per run, BENCH_ROUNDS [3] interleaved
// rounds (median reported), BENCH_STATS_ROUNDS [6] for the stats case, BENCH_WARMUP_SECONDS [2], BENCH_SCALE [10], BENCH_ONLY [all cases],
// BENCH_TARGETS [all: direct,pgsplit,pgsplit-2w,pgsplit-relay,pgbouncer,pgpool-II,direct-tls,pgsplit-tls] for the
// matrix and latency cases, BENCH_LATENCY_SECONDS [5], BENCH_IDLE_CLIENTS [10000], BENCH_IDLE_SECONDS [120] (deadline for
// opening them), BENCH_STORM_CLIENTS [1000], BENCH_STORM_SECONDS [10] + BENCH_STORM_CONNECT_SECONDS [10] (pgbench -T
// counts the time its clients take to connect), BENCH_STORM_MAX_CONNECTIONS [100],
// BENCH_PGBOUNCER_PLAIN_PASSWORD=1 (pgbouncer's auth_file gets the plain password instead of pg_authid's SCRAM secret),
// BENCH_PGSPLIT_EXTRA (YAML appended to every pgsplit config, e.g. "log: { level: error }"; a `pool:` in it replaces the
// bench's; a `workers:` in it sets pgsplit's and the others' workers, not pgsplit-2w's, which stays at 2).
// A full run takes about 12 minutes on a 2-core machine (the matrix about 9.5, the rest 2.5; about a minute more once
// pgsplit serves the idle and 1,000-client cases rather than failing them early), plus about 5 for the stats case
// (BENCH_ONLY=stats alone: about 5.5 with the cluster's start). The idle case needs ~idle+1000 open files:
// the bench re-executes itself under `ulimit -n` (up to the hard limit) when the soft limit is lower; pgbouncer and
// pgpool-II get the hard limit too (runuser would leave them at 1024).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onShutdownSignal } from '../test/harness/cleanup.js';
import { clusterInfo, findPgBinDir, startCluster, type Cluster } from '../test/harness/cluster.js';
import { REPO_ROOT } from '../test/harness/proxy.js';
import { idleClients, manyClients, oneClientLatency, type IdleCase, type LatencyCase, type StormCase } from './lib/bench-cases.js';
import { runMatrix, type MatrixResults } from './lib/bench-matrix.js';
import { startTarget, STATS_TARGETS, storedSecret, TARGETS, TWO_WORKERS, type Target, type TargetContext, type TargetName, type TargetSizing } from './lib/bench-targets.js';
import { restartWithSetting } from './lib/cluster-settings.js';
import { reexecWithOpenFiles } from './lib/nofile.js';
import { MIXED, pgbenchInit, WORKLOADS, type Endpoint, type Workload } from './lib/pgbench.js';
import { killRunningTools, run } from './lib/proc.js';
import { conns, printIdle, printLatency, printMatrix, printStatsCost, printStorm, short, us } from './lib/bench-report.js';
import { medianOf, pairedRatio, runStatsRounds, type StatsCost } from './lib/bench-stats.js';
import { fmt, mb, ratio } from './lib/table.js';

const say = (s = ''): void => void process.stdout.write(`${s}\n`);

function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    say(`bench: ${name}=${raw} is not an integer >= ${min}`);
    process.exit(2);
  }
  return n;
}

function envList<T extends string>(name: string, allowed: readonly T[]): Set<T> {
  const raw = process.env[name];
  if (!raw) return new Set(allowed);
  const want = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = want.filter((w) => !allowed.includes(w as T));
  if (bad.length || want.length === 0) {
    say(`bench: ${name}=${raw}: unknown ${bad.join(', ') || '(empty)'}; choose from ${allowed.join(',')}`);
    process.exit(2);
  }
  return new Set(want as T[]);
}

const CASES = ['simple', 'extended', 'prepared', 'tpcb', 'connect', 'tls', 'cpu', 'latency', 'stats', 'idle', 'c1000'] as const;
type CaseName = (typeof CASES)[number];
const ONLY = envList<CaseName>('BENCH_ONLY', CASES);
const TARGET_SET = envList<TargetName>('BENCH_TARGETS', TARGETS);
const CLIENTS = envInt('BENCH_CLIENTS', 8, 1);
const SECONDS = envInt('BENCH_SECONDS', 5, 1);
const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
// A cost of a few percent is within one round's noise on a shared machine: the stats case takes more rounds.
const STATS_ROUNDS = envInt('BENCH_STATS_ROUNDS', 6, 1);
const WARMUP_SECONDS = envInt('BENCH_WARMUP_SECONDS', 2, 0);
const SCALE = envInt('BENCH_SCALE', 10, 1);
const LATENCY_SECONDS = envInt('BENCH_LATENCY_SECONDS', 5, 1);
const IDLE_CLIENTS = envInt('BENCH_IDLE_CLIENTS', 10_000, 1);
const IDLE_SECONDS = envInt('BENCH_IDLE_SECONDS', 120, 1);
const STORM_CLIENTS = envInt('BENCH_STORM_CLIENTS', 1_000, 1);
const STORM_SECONDS = envInt('BENCH_STORM_SECONDS', 10, 1);
// pgbench's -T clock starts before its clients connect: give the logins this long on top.
const STORM_CONNECT_SECONDS = envInt('BENCH_STORM_CONNECT_SECONDS', 10, 0);
const STORM_MAX_CONNECTIONS = envInt('BENCH_STORM_MAX_CONNECTIONS', 100, 10);
const PGSPLIT_EXTRA = process.env.BENCH_PGSPLIT_EXTRA ?? '';
const JOBS = Math.min(CLIENTS, 2);
/** pgsplit's pool, as its defaults have it; spelled out so that the figures say what they measured. */
const POOL_SIZE = 20;
/** The `pgsplit` target's workers, against which pgsplit-2w is compared (1 unless BENCH_PGSPLIT_EXTRA says otherwise). */
const PGSPLIT_WORKERS = /^workers\s*:\s*(\S+)/m.exec(PGSPLIT_EXTRA)?.[1] ?? '1';
const PGSPLIT_YAML = [/^pool:/m.test(PGSPLIT_EXTRA) ? '' : `pool: { mode: transaction, size: ${POOL_SIZE} }`, PGSPLIT_EXTRA].filter(Boolean).join('\n');

// `tls` and `cpu` ride on -S simple.
const matrixWorkloads: Workload[] = WORKLOADS.filter((w) => ONLY.has(w.key as CaseName) || (w.key === 'simple' && (ONLY.has('tls') || ONLY.has('cpu'))));
const isStatsTarget = (t: TargetName) => (STATS_TARGETS as readonly string[]).includes(t);
const matrixTargets = TARGETS.filter((t) => TARGET_SET.has(t) && !isStatsTarget(t) && (!t.endsWith('-tls') || ONLY.has('tls')));
const statsWorkloads: Workload[] = [...WORKLOADS.filter((w) => w.key === 'simple' || w.key === 'extended'), MIXED];
const latencyTargets: TargetName[] = ['direct', 'pgsplit', 'pgsplit-2w', 'pgsplit-relay', 'pgbouncer', 'pgpool-II'].filter((t) => TARGET_SET.has(t as TargetName)) as TargetName[];

// Cleanups run in reverse order, once, on normal exit, on error and on Ctrl-C/SIGTERM.
const cleanups: Array<() => Promise<void>> = [];
let cleaning: Promise<void> | null = null;
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const fn = cleanups.pop()!;
      await fn().catch((err: unknown) => say(`bench: cleanup failed: ${(err as Error).message}`));
    }
  })();
  return cleaning;
}

let interrupted = false;

async function ensureBuilt(): Promise<string | null> {
  if (fs.existsSync(path.join(REPO_ROOT, 'dist/cli/main.js'))) return null;
  say('bench: dist/cli/main.js is missing; running `npm run build` ...');
  const r = await run('npm', ['run', 'build'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
  if (r.code !== 0 || !fs.existsSync(path.join(REPO_ROOT, 'dist/cli/main.js'))) {
    return `npm run build failed (code ${r.code}): ${(r.stdout + r.stderr).trim().split('\n').slice(-5).join(' | ')}`;
  }
  return null;
}

async function resetForTpcb(psql: string, ep: Endpoint): Promise<void> {
  // What pgbench's own vacuum step does (we pass --no-vacuum), run directly so every target starts equal.
  const r = await run(psql, ['-X', '-q', '-h', ep.host, '-p', String(ep.port), '-U', ep.user, '-d', ep.database,
    '-c', 'VACUUM pgbench_branches', '-c', 'VACUUM pgbench_tellers', '-c', 'TRUNCATE pgbench_history'], { env: { PGPASSWORD: ep.password, PGSSLMODE: 'disable' }, timeoutMs: 60_000 });
  if (r.code !== 0) say(`  (vacuum before TPC-B failed: ${r.stderr.trim()})`);
}

/** Starts each named target; the ones that cannot run are listed in `skipped` with the reason. */
async function startTargets(names: TargetName[], ctx: TargetContext, sizing: TargetSizing, skipped: Array<{ target: string; case: string; reason: string }>, caseName: string): Promise<Target[]> {
  const live: Target[] = [];
  for (const name of names) {
    if (interrupted) break;
    try {
      const t = await startTarget(name, ctx, sizing);
      cleanups.push(() => t.stop());
      live.push(t);
      say(`bench: ${name} (${t.version}) on port ${t.endpoint.port}${t.pid ? `, pid ${t.pid}` : ''}`);
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0]!;
      skipped.push({ target: name, case: caseName, reason });
      say(`bench: skipping ${name} for ${caseName}: ${reason}`);
    }
  }
  return live;
}

async function stopTargets(ts: Target[]): Promise<void> {
  // stop() is idempotent, so the cleanups registered for them stay harmless.
  for (const t of ts) await t.stop().catch((err: unknown) => say(`bench: stopping ${t.name}: ${(err as Error).message}`));
}

interface PgsplitMetrics {
  routed: { replica: number; primary: number };
  /** pgsplit_worker_restarts_total (workers: N > 1; null without it): a restart mid-run loses clients and skews the figures. */
  workerRestarts: number | null;
}

/** What a pgsplit's /metrics says (a coordinator's sums its workers'), or null. */
async function pgsplitMetrics(adminPort: number): Promise<PgsplitMetrics | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const routed = { replica: 0, primary: 0 };
    for (const m of text.matchAll(/^pgsplit_statements_routed_total\{([^}]*)\} (\S+)$/gm)) {
      const target = /target="(\w+)"/.exec(m[1]!)?.[1];
      if (target === 'replica' || target === 'primary') routed[target] += Number(m[2]);
    }
    const restarts = /^pgsplit_worker_restarts_total (\S+)$/m.exec(text);
    return { routed, workerRestarts: restarts ? Number(restarts[1]) : null };
  } catch (err) {
    say(`bench: could not read pgsplit's metrics: ${(err as Error).message}`);
    return null;
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  // The idle case holds IDLE_CLIENTS sockets in this process (and as many in the proxy, which inherits the limit).
  const needFiles = ONLY.has('idle') ? IDLE_CLIENTS + 1_000 : ONLY.has('c1000') ? STORM_CLIENTS + 500 : 0;
  if (needFiles) {
    const re = reexecWithOpenFiles(needFiles, Math.max(65_536, needFiles));
    if (re.child) process.exit(await re.child);
    if (re.warning) say(`bench: warning: ${re.warning}`);
  }
  onShutdownSignal((sig) => {
    if (interrupted) return;
    interrupted = true;
    say(`\nbench: ${sig}: stopping pgbench, the poolers and the cluster...`);
    killRunningTools();
    void cleanupAll().then(() => {
      say('bench: cleaned up.');
      process.exit(128 + (os.constants.signals[sig] ?? 2));
    });
  });

  const binDir = findPgBinDir();
  if (!binDir) {
    say('bench: the PostgreSQL server binaries were not found; install them (apt-get install postgresql) or set PGSPLIT_PG_BINDIR.');
    process.exit(1);
  }
  say(`bench: cases ${[...ONLY].join(',')}; ${CLIENTS} clients, ${JOBS} threads, ${ROUNDS} interleaved rounds of ${SECONDS}s per target and workload (median reported${ONLY.has('stats') ? `; ${STATS_ROUNDS} for the stats case` : ''}) after a ${WARMUP_SECONDS}s warm-up, scale ${SCALE}; ${os.cpus().length} CPUs`);
  const loadStart = os.loadavg()[0]!;
  // Anything else busy on the machine skews every ratio; say so rather than let it pass silently.
  if (loadStart > os.cpus().length / 2) say(`bench: warning: load average is ${loadStart.toFixed(2)} before starting; other work will distort the figures`);

  const buildError = await ensureBuilt();

  say('bench: starting the cluster (primary + 2 replicas) ...');
  const clusterP = startCluster({ signalHandlers: false });
  cleanups.push(async () => {
    const c = await clusterP.catch(() => null);
    await c?.stop();
  });
  const cluster: Cluster = await clusterP;
  const info = clusterInfo(cluster);
  const primary = info.nodes[0]!;
  const direct: Endpoint = { host: primary.host, port: primary.port, user: info.app.user, password: info.app.password, database: info.app.database };
  const pgbenchBin = cluster.bin('pgbench');
  const psqlBin = cluster.bin('psql');
  const pgbenchVersion = (await run(pgbenchBin, ['--version'])).stdout.trim();

  say(`bench: pgbench -i -s ${SCALE} on the primary (${primary.host}:${primary.port}) ...`);
  const t0 = Date.now();
  await pgbenchInit(pgbenchBin, direct, SCALE);
  say(`bench: initialized in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

  const scramSecret = process.env.BENCH_PGBOUNCER_PLAIN_PASSWORD ? null : await storedSecret(info, info.app.user);
  const ctx: TargetContext = { info, direct, pgVersion: pgbenchVersion.replace(/^pgbench \(PostgreSQL\)/, 'PostgreSQL'), buildError, scramSecret, pgsplitExtra: PGSPLIT_YAML };
  const skipped: Array<{ target: string; case: string; reason: string }> = [];
  const versions: Record<string, string> = {};
  const notes: string[] = [];
  let matrix: MatrixResults = new Map();
  const latency: LatencyCase[] = [];
  const idle: IdleCase[] = [];
  const storm: StormCase[] = [];
  let statsCost: StatsCost[] = [];
  let statsTop: unknown[] = [];
  const stormNotes: string[] = [];
  let routed: { replica: number; primary: number } | null = null;
  let routed2w: PgsplitMetrics | null = null;
  const phaseTimes: Record<string, number> = {};
  const phase = async (name: string, fn: () => Promise<void>): Promise<void> => {
    if (interrupted) return;
    const t = Date.now();
    await fn();
    phaseTimes[name] = Math.round((Date.now() - t) / 1000);
  };

  // 1. The pgbench matrix (and the CPU columns), then one-client latency, against the same targets.
  const needMain = matrixWorkloads.length > 0 || ONLY.has('latency');
  if (needMain) {
    const names = [...new Set([...(matrixWorkloads.length ? matrixTargets : []), ...(ONLY.has('latency') ? latencyTargets : [])])];
    const live = await startTargets(TARGETS.filter((t) => names.includes(t)), ctx, { clients: CLIENTS }, skipped, 'pgbench');
    for (const t of live) {
      versions[t.name] = t.version;
      notes.push(...(t.notes ?? []));
    }
    await phase('matrix', async () => {
      if (!matrixWorkloads.length) return;
      matrix = await runMatrix({
        pgbenchBin,
        workloads: matrixWorkloads,
        targets: live.filter((t) => matrixTargets.includes(t.name)),
        clients: CLIENTS,
        jobs: JOBS,
        seconds: SECONDS,
        rounds: ROUNDS,
        warmupSeconds: WARMUP_SECONDS,
        beforeTpcb: () => resetForTpcb(psqlBin, direct),
        interrupted: () => interrupted,
        say,
      });
    });
    await phase('latency', async () => {
      if (!ONLY.has('latency')) return;
      for (const t of live.filter((x) => latencyTargets.includes(x.name))) {
        if (interrupted) return;
        const c = await oneClientLatency(pgbenchBin, t, LATENCY_SECONDS);
        latency.push(c);
        say(`  latency      ${t.name.padEnd(13)} p50 ${us(c.stats?.p50Ms).padStart(5)} µs  p99 ${us(c.stats?.p99Ms).padStart(5)} µs${c.ok ? '' : `  fails: ${short(c.error)}`}`);
      }
    });
    const routing = live.find((t) => t.name === 'pgsplit');
    if (routing?.adminPort) routed = (await pgsplitMetrics(routing.adminPort))?.routed ?? null;
    const twoWorkers = live.find((t) => t.name === 'pgsplit-2w');
    if (twoWorkers?.adminPort) routed2w = await pgsplitMetrics(twoWorkers.adminPort);
    await stopTargets(live);
  }

  // 2. What statement statistics cost: pgsplit with them off and on, fresh processes every round.
  await phase('stats', async () => {
    if (!ONLY.has('stats') || ctx.buildError) {
      if (ONLY.has('stats') && ctx.buildError) skipped.push({ target: 'pgsplit-stats-*', case: 'stats', reason: ctx.buildError });
      return;
    }
    const r = await runStatsRounds({
      pgbenchBin,
      workloads: statsWorkloads,
      clients: CLIENTS,
      jobs: JOBS,
      seconds: SECONDS,
      rounds: STATS_ROUNDS,
      warmupSeconds: WARMUP_SECONDS,
      start: async (side) => {
        const t = await startTarget(side === 'on' ? 'pgsplit-stats-on' : 'pgsplit-stats-off', ctx, { clients: CLIENTS });
        cleanups.push(() => t.stop());
        versions[t.name] = t.version;
        return t;
      },
      beforeWrites: () => resetForTpcb(psqlBin, direct),
      interrupted: () => interrupted,
      say,
    });
    statsCost = r.costs;
    statsTop = r.top;
  });

  // 3. Idle clients: fresh pgsplit and pgbouncer that accept that many clients.
  await phase('idle', async () => {
    if (!ONLY.has('idle')) return;
    const sizing: TargetSizing = { clients: POOL_SIZE, poolSize: POOL_SIZE, maxClientConn: IDLE_CLIENTS + 100, logLevel: 'error' };
    for (const name of ['pgsplit', 'pgsplit-2w', 'pgbouncer'] as const) {
      if (interrupted) return;
      const [t] = await startTargets([name], ctx, sizing, skipped, 'idle');
      if (!t) continue;
      try {
        say(`  idle         ${name}: opening ${IDLE_CLIENTS} clients (32 logins at a time, at most ${IDLE_SECONDS}s) ...`);
        const c = await idleClients(t, {
          count: IDLE_CLIENTS,
          concurrency: 32,
          openDeadlineMs: IDLE_SECONDS * 1000,
          holdMs: 3_000,
          nodes: info.nodes,
          superuser: info.superuser,
          progress: (l) => say(`  idle         ${name}: ${l}`),
        });
        idle.push(c);
        say(`  idle         ${name}: ${c.connected}/${c.wanted} connected, RSS ${mb(c.rssBeforeBytes)} -> ${mb(c.rssWithClientsBytes)} MB${c.bytesPerClient === null ? '' : `, ${(c.bytesPerClient / 1024).toFixed(1)} KB/client`}${c.failure ? `; fails: ${short(c.failure, 160)}` : ''}`);
      } catch (err) {
        const msg = (err as Error).message;
        idle.push({ target: name, wanted: IDLE_CLIENTS, connected: 0, failure: msg, openSeconds: 0, loginsPerSecond: null, rssBeforeBytes: null, rssWithClientsBytes: null, bytesPerClient: null, serverConnections: [] });
        say(`  idle         ${name}: fails: ${msg}`);
      } finally {
        await stopTargets([t]);
      }
    }
  });

  // 4. Many clients against a PostgreSQL with few connection slots. Last: it restarts the nodes.
  await phase('c1000', async () => {
    if (!ONLY.has('c1000')) return;
    say(`  c1000        restarting every node with max_connections = ${STORM_MAX_CONNECTIONS} ...`);
    try {
      await restartWithSetting(cluster, 'max_connections', String(STORM_MAX_CONNECTIONS));
    } catch (err) {
      const reason = `could not restart the cluster with max_connections = ${STORM_MAX_CONNECTIONS}: ${(err as Error).message.split('\n')[0]}`;
      skipped.push({ target: 'all', case: 'c1000', reason });
      say(`  c1000        ${reason}`);
      return;
    }
    const sizing: TargetSizing = { clients: STORM_CLIENTS, poolSize: POOL_SIZE, maxClientConn: STORM_CLIENTS > 1000 ? STORM_CLIENTS + 100 : undefined, logLevel: 'error' };
    for (const name of ['direct', 'pgsplit', 'pgsplit-2w', 'pgbouncer'] as const) {
      if (interrupted) return;
      // pgbouncer must take 1,000 clients (its max_client_conn default is 100); pgsplit's default (1,000) is kept.
      const [t] = await startTargets([name], ctx, name === 'pgbouncer' ? { ...sizing, maxClientConn: STORM_CLIENTS + 100 } : sizing, skipped, 'c1000');
      if (!t) continue;
      try {
        const c = await manyClients(pgbenchBin, t, { clients: STORM_CLIENTS, seconds: STORM_SECONDS + STORM_CONNECT_SECONDS, nodes: info.nodes, superuser: info.superuser });
        storm.push(c);
        say(`  c1000        ${name.padEnd(13)} ${c.works ? 'works' : 'fails'}  ${fmt(c.tps, 0).padStart(7)} tps  p50 ${fmt(c.stats?.p50Ms, 1)} ms  p99 ${fmt(c.stats?.p99Ms, 1)} ms  server conns ${conns(c.serverConnections)}${c.reason ? `  ${short(c.reason, 140)}` : ''}`);
      } catch (err) {
        const reason = (err as Error).message.split('\n')[0]!;
        storm.push({ target: name, works: false, reason, tps: null, connectionMs: null, stats: null, serverConnections: [] });
        say(`  c1000        ${name.padEnd(13)} fails  ${short(reason, 140)}`);
      } finally {
        await stopTargets([t]);
      }
    }
    stormNotes.push('pgpool-II is not run here: it needs a process (num_init_children) per concurrent client');
  });

  // Report (not after Ctrl-C: half a run's figures would only mislead).
  if (interrupted) return;
  const loadEnd = os.loadavg()[0]!;
  say('');
  let matrixRows: Array<Record<string, unknown>> = [];
  if (matrix.size) {
    matrixRows = printMatrix(matrix, matrixWorkloads, { clients: CLIENTS, jobs: JOBS, rounds: ROUNDS, seconds: SECONDS, scale: SCALE });
    say('');
  }
  if (latency.length) {
    printLatency(latency, LATENCY_SECONDS);
    say('');
  }
  if (statsCost.length) {
    printStatsCost(statsCost, { clients: CLIENTS, jobs: JOBS, rounds: STATS_ROUNDS, seconds: SECONDS, scale: SCALE });
    say('');
  }
  if (idle.length) {
    printIdle(idle, IDLE_CLIENTS);
    say('');
  }
  if (storm.length) {
    printStorm(storm, { clients: STORM_CLIENTS, seconds: STORM_SECONDS + STORM_CONNECT_SECONDS, maxConnections: STORM_MAX_CONNECTIONS, poolSize: POOL_SIZE }, stormNotes);
    say('');
  }
  for (const s of skipped) say(`skipped ${s.target} (${s.case}): ${s.reason}`);
  for (const n of new Set(notes)) say(`note: ${n}`);
  say(`load average (1 min): ${loadStart.toFixed(2)} at start, ${loadEnd.toFixed(2)} at end (includes the benchmark itself)`);
  say('');

  // Summary: pgsplit against pgbouncer, the issue's targets in brackets.
  const cell = (w: string, t: string) => {
    const r = matrix.get(`${w}|${t}`);
    return r && r.ok ? r : null;
  };
  const tpsRatio = (w: string, t = 'pgsplit') => ratio(cell(w, t)?.tps, cell(w, 'pgbouncer')?.tps);
  const summary = {
    tps_vs_pgbouncer: Object.fromEntries(WORKLOADS.map((w) => [w.name, tpsRatio(w.name)])),
    relay_tps_vs_pgbouncer_select_simple: tpsRatio('-S simple', 'pgsplit-relay'),
    cpu_per_select_vs_pgbouncer: Object.fromEntries(WORKLOADS.filter((w) => w.select && !w.connect).map((w) => [w.name, ratio(cell(w.name, 'pgsplit')?.cpuPerTx, cell(w.name, 'pgbouncer')?.cpuPerTx)])),
    logins_per_second: Object.fromEntries(TARGETS.map((t): [string, number | null] => [t, cell('-C -S simple', t)?.tps ?? null]).filter(([, v]) => v !== null)),
    latency_p50_added_vs_direct_us: Object.fromEntries(latency.filter((c) => c.stats).map((c) => [c.target, 1000 * (c.stats!.p50Ms - (latency.find((d) => d.target === 'direct')?.stats?.p50Ms ?? NaN))])),
    routed_units: routed,
    // What the second worker buys: pgsplit-2w (workers: 2) against pgsplit (PGSPLIT_WORKERS) and pgbouncer, per workload.
    two_workers: {
      pgsplit_workers: PGSPLIT_WORKERS,
      tps_vs_pgsplit: Object.fromEntries(WORKLOADS.map((w) => [w.name, ratio(cell(w.name, 'pgsplit-2w')?.tps, cell(w.name, 'pgsplit')?.tps)])),
      tps_vs_pgbouncer: Object.fromEntries(WORKLOADS.map((w) => [w.name, tpsRatio(w.name, 'pgsplit-2w')])),
      cpu_per_tx_vs_pgsplit: Object.fromEntries(WORKLOADS.map((w) => [w.name, ratio(cell(w.name, 'pgsplit-2w')?.cpuPerTx, cell(w.name, 'pgsplit')?.cpuPerTx)])),
      routed_units: routed2w?.routed ?? null,
      worker_restarts: routed2w?.workerRestarts ?? null,
    },
    // Statement statistics: pgsplit-stats-on's TPS over pgsplit-stats-off's, per workload (the issue: on by default only if >= 0.97);
    // of the medians, and the median of the ratios round by round.
    stats_on_vs_off: Object.fromEntries(statsCost.map((c) => [c.workload, { medians: ratio(medianOf(c, 'tps', 'on'), medianOf(c, 'tps', 'off')), by_round: pairedRatio(c) }])),
    tls_vs_plaintext_select_simple: { pgsplit: ratio(cell('-S simple', 'pgsplit-tls')?.tps, cell('-S simple', 'pgsplit')?.tps), direct: ratio(cell('-S simple', 'direct-tls')?.tps, cell('-S simple', 'direct')?.tps) },
  };
  const r2 = (x: number | null | undefined): string => fmt(x, 2);
  if (matrix.size) {
    say(`pgsplit/pgbouncer TPS [target >= 1.0]: ${WORKLOADS.filter((w) => matrix.has(`${w.name}|pgsplit`)).map((w) => `${w.name} ${r2(summary.tps_vs_pgbouncer[w.name])}`).join(', ')}; relay -S simple ${r2(summary.relay_tps_vs_pgbouncer_select_simple)}`);
    const cpu = Object.entries(summary.cpu_per_select_vs_pgbouncer).filter(([, v]) => v !== null);
    if (cpu.length) say(`pgsplit/pgbouncer proxy CPU per -S transaction [target <= 1.3]: ${cpu.map(([k, v]) => `${k} ${r2(v)}`).join(', ')}`);
    const logins = Object.entries(summary.logins_per_second);
    if (logins.length) say(`logins per second (pgbench -C -S, SCRAM, ${CLIENTS} clients): ${logins.map(([k, v]) => `${k} ${fmt(v, 0)}`).join(', ')}`);
    const w2 = summary.two_workers;
    const one = PGSPLIT_WORKERS === '1' ? '1 worker' : `workers: ${PGSPLIT_WORKERS}`;
    for (const w of WORKLOADS.filter((x) => matrix.has(`${x.name}|pgsplit-2w`))) {
      const c = w2.cpu_per_tx_vs_pgsplit[w.name];
      say(`pgsplit-2w (${TWO_WORKERS} workers), ${w.name.padEnd(12)}: TPS / pgsplit (${one}) ${r2(w2.tps_vs_pgsplit[w.name])}, TPS / pgbouncer ${r2(w2.tps_vs_pgbouncer[w.name])}${c === null || c === undefined ? '' : `; CPU per transaction / pgsplit's ${r2(c)}`}`);
    }
    if (w2.worker_restarts) say(`warning: pgsplit-2w restarted ${w2.worker_restarts} worker(s) during the runs (pgsplit_worker_restarts_total): its clients lost their connections; its figures are suspect`);
    const unitsOnReplicas = (name: string, r: { replica: number; primary: number }) => say(`${name} units on replicas: ${r.replica} of ${r.replica + r.primary} (${(100 * r.replica / Math.max(1, r.replica + r.primary)).toFixed(1)}%, all workloads)`);
    if (routed) unitsOnReplicas('pgsplit (routing)', routed);
    if (routed2w) unitsOnReplicas('pgsplit-2w', routed2w.routed);
    if (ONLY.has('tls')) say(`TLS cost, -S simple: pgsplit with TLS on both sides / plaintext pgsplit ${r2(summary.tls_vs_plaintext_select_simple.pgsplit)}; PostgreSQL direct with TLS / plaintext ${r2(summary.tls_vs_plaintext_select_simple.direct)}`);
  }
  if (latency.length) {
    const p = (t: string) => latency.find((c) => c.target === t)?.stats?.p50Ms ?? null;
    say(`one-client p50: direct ${us(p('direct'))} µs, pgsplit ${us(p('pgsplit'))} µs (+${us((p('pgsplit') ?? NaN) - (p('direct') ?? NaN))}), pgsplit-2w ${us(p('pgsplit-2w'))} µs (+${us((p('pgsplit-2w') ?? NaN) - (p('direct') ?? NaN))}), pgbouncer ${us(p('pgbouncer'))} µs (+${us((p('pgbouncer') ?? NaN) - (p('direct') ?? NaN))}); pgsplit/pgbouncer ${r2(ratio(p('pgsplit'), p('pgbouncer')))}`);
  }
  for (const c of statsCost) {
    const s = summary.stats_on_vs_off[c.workload]!;
    say(`statement statistics, ${c.workload.padEnd(11)}: TPS on / off ${fmt(s.medians, 3)} (medians), ${fmt(s.by_round, 3)} (round by round) [on by default only if >= 0.97]`);
  }
  for (const c of idle) say(`${IDLE_CLIENTS} idle clients via ${c.target} [pgsplit target <= 250 MB]: ${c.failure ? `fails (${short(c.failure, 100)}); ` : ''}${c.connected} connected, RSS ${mb(c.rssWithClientsBytes)} MB, ${c.bytesPerClient === null ? '-' : (c.bytesPerClient / 1024).toFixed(1)} KB/client`);
  for (const c of storm) say(`${STORM_CLIENTS} clients, max_connections ${STORM_MAX_CONNECTIONS}, via ${c.target}: ${c.works ? `works, p50 ${fmt(c.stats?.p50Ms, 1)} ms, p99 ${fmt(c.stats?.p99Ms, 1)} ms` : `fails: ${short(c.reason, 120)}`}`);

  const outFile = path.join(REPO_ROOT, '.tmp/bench.json');
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(
    outFile,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        duration_seconds: Math.round((Date.now() - started) / 1000),
        phase_seconds: phaseTimes,
        machine: { load_average_start: loadStart, load_average_end: loadEnd, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? null, node: process.version, platform: `${os.platform()} ${os.release()}` },
        params: { cases: [...ONLY], targets: [...TARGET_SET], clients: CLIENTS, jobs: JOBS, seconds: SECONDS, rounds: ROUNDS, stats_rounds: STATS_ROUNDS, warmup_seconds: WARMUP_SECONDS, scale: SCALE, latency_seconds: LATENCY_SECONDS, idle_clients: IDLE_CLIENTS, storm_clients: STORM_CLIENTS, storm_seconds: STORM_SECONDS, storm_max_connections: STORM_MAX_CONNECTIONS, pgsplit_extra: PGSPLIT_YAML },
        versions,
        results: matrixRows,
        latency: latency.map((c) => ({ target: c.target, ok: c.ok, error: c.error, avg_ms: c.avgMs, ...c.stats })),
        stats_top_statements: statsTop,
        stats_cost: statsCost.map((c) => ({ workload: c.workload, tps: c.tps, cpu_us_per_tx: { off: c.cpuPerTx.off.map((x) => (x === null ? null : x * 1e6)), on: c.cpuPerTx.on.map((x) => (x === null ? null : x * 1e6)) }, errors: c.errors })),
        idle: idle.map((c) => ({ target: c.target, wanted: c.wanted, connected: c.connected, failure: c.failure, open_seconds: c.openSeconds, logins_per_second: c.loginsPerSecond, rss_before_bytes: c.rssBeforeBytes, rss_with_clients_bytes: c.rssWithClientsBytes, bytes_per_client: c.bytesPerClient, max_server_connections: c.serverConnections })),
        many_clients: storm.map((c) => ({ target: c.target, works: c.works, reason: c.reason, tps: c.tps, connection_ms: c.connectionMs, ...c.stats, max_server_connections: c.serverConnections, pgbench_output_tail: c.output ?? null })),
        skipped,
        notes: [...new Set(notes), ...stormNotes],
        summary,
      },
      null,
      2,
    )}\n`,
  );
  say(`bench: wrote ${path.relative(process.cwd(), outFile) || outFile} (${Math.round((Date.now() - started) / 1000)}s in total: ${Object.entries(phaseTimes).map(([k, v]) => `${k} ${v}s`).join(', ')})`);
}

main()
  .then(async () => {
    await cleanupAll();
    if (!interrupted) process.exit(0);
  })
  .catch(async (err: unknown) => {
    if (interrupted) return;
    say(`bench failed: ${(err as Error).stack ?? String(err)}`);
    await cleanupAll();
    process.exit(1);
  });
