// Child-process helpers for the demo and bench scripts: clean env, async run with timeout, long-running services, cleanup on exit.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** The OS user that poolers run as when we are root (pgbouncer refuses root; PostgreSQL's user is the natural choice). */
export const SERVICE_USER = 'postgres';

/** Our environment without inherited PG* variables (PGHOST, PGPORT, ...), which would redirect the tools. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^PG/.test(k) && !k.startsWith('PGSPLIT')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Absolute path of an executable found on PATH or in the usual sbin directories, or null. */
export function which(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** Wraps a command so that it runs as SERVICE_USER when we are root. */
export function asServiceUser(file: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', SERVICE_USER, '--', file, ...args]] : [file, args];
}

/** uid/gid of SERVICE_USER when we are root (to chown temp dirs), else null. */
export function serviceUserIds(): { uid: number; gid: number } | null {
  if (!isRoot()) return null;
  const uid = spawnSync('id', ['-u', SERVICE_USER], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', SERVICE_USER], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) throw new Error(`running as root but there is no '${SERVICE_USER}' OS user to run services as`);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

// Every child we start, so a signal or an error can take them all down (each is its own process group).
const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

// The subset started by run() (short-lived tools such as pgbench), which a Ctrl-C may simply kill.
const tools = new Set<ChildProcess>();

/** SIGKILLs every running run() child (not the services, which have their own stop()). */
export function killRunningTools(): void {
  for (const c of tools) killGroup(c, 'SIGKILL');
}

/** SIGKILLs every child still running; synchronous, so it is safe in 'exit' handlers. */
export function killAllChildren(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
  live.clear();
}
process.on('exit', killAllChildren);

/** Runs a command to completion; never rejects (spawn failure is code 127, timeout is code 124). */
export function run(file: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(file, args, { cwd: opts.cwd, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(child);
    tools.add(child);
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          killGroup(child, 'SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let done = false;
    const finish = (code: number, extra = ''): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      live.delete(child);
      tools.delete(child);
      resolve({ code: timedOut ? 124 : code, stdout, stderr: stderr + extra, timedOut });
    };
    child.on('error', (err) => finish(127, String(err)));
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}

/** A long-running process (a pooler) whose output is kept for error messages. */
export interface Service {
  child: ChildProcess;
  output(): string;
  exited(): boolean;
  /** Sends `signal` to the process group, waits up to graceMs, then SIGKILLs. Idempotent. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function startService(file: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Service {
  const child = spawn(file, args, { cwd: opts.cwd, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (err) => (out += `\n${String(err)}`));
  const exit = new Promise<void>((r) => child.once('close', () => r()));
  void exit.then(() => live.delete(child));
  let stopping: Promise<void> | null = null;
  return {
    child,
    output: () => out,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
        killGroup(child, signal);
        const t = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
        await exit;
        clearTimeout(t);
      })();
      return stopping;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for p, but no longer than ms (and leaves no timer behind to hold the process open). */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Calls fn every everyMs until it returns something other than undefined (a throw counts as undefined) and
 * returns that; throws after timeoutMs, or at once when interrupted() says the script is stopping.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50, interrupted: () => boolean = () => false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (interrupted()) throw new Error('interrupted');
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
