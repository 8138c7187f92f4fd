// The client-serving half of pgsplit: listener, sessions, classifier and server pools, over a topology it only reads.
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import type { WalPositions } from '../health/wal-positions.js';
import { ProxyStats } from '../frontend/stats.js';
import { CancelRegistry, type CancelRegistryOptions } from '../frontend/cancel-registry.js';
import { Listener } from '../frontend/listener.js';
import type { FrontendSettings } from '../frontend/client-startup.js';
import { prepareScramKeys } from '../frontend/auth.js';
import { loadTls, type TlsState } from '../tls/load.js';
import type { ClientSession } from '../frontend/client-session.js';
import { Classifier } from '../router/classifier.js';
import { FunctionCatalog } from '../router/functions.js';
import { Pools, type PoolSettings } from '../backend/pool.js';
import { openServer } from '../frontend/open-server.js';
import { ConsoleSession, type ConsoleBackend } from '../console/console-session.js';
import { StatementKeys, type StatementCounting } from '../frontend/statement-keys.js';
import { StatementStats } from '../stats/statement-stats.js';
import { MAX_LISTED, takeSnapshot, type FrontendSnapshot, type SessionListing } from '../workers/frontend-snapshot.js';

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
    adminUsers: prepareScramKeys('scram-sha-256', new Map(c.admin.users.map((u) => [u.name, u.password]))),
    maxClientConnections: c.listen.max_client_connections,
    limits: {
      maxMessageSize: c.limits.max_message_size,
      loginTimeoutMs: c.limits.client_login_timeout,
      clientIdleTimeoutMs: c.limits.client_idle_timeout,
      idleTransactionTimeoutMs: c.limits.idle_transaction_timeout,
      maxPipeline: c.limits.max_pipeline,
      maxPreparedStatements: c.limits.max_prepared_statements,
      maxPreparedBytes: c.limits.max_prepared_bytes,
      maxSessionSettings: c.limits.max_session_settings,
      maxSessionSettingsBytes: c.limits.max_session_settings_bytes,
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

/** How pgsplit reaches a node: a server connection made under other terms is not reused after a reload. */
const reachedAs = (c: Config, n: Config['nodes'][number]) =>
  JSON.stringify([n.host, n.port, n.tls ?? c.server_tls, n.allow_cleartext_password]);

/** Nodes removed, or reached differently (address, TLS, cleartext password), between two configs. */
export function changedNodes(prev: Config, next: Config): string[] {
  const now = new Map(next.nodes.map((n) => [n.name, reachedAs(next, n)]));
  return prev.nodes.filter((n) => now.get(n.name) !== reachedAs(prev, n)).map((n) => n.name);
}

const catalogFor = (c: Config, names: readonly string[]) =>
  new FunctionCatalog({ volatile: names, readOnly: c.routing.read_only_functions, write: c.routing.write_functions });

export interface FrontendDeps {
  topology: Topology;
  lsn: WalPositions;
  /** A client connected to this database; resolves once its functions are in the catalog. */
  noteDatabase(name: string): Promise<void>;
  /** User functions the primary marks VOLATILE, as known now. */
  volatile: readonly string[];
  log: Logger;
  cancel?: CancelRegistryOptions;
  /** A client connection closed (see FrontendContext.onClientClosed). */
  onClientClosed?(): void;
  /** Where admin console commands run (this process, or the coordinator through IPC). */
  console?: ConsoleBackend;
}

export class Frontend {
  readonly stats = new ProxyStats();
  readonly sessions = new Set<ClientSession>();
  readonly classifier: Classifier;
  readonly pools: Pools;
  readonly cancels: CancelRegistry;
  /** This process's statement statistics (null: stats.enabled is false; that is fixed at start). */
  readonly statements: StatementStats | null;
  private readonly listener: Listener;
  private settings: FrontendSettings;
  private tlsState: TlsState;
  private volatile: readonly string[];

  /** Certificate files are read now (a bad one throws) and again on every reload. */
  constructor(private config: Config, private readonly deps: FrontendDeps) {
    const { topology, log } = deps;
    this.tlsState = loadTls(config, null);
    this.settings = frontendSettings(config, this.tlsState);
    this.volatile = deps.volatile;
    this.classifier = Classifier.fromConfig(config.routing, deps.volatile);
    this.cancels = new CancelRegistry(deps.cancel);
    let counting: StatementCounting | null = null;
    if (config.stats.enabled) {
      counting = { table: new StatementStats(config.stats.max_statements), keys: new StatementKeys(() => this.config.routing.max_parse_length) };
    }
    this.statements = counting?.table ?? null;
    // Pooled server connections start with only the user and database: each client's own parameters are settings (see SessionState).
    this.pools = new Pools(
      (node, user, database) => openServer({ topology, stats: this.stats, settings: () => this.settings }, node, user, new Map([['user', user], ['database', database]])),
      () => poolSettings(this.config),
      log,
    );
    // A node that stops being the primary (failover, switchover) keeps no pooled connections: they are closed as they come back.
    let poolPrimary = topology.primary?.name ?? null;
    topology.on('primary', (name) => {
      if (poolPrimary !== null && poolPrimary !== name) this.pools.drainNode(poolPrimary);
      poolPrimary = name ?? null;
    });
    this.listener = new Listener({
      settings: () => this.settings,
      topology,
      stats: this.stats,
      statements: counting,
      cancels: this.cancels,
      log,
      sessions: this.sessions,
      classifier: this.classifier,
      lsn: deps.lsn,
      noteDatabase: deps.noteDatabase,
      pools: this.pools,
      onClientClosed: deps.onClientClosed,
      console: deps.console ? (login) => new ConsoleSession({ ...login, log, limits: () => this.settings.limits }, deps.console!) : undefined,
    });
  }

  /** Serve a client connection the coordinator accepted (workers: N). */
  adopt(handle: unknown): void {
    this.listener.adopt(handle);
  }

  async listen(): Promise<number> {
    const { host, port } = this.config.listen;
    try {
      return await this.listener.listen(host, port);
    } catch (err) {
      throw new Error(`cannot listen on ${host}:${port}: ${(err as Error).message}`);
    }
  }

  setVolatile(names: readonly string[]): void {
    this.volatile = names;
    this.classifier.setCatalog(catalogFor(this.config, names));
  }

  /** Apply a new config (already planned by config/reload-plan.ts: keys that cannot change live hold their running values). */
  reload(next: Config): void {
    const prev = this.config;
    this.config = next;
    const r = next.routing;
    if (r.max_parse_length !== prev.routing.max_parse_length || r.parse_cache_size !== prev.routing.parse_cache_size) {
      this.classifier.setLimits({ maxParseLength: r.max_parse_length, cacheSize: r.parse_cache_size });
    }
    if (JSON.stringify(r) !== JSON.stringify(prev.routing)) this.classifier.setCatalog(catalogFor(next, this.volatile));
    this.tlsState = loadTls(next, this.tlsState, (err, kept) => this.deps.log.error({ err: err.message }, `config reload: TLS files could not be loaded; ${kept}`));
    this.settings = frontendSettings(next, this.tlsState);
    if (this.statements !== null) this.statements.max = next.stats.max_statements;
    // Connections to a node that went away or is reached differently now must not be handed out again.
    for (const name of changedNodes(prev, next)) this.pools.drainNode(name);
    this.pools.settingsChanged();
    this.listener.scheduleSweep();
  }

  pinnedClients(): number {
    let n = 0;
    for (const s of this.sessions) if (s.pinned) n++;
    return n;
  }

  snapshot(withListing = false): FrontendSnapshot {
    const s = takeSnapshot(this.stats, this.classifier, this.pools.status(), this.pools.waitTimeouts, this.pinnedClients());
    if (withListing) s.listing = this.listing();
    return s;
  }

  /** This process's client and server connections for the admin console, at most MAX_LISTED of each. */
  listing(): SessionListing {
    const out: SessionListing = { clients: [], servers: [], omittedClients: 0, omittedServers: 0 };
    for (const session of this.sessions) {
      const { servers, ...client } = session.info();
      if (out.clients.length < MAX_LISTED) out.clients.push({ ...client, worker: null });
      else out.omittedClients++;
      for (const v of servers) {
        if (out.servers.length < MAX_LISTED) out.servers.push({ ...v, worker: null });
        else out.omittedServers++;
      }
    }
    const idle = this.pools.idleServers(MAX_LISTED - out.servers.length);
    out.servers.push(...idle.map((v) => ({ ...v, worker: null })));
    return out;
  }

  /** Drain sessions (refusing new clients), then close the pools. */
  async close(drainTimeoutMs: number): Promise<void> {
    await this.listener.drain(drainTimeoutMs);
    this.pools.close();
  }
}
