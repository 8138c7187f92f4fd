// The pgbench matrix: every workload against every target, rounds interleaved, median TPS and the proxy's CPU per transaction (/proc) of each.
import { pgbench, type PgbenchResult, type Workload } from './pgbench.js';
import { treeCpuSeconds } from './proc-stats.js';
import { fmt, median } from './table.js';
import type { Target, TargetName } from './bench-targets.js';

export interface MatrixOptions {
  pgbenchBin: string;
  workloads: Workload[];
  targets: Target[];
  clients: number;
  jobs: number;
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  /** Runs before every TPC-B run (VACUUM, TRUNCATE pgbench_history), so every target starts equal. */
  beforeTpcb: () => Promise<void>;
  interrupted: () => boolean;
  say: (line: string) => void;
}

export interface MatrixCell extends PgbenchResult {
  /** Median over the rounds of the proxy's CPU seconds (its process tree, user + system) per transaction; null for direct. */
  cpuPerTx: number | null;
}

/** Results keyed `${workload}|${target}`. */
export type MatrixResults = Map<string, MatrixCell>;

export async function runMatrix(o: MatrixOptions): Promise<MatrixResults> {
  const results: MatrixResults = new Map();
  // Every target runs side by side and the runs interleave (round-robin, rotating who goes first), so that
  // background load drifting during the run hits all targets alike; each figure is the median of the rounds.
  for (const w of o.workloads) {
    const runs = new Map<TargetName, Array<PgbenchResult & { cpuPerTx: number | null }>>();
    const here = o.targets.filter((t) => !t.workloads || t.workloads.includes(w.name));
    for (let round = 0; round < o.rounds; round++) {
      for (let k = 0; k < here.length; k++) {
        if (o.interrupted()) return results;
        const target = here[(k + round) % here.length]!;
        const runOnce = async (seconds: number): Promise<PgbenchResult & { cpuPerTx: number | null }> => {
          if (!w.select) await o.beforeTpcb();
          const cpu0 = target.pid === null ? null : treeCpuSeconds(target.pid);
          const r = await pgbench(o.pgbenchBin, target.endpoint, { workload: w, clients: o.clients, jobs: o.jobs, seconds });
          const cpu1 = target.pid === null ? null : treeCpuSeconds(target.pid);
          const cpuPerTx = cpu0 !== null && cpu1 !== null && r.ok && r.transactions ? (cpu1 - cpu0) / r.transactions : null;
          return { ...r, cpuPerTx };
        };
        // A new connection per transaction (-C) has nothing to warm up.
        if (round === 0 && o.warmupSeconds > 0 && !w.connect) {
          const warm = await runOnce(o.warmupSeconds);
          if (!warm.ok && !o.interrupted()) o.say(`  warm-up ${w.name} via ${target.name}: ${warm.error ?? `exit ${warm.exitCode}`}`);
        }
        const r = await runOnce(o.seconds);
        if (o.interrupted()) return results;
        runs.set(target.name, [...(runs.get(target.name) ?? []), r]);
        const flag = r.aborted ? `  ABORTED: ${r.error ?? ''}` : r.failed ? `  failed=${r.failed}` : '';
        const cpu = r.cpuPerTx === null ? '' : `  ${fmt(r.cpuPerTx * 1e6, 1).padStart(7)} µs CPU/tx`;
        o.say(`  ${w.name.padEnd(12)} ${target.name.padEnd(13)} round ${round + 1}  ${fmt(r.tps, 0).padStart(8)} tps  ${fmt(r.latencyMs, 3).padStart(7)} ms${cpu}${flag}`);
      }
    }
    for (const [name, rs] of runs) {
      const good = rs.filter((r) => r.ok && r.tps);
      const cpus = good.map((r) => r.cpuPerTx).filter((c): c is number => c !== null);
      const pick: MatrixCell =
        good.length === rs.length
          ? {
              ...rs[0]!,
              tps: median(good.map((r) => r.tps!)),
              latencyMs: median(good.map((r) => r.latencyMs ?? 0)),
              connectionMs: median(good.map((r) => r.connectionMs ?? 0)),
              transactions: good.reduce((a, r) => a + (r.transactions ?? 0), 0),
              failed: good.reduce((a, r) => a + (r.failed ?? 0), 0),
              cpuPerTx: median(cpus),
            }
          : rs.find((r) => !r.ok)!;
      results.set(`${w.name}|${name}`, pick);
    }
  }
  return results;
}
