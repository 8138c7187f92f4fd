// A watchdog process that cleans up after the bench if the bench dies without doing it itself.
//
// Ctrl-C under `tsx`: tsx relays SIGINT to the script and SIGKILLs it unless the script acknowledges the
// signal within ~60 ms, which a busy event loop on a loaded 2-core machine misses. The script's own
// asynchronous clean-up then never runs, and the PostgreSQL servers (daemonised by pg_ctl, outside the
// terminal's process group) and the temp directories stay behind. So the bench starts this watchdog in a
// session of its own and tells it, through a pipe, every directory it creates (a cluster's, an etcd
// cluster's, a pgsplit config's). When the pipe closes — the bench exited, however it exited — the watchdog
// kills every process whose command line names one of those directories (postmasters get SIGQUIT, an
// immediate shutdown, then SIGKILL), removes the directories and exits. After a normal run it finds nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';

const REAPER = String.raw`
const fs = require('node:fs');
const dirs = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  const lines = buf.split('\n');
  buf = lines.pop();
  for (const l of lines) if (l.startsWith('/tmp/') || l.startsWith('/')) dirs.add(l);
});
const ours = () => {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd;
    try { cmd = fs.readFileSync('/proc/' + e + '/cmdline', 'utf8').split('\0').join(' '); } catch { continue; }
    for (const d of dirs) if (cmd.includes(d + '/') || cmd.endsWith(d)) { out.push({ pid: Number(e), postgres: /postgres\s+-D\s/.test(cmd) }); break; }
  }
  return out;
};
const kill = (pid, sig) => { try { process.kill(pid, sig); } catch {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
process.stdin.on('close', async () => {
  if (dirs.size === 0) process.exit(0);
  let ps = ours();
  for (const p of ps) kill(p.pid, p.postgres ? 'SIGQUIT' : 'SIGKILL');
  for (let k = 0; k < 50 && ps.length; k++) { await sleep(100); ps = ours(); }
  for (const p of ps) kill(p.pid, 'SIGKILL');
  await sleep(200);
  for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch {} }
  process.exit(0);
});
`;

let child: ChildProcess | null = null;

/** Starts the watchdog (once); it outlives this process, in its own session. */
function reaper(): Writable | null {
  if (child) return child.stdin;
  try {
    child = spawn(process.execPath, ['-e', REAPER], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('error', () => {});
    child.stdin!.on('error', () => {});
    child.unref();
    // The pipe must not keep this process alive either.
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    return child.stdin;
  } catch {
    return null;
  }
}

/** Have the watchdog clean `dir` (and the processes that name it) if this process exits first. */
export function guardDir(dir: string): void {
  reaper()?.write(`${dir}\n`);
}
