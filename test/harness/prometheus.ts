// Throwaway Prometheus (Debian's `prometheus`) on a loopback free port, scraping given targets, for the dashboard and alert tests (issue 12).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freePort } from './ports.js';
import { isAlive, runsFrom } from './processes.js';

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

const DIR_PREFIX = 'pgsplit-prometheus-';
const INFO_FILE = 'prometheus.json';

/** Where Prometheus is: PGSPLIT_PROMETHEUS_BIN, then PATH, then /usr/bin/prometheus (Debian's package). Null when missing. */
export function findPrometheusBin(): string | null {
  return findBin('prometheus', process.env.PGSPLIT_PROMETHEUS_BIN);
}

/** promtool, from the same places (PGSPLIT_PROMTOOL_BIN). */
export function findPromtoolBin(): string | null {
  return findBin('promtool', process.env.PGSPLIT_PROMTOOL_BIN);
}

function findBin(name: string, explicit: string | undefined): string | null {
  // A wrong explicit setting should fail loudly rather than silently use another install.
  if (explicit) return isExecutable(explicit) ? path.resolve(explicit) : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.resolve(dir, name);
  }
  return isExecutable(`/usr/bin/${name}`) ? `/usr/bin/${name}` : null;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Synchronous teardown for process 'exit' and signals, where async work never runs (the scheme of
// etcd.ts and cluster.ts): a live Prometheus is SIGKILLed and its dir removed.

interface PrometheusInfo {
  dir: string;
  ownerPid: number;
  pid: number | null;
}

const live = new Map<string, PrometheusInfo>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;

function killInfoSync(info: PrometheusInfo): void {
  try {
    if (info.pid !== null && isAlive(info.pid) && (info.ownerPid === process.pid || runsFrom(info.pid, info.dir))) process.kill(info.pid, 'SIGKILL');
  } catch {
    /* best effort */
  }
  try {
    fs.rmSync(info.dir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

function cleanupAllSync(): void {
  for (const info of live.values()) killInfoSync(info);
  live.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  cleanupAllSync();
  uninstallHandlers();
  // Our listener replaced the default "terminate" action; restore it unless someone else handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // Prepended because vitest's own 'exit' listener calls process.exit() again, which skips later listeners.
  process.prependListener('exit', cleanupAllSync);
  for (const s of SIGNALS) process.prependListener(s, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled || live.size > 0) return;
  process.off('exit', cleanupAllSync);
  for (const s of SIGNALS) process.off(s, onSignal);
  handlersInstalled = false;
}

/** Removes Prometheus dirs left behind by test processes that died without cleaning up (SIGKILL of the worker). */
function reapStale(baseDir: string, log: (l: string) => void): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(baseDir).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const e of entries) {
    let info: PrometheusInfo;
    try {
      info = JSON.parse(fs.readFileSync(path.join(baseDir, e, INFO_FILE), 'utf8')) as PrometheusInfo;
    } catch {
      continue;
    }
    if (!info.ownerPid || isAlive(info.ownerPid)) continue;
    log(`reaping stale Prometheus ${info.dir} (owner pid ${info.ownerPid} is gone)`);
    killInfoSync(info);
  }
}

// ---------------------------------------------------------------------------------------------

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

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusServer> {
  const log = opts.log ?? (() => {});
  const bin = findPrometheusBin();
  if (!bin) {
    throw new Error(
      'prometheus not found (looked in PATH and /usr/bin/prometheus' +
        (process.env.PGSPLIT_PROMETHEUS_BIN ? `; PGSPLIT_PROMETHEUS_BIN=${process.env.PGSPLIT_PROMETHEUS_BIN} is not executable` : '') +
        '). Install it: apt-get install prometheus (Debian/Ubuntu), or set PGSPLIT_PROMETHEUS_BIN to a prometheus >= 2.40 binary.',
    );
  }
  const config = prometheusConfig(opts);
  const baseDir = path.resolve(opts.dir ?? os.tmpdir());
  fs.mkdirSync(baseDir, { recursive: true });
  reapStale(baseDir, log);
  const dir = fs.mkdtempSync(path.join(baseDir, DIR_PREFIX));
  const info: PrometheusInfo = { dir, ownerPid: process.pid, pid: null };
  const saveInfo = (): void => {
    try {
      fs.writeFileSync(path.join(dir, INFO_FILE), JSON.stringify(info));
    } catch {
      /* the dir may be going away during stop() */
    }
  };
  live.set(dir, info);
  installHandlers();
  saveInfo();

  const logFile = path.join(dir, 'prometheus.log');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      // Unref'd children do not keep the event loop alive: the wait below needs it.
      child.ref();
      child.kill('SIGTERM');
      // Prometheus flushes its head block on SIGTERM; a test TSDB is not worth waiting long for.
      const t = setTimeout(() => child?.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    killInfoSync(info);
    live.delete(dir);
    uninstallHandlers();
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
    const fd = fs.openSync(logFile, 'a');
    try {
      child = spawn(bin, args, { cwd: dir, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    // Do not hold the test process open; the exit handler kills it if stop() is never called.
    child.unref();
    info.pid = child.pid ?? null;
    saveInfo();
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
        return info.pid;
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
