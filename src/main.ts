// Composition root: builds the topology, monitor, listener and admin server from a config, and tears them down.
import type { Config } from './config/schema.js';
import { redactConfig } from './config/load.js';
import { createLogger, type Logger } from './util/logger.js';
import { Topology } from './topology/topology.js';
import { Monitor } from './health/monitor.js';
import { LsnTracker } from './health/lsn-tracker.js';
import { FailoverController } from './failover/controller.js';
import { ProxyStats } from './frontend/stats.js';
import { CancelRegistry } from './frontend/cancel-registry.js';
import { Listener } from './frontend/listener.js';
import type { FrontendSettings } from './frontend/client-startup.js';
import { prepareScramKeys } from './frontend/auth.js';
import { loadTls, type TlsState } from './tls/load.js';
import { monitorTlsOptions } from './tls/backend-tls.js';
import type { ClientSession } from './frontend/client-session.js';
import { createMetrics } from './metrics/registry.js';
import { AdminServer } from './admin/server.js';
import { initParser } from './router/parser.js';
import { Classifier } from './router/classifier.js';
import { FunctionCatalog, VOLATILE_FUNCTIONS_SQL, volatileFunctionNames } from './router/functions.js';
import { loadVolatileFunctions } from './health/volatile-functions.js';
import { Pools, type PoolSettings } from './backend/pool.js';
import { registerPoolMetrics } from './metrics/pool-metrics.js';
import { openServer } from './frontend/open-server.js';

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

function frontendSettings(c: Config, t: TlsState): FrontendSettings {
  return {
    routing: c.routing.enabled
      ? {
          loadBalance: c.routing.load_balance,
          primaryReads: c.routing.primary_reads,
          consistency: c.routing.consistency,
          readTags: c.routing.read_tags,
          userReadTags: new Map(c.users.filter((u) => u.read_tags !== undefined).map((u) => [u.name, u.read_tags!])),
          holdTimeoutMs: c.failover.hold_timeout,
        }
      : null,
    authMethod: c.auth.method,
    users: prepareScramKeys(c.auth.method, new Map(c.users.map((u) => [u.name, u.password]))),
    maxClientConnections: c.listen.max_client_connections,
    limits: {
      maxMessageSize: c.limits.max_message_size,
      loginTimeoutMs: c.limits.client_login_timeout,
      clientIdleTimeoutMs: c.limits.client_idle_timeout,
      idleTransactionTimeoutMs: c.limits.idle_transaction_timeout,
      maxPipeline: c.limits.max_pipeline,
      maxPreparedStatements: c.limits.max_prepared_statements,
      maxSessionSettings: c.limits.max_session_settings,
    },
    backendConnectTimeout: c.backend.connect_timeout,
    holdTimeout: c.failover.hold_timeout,
    nodeConnect: new Map(c.nodes.map((n) => [n.name, { allowCleartextPassword: n.allow_cleartext_password, tls: t.nodes.get(n.name)?.tls ?? null, tlsError: t.nodes.get(n.name)?.error }])),
    clientTls: t.frontend,
    pool: {
      mode: c.pool.mode,
      userModes: new Map(c.users.filter((u) => u.pool_mode !== undefined).map((u) => [u.name, u.pool_mode!])),
      maxPreparedStatements: c.pool.max_prepared_statements,
    },
  };
}

function poolSettings(c: Config): PoolSettings {
  return {
    size: c.pool.size,
    minIdle: c.pool.min_idle,
    maxClientWaitMs: c.pool.max_client_wait,
    serverIdleTimeoutMs: c.pool.server_idle_timeout,
    serverLifetimeMs: c.pool.server_lifetime,
    maxPreparedStatements: c.pool.max_prepared_statements,
  };
}

