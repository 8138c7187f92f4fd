// `pgsplit check-config FILE`: validates a config with the real loader and prints the effective config (secrets masked) as YAML.
import { stringify } from 'yaml';
import { ConfigError, loadConfig, type Config } from '../config/load.js';
import { displayConfig } from '../config/display.js';
import type { CommandIo } from './io.js';

export const CHECK_CONFIG_USAGE = `usage: pgsplit check-config FILE   (or --config FILE; default $PGSPLIT_CONFIG)
Loads FILE as \`pgsplit --config FILE\` would (\${VAR} substituted from the environment, every key validated)
and prints the effective config as YAML: defaults filled in, durations and sizes with their units, passwords,
tokens and failover commands shown as "***". The output loads again as a config (with "***" for the secrets).
Exit status: 0 valid; 2 invalid (each bad key and why on stderr) or bad usage.`;

export interface CheckConfigIo extends CommandIo {
  /** Defaults to the real loadConfig (reads the file, substitutes from env). */
  loadConfig?: (file: string, env: Record<string, string | undefined>) => Config;
}

/** The YAML `check-config` prints for a loaded config: a comment line saying what it is, then the document. */
export function effectiveConfigYaml(config: Config, file: string): string {
  // lineWidth 0: long strings (hook commands, conninfo) stay on one line, as people write them.
  const body = stringify(displayConfig(config), { lineWidth: 0 });
  return `# ${file} is valid. Effective config: defaults filled in, \${VAR} substituted, secrets shown as "***".\n${body}`;
}

/** Exit status: 0 valid (config on stdout), 2 invalid config or bad usage (reasons on stderr). */
export function runCheckConfigCommand(args: string[], io: CheckConfigIo, env: Record<string, string | undefined> = process.env): number {
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    let named: string | undefined;
    if (a === '--help' || a === '-h') {
      io.stdout.write(`${CHECK_CONFIG_USAGE}\n`);
      return 0;
    } else if (a === '--config' || a === '-c') {
      named = args[++i];
      if (!named) return usageError(io, `${a} needs a file name`);
    } else if (a.startsWith('--config=')) named = a.slice('--config='.length);
    else if (a.startsWith('-')) return usageError(io, `unknown argument "${a}"`);
    else named = a;
    if (file !== undefined) return usageError(io, 'give one config file');
    file = named;
  }
  file ??= env.PGSPLIT_CONFIG || undefined;
  if (!file) return usageError(io, 'which config? pgsplit check-config FILE');
  let config: Config;
  try {
    config = (io.loadConfig ?? loadConfig)(file, env);
  } catch (err) {
    // ConfigError's message is one "config: key.path: why" line per problem, already free of secret values.
    io.stderr.write(err instanceof ConfigError ? `${err.message}\n` : `pgsplit check-config: ${(err as Error).message}\n`);
    return 2;
  }
  io.stdout.write(effectiveConfigYaml(config, file));
  return 0;
}

function usageError(io: CommandIo, message: string): number {
  io.stderr.write(`pgsplit check-config: ${message}\n${CHECK_CONFIG_USAGE}\n`);
  return 2;
}
