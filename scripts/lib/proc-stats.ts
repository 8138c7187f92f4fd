// CPU time and resident memory of a process and all its descendants, read from /proc (Linux), for the benchmark's per-transaction CPU and per-client memory figures.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

let clkTck: number | null = null;

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (almost always 100). */
export function clockTicksPerSecond(): number {
  if (clkTck === null) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(r.stdout?.trim());
    clkTck = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

interface Stat {
  pid: number;
  comm: string;
  ppid: number;
  /** utime + stime, in clock ticks. */
  ticks: number;
  /** cutime + cstime: the CPU of its children that have exited and been waited for, in clock ticks. */
  reapedTicks: number;
}

/** Fields of /proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses, so split after its last ')'. */
function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
  const [ppid, utime, stime, cutime, cstime] = [1, 11, 12, 13, 14].map((i) => Number(rest[i]));
  if (![ppid, utime, stime, cutime, cstime].every((n) => Number.isFinite(n))) return null;
  return { pid, comm, ppid: ppid!, ticks: utime! + stime!, reapedTicks: cutime! + cstime! };
}

/**
 * `pid` and every live descendant (a pooler started through runuser, pgpool-II's children, pgsplit's workers: node:cluster
 * forks them as children of the coordinator); null when /proc cannot be listed (e.g. EMFILE while a case holds thousands
 * of sockets): `pid` alone would leave out the workers' CPU and memory, and a low figure would pass for a real one.
 */
export function processTree(pid: number): number[] | null {
  const children = new Map<number, number[]>();
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return null;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid);
    if (list) list.push(s.pid);
    else children.set(s.ppid, [s.pid]);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * CPU seconds (user + system) used so far by `pid` and its descendants, live or exited; null if `pid` is gone or its
 * tree cannot be listed. An exited descendant counts through its parent's cutime/cstime once reaped (node reaps a
 * worker it forked, and pgpool-II its children), so that a worker restarted between two readings neither drops its
 * CPU from the difference nor makes it negative; a zombie not yet reaped still has its own /proc entry, and counts once.
 */
export function treeCpuSeconds(pid: number): number | null {
  const tree = processTree(pid);
  if (!tree) return null;
  let ticks = 0;
  let found = false;
  for (const p of tree) {
    const s = readStat(p);
    if (!s) continue;
    if (p === pid) found = true;
    ticks += s.ticks + s.reapedTicks;
  }
  return found ? ticks / clockTicksPerSecond() : null;
}

/** Resident set size in bytes (VmRSS) of one process, or null. */
function rssOf(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Summed RSS of `pid` and its live descendants (pgsplit's coordinator and workers), in bytes (shared pages count once
 * per process); null if `pid` is gone or its tree cannot be listed.
 * A `runuser` wrapper (how services run when we are root) is left out: it is not the service's memory.
 */
export function treeRssBytes(pid: number): number | null {
  if (!fs.existsSync(`/proc/${pid}`)) return null;
  const tree = processTree(pid);
  if (!tree) return null;
  let total = 0;
  for (const p of tree) {
    if (readStat(p)?.comm === 'runuser') continue;
    total += rssOf(p) ?? 0;
  }
  return total;
}

/** The soft limit on open files of this process (from /proc/self/limits), or null if unknown. */
export function openFilesLimit(pid: number | 'self' = 'self'): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!m) return null;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return null;
  }
}