export async function startPgsplit(initial: Config, opts: { logger?: Logger } = {}): Promise<Pgsplit> {
  let config = initial;
  const log = opts.logger ?? createLogger(config.log.level);
  // Certificate files are read now (a bad one stops startup) and again on every reload.
  let tlsState = loadTls(config, null);
  const startedAt = Date.now();
  const topology = new Topology(config.nodes);
  // pgsplit's own connections to the nodes speak TLS as server_tls / nodes[].tls say (read live: a reload applies).
  const monitorTls = (host: string, port: number) => {
    const n = config.nodes.find((x) => x.host === host && x.port === port);
    const t = n ? tlsState.nodes.get(n.name) : undefined;
    if (t?.error) throw new Error(t.error);
    return monitorTlsOptions(t?.tls ?? null, host);
  };
  const monitorSettings = (m: Config['monitor']) => ({ ...m, tls: monitorTls });
  const monitor = new Monitor(topology, monitorSettings(config.monitor), log, () => ({
    bytes: config.routing.max_replica_lag.bytes,
    timeMs: config.routing.max_replica_lag.time,
    unbanAfterMs: config.routing.unban_after,
  }), () => config.failover.failure_threshold);
  const lsn = new LsnTracker(topology, () => monitorSettings(config.monitor), log);
  const failover = new FailoverController(topology, () => monitorSettings(config.monitor), () => ({
    enabled: config.failover.enabled,
    failureThreshold: config.failover.failure_threshold,
    promoteTimeoutMs: config.failover.promote_timeout,
    hookCommand: config.failover.hook_command,
    rejoinCommand: config.failover.rejoin_command,
    demoteCommand: config.failover.demote_command,
    switchoverTimeoutMs: config.failover.switchover_timeout,
    hookTimeoutMs: config.failover.hook_timeout,
    mode: config.replication.mode,
    strict: config.replication.strict,
    synchronousCommit: config.replication.synchronous_commit,
  }), log);
  monitor.afterRound(() => failover.onRound());
  const stats = new ProxyStats();
  const cancels = new CancelRegistry();
  const sessions = new Set<ClientSession>();
  let settings = frontendSettings(config, tlsState);
  await initParser();
  const classifier = Classifier.fromConfig(config.routing);
  let volatileKey = '';
  let volatileNames: string[] = [];
  const catalogFor = (c: Config, names: string[]) =>
    new FunctionCatalog({ volatile: names, readOnly: c.routing.read_only_functions, write: c.routing.write_functions });
  // User functions the primary marks VOLATILE go to the primary; refreshed every minute, on a new primary and
  // when clients use a new database. pg_proc is per database, so the list is the union over the databases
  // clients connect to (a name volatile in one database goes to the primary in all: safe, never wrong).
  const databases = new Set<string>([config.monitor.database]);
  const refreshCatalog = async () => {
    const p = topology.primary;
    if (!p) return;
    try {
      const rows = [];
      for (const database of databases) rows.push(...(await loadVolatileFunctions(p.host, p.port, { ...monitorSettings(config.monitor), database }, VOLATILE_FUNCTIONS_SQL)));
      const names = volatileFunctionNames(rows);
      const key = names.slice().sort().join(',');
      if (key !== volatileKey) {
        volatileKey = key;
        volatileNames = names;
        classifier.setCatalog(catalogFor(config, names));
        log.info({ volatile_functions: names.length }, 'function catalog loaded from the primary');
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not load VOLATILE functions from the primary; keeping the previous list');
    }
  };

  // One probe round before listening, so the first client already finds the primary if there is one.
  await monitor.probeAll();
  monitor.start();
  await refreshCatalog();
  const catalogTimer = setInterval(() => void refreshCatalog(), 60_000);
  catalogTimer.unref();
  topology.on('primary', (name) => {
    if (name) void refreshCatalog();
  });

  const pendingDatabases = new Map<string, Promise<void>>();
  const noteDatabase = (name: string): Promise<void> => {
    if (databases.has(name) || databases.size >= 1000) return pendingDatabases.get(name) ?? Promise.resolve();
    databases.add(name);
    const p = refreshCatalog().finally(() => pendingDatabases.delete(name));
    pendingDatabases.set(name, p);
    return p;
  };
  // Pooled server connections start with only the user and database: each client's own parameters are settings (see SessionState).
  const pools = new Pools(
    (node, user, database) => openServer({ topology, stats, settings: () => settings }, node, user, new Map([['user', user], ['database', database]])),
    () => poolSettings(config),
    log,
  );
  // A node that stops being the primary (failover, switchover) keeps no pooled connections: they are closed as they come back.
  let poolPrimary = topology.primary?.name ?? null;
  topology.on('primary', (name) => {
    if (poolPrimary !== null && poolPrimary !== name) pools.drainNode(poolPrimary);
    poolPrimary = name ?? null;
  });
  const listener = new Listener({ settings: () => settings, topology, stats, cancels, log, sessions, classifier, lsn, noteDatabase, pools });
  let listenPort: number;
  try {
    listenPort = await listener.listen(config.listen.host, config.listen.port);
  } catch (err) {
    monitor.stop();
    lsn.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}`);
  }

  const status = () => ({
    version: '0.1.0',
    uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
    primary: topology.primary?.name ?? null,
    client_connections: stats.clientConnections,
    pinned_clients: pinnedClients(),
    pools: pools.status(),
    nodes: topology.all().map((n) => ({
      name: n.name,
      host: n.host,
      port: n.port,
      role: n.name === topology.primary?.name ? 'primary' : n.role,
      fenced: topology.fenced.has(n.name),
      receiver_status: n.receiverStatus,
      streams_from: n.senderHost === null ? null : `${n.senderHost}:${n.senderPort}`,
      up: n.up,
      consecutive_failures: n.failures,
      last_probe_at: n.lastProbeAt ? new Date(n.lastProbeAt).toISOString() : null,
      last_error: n.lastError,
      current_lsn: n.currentLsn,
      receive_lsn: n.receiveLsn,
      replay_lsn: n.replayLsn,
      replay_timestamp: n.replayTimestamp,
      timeline: n.timeline,
      server_version: n.serverVersion,
      replay_paused: n.replayPaused,
      lag_bytes: n.lagBytes,
      lag_seconds: n.lagSeconds,
      banned: n.banned,
      ban_reason: n.banReason,
      banned_since: n.banned && n.banSince ? new Date(n.banSince).toISOString() : null,
      weight: n.weight ?? 1,
      tags: n.tags ?? [],
      delayed: n.delayed ?? false,
      backend_connections: stats.backendConnections.get(n.name) ?? 0,
    })),
    fenced: [...topology.fenced],
    failover: {
      enabled: config.failover.enabled,
      phase: failover.phase,
      reason: failover.phaseReason || null,
      failovers: failover.failovers,
      events: failover.events,
    },
    replication: {
      mode: config.replication.mode,
      strict: config.replication.strict,
      synchronous_standby_names: failover.sync.names,
      synchronous_standbys: failover.sync.members,
      degraded: failover.sync.degraded,
    },
    config: redactConfig(config),
  });

  const pinnedClients = () => {
    let n = 0;
    for (const s of sessions) if (s.pinned) n++;
    return n;
  };

  let admin: AdminServer | null = null;
  let adminPort: number | null = null;
  let metricsServer: AdminServer | null = null;
  let metricsPort: number | null = null;
  if (config.admin.enabled) {
    const registry = createMetrics(stats, topology, classifier, lsn, failover, () => config.replication.mode);
    registerPoolMetrics(registry, { status: () => pools.status(), waitTimeouts: () => pools.waitTimeouts, pinnedClients });
    // admin.* cannot change on reload, so the server keeps the auth it started with.
    admin = new AdminServer({ registry, topology, status, switchover: (to) => failover.switchover(to), auth: config.admin.auth });
    const m = config.admin.metrics_port;
    if (m !== null) metricsServer = new AdminServer({ registry, topology, status }, { role: 'metrics' });
    let where = `admin ${config.admin.host}:${config.admin.port}`;
    try {
      adminPort = await admin.listen(config.admin.host, config.admin.port);
      if (metricsServer && m !== null) {
        where = `admin.metrics_port ${config.admin.metrics_host}:${m}`;
        metricsPort = await metricsServer.listen(config.admin.metrics_host, m);
      }
    } catch (err) {
      monitor.stop();
      lsn.close();
      await listener.drain(0);
      clearInterval(catalogTimer);
      await admin.close();
      throw new Error(`cannot listen on ${where}: ${(err as Error).message}`);
    }
    if (!config.admin.auth.token && !config.admin.auth.user) log.warn('admin.auth is not set: POST /switchover and other mutating admin requests are refused until it is');
  }
  log.info({ listen: `${config.listen.host}:${listenPort}`, admin: adminPort ? `${config.admin.host}:${adminPort}` : null, primary: topology.primary?.name ?? null }, 'pgsplit listening');

  return {
    listenPort,
    adminPort,
    metricsPort,
    topology,
    stats,
    classifier,
    reload(next: Config): string[] {
      const refused: string[] = [];
      const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
      if (!same(next.listen.host, config.listen.host) || !same(next.listen.port, config.listen.port)) refused.push('listen');
      if (!same(next.admin, config.admin)) refused.push('admin');
      const applied: Config = {
        ...next,
        listen: { ...next.listen, host: config.listen.host, port: config.listen.port },
        admin: config.admin,
      };
      if (!same(applied.monitor, config.monitor)) monitor.setSettings(monitorSettings(applied.monitor));
      if (!same(applied.nodes, config.nodes)) topology.setAddresses(applied.nodes);
      log.level = applied.log.level;
      if (!same(applied.routing, config.routing)) classifier.setCatalog(catalogFor(applied, volatileNames));
      config = applied;
      tlsState = loadTls(config, tlsState, (err, kept) => log.error({ err: err.message }, `config reload: TLS files could not be loaded; ${kept}`));
      settings = frontendSettings(config, tlsState);
      listener.scheduleSweep();
      return refused;
    },
    async close(drainTimeoutMs = config.shutdown.drain_timeout): Promise<void> {
      clearInterval(catalogTimer);
      await listener.drain(drainTimeoutMs);
      pools.close();
      monitor.stop();
      lsn.close();
      await admin?.close();
      await metricsServer?.close();
    },
  };
}
