// `npm run bench`: pgbench directly against the primary vs through pgsplit, pgbouncer and pgpool-II, in one run, and TLS's cost; prints TPS and ratios, writes .tmp/bench.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterInfo, findPgBinDir, startCluster, type Cluster } from '../test/harness/cluster.js';
import { REPO_ROOT, spawnProxy } from '../test/harness/proxy.js';
import { pgbench, pgbenchInit, WORKLOADS, type Endpoint, type PgbenchResult, type Workload } from './lib/pgbench.js';
import { PoolerUnavailable, startPgbouncer, startPgpool } from './lib/poolers.js';
import { killRunningTools, run } from './lib/proc.js';
import { onShutdownSignal } from './lib/signals.js';

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

const CLIENTS = envInt('BENCH_CLIENTS', 8, 1);
const SECONDS = envInt('BENCH_SECONDS', 5, 1);
const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const WARMUP_SECONDS = envInt('BENCH_WARMUP_SECONDS', 2, 0);
const SCALE = envInt('BENCH_SCALE', 10, 1);
const JOBS = Math.min(CLIENTS, 2);
// pgsplit routes (reads to replicas, the default); pgsplit-relay is routing.enabled: false, bytes relayed to the primary.
// direct-tls and pgsplit-tls (client TLS and server_tls require, routing on) run -S simple only, with sslmode=require.
const TARGETS = ['direct', 'pgsplit', 'pgsplit-relay', 'pgbouncer', 'pgpool-II', 'direct-tls', 'pgsplit-tls'] as const;
const TLS_WORKLOAD = '-S simple';
const isPgsplit = (t: TargetName): boolean => t === 'pgsplit' || t === 'pgsplit-relay' || t === 'pgsplit-tls';
type TargetName = (typeof TARGETS)[number];

interface Row {
  workload: string;
  target: TargetName;
  tps: number | null;
  latency_ms: number | null;
  transactions: number | null;
  failed: number | null;
  aborted: boolean;
  vs_direct: number | null;
  vs_pgbouncer: number | null;
  error: string | null;
}

interface Target {
  name: TargetName;
  version: string;
  notes?: string[];
  endpoint: Endpoint;
  /** Run only these workloads (by name); all when absent. */
  workloads?: string[];
  stop(): Promise<void>;
}

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

