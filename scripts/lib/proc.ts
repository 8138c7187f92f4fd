// Child-process helpers for the demo and bench scripts, on test/harness/processes.ts: run with timeout, long-running services, the pooler user, killing what is left on exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { findBinary } from '../../test/harness/binaries.js';
import { registerCleanup } from '../../test/harness/cleanup.js';
import { asUser, isRoot, killGroup, pgFreeEnv, runCommand, terminate, userIds, type CommandResult } from '../../test/harness/processes.js';

export type RunResult = Pick<CommandResult, 'code' | 'stdout' | 'stderr' | 'timedOut'>;

export { isRoot };

/** The OS user that poolers run as when we are root (pgbouncer refuses root; PostgreSQL's user is the natural choice). */
export const SERVICE_USER = 'postgres';

/** Our environment without inherited PG* variables (PGHOST, PGPORT, ...), which would redirect the tools. */
export const cleanEnv = pgFreeEnv;

/** Absolute path of an executable found on PATH or in the usual sbin directories, or null. */
export function which(name: string): string | null {
  return findBinary(name, { fallbackDirs: ['/usr/sbin', '/sbin', '/usr/local/sbin'] });
}

/** Wraps a command so that it runs as SERVICE_USER when we are root. */
export function asServiceUser(file: string, args: string[]): [string, string[]] {
  return asUser(isRoot() ? SERVICE_USER : null, file, args);
}

/** uid/gid of SERVICE_USER when we are root (to chown temp dirs), else null. */
export function serviceUserIds(): { uid: number; gid: number } | null {
  if (!isRoot()) return null;
  const ids = userIds(SERVICE_USER);
  if (!ids) throw new Error(`running as root but there is no '${SERVICE_USER}' OS user to run services as`);
  return ids;
}

// Every child we start, so a signal or an error can take them all down (each is its own process group).
const live = new Set<ChildProcess>();

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
// On exit only: on a signal the scripts stop things with their own asynchronous handler.
registerCleanup(killAllChildren, { signals: false });

/** Runs a command to completion; never rejects (spawn failure is code 127, timeout is code 124). */
export async function run(file: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  const started: ChildProcess[] = [];
  const r = await runCommand(file, args, {
    cwd: opts.cwd,
    env: cleanEnv(opts.env),
    timeoutMs: opts.timeoutMs,
    group: true,
    onSpawn: (c) => {
      started.push(c);
      live.add(c);
      tools.add(c);
    },
  });
  for (const c of started) {
    live.delete(c);
    tools.delete(c);
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
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
      stopping ??= terminate(child, { signal, graceMs, group: true, exited: exit });
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
