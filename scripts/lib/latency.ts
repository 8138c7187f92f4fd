// Per-transaction latencies from pgbench -l logs, and percentiles of them.
import fs from 'node:fs';
import path from 'node:path';

export interface LatencyStats {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function statsOf(latenciesMs: number[] | Float64Array): LatencyStats | null {
  if (latenciesMs.length === 0) return null;
  const v = Float64Array.from(latenciesMs).sort();
  return { count: v.length, p50Ms: percentile(v, 50), p99Ms: percentile(v, 99), maxMs: v[v.length - 1]! };
}

/**
 * Latencies (ms) from every pgbench -l file written under `prefix` (`${prefix}.<pid>` and `${prefix}.<pid>.<thread>`).
 * Each line is `client_id transaction_no time script_no time_epoch time_us ...`, `time` in µs; lines whose
 * time is not a number (failed, skipped) are left out. The files are removed once read.
 */
export function readPgbenchLogs(prefix: string): number[] {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const out: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith(`${base}.`)) continue;
    const file = path.join(dir, name);
    const text = fs.readFileSync(file, 'utf8');
    for (const line of text.split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (line && Number.isFinite(us)) out.push(us / 1000);
    }
    fs.rmSync(file, { force: true });
  }
  return out;
}
