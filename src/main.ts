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

export interface Pgsplit {
  listenPort: number;
  adminPort: number | null;
  /** admin.metrics_port's server (only /metrics and /health), when configured and admin is enabled. */
  metricsPort: number | null;
  topology: Topology;
  stats: ProxyStats;
  classifier: Classifier;
  /** Apply a new config; returns the keys that cannot change live (they keep their old value). */
  reload(next: Config): string[];
  /** Drain sessions (up to drainTimeoutMs, default shutdown.drain_timeout), then stop everything. */
  close(drainTimeoutMs?: number): Promise<void>;
}

/** listen, admin and workers cannot change live: the config applied keeps their old values and names them. */
export function liveConfig(current: Config, next: Config): { applied: Config; refused: string[] } {
  const refused: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(next.listen.host, current.listen.host) || !same(next.listen.port, current.listen.port)) refused.push('listen');
  if (!same(next.admin, current.admin)) refused.push('admin');
  if (!same(next.workers, current.workers)) refused.push('workers');
  if (!same(next.coordination, current.coordination)) refused.push('coordination');
  const applied: Config = {
    ...next,
    coordination: current.coordination,
    listen: { ...next.listen, host: current.listen.host, port: current.listen.port },
    admin: current.admin,
    workers: current.workers,
  };
  return { applied, refused };
}

export async function startPgsplit(initial: Config, opts: { logger?: Logger } = {}): Promise<Pgsplit> {
  let config = initial;
  const log = opts.logger ?? createLogger(config.log.level);
  const startedAt = Date.now();
  const control = new Control(config, log);
  await initParser();
  const frontend = new Frontend(config, {
    topology: control.topology,
    lsn: control.lsn,
    noteDatabase: (name) => control.noteDatabase(name),
    volatile: control.volatile,
    log,
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
  let admin;
  try {
    admin = await startAdmin({ config: () => config, control, totals, status: () => statusDocument(config, control, totals(), startedAt) }, log);
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
    reload(next: Config): string[] {
      const { applied, refused } = liveConfig(config, next);
      control.reload(applied);
      frontend.reload(applied);
      config = applied;
      return refused;
    },
    async close(drainTimeoutMs = config.shutdown.drain_timeout): Promise<void> {
      await frontend.close(drainTimeoutMs);
      control.stop();
      await admin.close();
    },
  };
}
