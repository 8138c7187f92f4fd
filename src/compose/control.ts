// The deciding half of pgsplit: topology, monitor, read-your-writes LSN polls, failover and the function catalog from the primary.
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { Topology } from '../topology/topology.js';
import { Monitor } from '../health/monitor.js';
import { LsnTracker } from '../health/lsn-tracker.js';
import { FailoverController } from '../failover/controller.js';
import { loadTls, type TlsState } from '../tls/load.js';
import { monitorTlsOptions } from '../tls/backend-tls.js';
import { VOLATILE_FUNCTIONS_SQL, volatileFunctionNames } from '../router/functions.js';
import { loadVolatileFunctions } from '../health/volatile-functions.js';
import os from 'node:os';
import { ClusterMember } from '../coordination/cluster-member.js';
import { EtcdStore } from '../coordination/etcd-store.js';
import { systemClock } from '../failover/clock.js';
import type { FailoverEvent } from '../failover/history.js';
import { SwitchoverRefused } from '../errors.js';
import { askPeer } from '../coordination/peers.js';

export interface ControlHooks {
  /** After a switchover holds new writes (or PAUSE all units): resolves once every process serving clients holds them too. */
  writesPaused?(): Promise<void>;
}

export class Control {
  readonly topology: Topology;
  readonly monitor: Monitor;
  readonly lsn: LsnTracker;
  readonly failover: FailoverController;
  /** With coordination.etcd: this instance among the others (null: it runs alone). */
  readonly member: ClusterMember | null;
  private tlsState: TlsState;
  private volatileKey = '';
  private volatileNames: string[] = [];
  private readonly catalogListeners: ((names: readonly string[]) => void)[] = [];
  private catalogTimer: NodeJS.Timeout | null = null;
  // pg_proc is per database, so the list is the union over the databases clients connect to
  // (a name volatile in one database goes to the primary in all: safe, never wrong).
  private readonly databases: Set<string>;
  private readonly pendingDatabases = new Map<string, Promise<void>>();
  /** An operator's PAUSE: when it lifts itself (admin.pause_timeout), or null while not paused. */
  pausedUntil: number | null = null;
  private pauseTimer: NodeJS.Timeout | null = null;

  constructor(private config: Config, private readonly log: Logger, private readonly hooks: ControlHooks = {}) {
    this.tlsState = loadTls(config, null);
    this.databases = new Set([config.monitor.database]);
    const topology = (this.topology = new Topology(config.nodes));
    this.monitor = new Monitor(topology, this.monitorSettings(config.monitor), log, () => ({
      bytes: this.config.routing.max_replica_lag.bytes,
      timeMs: this.config.routing.max_replica_lag.time,
      unbanAfterMs: this.config.routing.unban_after,
    }), () => this.config.failover.failure_threshold);
    this.lsn = new LsnTracker(topology, () => this.monitorSettings(this.config.monitor), log);
    const coord = config.coordination;
    let member: ClusterMember | null = null;
    if (coord.etcd.endpoints.length > 0) {
      const ttl = coord.etcd.lease_ttl;
      const store = new EtcdStore({ ...coord.etcd, callTimeoutMs: Math.max(200, Math.floor(ttl / 3)) });
      const name = coord.name || `${os.hostname()}:${config.listen.port || process.pid}`;
      member = new ClusterMember(store, topology, systemClock, log, { name, leaseTtlMs: ttl, failsafe: coord.failsafe }, () => this.config.replication.mode, () => this.failover.busy, (url, timeoutMs) => askPeer(url, timeoutMs, this.adminHeaders()));
      this.monitor.owner = member;
    }
    this.member = member;
    this.failover = new FailoverController(topology, () => this.monitorSettings(this.config.monitor), () => {
      const c = this.config;
      return {
        enabled: c.failover.enabled,
        failureThreshold: c.failover.failure_threshold,
        promoteTimeoutMs: c.failover.promote_timeout,
        hookCommand: c.failover.hook_command,
        rejoinCommand: c.failover.rejoin_command,
        demoteCommand: c.failover.demote_command,
        switchoverTimeoutMs: c.failover.switchover_timeout,
        hookTimeoutMs: c.failover.hook_timeout,
        mode: c.replication.mode,
        strict: c.replication.strict,
        synchronousCommit: c.replication.synchronous_commit,
      };
    }, log, {
      writesPaused: hooks.writesPaused,
      leadership: member?.leadership,
      authority: this.monitor.owner,
    });
    this.monitor.afterRound(() => this.failover.onRound());
    topology.on('primary', (name) => {
      if (name) void this.refreshCatalog();
    });
  }

  /** Credentials for another instance's admin port (instances of one cluster share admin.auth). */
  private adminHeaders(): Record<string, string> {
    const a = this.config.admin.auth;
    if (a.token !== undefined) return { authorization: `Bearer ${a.token}` };
    if (a.user !== undefined) return { authorization: `Basic ${Buffer.from(`${a.user}:${a.password ?? ''}`).toString('base64')}` };
    return {};
  }

