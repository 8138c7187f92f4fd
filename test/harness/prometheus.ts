// Throwaway Prometheus (Debian's `prometheus`) on a loopback free port, scraping given targets, for the dashboard and alert tests (issue 12).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { findBinary, requireBinary, type BinarySpec } from './binaries.js';
import { freePort } from './ports.js';
import { logTail as tail, spawnToLog, terminate } from './processes.js';
import { killPidsAndRemove, makeTempDir, ownTempDir, type DirKind, type ProcessDirInfo } from './temp-dir.js';

export interface PromSeries {
  metric: Record<string, string>;
  /** [unix seconds, value as Prometheus prints it: a number, 'NaN', '+Inf', ...] */
  value: [number, string];
}

export interface PromRule {
  name: string;
  type: 'alerting' | 'recording';
  /** 'ok' once evaluated without error, 'unknown' before the first evaluation, 'err' otherwise. */
  health: string;
  lastError?: string;
  state?: string;
}

export interface PrometheusServer {
  /** http://127.0.0.1:port */
  url: string;
  port: number;
  /** Temp directory: prometheus.yml, the TSDB (data/) and prometheus.log. */
  dir: string;
  pid: number | null;
  /** The config Prometheus runs with, as written to dir/prometheus.yml. */
  config: string;
  /** Instant query through /api/v1/query; rejects on a PromQL error (with Prometheus' message). */
  query(expr: string): Promise<PromSeries[]>;
  /** Every rule of every loaded rule group (/api/v1/rules). */
  rules(): Promise<PromRule[]>;
  /** Last lines of Prometheus' log, for failure messages. */
  logTail(lines?: number): string;
  /** Kills Prometheus and removes dir. Idempotent, never throws. */
  stop(): Promise<void>;
}

export interface StartPrometheusOptions {
  /** host:port of each target to scrape (the job's static_configs). */
  targets: string[];
  /**
   * A Prometheus config to start from (e.g. deploy/prometheus/prometheus.yml): its scrape jobs get `targets`
   * and `scrapeInterval`, its rule_files are resolved against its own directory. Without it: one job "pgsplit".
   */
  configFile?: string;
  /** Scrape and rule evaluation interval (default 1s, so a test sees several scrapes within seconds). */
  scrapeInterval?: string;
  /** More rule files (absolute paths). */
  ruleFiles?: string[];
  /** Parent of the temp directory (default os.tmpdir()). */
  dir?: string;
  /** Harness progress lines (Prometheus' own log goes to dir/prometheus.log). */
  log?: (line: string) => void;
  /** How long start waits for /-/ready (default 30 s). */
  readyTimeoutMs?: number;
}

/** Prometheus' PID is kept in prometheus.json, for the exit clean-up and a later run's reaper. */
const PROMETHEUS_DIR: DirKind<ProcessDirInfo> = { prefix: 'pgsplit-prometheus-', infoFile: 'prometheus.json', what: 'Prometheus', teardown: killPidsAndRemove };

const PROMETHEUS_BIN: BinarySpec = { env: 'PGSPLIT_PROMETHEUS_BIN', fallbackDirs: ['/usr/bin'] };

/** Where Prometheus is: PGSPLIT_PROMETHEUS_BIN, then PATH, then /usr/bin/prometheus (Debian's package). Null when missing. */
export function findPrometheusBin(): string | null {
  return findBinary('prometheus', PROMETHEUS_BIN);
}

/** promtool, from the same places (PGSPLIT_PROMTOOL_BIN). */
export function findPromtoolBin(): string | null {
  return findBinary('promtool', { env: 'PGSPLIT_PROMTOOL_BIN', fallbackDirs: ['/usr/bin'] });
}

