// Runs the multi-instance failover trials for `npm run bench:failover`: the plan from the environment, one trial at a time, the table and the JSON.
//
// Issue 11, "Fault tests: what must be shown". Run with `FAILOVER_BENCH_INSTANCES=3 npm run bench:failover` (or
// `npm run bench:failover -- --instances 3`); without it the bench runs the single-instance trials only, as before.
// Every trial gets a fresh PostgreSQL cluster (pg1 primary, pg2 and pg3 replicas), a fresh 3-member etcd and 3 pgsplit
// instances p1..p3 (coordination.etcd.lease_ttl 2s, monitor interval 500ms as the harness sets it,
// failover.failure_threshold 2, failover.hold_timeout 5s); p1 starts first, so it leads (set.ts). One client per
// instance loops `INSERT ... RETURNING id, inet_server_port()` and records every acknowledged id with the server port
// and time (load.ts). The trials themselves are described in trials.ts.
//
// leader-kill, primary-kill and leader-pause run in semi-sync, sync and async (commits lost must be 0 in the
// first two); the etcd trials do not promote, so they run in semi-sync only. FAILOVER_TRIALS repeats each
// (default 1 here: one full run is 12 sets, about 3 minutes on 2 cores, 5 when they are busy). For development:
// FAILOVER_BENCH_CASES=leader-pause,etcd-cut and FAILOVER_BENCH_MODES=sync pick a subset;
// FAILOVER_BENCH_LOG=warn shows pgsplit's own log (default fatal).
//
// Clean-up: every trial's processes and directories are stopped and removed when it ends, failed or not, and on
// SIGINT/SIGTERM (failover-bench.ts calls cleanupMultiInstance); should tsx SIGKILL the script before that runs,
// a watchdog process (orphan-reaper.ts) removes them.
//
// Per trial: recover ms (see trials.ts; for the promotion trials: from the kill of the primary to the first write
// acknowledged by the new primary through every live instance), acknowledged commits, commits lost (acknowledged
// ids missing on the final primary), and writes on a demoted node (acknowledged rows whose server was not the
// primary when it wrote them, by the row's clock_timestamp(): the old primary after the new one was published or
// took a write, or any other node; an acknowledgement held in a paused instance reaches the client late, but the
// commit is older). leader-pause also counts the old primary's rows before and after SIGCONT (checks.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../../test/harness/proxy.js';
import { sleep, within } from '../proc.js';
import { formatTable } from '../table.js';
import { countErrors, demotedWrites, firstWrites, lostOn } from './checks.js';
import { startSampler, startWriters, stopLoad } from './load.js';
import { CASES, FAILURE_THRESHOLD, HOLD_MS, LEASE_TTL_MS, LOAD_MS, MODES, node, nodeByPort, setInterrupted, startSet, stopCurrentSet, type CaseName, type Mode, type MultiResult, type TrialSet } from './set.js';
import { trials } from './trials.js';

export { CASES, type CaseName, type MultiResult };

const PROMOTING: readonly CaseName[] = ['leader-kill', 'primary-kill', 'leader-pause'];

export interface MultiOptions {
  trials: number;
  interrupted: () => boolean;
  say: (line?: string) => void;
}

/** Stops whatever the running trial has started (also for Ctrl-C); never throws. */
export const cleanupMultiInstance = (): Promise<void> => stopCurrentSet();

/** What `FAILOVER_BENCH_INSTANCES` / `--instances` ask for: 1 (default) or 3. */
export function instancesWanted(argv: string[], env: NodeJS.ProcessEnv): number {
  let raw = env.FAILOVER_BENCH_INSTANCES ?? '1';
  const k = argv.findIndex((a) => a === '--instances' || a.startsWith('--instances='));
  if (k >= 0) raw = argv[k]!.includes('=') ? argv[k]!.split('=')[1]! : argv[k + 1] ?? '';
  if (raw !== '1' && raw !== '3') throw new Error(`instances must be 1 or 3, not "${raw}" (FAILOVER_BENCH_INSTANCES or --instances)`);
  return Number(raw);
}

