// Runs pgbench against one target and parses its summary (TPS without connection time, latency, failures, aborts).
import { run } from './proc.js';

export interface Endpoint {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** libpq sslmode (PGSSLMODE); default disable, so that a server with ssl = on is measured in plaintext unless asked. */
  sslmode?: string;
}

export interface Workload {
  /** Label used in the table, e.g. "-S simple". */
  name: string;
  /** What BENCH_ONLY calls it. */
  key: string;
  select: boolean;
  mode: 'simple' | 'extended' | 'prepared';
  /** pgbench -C: a new connection (and login) for every transaction. */
  connect?: boolean;
  /** Built-in scripts with weights (pgbench -b name@weight) instead of -S or TPC-B alone. */
  builtins?: string[];
}

/** Reads and writes together (`npm run bench` stats case): 9 select-only transactions to 1 TPC-B-like one. */
export const MIXED: Workload = { name: 'mixed 9:1', key: 'mixed', select: false, mode: 'simple', builtins: ['select-only@9', 'tpcb-like@1'] };

export const WORKLOADS: Workload[] = [
  { name: '-S simple', key: 'simple', select: true, mode: 'simple' },
  { name: '-S extended', key: 'extended', select: true, mode: 'extended' },
  { name: '-S prepared', key: 'prepared', select: true, mode: 'prepared' },
  { name: 'tpcb simple', key: 'tpcb', select: false, mode: 'simple' },
  { name: '-C -S simple', key: 'connect', select: true, mode: 'simple', connect: true },
];

export interface PgbenchResult {
  ok: boolean;
  tps: number | null;
  latencyMs: number | null;
  /** pgbench's "average connection time" (-C) or "initial connection time", in ms. */
  connectionMs: number | null;
  transactions: number | null;
  failed: number | null;
  aborted: boolean;
  /** First error line pgbench printed, if any. */
  error: string | null;
  exitCode: number;
  output: string;
}

const num = (re: RegExp, text: string): number | null => {
  const m = re.exec(text);
  return m ? Number(m[1]) : null;
};

export function parsePgbench(stdout: string, stderr: string, exitCode: number): PgbenchResult {
  const text = `${stdout}\n${stderr}`;
  // Without -C: "(without initial connection time)"; with -C: "(including reconnection times)".
  const tps = num(/^tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)/m, text);
  const aborted = /Run was aborted|aborted in command|client \d+ aborted/.test(text) || exitCode === 2;
  const errLine =
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => /error|FATAL|aborted|could not|failed:/i.test(l) && !/^number of failed/.test(l)) ?? null;
  return {
    ok: exitCode === 0 && tps !== null && !aborted,
    tps,
    latencyMs: num(/^latency average = ([\d.]+) ms/m, text),
    connectionMs: num(/^(?:average|initial) connection time = ([\d.]+) ms/m, text),
    transactions: num(/^number of transactions actually processed: (\d+)/m, text),
    failed: num(/^number of failed transactions: (\d+)/m, text),
    aborted,
    error: errLine,
    exitCode,
    output: text,
  };
}

export interface PgbenchRun {
  workload: Workload;
  clients: number;
  jobs: number;
  seconds: number;
  /** Write per-transaction logs (pgbench -l) to files named `${logPrefix}.<pid>[.<thread>]`. */
  logPrefix?: string;
  /** Give up after this long (default: seconds + 60 s). */
  timeoutMs?: number;
}

export async function pgbench(bin: string, ep: Endpoint, r: PgbenchRun): Promise<PgbenchResult> {
  const args = [
    '-h', ep.host, '-p', String(ep.port), '-U', ep.user,
    '--no-vacuum',
    '-M', r.workload.mode,
    ...(r.workload.builtins ? r.workload.builtins.flatMap((b) => ['-b', b]) : r.workload.select ? ['-S'] : []),
    ...(r.workload.connect ? ['-C'] : []),
    ...(r.logPrefix ? ['-l', `--log-prefix=${r.logPrefix}`] : []),
    '-c', String(r.clients), '-j', String(r.jobs), '-T', String(r.seconds),
    ep.database,
  ];
  const timeoutMs = r.timeoutMs ?? (r.seconds + 60) * 1000;
  const res = await run(bin, args, { env: { PGPASSWORD: ep.password, PGAPPNAME: 'pgbench', PGSSLMODE: ep.sslmode ?? 'disable' }, timeoutMs });
  if (res.timedOut) {
    return { ok: false, tps: null, latencyMs: null, connectionMs: null, transactions: null, failed: null, aborted: true, error: `pgbench did not finish within ${Math.round(timeoutMs / 1000)}s`, exitCode: 124, output: res.stdout + res.stderr };
  }
  return parsePgbench(res.stdout, res.stderr, res.code);
}

/** `pgbench -i -s SCALE` (tables owned by the endpoint's user); throws with pgbench's output on failure. */
export async function pgbenchInit(bin: string, ep: Endpoint, scale: number): Promise<void> {
  const res = await run(bin, ['-i', '-s', String(scale), '-q', '-h', ep.host, '-p', String(ep.port), '-U', ep.user, ep.database], {
    env: { PGPASSWORD: ep.password, PGSSLMODE: ep.sslmode ?? 'disable' },
    timeoutMs: 600_000,
  });
  if (res.code !== 0) throw new Error(`pgbench -i -s ${scale} failed (code ${res.code}):\n${res.stderr || res.stdout}`);
}
