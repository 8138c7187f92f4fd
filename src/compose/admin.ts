// The admin and metrics HTTP servers of a pgsplit instance (single process or coordinator), with the registry they serve.
import os from 'node:os';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { createMetrics, registerReloadMetrics } from '../metrics/registry.js';
import { registerPoolMetrics } from '../metrics/pool-metrics.js';
import { AdminServer } from '../admin/server.js';
import type { Control } from './control.js';
import { startHistorySampler } from './history-sampler.js';
import type { Reloader } from './reload.js';
import type { AdminAuth } from '../admin/auth.js';
import type { FrontendTotals } from '../workers/frontend-snapshot.js';
import type { StatementsSource } from '../stats/statements-source.js';
import type client from 'prom-client';

export interface AdminPlane {
  adminPort: number | null;
  metricsPort: number | null;
  registry: client.Registry | null;
  /** admin.auth reloaded. */
  setAuth(auth: AdminAuth): void;
  close(): Promise<void>;
}

export interface AdminSources {
  config: () => Config;
  control: Control;
  /** The frontends' counters as of the last refresh. */
  totals: () => FrontendTotals;
  status: () => unknown;
  /** Called before /metrics and /status are answered (a coordinator gathers its workers' snapshots). */
  refresh?: () => Promise<void>;
  /** More metrics for the same registry (a coordinator's worker gauges). */
  extraMetrics?: (registry: client.Registry) => void;
  /** Serves POST /reload (when it knows a file) and counts reloads for /metrics. */
  reloader?: Reloader;
  /** GET /statements, POST /statements/reset. */
  statements?: StatementsSource;
}

export async function startAdmin(src: AdminSources, log: Logger): Promise<AdminPlane> {
  const config = src.config();
  if (!config.admin.enabled) return { adminPort: null, metricsPort: null, registry: null, setAuth: () => {}, close: async () => {} };
  const { control } = src;
  // The registry reads the totals at scrape time, so a refresh that replaces them is seen.
  const classifier = { get stats() { return src.totals().classifier.stats; }, get timings() { return src.totals().classifier.timings; } };
  const registry = createMetrics(() => src.totals().stats, control.topology, classifier, control.lsn, control.failover, () => src.config().replication.mode, control.member);
  registerPoolMetrics(registry, { status: () => src.totals().pools, waitTimeouts: () => src.totals().waitTimeouts, pinnedClients: () => src.totals().pinnedClients });
  src.extraMetrics?.(registry);
  const reloader = src.reloader;
  if (reloader) registerReloadMetrics(registry, () => reloader.counts);
  const reload = reloader?.file ? () => reloader.reloadConfig() : undefined;
  // The status page's charts: sampled from the start, so a page opened later already shows the last minutes.
  const history = startHistorySampler({ status: src.status, totals: src.totals, refresh: src.refresh });
  const admin = new AdminServer({ registry, topology: control.topology, status: src.status, refresh: src.refresh, switchover: (to) => control.switchover(to), reload, coordination: control.member ? () => control.member!.peerView() : undefined, statements: src.statements, history: () => history.view(), auth: config.admin.auth });
  const m = config.admin.metrics_port;
  const metricsServer = m !== null ? new AdminServer({ registry, topology: control.topology, status: src.status, refresh: src.refresh }, { role: 'metrics' }) : null;
  let where = `admin ${config.admin.host}:${config.admin.port}`;
  let adminPort: number;
  let metricsPort: number | null = null;
  try {
    adminPort = await admin.listen(config.admin.host, config.admin.port);
    if (metricsServer && m !== null) {
      where = `admin.metrics_port ${config.admin.metrics_host}:${m}`;
      metricsPort = await metricsServer.listen(config.admin.metrics_host, m);
    }
  } catch (err) {
    history.stop();
    await admin.close();
    throw new Error(`cannot listen on ${where}: ${(err as Error).message}`);
  }
  // Peers reach this instance here (failsafe questions, switchovers handed to the leader).
  const host = config.admin.host === '0.0.0.0' || config.admin.host === '::' ? os.hostname() : config.admin.host;
  control.member?.advertise(`http://${host.includes(':') ? `[${host}]` : host}:${adminPort}`);
  if (!config.admin.auth.token && !config.admin.auth.user) log.warn('admin.auth is not set: POST /switchover and other mutating admin requests are refused until it is');
  return {
    adminPort,
    metricsPort,
    registry,
    setAuth: (auth) => admin.setAuth(auth),
    async close() {
      history.stop();
      await admin.close();
      await metricsServer?.close();
    },
  };
}