/** The config to run: the given file's (or a minimal) config with our targets, interval and absolute rule paths. */
export function prometheusConfig(o: Pick<StartPrometheusOptions, 'targets' | 'configFile' | 'scrapeInterval' | 'ruleFiles'>): string {
  const interval = o.scrapeInterval ?? '1s';
  const base = (o.configFile ? YAML.parse(fs.readFileSync(o.configFile, 'utf8')) : { scrape_configs: [{ job_name: 'pgsplit' }] }) as {
    global?: Record<string, unknown>;
    rule_files?: string[];
    scrape_configs?: Record<string, unknown>[];
  };
  const baseDir = o.configFile ? path.dirname(path.resolve(o.configFile)) : process.cwd();
  if (!base.scrape_configs?.length) throw new Error(`${o.configFile}: no scrape_configs to point at the test targets`);
  // Rule files are relative to the config file; ours lives in a temp dir, so make them absolute.
  const ruleFiles = [...(base.rule_files ?? []).map((f) => path.resolve(baseDir, f)), ...(o.ruleFiles ?? [])];
  const config = {
    ...base,
    global: { ...base.global, scrape_interval: interval, evaluation_interval: interval },
    ...(ruleFiles.length ? { rule_files: ruleFiles } : {}),
    scrape_configs: base.scrape_configs.map((job) => ({ ...job, scrape_interval: interval, static_configs: [{ targets: o.targets }] })),
  };
  return YAML.stringify(config);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusServer> {
  const log = opts.log ?? (() => {});
  const bin = requireBinary('prometheus', PROMETHEUS_BIN, 'Install it: apt-get install prometheus (Debian/Ubuntu), or set PGSPLIT_PROMETHEUS_BIN to a prometheus >= 2.40 binary.');
  const config = prometheusConfig(opts);
  const dir = makeTempDir(PROMETHEUS_DIR, { baseDir: opts.dir, log });
  const info: ProcessDirInfo = { dir, ownerPid: process.pid, pid: null };
  const owned = ownTempDir(PROMETHEUS_DIR, info);

  const logFile = path.join(dir, 'prometheus.log');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Prometheus flushes its head block on SIGTERM; a test TSDB is not worth waiting long for.
    if (child) await terminate(child, { graceMs: 5_000, exited });
    owned.dispose();
  };

  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const configFile = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(configFile, config);
    const args = [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      // Debian's defaults point at /etc/prometheus; nothing of the machine's install may leak into the test.
      `--web.console.templates=${path.join(dir, 'consoles')}`,
      `--web.console.libraries=${path.join(dir, 'console_libraries')}`,
      '--log.level=info',
    ];
    child = spawnToLog(bin, args, logFile, { cwd: dir });
    info.pid = child.pid ?? null;
    owned.save();
    const c = child;
    exited = new Promise<void>((resolve) => {
      c.once('exit', (code, signal) => {
        info.pid = null;
        if (!stopped) log(`prometheus exited (${signal ?? `code ${code}`})`);
        resolve();
      });
      c.once('error', (err) => {
        info.pid = null;
        log(`prometheus failed to start: ${err.message}`);
        resolve();
      });
    });
    log(`prometheus started (pid ${info.pid}, ${url}, dir ${dir})`);

    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    let last: unknown = null;
    for (;;) {
      if (info.pid === null) throw new Error(`prometheus exited before it was ready:\n${tail(logFile, 20)}`);
      try {
        const r = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) });
        if (r.status === 200) break;
        last = `HTTP ${r.status}`;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) throw new Error(`prometheus not ready within ${opts.readyTimeoutMs ?? 30_000} ms (last: ${String(last)}):\n${tail(logFile, 20)}`);
      await sleep(100);
    }

    const api = async <T>(apiPath: string, params: Record<string, string> = {}): Promise<T> => {
      const qs = new URLSearchParams(params).toString();
      const r = await fetch(`${url}${apiPath}${qs ? `?${qs}` : ''}`, { signal: AbortSignal.timeout(10_000) });
      const body = (await r.json()) as { status: string; data: T; error?: string; errorType?: string };
      if (body.status !== 'success') throw new Error(`prometheus ${apiPath} ${qs}: ${body.errorType ?? r.status}: ${body.error ?? 'no error message'}`);
      return body.data;
    };

    return {
      url,
      port,
      dir,
      get pid() {
        return info.pid ?? null;
      },
      config,
      async query(expr) {
        const data = await api<{ resultType: string; result: PromSeries[] }>('/api/v1/query', { query: expr });
        if (data.resultType !== 'vector') throw new Error(`prometheus: ${expr} gave a ${data.resultType}, not an instant vector`);
        return data.result;
      },
      async rules() {
        const data = await api<{ groups: { rules: PromRule[] }[] }>('/api/v1/rules');
        return data.groups.flatMap((g) => g.rules);
      },
      logTail: (lines = 20) => tail(logFile, lines),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