async function ensureBuilt(): Promise<string | null> {
  if (fs.existsSync(path.join(REPO_ROOT, 'dist/cli.js'))) return null;
  say('bench: dist/cli.js is missing; running `npm run build` ...');
  const r = await run('npm', ['run', 'build'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
  if (r.code !== 0 || !fs.existsSync(path.join(REPO_ROOT, 'dist/cli.js'))) {
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

const fmt = (n: number | null, digits: number): string => (n === null ? '-' : n.toFixed(digits));

function printTable(rows: Row[]): void {
  const head = ['workload', 'target', 'TPS', 'avg lat ms', 'vs direct', 'vs pgbouncer', 'failed', 'note'];
  const body = rows.map((r) => [
    r.workload,
    r.target,
    fmt(r.tps, 0),
    fmt(r.latency_ms, 3),
    fmt(r.vs_direct, 2),
    isPgsplit(r.target) ? fmt(r.vs_pgbouncer, 2) : '',
    r.failed === null ? '-' : String(r.failed),
    r.aborted ? `ABORTED: ${r.error ?? ''}`.slice(0, 90) : r.error && r.tps === null ? r.error.slice(0, 90) : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  say(line(head));
  say(widths.map((w, i) => (i === widths.length - 1 ? '----' : '-'.repeat(w))).join('  '));
  let last = '';
  for (let i = 0; i < body.length; i++) {
    if (last && rows[i]!.workload !== last) say('');
    last = rows[i]!.workload;
    say(line(body[i]!));
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const binDir = findPgBinDir();
  if (!binDir) {
    say('bench: the PostgreSQL server binaries were not found; install them (apt-get install postgresql) or set PGSPLIT_PG_BINDIR.');
    process.exit(1);
  }
  say(`bench: ${CLIENTS} clients, ${JOBS} threads, ${ROUNDS} interleaved rounds of ${SECONDS}s per target and workload (median reported) after a ${WARMUP_SECONDS}s warm-up, scale ${SCALE}; ${os.cpus().length} CPUs`);
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

  let pgsplitAdmin: number | null = null;
  const starters: Record<TargetName, () => Promise<Target>> = {
    direct: async () => ({ name: 'direct', version: pgbenchVersion.replace(/^pgbench \(PostgreSQL\)/, 'PostgreSQL'), endpoint: direct, stop: async () => {} }),
    pgsplit: async () => {
      if (buildError) throw new PoolerUnavailable(buildError);
      const p = await spawnProxy(info, { logLevel: 'warn', extra: 'routing: { enabled: true }' });
      pgsplitAdmin = p.adminPort;
      return { name: 'pgsplit', version: 'pgsplit 0.1.0 (own process, routing on)', endpoint: { ...direct, host: '127.0.0.1', port: p.port }, stop: () => p.stop() };
    },
    'pgsplit-relay': async () => {
      if (buildError) throw new PoolerUnavailable(buildError);
      const p = await spawnProxy(info, { logLevel: 'warn', extra: 'routing: { enabled: false }' });
      return { name: 'pgsplit-relay', version: 'pgsplit 0.1.0 (own process, routing off)', endpoint: { ...direct, host: '127.0.0.1', port: p.port }, stop: () => p.stop() };
    },
    pgbouncer: async () => {
      const p = await startPgbouncer({ server: direct, clients: CLIENTS });
      return { name: 'pgbouncer', version: p.version, notes: p.notes, endpoint: { ...direct, host: '127.0.0.1', port: p.port }, stop: p.stop };
    },
    'pgpool-II': async () => {
      const p = await startPgpool({ server: direct, clients: CLIENTS });
      return { name: 'pgpool-II', version: p.version, endpoint: { ...direct, host: '127.0.0.1', port: p.port }, stop: p.stop };
    },
    // TLS's cost: PostgreSQL's own (the cluster runs with ssl = on), and pgsplit's with TLS on both sides.
    'direct-tls': async () => ({ name: 'direct-tls', version: 'PostgreSQL, sslmode=require', endpoint: { ...direct, sslmode: 'require' }, workloads: [TLS_WORKLOAD], stop: async () => {} }),
    'pgsplit-tls': async () => {
      if (buildError) throw new PoolerUnavailable(buildError);
      if (!info.tls) throw new PoolerUnavailable('the cluster has no test certificates');
      const p = await spawnProxy(info, {
        logLevel: 'warn',
        extra: `routing: { enabled: true }\ntls: { mode: require, cert: "${info.tls.cert}", key: "${info.tls.key}" }\nserver_tls: { mode: require }`,
      });
      return {
        name: 'pgsplit-tls',
        version: 'pgsplit 0.1.0 (own process, routing on, tls.mode require, server_tls require)',
        endpoint: { ...direct, host: '127.0.0.1', port: p.port, sslmode: 'require' },
        workloads: [TLS_WORKLOAD],
        stop: () => p.stop(),
      };
    },
  };

  const results = new Map<string, PgbenchResult>(); // key: `${workload}|${target}`
  const skipped: Array<{ target: TargetName; reason: string }> = [];
  const versions: Partial<Record<TargetName, string>> = {};
  const notes: string[] = [];

  // Every target runs side by side and the runs interleave (round-robin, rotating who goes first), so that
  // background load drifting during the run hits all targets alike; each figure is the median of the rounds.
  const live: Target[] = [];
  for (const name of TARGETS) {
    if (interrupted) return;
    try {
      const target = await starters[name]();
      cleanups.push(() => target.stop());
      live.push(target);
      versions[name] = target.version;
      notes.push(...(target.notes ?? []));
      say(`bench: ${name} (${target.version}) on port ${target.endpoint.port}`);
    } catch (err) {
      const reason = (err as Error).message;
      skipped.push({ target: name, reason });
      say(`bench: skipping ${name}: ${reason}`);
    }
  }
  const median = (xs: number[]): number => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  for (const w of WORKLOADS) {
    const runs = new Map<TargetName, PgbenchResult[]>();
    const here = live.filter((t) => !t.workloads || t.workloads.includes(w.name));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < here.length; k++) {
        if (interrupted) return;
        const target = here[(k + round) % here.length]!;
        const runOnce = async (seconds: number): Promise<PgbenchResult> => {
          if (!w.select) await resetForTpcb(psqlBin, direct);
          return pgbench(pgbenchBin, target.endpoint, { workload: w, clients: CLIENTS, jobs: JOBS, seconds });
        };
        if (round === 0 && WARMUP_SECONDS > 0) {
          const warm = await runOnce(WARMUP_SECONDS);
          if (!warm.ok && !interrupted) say(`  warm-up ${w.name} via ${target.name}: ${warm.error ?? `exit ${warm.exitCode}`}`);
        }
        const r = await runOnce(SECONDS);
        if (interrupted) return;
        runs.set(target.name, [...(runs.get(target.name) ?? []), r]);
        const flag = r.aborted ? `  ABORTED: ${r.error ?? ''}` : r.failed ? `  failed=${r.failed}` : '';
        say(`  ${w.name.padEnd(12)} ${target.name.padEnd(13)} round ${round + 1}  ${fmt(r.tps, 0).padStart(8)} tps  ${fmt(r.latencyMs, 3).padStart(7)} ms${flag}`);
      }
    }
    for (const [name, rs] of runs) {
      const good = rs.filter((r) => r.ok && r.tps);
      const pick = good.length === rs.length ? { ...rs[0]!, tps: median(good.map((r) => r.tps!)), latencyMs: median(good.map((r) => r.latencyMs ?? 0)), transactions: good.reduce((a, r) => a + (r.transactions ?? 0), 0), failed: good.reduce((a, r) => a + (r.failed ?? 0), 0) } : rs.find((r) => !r.ok)!;
      results.set(`${w.name}|${name}`, pick);
    }
  }

  // Where the routing pgsplit sent its units, over the whole run (all workloads).
  let routed: { replica: number; primary: number } | null = null;
  if (pgsplitAdmin !== null) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${pgsplitAdmin}/metrics`)).text();
      routed = { replica: 0, primary: 0 };
      for (const m of text.matchAll(/^pgsplit_statements_routed_total\{([^}]*)\} (\S+)$/gm)) {
        const target = /target="(\w+)"/.exec(m[1]!)?.[1];
        if (target === 'replica' || target === 'primary') routed[target] += Number(m[2]);
      }
    } catch (err) {
      say(`bench: could not read pgsplit's routing metrics: ${(err as Error).message}`);
    }
  }

  const rows: Row[] = [];
  const tpsOf = (w: Workload, t: TargetName): number | null => {
    const r = results.get(`${w.name}|${t}`);
    return r && r.ok && r.tps ? r.tps : null;
  };
  const ratio = (a: number | null, b: number | null): number | null => (a !== null && b ? a / b : null);
  for (const w of WORKLOADS) {
    for (const t of TARGETS) {
      const r = results.get(`${w.name}|${t}`);
      if (!r) continue;
      const tps = r.tps;
      rows.push({
        workload: w.name,
        target: t,
        tps,
        latency_ms: r.latencyMs,
        transactions: r.transactions,
        failed: r.failed,
        aborted: r.aborted,
        vs_direct: r.ok ? ratio(tps, tpsOf(w, 'direct')) : null,
        vs_pgbouncer: isPgsplit(t) && r.ok ? ratio(tps, tpsOf(w, 'pgbouncer')) : null,
        error: r.ok ? null : r.error ?? `pgbench exited with ${r.exitCode}`,
      });
    }
  }

  say('');
  say(`pgbench ${CLIENTS} clients / ${JOBS} threads / median of ${ROUNDS} x ${SECONDS}s, scale ${SCALE}, ${os.cpus().length} CPUs; TPS excludes connection time`);
  printTable(rows);
  for (const s of skipped) say(`skipped ${s.target}: ${s.reason}`);
  for (const n of notes) say(`note: ${n}`);
  const sel = WORKLOADS[0]!;
  const summary = ratio(tpsOf(sel, 'pgsplit'), tpsOf(sel, 'pgbouncer'));
  const loadEnd = os.loadavg()[0]!;
  say(`load average (1 min): ${loadStart.toFixed(2)} at start, ${loadEnd.toFixed(2)} at end (includes the benchmark itself)`);
  say('');
  const relaySummary = ratio(tpsOf(sel, 'pgsplit-relay'), tpsOf(sel, 'pgbouncer'));
  if (routed) say(`pgsplit (routing) units on replicas: ${routed.replica} of ${routed.replica + routed.primary} (${(100 * routed.replica / Math.max(1, routed.replica + routed.primary)).toFixed(1)}%, all workloads)`);
  say(`pgsplit/pgbouncer -S simple: ${summary === null ? 'n/a' : summary.toFixed(2)} with routing, ${relaySummary === null ? 'n/a' : relaySummary.toFixed(2)} relay`);
  const tlsSummary = ratio(tpsOf(sel, 'pgsplit-tls'), tpsOf(sel, 'pgsplit'));
  const directTlsSummary = ratio(tpsOf(sel, 'direct-tls'), tpsOf(sel, 'direct'));
  say(`TLS cost, -S simple: pgsplit with TLS on both sides / plaintext pgsplit ${tlsSummary === null ? 'n/a' : tlsSummary.toFixed(2)}; PostgreSQL direct with TLS / plaintext ${directTlsSummary === null ? 'n/a' : directTlsSummary.toFixed(2)}`);

  const outFile = path.join(REPO_ROOT, '.tmp/bench.json');
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(
    outFile,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        duration_seconds: Math.round((Date.now() - started) / 1000),
        machine: { load_average_start: loadStart, load_average_end: loadEnd, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? null, node: process.version, platform: `${os.platform()} ${os.release()}` },
        params: { clients: CLIENTS, jobs: JOBS, seconds: SECONDS, rounds: ROUNDS, warmup_seconds: WARMUP_SECONDS, scale: SCALE },
        versions,
        results: rows,
        skipped,
        notes,
        summary: { pgsplit_vs_pgbouncer_select_simple: summary, pgsplit_relay_vs_pgbouncer_select_simple: relaySummary, routed_units: routed, pgsplit_tls_vs_plaintext_select_simple: tlsSummary, direct_tls_vs_plaintext_select_simple: directTlsSummary },
      },
      null,
      2,
    )}\n`,
  );
  say(`bench: wrote ${path.relative(process.cwd(), outFile) || outFile} (${Math.round((Date.now() - started) / 1000)}s in total)`);
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
