// Makes sure the bench (and the pgbench, pgsplit and poolers it starts, which inherit the limit) may open enough files: re-executes itself under `bash -c 'ulimit -n …'` when the soft limit is too low.
import { spawn } from 'node:child_process';
import { onShutdownSignal } from '../../test/harness/cleanup.js';
import { openFilesLimit } from './proc-stats.js';

const MARK = 'PGSPLIT_BENCH_NOFILE_REEXEC';

/**
 * Returns null when the limit is already at least `need` (or we were re-executed already: then a warning if it is
 * still short). Otherwise re-runs this very script (same node flags, e.g. tsx's loader, and arguments) with
 * `ulimit -n want` (or the hard limit if `want` is refused) and returns a promise of the child's exit code,
 * which the caller should exit with; signals are passed on to the child.
 */
export function reexecWithOpenFiles(need: number, want: number): { warning: string | null; child: Promise<number> | null } {
  const soft = openFilesLimit();
  if (soft === null || soft >= need) return { warning: null, child: null };
  if (process.env[MARK]) {
    return { warning: `the open-file limit is ${soft} (raising it to ${want} failed); cases that need ${need} descriptors may fail`, child: null };
  }
  const script = `ulimit -n ${want} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`;
  const child = spawn('bash', ['-c', script, 'bash', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [MARK]: '1' },
  });
  onShutdownSignal((sig) => {
    try {
      child.kill(sig);
    } catch {
      /* gone */
    }
  });
  return {
    warning: null,
    child: new Promise<number>((resolve) => {
      child.on('error', () => resolve(1));
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    }),
  };
}
