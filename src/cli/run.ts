// `pgsplit [run] --config FILE`: loads the config, runs the proxy (one process or a coordinator and workers) and handles signals.
import os from 'node:os';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { startPgsplit } from '../main.js';
import { createLogger } from '../util/logger.js';
import { startCoordinator } from '../workers/coordinator.js';
import { resolveWorkers } from '../workers/shares.js';
import type { CommandIo } from './io.js';

export const RUN_USAGE = `usage: pgsplit [run] [--config FILE]
  -c, --config FILE   the YAML config (default: $PGSPLIT_CONFIG); \`pgsplit check-config FILE\` validates it first
Runs the proxy in the foreground and logs JSON lines to stderr. SIGHUP reloads the config (keys that cannot
change live keep their running value and are named in a warning; an invalid file is rejected whole);
SIGTERM or SIGINT drains sessions (shutdown.drain_timeout), then exits.`;

export interface RunArgs {
  config?: string;
  help?: boolean;
  version?: boolean;
}

/** The flags of the run command (also the bare `pgsplit …`, where --help and --version mean the whole command). */
export function parseRunArgs(argv: string[]): RunArgs {
  const out: RunArgs = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--config' || a === '-c') {
      const v = argv[++i];
      if (!v) throw new Error(`${a} needs a file name`);
      out.config = v;
    } else if (a.startsWith('--config=')) out.config = a.slice('--config='.length);
    else if (a === '--help' || a === '-h') out.help = true;
    else if (a === '--version' || a === '-V') out.version = true;
    else throw new Error(`unknown argument "${a}"`);
  }
  return out;
}

/**
 * Runs the proxy from `file` until a signal stops it. Resolves to 2 when the config is invalid (nothing is
 * listening then); once serving it resolves to nothing and the process ends through the signal handlers.
 */
export async function runProxy(file: string, io: CommandIo): Promise<number | undefined> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    io.stderr.write(`${err instanceof ConfigError ? err.message : `pgsplit: ${(err as Error).message}`}\n`);
    return 2;
  }
  const log = createLogger(config.log.level);
  // The last line of defence: every session and socket has its own error path, so an exception that still
  // escapes is a bug in one of them. Logging it and going on costs that one session; exiting would cost all.
  process.on('uncaughtException', (err) => log.error({ err: err.stack ?? String(err) }, 'uncaught exception (a bug); pgsplit keeps running'));
  process.on('unhandledRejection', (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, 'unhandled promise rejection (a bug); pgsplit keeps running'));
  const workers = resolveWorkers(config, os.availableParallelism());
  if (workers.reducedBy) log.warn({ workers: workers.count, bound: workers.reducedBy }, `workers: fewer worker processes than asked for, so that each has a share of ${workers.reducedBy}`);
  let proxy: { reloadConfig(): Promise<unknown>; config(): Config; close(): Promise<void> };
  try {
    proxy = workers.count > 1 ? await startCoordinator(config, workers.count, log, { configFile: file }) : await startPgsplit(config, { logger: log, configFile: file });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'pgsplit failed to start');
    await new Promise((r) => setTimeout(r, 50));
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, drain_timeout_ms: proxy.config().shutdown.drain_timeout }, 'draining: no new clients; waiting for transactions to finish');
    void proxy.close().then(() => {
      log.info('pgsplit stopped');
      setTimeout(() => process.exit(0), 20);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The reloader logs what it applied, kept or rejected (compose/reload.ts).
  process.on('SIGHUP', () => {
    proxy.reloadConfig().catch((err: unknown) => log.error({ err: (err as Error)?.stack ?? String(err) }, 'config reload failed unexpectedly (a bug)'));
  });
  return undefined;
}
