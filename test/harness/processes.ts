// Processes the test harnesses and scripts start: is a PID alive and still ours, the environment a child gets, running a command to its end, starting a server with its output in a log file, stopping a child.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A PID recorded by a dead owner may since belong to another process: it is only ours (to kill) while its
 * command line still names our temp directory (every process a harness starts gets a path inside it).
 */
export function runsFrom(pid: number, dir: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** This process's environment without the variables `drop` matches, plus `extra`. */
export function envWithout(drop: RegExp, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!drop.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/**
 * For PostgreSQL tools (psql, pg_ctl, pgbench, ...): inherited PG* variables (PGHOST, PGPORT, PGDATA, PGPASSWORD...)
 * would silently redirect them away from the cluster meant. PGSPLIT_* settings stay.
 */
export function pgFreeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return envWithout(/^PG(?!SPLIT)/, extra);
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** uid and gid of an OS user, or null when there is no such user. */
export function userIds(user: string): { uid: number; gid: number } | null {
  const uid = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return null;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The command line that runs file as `user` (through runuser; we are root then), or file itself when user is null. */
export function asUser(user: string | null, file: string, args: string[]): [string, string[]] {
  return user ? ['runuser', ['-u', user, '--', file, ...args]] : [file, args];
}

/**
 * Sends signal to the child's process group (it must have been spawned detached: runuser and the tool it started go
 * together), or to the child alone when that fails. Nothing once it has exited.
 */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
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

export interface CommandOptions {
  cwd?: string;
  /** The child's whole environment (default process.env); see pgFreeEnv. */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
  /** SIGKILL after this long; the result then has code 124 and timedOut. */
  timeoutMs?: number;
  /** Own process group, so a timeout kills whatever the command started too (runuser's child). */
  group?: boolean;
  /** Called with the child as soon as it is spawned (scripts keep a list of what runs, to kill it on Ctrl-C). */
  onSpawn?: (child: ChildProcess) => void;
}

export interface RunResult {
  /** Exit code; 124 after a timeout, 127 when it could not be started, 128 when a signal ended it. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandResult extends RunResult {
  /** stdout and stderr interleaved as they came. */
  output: string;
  timedOut: boolean;
}

/** Runs a command to its end, asynchronously (spawnSync would stop a proxy living in this process). Never rejects. */
export function runCommand(file: string, args: string[], o: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let output = '';
    let timedOut = false;
    let settled = false;
    const child = spawn(file, args, {
      cwd: o.cwd,
      env: o.env ?? process.env,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: o.group ?? false,
    });
    o.onSpawn?.(child);
    const timer = o.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          if (o.group) killGroup(child, 'SIGKILL');
          else child.kill('SIGKILL');
        }, o.timeoutMs)
      : undefined;
    const finish = (code: number, extra = ''): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      resolve({ code: timedOut ? 124 : code, stdout, stderr: stderr + extra, output: output + extra, timedOut });
    };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      output += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      output += d;
    });
    child.on('error', (err) => finish(127, String(err)));
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
    if (o.input !== undefined) {
      // A command that exits without reading its input must not turn into an EPIPE error here.
      child.stdin!.on('error', () => {});
      child.stdin!.end(o.input);
    }
  });
}

/**
 * Starts a long-running server with stdout and stderr appended to logFile. Unref'd: it must not hold the test
 * process open; its owner's clean-up (stop(), or the exit handler) kills it.
 */
export function spawnToLog(file: string, args: string[], logFile: string, o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const fd = fs.openSync(logFile, 'a');
  try {
    const child = spawn(file, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', fd, fd] });
    child.unref();
    return child;
  } finally {
    // The child has its own copy of the descriptor.
    fs.closeSync(fd);
  }
}

/**
 * Sends signal (default SIGTERM; to its process group with group) and waits for the child to exit (or for `exited`,
 * e.g. its 'close'), with SIGKILL after graceMs when that is given. Resolves at once when it has exited already.
 */
export async function terminate(
  child: ChildProcess,
  o: { signal?: NodeJS.Signals; graceMs?: number; group?: boolean; exited?: Promise<unknown> } = {},
): Promise<void> {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = o.exited ?? new Promise((r) => child.once('exit', r));
  const send = (signal: NodeJS.Signals): void => {
    if (o.group) return killGroup(child, signal);
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  };
  // An unref'd child does not keep the event loop alive: without this a process whose only pending work is this
  // wait would exit before the child's 'exit' event arrives.
  child.ref();
  send(o.signal ?? 'SIGTERM');
  const t = o.graceMs === undefined ? undefined : setTimeout(() => send('SIGKILL'), o.graceMs);
  await exited;
  if (t) clearTimeout(t);
}

/** The last lines of a log file, for failure messages. */
export function logTail(file: string, lines: number, ifMissing = '(no log)'): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return ifMissing;
  }
}
