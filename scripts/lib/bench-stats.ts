// The stats case of `npm run bench`: what statement statistics cost, as rounds of two fresh pgsplit processes (stats off, stats on) measured back to back on each workload.
//
// Two long-lived processes compare badly on a shared 2-core machine: each keeps for the whole case whatever its JIT
// and heap layout happened to be (seen here: one process 30% faster than the other on one workload, with the
// same code). So every round starts both anew, the order alternates, and the figure is the median of the
// round-by-round ratios, next to the ratio of the medians.
import { pgbench, type Workload } from './pgbench.js';
import { treeCpuSeconds } from './proc-stats.js';
import { fmt, median } from './table.js';
import type { Target } from './bench-targets.js';

export type StatsSide = 'off' | 'on';

export interface StatsRoundsOptions {
  pgbenchBin: string;
  workloads: Workload[];
  clients: number;
  jobs: number;
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  /** A fresh pgsplit with stats.enabled false or true; stopped by the caller's stop(). */
  start(side: StatsSide): Promise<Target>;
  /** Before every run of a workload that writes (VACUUM, TRUNCATE pgbench_history). */
  beforeWrites: () => Promise<void>;
  interrupted: () => boolean;
  say: (line: string) => void;
}

/** One workload: per round, TPS and the proxy's CPU seconds per transaction of each side (null: that run failed). */
export interface StatsCost {
  workload: string;
  tps: Record<StatsSide, (number | null)[]>;
  cpuPerTx: Record<StatsSide, (number | null)[]>;
  errors: string[];
}

const present = (xs: (number | null)[]): number[] => xs.filter((x): x is number => x !== null);

/** Median over the rounds of on / off in the same round. */
export function pairedRatio(c: StatsCost): number | null {
  const r: number[] = [];
  c.tps.on.forEach((on, i) => {
    const off = c.tps.off[i];
    if (on && off) r.push(on / off);
  });
  return median(r);
}

export function medianOf(c: StatsCost, what: 'tps' | 'cpuPerTx', side: StatsSide): number | null {
  return median(present(c[what][side]));
}

export async function runStatsRounds(o: StatsRoundsOptions): Promise<{ costs: StatsCost[]; top: unknown[] }> {
  const costs: StatsCost[] = o.workloads.map((w) => ({ workload: w.name, tps: { off: [], on: [] }, cpuPerTx: { off: [], on: [] }, errors: [] }));
  let top: unknown[] = [];
  for (let round = 0; round < o.rounds && !o.interrupted(); round++) {
    const order: StatsSide[] = round % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
    const targets = new Map<StatsSide, Target>();
    try {
      for (const side of order) targets.set(side, await o.start(side));
      for (const [k, w] of o.workloads.entries()) {
        for (const side of order) {
          if (o.interrupted()) return { costs, top };
          const t = targets.get(side)!;
          if (!w.select) await o.beforeWrites();
          if (o.warmupSeconds > 0) await pgbench(o.pgbenchBin, t.endpoint, { workload: w, clients: o.clients, jobs: o.jobs, seconds: o.warmupSeconds });
          if (!w.select) await o.beforeWrites();
          const cpu0 = t.pid === null ? null : treeCpuSeconds(t.pid);
          const r = await pgbench(o.pgbenchBin, t.endpoint, { workload: w, clients: o.clients, jobs: o.jobs, seconds: o.seconds });
          const cpu1 = t.pid === null ? null : treeCpuSeconds(t.pid);
          const ok = r.ok && r.tps !== null;
          costs[k]!.tps[side].push(ok ? r.tps : null);
          costs[k]!.cpuPerTx[side].push(ok && cpu0 !== null && cpu1 !== null && r.transactions ? (cpu1 - cpu0) / r.transactions : null);
          if (!ok) costs[k]!.errors.push(`${side}, round ${round + 1}: ${r.error ?? `pgbench exited with ${r.exitCode}`}`);
          o.say(`  stats        ${w.name.padEnd(12)} ${`stats ${side}`.padEnd(9)} round ${round + 1}  ${fmt(r.tps, 0).padStart(8)} tps  ${fmt(r.latencyMs, 3).padStart(7)} ms${ok && costs[k]!.cpuPerTx[side].at(-1) !== null ? `  ${fmt(costs[k]!.cpuPerTx[side].at(-1)! * 1e6, 1).padStart(7)} µs CPU/tx` : ''}`);
        }
      }
      // What the table of the last round saw: the statements that took most time.
      const on = targets.get('on');
      if (round === o.rounds - 1 && on?.adminPort) {
        try {
          const r = (await (await fetch(`http://127.0.0.1:${on.adminPort}/statements?limit=5`)).json()) as { statements: { query: string; calls: number; errors: number; mean_ms: number; p99_ms: number; replica_calls: number }[] };
          top = r.statements;
          for (const x of r.statements) o.say(`  stats        ${String(x.calls).padStart(8)} calls ${String(x.replica_calls).padStart(8)} on replicas  mean ${x.mean_ms.toFixed(3)} ms  p99 ${x.p99_ms.toFixed(3)} ms  ${x.errors} errors  ${x.query.replace(/\s+/g, ' ').slice(0, 70)}`);
        } catch (err) {
          o.say(`bench: could not read GET /statements: ${(err as Error).message}`);
        }
      }
    } finally {
      for (const t of targets.values()) await t.stop().catch(() => {});
    }
  }
  return { costs, top };
}
