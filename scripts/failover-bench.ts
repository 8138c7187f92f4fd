// `npm run bench:failover`: kills the primary under write load FAILOVER_TRIALS times per replication mode (fresh cluster and pgsplit process each time); prints kill→first-write times and lost commits, writes .tmp/failover-bench.json.
// With FAILOVER_BENCH_INSTANCES=3 (or `-- --instances 3`) it runs the multi-instance trials instead (3 pgsplit instances through etcd; see lib/multi-instance/run.ts), writing .tmp/failover-bench-instances.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { onShutdownSignal } from '../test/harness/cleanup.js';
import { clusterInfo, findPgBinDir, startCluster, type Cluster, type ClusterInfo } from '../test/harness/cluster.js';
import { REPO_ROOT, spawnProxy, type ProxyProcess } from '../test/harness/proxy.js';
import { cleanupMultiInstance, instancesWanted, runMultiInstanceTrials } from './lib/multi-instance/run.js';
import { run, sleep, waitFor, within } from './lib/proc.js';

const say = (s = ''): void => void process.stdout.write(`${s}\n`);

const MODES = ['async', 'semi-sync', 'sync'] as const;
type Mode = (typeof MODES)[number];
const TRIALS = (() => {
  const raw = process.env.FAILOVER_TRIALS ?? '10';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    say(`bench:failover: FAILOVER_TRIALS=${raw} is not an integer >= 1`);
    process.exit(2);
  }
  return n;
})();
const CLIENTS = 3;
/** Write for this long before the kill, and after the first write on the new primary. */
const LOAD_MS = 1_000;

interface TrialResult {
  mode: Mode;
  trial: number;
  ok: boolean;
  error: string | null;
  promoted: string | null;
  synchronous_standby_names: string | null;
  /** From the kill (the first client error, or pg_ctl stop returning if sooner) to the first write acknowledged by the new primary. */
  kill_to_first_write_ms: number | null;
  /** pgsplit's own figure: first failed probe → writes go to the new primary. */
  event_duration_ms: number | null;
  acked: number;
  acked_before_kill: number;
  lost: number;
  client_errors: string[];
}

// The cluster and proxy of the trial running now; stopped on every exit path, including Ctrl-C.
let current: { cluster: Cluster | null; proxy: ProxyProcess | null; clients: pg.Client[] } = { cluster: null, proxy: null, clients: [] };
async function cleanupCurrent(): Promise<void> {
  const { cluster, proxy, clients } = current;
  current = { cluster: null, proxy: null, clients: [] };
  await Promise.all(clients.map((c) => within(c.end().catch(() => {}), 2_000)));
  await proxy?.stop().catch(() => {});
  await cluster?.stop();
  await cleanupMultiInstance();
}

let interrupted = false;
onShutdownSignal((sig) => {
  if (interrupted) return;
  interrupted = true;
  say(`\nbench:failover: ${sig}: stopping pgsplit and the cluster...`);
  void cleanupCurrent().then(() => {
    say('bench:failover: cleaned up.');
    process.exit(128 + (os.constants.signals[sig] ?? 2));
  });
});

