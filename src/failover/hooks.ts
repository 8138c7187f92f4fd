// The operator's commands run on failover events (hook, rejoin, demote): a clean environment, a deadline, the whole process group killed past it.
import { spawn } from 'node:child_process';
import type { Logger } from '../util/logger.js';
import { maskConninfo } from '../config/redact.js';

/** Runs a configured command with PGSPLIT_* variables; resolves with its exit code (-1: could not start or timed out). */
export type HookRunner = (command: string, vars: Record<string, string>) => Promise<number>;

/** The PGSPLIT_* variables naming one node, e.g. nodeVars('PGSPLIT_NEW_PRIMARY', n) → _NEW_PRIMARY, _HOST, _PORT. */
export function nodeVars(prefix: string, n: { name: string; host: string; port: number }): Record<string, string> {
  return { [prefix]: n.name, [`${prefix}_HOST`]: n.host, [`${prefix}_PORT`]: String(n.port) };
}

/** What a hook command sees of pgsplit's environment besides its PGSPLIT_* variables (never passwords or tokens). */
const INHERITED_ENV = ['PATH', 'LANG', 'TZ'] as const;

/**
 * Runs `command` with /bin/sh in a process group of its own, with only PATH (LANG, TZ when set) and `vars`
 * in its environment. Resolves with the exit code; -1 when it could not start or ran longer than timeoutMs,
 * in which case its whole process group is killed (SIGTERM, then SIGKILL a second later).
 */
export function runHookCommand(command: string, vars: Record<string, string>, timeoutMs: number, log: Logger): Promise<number> {
  const env: Record<string, string> = { PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin' };
  for (const k of INHERITED_ENV) if (k !== 'PATH' && process.env[k] !== undefined) env[k] = process.env[k]!;
  for (const [k, v] of Object.entries(vars)) if (k.startsWith('PGSPLIT_')) env[k] = v;
  const event = vars.PGSPLIT_EVENT;
  return new Promise((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(code);
    };
    const child = spawn('/bin/sh', ['-c', command], { env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      log.error({ event, timeout_ms: timeoutMs }, 'hook command timed out (failover.hook_timeout); killing its process group');
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 1000).unref();
      finish(-1);
    }, timeoutMs);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.on('error', (e) => {
      log.error({ event, err: e.message }, 'hook command could not start');
      finish(-1);
    });
    child.on('exit', (code, signal) => {
      if (done) return;
      // stderr may echo a conninfo; its passwords are masked before it reaches the log.
      if (code === 0) log.info({ event }, 'hook command finished');
      else log.error({ event, code, signal, stderr: maskConninfo(err.trim()) }, 'hook command failed');
      finish(code ?? -1);
    });
  });
}
