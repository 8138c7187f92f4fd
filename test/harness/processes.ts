// Facts about processes the test harnesses start and must clean up: is a PID alive, and is it still ours.
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
