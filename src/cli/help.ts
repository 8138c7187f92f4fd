// `pgsplit --help`, `pgsplit help [COMMAND]` and `pgsplit --version`: the command list, each command's options, the version.
import { readFileSync } from 'node:fs';
import { CHECK_CONFIG_USAGE } from './check-config.js';
import type { CommandIo } from './io.js';
import { ROUTE_USAGE } from './route.js';
import { RUN_USAGE } from './run.js';
import { SWITCHOVER_USAGE } from './switchover.js';

export const USAGE = `pgsplit: PostgreSQL read/write-splitting proxy

usage: pgsplit [run] [--config FILE]        run the proxy (FILE defaults to $PGSPLIT_CONFIG)
       pgsplit check-config FILE             validate FILE; print the effective config, secrets masked
       pgsplit route --sql "STATEMENT"       where a fresh session would send it (JSON); --jsonl reads stdin
       pgsplit switchover --to NODE [--config FILE] [--admin HOST:PORT]   planned promotion of a replica
       pgsplit help [COMMAND]                this text, or one command's options
       pgsplit --version

options:
  -c, --config FILE   the YAML config (run, route, switchover; check-config takes FILE or --config FILE)
  -h, --help          show help (after a command: that command's options)
  -V, --version       print the version

Exit status: 0 ok, 1 failed (switchover refused, proxy could not start), 2 bad usage or invalid config.
Signals while running: SIGHUP reloads the config; SIGTERM or SIGINT drains sessions, then exits.`;

/** Each command's own usage, for `pgsplit help COMMAND` (the same text as `pgsplit COMMAND --help`). */
export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  run: RUN_USAGE,
  'check-config': CHECK_CONFIG_USAGE,
  route: ROUTE_USAGE,
  switchover: SWITCHOVER_USAGE,
  help: 'usage: pgsplit help [COMMAND]   the command list, or the options of COMMAND',
};

/** The version in package.json, read at run time so that a release needs no second place to bump. */
export function version(): string {
  // Both src/cli/ (tests) and dist/cli/ (the built command) are two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

/** `pgsplit help [COMMAND]`: exit status 0, or 2 for a command that does not exist. */
export function runHelpCommand(args: string[], io: Pick<CommandIo, 'stdout' | 'stderr'>): number {
  if (args.length === 0) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const usage = args.length === 1 && Object.hasOwn(COMMAND_USAGE, args[0]) ? COMMAND_USAGE[args[0]] : undefined;
  if (usage === undefined) {
    io.stderr.write(`pgsplit help: no command named ${JSON.stringify(args.join(' '))}\n${USAGE}\n`);
    return 2;
  }
  io.stdout.write(`${usage}\n`);
  return 0;
}