async function status(adminPort: number): Promise<any> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/status`, { signal: AbortSignal.timeout(5_000) });
  return r.json();
}

async function client(info: ClusterInfo, port: number, database = info.app.database, direct = false): Promise<pg.Client> {
  const c = new pg.Client(direct
    ? { host: '127.0.0.1', port, user: info.superuser, database, connectionTimeoutMillis: 10_000 }
    : { host: '127.0.0.1', port, user: info.app.user, password: info.app.password, database, connectionTimeoutMillis: 10_000, application_name: 'failover-bench' });
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function trial(mode: Mode, n: number): Promise<TrialResult> {
  const res: TrialResult = { mode, trial: n, ok: false, error: null, promoted: null, synchronous_standby_names: null, kill_to_first_write_ms: null, event_duration_ms: null, acked: 0, acked_before_kill: 0, lost: 0, client_errors: [] };
  const acked: { id: number; port: number; at: number }[] = [];
  const errors: { at: number; text: string }[] = [];
  let stopped = false;
  let loops: Promise<void>[] = [];
  try {
    const cluster = await startCluster({ signalHandlers: false });
    current.cluster = cluster;
    const info = clusterInfo(cluster);
    const pg1 = cluster.nodes[0]!;
    const proxy = await spawnProxy(info, { logLevel: 'error', extra: `replication: { mode: ${mode} }\nshutdown: { drain_timeout: 1s }` });
    current.proxy = proxy;
    const setup = await client(info, proxy.port);
    current.clients.push(setup);
    await setup.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL)');
    const st0 = await waitFor('pgsplit to apply the replication mode on the primary', async () => {
      const s = await status(proxy.adminPort);
      const applied = mode === 'async' ? s.replication.synchronous_standby_names === '' : s.replication.synchronous_standby_names !== '' && !s.replication.degraded;
      return applied ? s : undefined;
    }, 15_000, 50, () => interrupted);
    res.synchronous_standby_names = st0.replication.synchronous_standby_names;

    for (let k = 0; k < CLIENTS; k++) current.clients.push(await client(info, proxy.port));
    loops = current.clients.slice(1).map(async (c, k) => {
      while (!stopped) {
        try {
          const r = await c.query({ text: 'INSERT INTO w (client) VALUES ($1) RETURNING id, inet_server_port() AS port', values: [k] });
          acked.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, at: Date.now() });
        } catch (err) {
          errors.push({ at: Date.now(), text: `${(err as Error & { code?: string }).code ?? '-'} ${(err as Error).message}` });
          if (/not queryable/.test((err as Error).message)) return;
          await sleep(10);
        }
      }
    });
    await sleep(LOAD_MS);

    const stopCalled = Date.now();
    await cluster.stopNode('pg1', 'immediate');
    const stopReturned = Date.now();
    const first = await waitFor('a write acknowledged by a new primary', () => acked.find((a) => a.at >= stopCalled && a.port !== pg1.port), 30_000, 5, () => interrupted);
    const killAt = Math.min(stopReturned, errors.find((e) => e.at >= stopCalled)?.at ?? stopReturned);
    await sleep(LOAD_MS);
    stopped = true;
    await within(Promise.all(loops), 20_000);

    const st = await status(proxy.adminPort);
    const np = cluster.nodes.find((x) => x.name === st.primary);
    if (!np || np.port !== first.port) throw new Error(`/status names ${st.primary} as primary, but the first write after the kill ran on port ${first.port}`);
    const d = await client(info, np.port, info.app.database, true);
    current.clients.push(d);
    const ids = acked.map((a) => a.id);
    const have = new Set((await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id));
    Object.assign(res, {
      ok: true,
      promoted: np.name,
      kill_to_first_write_ms: first.at - killAt,
      event_duration_ms: st.failover.events.at(-1)?.duration_ms ?? null,
      acked: acked.length,
      acked_before_kill: acked.filter((a) => a.at < killAt).length,
      lost: ids.filter((id) => !have.has(id)).length,
    });
  } catch (err) {
    res.error = (err as Error).message;
  } finally {
    stopped = true;
    await within(Promise.all(loops), 20_000);
    res.client_errors = errors.map((e) => e.text);
    await cleanupCurrent();
  }
  return res;
}

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
};

function summarize(results: TrialResult[]) {
  return MODES.map((mode) => {
    const rs = results.filter((r) => r.mode === mode);
    const ok = rs.filter((r) => r.ok);
    const times = ok.map((r) => r.kill_to_first_write_ms!);
    return {
      mode,
      trials: rs.length,
      ok: ok.length,
      median_ms: median(times),
      min_ms: times.length ? Math.min(...times) : null,
      max_ms: times.length ? Math.max(...times) : null,
      event_median_ms: median(ok.map((r) => r.event_duration_ms ?? 0)),
      acked: ok.reduce((s, r) => s + r.acked, 0),
      lost: ok.reduce((s, r) => s + r.lost, 0),
    };
  });
}

function printTable(rows: ReturnType<typeof summarize>): void {
  const head = ['mode', 'trials', 'median ms', 'min ms', 'max ms', 'pgsplit median ms', 'acknowledged', 'lost'];
  const v = (x: number | null): string => (x === null ? '-' : String(x));
  const body = rows.map((r) => [r.mode, r.ok === r.trials ? String(r.trials) : `${r.ok}/${r.trials} ok`, v(r.median_ms), v(r.min_ms), v(r.max_ms), v(r.event_median_ms), String(r.acked), String(r.lost)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  say(line(head));
  say(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) say(line(b));
}

async function main(): Promise<void> {
  let instances: number;
  try {
    instances = instancesWanted(process.argv.slice(2), process.env);
  } catch (err) {
    say(`bench:failover: ${(err as Error).message}`);
    process.exit(2);
  }
  if (!findPgBinDir()) {
    say('bench:failover: the PostgreSQL server binaries were not found; install them (apt-get install postgresql) or set PGSPLIT_PG_BINDIR.');
    process.exit(1);
  }
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist/cli/main.js'))) {
    say('bench:failover: dist/cli/main.js is missing; running `npm run build` ...');
    const r = await run('npm', ['run', 'build'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
    if (r.code !== 0) {
      say(`bench:failover: npm run build failed: ${(r.stdout + r.stderr).trim().split('\n').slice(-5).join(' | ')}`);
      process.exit(1);
    }
  }
  if (instances === 3) {
    // One repetition unless FAILOVER_TRIALS says otherwise: a full multi-instance run is 12 fresh sets.
    const rs = await runMultiInstanceTrials({ trials: process.env.FAILOVER_TRIALS ? TRIALS : 1, interrupted: () => interrupted, say });
    if (!interrupted && rs.some((r) => !r.ok || r.problems.length > 0)) process.exitCode = 1;
    return;
  }
  const started = Date.now();
  say(`bench:failover: ${TRIALS} trial(s) per mode (${MODES.join(', ')}), ${CLIENTS} writing clients, monitor interval 500ms, failure_threshold 3 (defaults); ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}`);
  const results: TrialResult[] = [];
  for (const mode of MODES) {
    for (let i = 1; i <= TRIALS && !interrupted; i++) {
      const r = await trial(mode, i);
      if (interrupted) break;
      results.push(r);
      say(r.ok
        ? `  ${mode} #${i}: ${r.promoted} promoted, kill→first write ${r.kill_to_first_write_ms} ms (pgsplit: ${r.event_duration_ms} ms), ${r.acked} acknowledged, ${r.lost} lost`
        : `  ${mode} #${i}: FAILED: ${r.error}`);
    }
  }
  if (interrupted) return;
  const summary = summarize(results);
  say('');
  say('kill→first write: from the kill of the primary to the first write acknowledged by the new primary, measured by the clients;');
  say('pgsplit: its own duration_ms (first failed probe → writes routed to the new primary); lost: acknowledged commits missing on the new primary.');
  say('');
  printTable(summary);
  const out = path.join(REPO_ROOT, '.tmp/failover-bench.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), trials_per_mode: TRIALS, clients: CLIENTS, cpus: os.cpus().length, duration_s: Math.round((Date.now() - started) / 1000), summary, results }, null, 2) + '\n');
  say(`\nbench:failover: details in ${path.relative(process.cwd(), out)} (${Math.round((Date.now() - started) / 1000)} s)`);
  if (results.some((r) => !r.ok) || summary.some((s) => s.mode !== 'async' && s.lost > 0)) process.exitCode = 1;
}

main()
  .catch((err: unknown) => {
    say(`bench:failover: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  })
  .finally(() => {
    if (!interrupted) void cleanupCurrent();
  });
