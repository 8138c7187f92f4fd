// runHookCommand with real shells: only PATH, LANG, TZ and PGSPLIT_* reach a hook; a hook over failover.hook_timeout is killed with its whole process group.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { runHookCommand } from '../../src/failover/hooks.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-hook-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A logger whose lines the test can read. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** Whether a process still runs (a zombie waiting for its parent to reap it does not). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('runHookCommand', () => {
  const saved = { ...process.env };
  beforeEach(() => {
    process.env.PGSPLIT_TEST_DB_PASSWORD = 'leaked-if-you-see-me';
    process.env.AWS_SECRET_ACCESS_KEY = 'aws-leak';
    process.env.TZ = 'Europe/Paris';
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it('gives the command only PATH, LANG and TZ (when set) and the PGSPLIT_* variables it is called with', async () => {
    const file = path.join(dir, 'env.txt');
    const { log } = capture();
    const code = await runHookCommand(`env > ${file}`, { PGSPLIT_EVENT: 'failover', PGSPLIT_NEW_PRIMARY: 'pg2', NOT_PGSPLIT: 'x' }, 5_000, log);
    expect(code).toBe(0);
    const env = Object.fromEntries(fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    // /bin/sh itself may add PWD (and SHLVL, _); nothing else of pgsplit's environment is there.
    const shellOwn = new Set(['PWD', 'SHLVL', '_', 'OLDPWD']);
    const want: Record<string, string> = { PATH: process.env.PATH!, TZ: 'Europe/Paris', PGSPLIT_EVENT: 'failover', PGSPLIT_NEW_PRIMARY: 'pg2' };
    if (process.env.LANG !== undefined) want.LANG = process.env.LANG;
    expect(Object.fromEntries(Object.entries(env).filter(([k]) => !shellOwn.has(k)))).toEqual(want);
    expect(JSON.stringify(env)).not.toMatch(/leaked-if-you-see-me|aws-leak/);
  });

  it('reports a failing command with its exit code and stderr (conninfo passwords masked)', async () => {
    const { log, lines } = capture();
    const code = await runHookCommand("echo 'cannot connect: host=db password=hunter2' >&2; exit 7", { PGSPLIT_EVENT: 'rejoin' }, 5_000, log);
    expect(code).toBe(7);
    const line = lines.find((l) => l.msg === 'hook command failed')!;
    expect(line).toMatchObject({ event: 'rejoin', code: 7 });
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('kills a command that runs past the timeout, with everything it started, and counts it as failed', async () => {
    const pidFile = path.join(dir, 'pids.txt');
    const { log, lines } = capture();
    const t0 = Date.now();
    // The shell starts a background sleep (a grandchild) and a foreground one; both must die.
    const code = await runHookCommand(`sleep 100 & echo $$ $! > ${pidFile}; sleep 100`, { PGSPLIT_EVENT: 'demote' }, 500, log);
    const took = Date.now() - t0;
    expect(code).toBe(-1);
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(3_000);
    expect(lines.find((l) => l.msg?.toString().includes('timed out'))).toMatchObject({ event: 'demote', timeout_ms: 500, level: 50 });
    const [shell, background] = fs.readFileSync(pidFile, 'utf8').trim().split(' ').map(Number) as [number, number];
    const deadline = Date.now() + 3_000;
    while ((alive(shell) || alive(background)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(shell), 'the shell').toBe(false);
    expect(alive(background), 'its background child').toBe(false);
  });

  it('a command that does not exist fails with the shell\'s 127', async () => {
    const { log } = capture();
    expect(await runHookCommand('/nonexistent/pgsplit-hook', { PGSPLIT_EVENT: 'failover' }, 5_000, log)).toBe(127);
  });
});
