// The `pgsplit` command line: `pgsplit --config FILE` runs the proxy; signals reload (SIGHUP) and drain (SIGTERM).
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './util/logger.js';
import { startPgsplit } from './main.js';
import { runRouteCommand } from './router/explain.js';
import { runSwitchoverCommand } from './admin/switchover-command.js';
import cluster from 'node:cluster';
import os from 'node:os';
import { resolveWorkers } from './workers/shares.js';
import { startCoordinator } from './workers/coordinator.js';
import { runWorker } from './workers/worker.js';

const USAGE = `usage: pgsplit --config FILE        run the proxy (or set PGSPLIT_CONFIG)
       pgsplit route --sql "STATEMENT"  where a fresh session would send it (JSON); --jsonl reads stdin
       pgsplit switchover --to NODE [--config FILE] [--admin HOST:PORT]   planned promotion of a replica
                 (sends admin.auth from the config, else PGSPLIT_ADMIN_TOKEN)
       pgsplit --help | --version`;

function parseArgs(argv: string[]): { config?: string; help?: boolean; version?: boolean } {
  const out: { config?: string; help?: boolean; version?: boolean } = {};
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

export async function main(argv: string[]): Promise<void> {
  // A worker forked by the coordinator (workers: N) gets its config over IPC, not from the command line.
  if (cluster.isWorker) {
    try {
      await runWorker();
    } catch (err) {
      console.error(`pgsplit worker ${process.env.PGSPLIT_WORKER_INDEX ?? '?'}: ${(err as Error).message}`);
      process.exit(1);
    }
    return;
  }
  if (argv[0] === 'switchover') {
    process.exitCode = await runSwitchoverCommand(argv.slice(1), { stdout: process.stdout, stderr: process.stderr });
    return;
  }
  if (argv[0] === 'route') {
    process.exitCode = await runRouteCommand(argv.slice(1), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
    return;
  }
  let args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    console.error(`pgsplit: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args.version) {
    console.log('pgsplit 0.1.0');
    return;
  }
  const file = args.config ?? process.env.PGSPLIT_CONFIG;
  if (!file) {
    console.error(`pgsplit: no config file given\n${USAGE}`);
    process.exit(2);
  }
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : `pgsplit: ${(err as Error).message}`);
    process.exit(2);
  }
  const log = createLogger(config.log.level);
  // The last line of defence: every session and socket has its own error path, so an exception that still
  // escapes is a bug in one of them. Logging it and going on costs that one session; exiting would cost all.
  process.on('uncaughtException', (err) => log.error({ err: err.stack ?? String(err) }, 'uncaught exception (a bug); pgsplit keeps running'));
  process.on('unhandledRejection', (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, 'unhandled promise rejection (a bug); pgsplit keeps running'));
  const workers = resolveWorkers(config, os.availableParallelism());
  if (workers.reducedBy) log.warn({ workers: workers.count, bound: workers.reducedBy }, `workers: fewer worker processes than asked for, so that each has a share of ${workers.reducedBy}`);
  let proxy: { reload(next: Config): string[]; close(): Promise<void> };
  try {
    proxy = workers.count > 1 ? await startCoordinator(config, workers.count, log) : await startPgsplit(config, { logger: log });
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
    log.info({ signal, drain_timeout_ms: config.shutdown.drain_timeout }, 'draining: no new clients; waiting for transactions to finish');
    void proxy.close().then(() => {
      log.info('pgsplit stopped');
      setTimeout(() => process.exit(0), 20);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const next = loadConfig(file);
      const refused = proxy.reload(next);
      for (const key of refused) log.warn({ key }, 'config reload: this key cannot change while running; restart pgsplit to apply it');
      log.info('config reloaded');
    } catch (err) {
      log.error({ err: err instanceof ConfigError ? err.issues : (err as Error).message }, 'config reload failed; keeping the running config');
    }
  });
}
