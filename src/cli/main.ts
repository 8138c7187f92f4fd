// The `pgsplit` command: picks the command from the first argument and runs it (bin/pgsplit.js calls main()).
import cluster from 'node:cluster';
import { runWorker } from '../workers/worker.js';
import { runCheckConfigCommand } from './check-config.js';
import { runHelpCommand, USAGE, version } from './help.js';
import type { CommandIo } from './io.js';
import { runRouteCommand } from './route.js';
import { parseRunArgs, runProxy, RUN_USAGE } from './run.js';
import { runSwitchoverCommand } from './switchover.js';

/** Everything except running the proxy: each resolves to the exit status. */
const COMMANDS: Record<string, (args: string[], io: CommandIo) => number | Promise<number>> = {
  'check-config': (args, io) => runCheckConfigCommand(args, io),
  route: (args, io) => runRouteCommand(args, { ...io, stdin: process.stdin }),
  switchover: (args, io) => runSwitchoverCommand(args, io),
  help: (args, io) => runHelpCommand(args, io),
};

/**
 * `pgsplit [--config FILE]` and `pgsplit run …` run the proxy; `pgsplit COMMAND …` runs a command. Exit statuses
 * go through process.exitCode so that pending output is written before the process ends.
 */
export async function main(argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<void> {
  // A worker forked by the coordinator (workers: N) gets its config over IPC, not from the command line.
  if (cluster.isWorker) {
    try {
      await runWorker();
    } catch (err) {
      io.stderr.write(`pgsplit worker ${process.env.PGSPLIT_WORKER_INDEX ?? '?'}: ${(err as Error).message}\n`);
      process.exit(1);
    }
    return;
  }
  const first = argv[0];
  const named = first !== undefined && !first.startsWith('-');
  if (named && first !== 'run') {
    const command = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
    if (!command) {
      io.stderr.write(`pgsplit: unknown command ${JSON.stringify(first)}\n${USAGE}\n`);
      process.exitCode = 2;
      return;
    }
    process.exitCode = await command(argv.slice(1), io);
    return;
  }
  // `pgsplit run --help` describes running; a bare `pgsplit --help` lists every command.
  const usage = named ? RUN_USAGE : USAGE;
  let args;
  try {
    args = parseRunArgs(named ? argv.slice(1) : argv);
  } catch (err) {
    io.stderr.write(`pgsplit: ${(err as Error).message}\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  if (args.help) {
    io.stdout.write(`${usage}\n`);
    return;
  }
  if (args.version) {
    io.stdout.write(`pgsplit ${version()}\n`);
    return;
  }
  const file = args.config ?? process.env.PGSPLIT_CONFIG;
  if (!file) {
    io.stderr.write(`pgsplit: no config file given\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  const code = await runProxy(file, io);
  if (code !== undefined) process.exitCode = code;
}
