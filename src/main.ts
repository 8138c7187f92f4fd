// Composition root of a single-process pgsplit (workers: 1): the control half, one frontend and the admin server in one process.
import type { Config } from './config/schema.js';
import { createLogger, type Logger } from './util/logger.js';
import type { Topology } from './topology/topology.js';
import type { ProxyStats } from './frontend/stats.js';
import type { Classifier } from './router/classifier.js';
import { initParser } from './router/parser.js';
import { Control } from './compose/control.js';
import { Frontend } from './compose/frontend.js';
import { startAdmin } from './compose/admin.js';
import { statusDocument } from './compose/status.js';
import { consoleDeps, localConsole } from './compose/console.js';
import type { ConsoleBackend } from './console/console-session.js';
import { consoleError } from './console/reply.js';
import { localStatements, type StatementsSource } from './stats/statements-source.js';
import { Reloader, type ReloadCounts, type ReloadResult } from './compose/reload.js';

export interface Pgsplit {
  listenPort: number;
  adminPort: number | null;
  /** admin.metrics_port's server (only /metrics and /health), when configured and admin is enabled. */
  metricsPort: number | null;
  topology: Topology;
  stats: ProxyStats;
  classifier: Classifier;
  /** Statement statistics (GET /statements; the admin console's SHOW STATEMENTS and RESET STATS). */
  statements: StatementsSource;
  /** Apply a parsed config as a reload would (see config/reload-rules.ts). */
  reload(next: Config): Promise<ReloadResult>;
  /** Re-read the config file (default: opts.configFile) and apply it: what SIGHUP, POST /reload and the admin console do. */
  reloadConfig(file?: string): Promise<ReloadResult>;
  /** Reloads so far, by result (pgsplit_config_reloads_total). */
  reloads: ReloadCounts;
  /** The config running now (the last reload's, with kept keys at their running values). */
  config(): Config;
  /** Drain sessions (up to drainTimeoutMs, default shutdown.drain_timeout), then stop everything. */
  close(drainTimeoutMs?: number): Promise<void>;
}

export async function startPgsplit(initial: Config, opts: { logger?: Logger; configFile?: string } = {}): Promise<Pgsplit> {
  let config = initial;
  const log = opts.logger ?? createLogger(config.log.level);
  const startedAt = Date.now();
  const control = new Control(config, log);
  await initParser();
  // Commands need the admin half, made after the listener: until then the console says it is starting.
  let consoleBackend: ConsoleBackend | null = null;
  const frontend = new Frontend(config, {
    topology: control.topology,
    lsn: control.lsn,
    noteDatabase: (name) => control.noteDatabase(name),
    volatile: control.volatile,
    log,
    console: { run: (c) => consoleBackend?.run(c) ?? Promise.resolve(consoleError('57P03', 'pgsplit is starting; try again in a moment')) },
  });
  control.onCatalog((names) => frontend.setVolatile(names));
  await control.start();
  let listenPort: number;
  try {
    listenPort = await frontend.listen();
  } catch (err) {
    control.stop();
    throw err;
  }
  const totals = () => ({
    stats: frontend.stats,
    classifier: frontend.classifier,
    pools: frontend.pools.status(),
    waitTimeouts: frontend.pools.waitTimeouts,
    pinnedClients: frontend.pinnedClients(),
  });
  const statements = localStatements(frontend.statements);
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  const reloader = new Reloader({
    current: () => config,
    runtime: () => ({ primary: control.topology.primary?.name ?? null, workers: 1 }),
    async apply(next) {
      control.reload(next);
      frontend.reload(next);
      admin?.setAuth(next.admin.auth);
      config = next;
    },
  }, log, opts.configFile ?? null);
  consoleBackend = localConsole(consoleDeps({
    control,
    log,
    gather: async () => ({ status: statusDocument(config, control, totals(), startedAt), totals: totals() }),
    listing: async () => frontend.listing(),
    reload: () => reloader.reloadConfig(),
    statements,
  }));
  try {
    admin = await startAdmin({ config: () => config, control, totals, reloader, statements, status: () => statusDocument(config, control, totals(), startedAt) }, log);
  } catch (err) {
    control.stop();
    await frontend.close(0);
    throw err;
  }
  log.info({ listen: `${config.listen.host}:${listenPort}`, admin: admin.adminPort ? `${config.admin.host}:${admin.adminPort}` : null, primary: control.topology.primary?.name ?? null }, 'pgsplit listening');

  return {
    listenPort,
    adminPort: admin.adminPort,
    metricsPort: admin.metricsPort,
    topology: control.topology,
    stats: frontend.stats,
    classifier: frontend.classifier,
    statements,
    reload: (next) => reloader.reload(next),
    reloadConfig: (file) => reloader.reloadConfig(file),
    reloads: reloader.counts,
    config: () => config,
    async close(drainTimeoutMs = config.shutdown.drain_timeout): Promise<void> {
      await frontend.close(drainTimeoutMs);
      control.stop();
      await admin?.close();
    },
  };
}