async function runTrial(c: CaseName, mode: Mode, n: number, logLevel: string): Promise<MultiResult> {
  const started = Date.now();
  const r: MultiResult = { case: c, mode, trial: n, ok: false, error: null, problems: [], recover_ms: null, acked: 0, lost: null, demoted_writes: null, detail: '', facts: {}, client_errors: {}, seconds: 0 };
  let set: TrialSet | null = null;
  let sampler: Promise<void> = Promise.resolve();
  try {
    set = await startSet(mode, { failsafe: c === 'etcd-down-fs', cutP3: c === 'etcd-cut', logLevel });
    r.facts.setup_s = Math.round((Date.now() - started) / 100) / 10;
    startWriters(set);
    sampler = startSampler(set);
    await firstWrites(set, set.instances, node(set, 'pg1').port, 0, 15_000);
    await sleep(LOAD_MS);
    const { final, timeline } = await trials[c](set, r);
    await stopLoad(set);
    await within(sampler, 3_000);
    const fp = node(set, final);
    r.acked = set.acks.length;
    r.lost = await lostOn(set, fp);
    const bad = demotedWrites(set, timeline);
    r.demoted_writes = bad.length;
    if (bad.length > 0) {
      r.facts.demoted_writes = bad.slice(0, 20).map((a) => ({ ...a, node: nodeByPort(set!, a.port), at: new Date(a.at).toISOString(), serverAt: new Date(a.serverAt).toISOString() }));
      r.problems.push(`${bad.length} writes acknowledged by a node that was not the primary (${[...new Set(bad.map((a) => `${a.via}→${nodeByPort(set!, a.port)}`))].join(', ')})`);
    }
    if (mode !== 'async' && r.lost > 0) r.problems.push(`${r.lost} acknowledged commits lost in ${mode}`);
    r.ok = true;
  } catch (err) {
    r.error = (err as Error).message.split('\n')[0]!;
    if (set) r.facts.failed_at_s = Math.round((Date.now() - started) / 100) / 10;
  } finally {
    if (set) {
      await stopLoad(set);
      await within(sampler, 3_000);
      r.client_errors = countErrors(set);
      if (!r.acked) r.acked = set.acks.length;
    }
    await cleanupMultiInstance();
    r.seconds = Math.round((Date.now() - started) / 100) / 10;
  }
  return r;
}

function listFromEnv<T extends string>(name: string, all: readonly T[]): T[] {
  const raw = process.env[name];
  if (!raw) return [...all];
  const want = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = want.filter((w) => !all.includes(w as T));
  if (bad.length) throw new Error(`${name}: unknown ${bad.join(', ')} (one of ${all.join(', ')})`);
  return want as T[];
}

export async function runMultiInstanceTrials(o: MultiOptions): Promise<MultiResult[]> {
  setInterrupted(o.interrupted);
  const cases = listFromEnv('FAILOVER_BENCH_CASES', CASES);
  const modes = listFromEnv('FAILOVER_BENCH_MODES', MODES);
  const logLevel = process.env.FAILOVER_BENCH_LOG ?? 'fatal';
  const plan: { c: CaseName; mode: Mode }[] = [];
  for (const c of cases) for (const mode of PROMOTING.includes(c) ? modes : modes.includes('semi-sync') ? ['semi-sync' as const] : modes.slice(0, 1)) plan.push({ c, mode });
  const started = Date.now();
  o.say(`bench:failover: 3 pgsplit instances, 3-member etcd, lease_ttl ${LEASE_TTL_MS} ms, failure_threshold ${FAILURE_THRESHOLD}, hold_timeout ${HOLD_MS} ms, monitor interval 500 ms; ` +
    `${plan.length} trial kinds x ${o.trials}; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}`);
  const results: MultiResult[] = [];
  for (const { c, mode } of plan) {
    for (let n = 1; n <= o.trials && !o.interrupted(); n++) {
      const r = await runTrial(c, mode, n, logLevel);
      if (o.interrupted()) break;
      results.push(r);
      o.say(r.ok
        ? `  ${c} ${mode} #${n}: recover ${r.recover_ms} ms, ${r.acked} acked, ${r.lost} lost, ${r.demoted_writes} on a demoted node; ${r.detail}${r.problems.length ? `; PROBLEMS: ${r.problems.join('; ')}` : ''} (${r.seconds} s)`
        : `  ${c} ${mode} #${n}: FAILED after ${r.seconds} s: ${r.error}`);
    }
  }
  if (o.interrupted()) return results;
  o.say('');
  o.say('recover ms: leader-kill/primary-kill/leader-pause: kill of the primary → first write on the new primary through every live instance;');
  o.say('  etcd-cut: heal → the cut-off instance writes again; etcd-down: etcd killed → the last instance stops writing; etcd-down-fs: longest write pause while etcd is down.');
  o.say('lost: acknowledged ids missing on the final primary; demoted writes: acknowledged rows written by a node that was not the primary then.');
  o.say('');
  const v = (x: number | null): string => (x === null ? '-' : String(x));
  const body = results.map((r) => [
    r.case,
    r.mode,
    r.ok ? v(r.recover_ms) : '-',
    String(r.acked),
    v(r.lost),
    v(r.demoted_writes),
    r.ok ? (r.problems.length ? `PROBLEM: ${r.problems.join('; ')} | ${r.detail}` : r.detail) : `FAILED: ${r.error}`,
  ]);
  for (const l of formatTable(['trial', 'mode', 'recover ms', 'acked', 'lost', 'demoted writes', 'detail'], body, { right: [2, 3, 4, 5] })) o.say(l);
  const out = path.join(REPO_ROOT, '.tmp/failover-bench-instances.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({
    at: new Date().toISOString(),
    settings: { instances: 3, etcd_members: 3, lease_ttl_ms: LEASE_TTL_MS, hold_timeout_ms: HOLD_MS, failure_threshold: FAILURE_THRESHOLD, monitor_interval_ms: 500, trials_per_case: o.trials },
    cpus: os.cpus().length,
    duration_s: Math.round((Date.now() - started) / 1000),
    results,
  }, null, 2) + '\n');
  o.say(`\nbench:failover: details in ${path.relative(process.cwd(), out)} (${Math.round((Date.now() - started) / 1000)} s)`);
  return results;
}