  /**
   * A switchover asked of this instance: done here when it leads (or runs alone), else handed to the leader
   * (its admin URL is registered in etcd), whose answer is returned as if given here.
   */
  async switchover(to: string): Promise<FailoverEvent> {
    const m = this.member;
    if (m === null || m.role === 'leader') return this.failover.switchover(to);
    const url = m.leaderUrl();
    if (url === null) throw new SwitchoverRefused(`this instance does not lead and the leader (${m.leaderName ?? 'none'}) is not known: ask it directly`);
    const r = await fetch(`${url}/switchover`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.adminHeaders() },
      body: JSON.stringify({ to }),
      signal: AbortSignal.timeout(this.config.failover.switchover_timeout + 30_000),
    });
    const body = (await r.json().catch(() => ({}))) as { event?: FailoverEvent; error?: string };
    if (r.status === 200 && body.event) return body.event;
    const why = `the leader ${m.leaderName} answered ${r.status}: ${body.error ?? 'no reason given'}`;
    if (r.status === 409) throw new SwitchoverRefused(why);
    throw new Error(why);
  }

  /**
   * PAUSE (admin console): every process serving clients holds new units, reads too, until resume() or
   * admin.pause_timeout, whichever comes first (a forgotten PAUSE must not stop the application for ever).
   * Resolves once every process holds them; a second PAUSE moves the deadline. Returns whether it was paused already.
   */
  async pause(): Promise<boolean> {
    const already = this.topology.unitsPaused;
    const ms = this.config.admin.pause_timeout;
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    this.pausedUntil = Date.now() + ms;
    this.pauseTimer = setTimeout(() => {
      this.log.warn({ pause_timeout_ms: ms }, 'PAUSE lifted by admin.pause_timeout: held statements run now');
      this.resume();
    }, ms);
    this.pauseTimer.unref();
    this.topology.pauseUnits();
    if (!already) this.log.warn({ until: new Date(this.pausedUntil).toISOString() }, 'PAUSE: new statements are held');
    // The same barrier a switchover uses: IPC is in order, so an answer from every worker means each has the pause.
    await this.hooks.writesPaused?.();
    return already;
  }

  /** RESUME: held units run. Returns whether anything was paused. */
  resume(): boolean {
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    this.pauseTimer = null;
    this.pausedUntil = null;
    const was = this.topology.unitsPaused;
    this.topology.resumeUnits();
    if (was) this.log.warn('RESUME: held statements run');
    return was;
  }

  // pgsplit's own connections to the nodes speak TLS as server_tls / nodes[].tls say (read live: a reload applies).
  private monitorSettings(m: Config['monitor']) {
    const tls = (host: string, port: number) => {
      const n = this.config.nodes.find((x) => x.host === host && x.port === port);
      const t = n ? this.tlsState.nodes.get(n.name) : undefined;
      if (t?.error) throw new Error(t.error);
      return monitorTlsOptions(t?.tls ?? null, host);
    };
    return { ...m, tls };
  }

  /** One probe round first, so the first client already finds the primary if there is one. */
  async start(): Promise<void> {
    await this.monitor.probeAll();
    // Several instances: the published state (or this instance's leadership) is known before the first client.
    if (this.member) await this.member.start();
    this.monitor.start();
    await this.refreshCatalog();
    this.catalogTimer = setInterval(() => void this.refreshCatalog(), 60_000);
    this.catalogTimer.unref();
  }

  get volatile(): readonly string[] {
    return this.volatileNames;
  }

  onCatalog(listener: (names: readonly string[]) => void): void {
    this.catalogListeners.push(listener);
  }

  // User functions the primary marks VOLATILE go to the primary; refreshed every minute, on a new primary and
  // when clients use a new database.
  private async refreshCatalog(): Promise<void> {
    const p = this.topology.primary;
    if (!p) return;
    try {
      const rows = [];
      for (const database of this.databases) rows.push(...(await loadVolatileFunctions(p.host, p.port, { ...this.monitorSettings(this.config.monitor), database }, VOLATILE_FUNCTIONS_SQL)));
      const names = volatileFunctionNames(rows);
      const key = names.slice().sort().join(',');
      if (key !== this.volatileKey) {
        this.volatileKey = key;
        this.volatileNames = names;
        for (const l of this.catalogListeners) l(names);
        this.log.info({ volatile_functions: names.length }, 'function catalog loaded from the primary');
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not load VOLATILE functions from the primary; keeping the previous list');
    }
  }

  /** A client connected to this database: its functions join the catalog (at most 1,000 databases are followed). */
  noteDatabase(name: string): Promise<void> {
    if (this.databases.has(name) || this.databases.size >= 1000) return this.pendingDatabases.get(name) ?? Promise.resolve();
    this.databases.add(name);
    const p = this.refreshCatalog().finally(() => this.pendingDatabases.delete(name));
    this.pendingDatabases.set(name, p);
    return p;
  }

  reload(next: Config): void {
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const prev = this.config;
    this.config = next;
    // The frontend logs a TLS file that cannot be loaded; here the previous files are simply kept too.
    this.tlsState = loadTls(next, this.tlsState);
    // Probe connections carry the monitor credentials and each node's TLS: either changing means reconnecting.
    // (Nodes added or removed are the monitor's own business: it probes what the topology lists.)
    const tlsBefore = new Map(prev.nodes.map((n) => [n.name, JSON.stringify(n.tls)]));
    const tlsChanged = !same(next.server_tls, prev.server_tls) || next.nodes.some((n) => tlsBefore.has(n.name) && tlsBefore.get(n.name) !== JSON.stringify(n.tls));
    if (!same(next.monitor, prev.monitor) || tlsChanged) this.monitor.setSettings(this.monitorSettings(next.monitor));
    if (!same(next.nodes, prev.nodes)) {
      this.topology.setAddresses(next.nodes);
      const names = new Set(next.nodes.map((n) => n.name));
      this.lsn.forget(prev.nodes.filter((n) => !names.has(n.name)).map((n) => n.name));
      // An added node (or a new address) is known at once rather than one monitor.interval later.
      void this.monitor.probeAll();
    }
    this.log.level = next.log.level;
  }

  stop(): void {
    // A leader that stops hands the leadership over at once (its lease is revoked) instead of after lease_ttl.
    void this.member?.stop();
    if (this.catalogTimer) clearInterval(this.catalogTimer);
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    this.monitor.stop();
    this.lsn.close();
  }
}
