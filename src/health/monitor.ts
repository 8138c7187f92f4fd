// The monitor: probes every node on an interval over its own connection and feeds the results to the topology.
import type pg from 'pg';
import { monitorClient, type MonitorSettings } from './monitor-client.js';
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import { applyLag, applyProbe, choosePrimary, type ProbeResult, type ProbeSample } from './evaluate.js';
import { LocalPrimary, type PrimaryOwner } from './primary-owner.js';
import type { LagBounds } from './lag.js';

const NO_BOUNDS: LagBounds = { bytes: null, timeMs: null, unbanAfterMs: 0 };

export type { MonitorSettings } from './monitor-client.js';

const PROBE_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
  pg_last_wal_receive_lsn()::text AS receive_lsn,
  pg_last_wal_replay_lsn()::text AS replay_lsn,
  pg_last_xact_replay_timestamp()::text AS replay_ts,
  CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
  (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
  current_setting('server_version') AS version,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS replay_paused,
  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() END AS caught_up,
  CASE WHEN pg_is_in_recovery() THEN EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_age,
  (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
  (SELECT sender_host FROM pg_stat_wal_receiver) AS sender_host,
  (SELECT sender_port FROM pg_stat_wal_receiver) AS sender_port,
  CASE WHEN NOT pg_is_in_recovery() THEN
    (SELECT json_agg(json_build_object('name', application_name, 'state', state, 'sync', sync_state, 'flush', flush_lsn::text)) FROM pg_stat_replication)
  END AS standbys`;

class NodeProbe {
  private client: pg.Client | null = null;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly settings: () => MonitorSettings,
  ) {}

  async probe(): Promise<ProbeResult> {
    const at = Date.now();
    try {
      const client = await this.connection();
      const res = await client.query(PROBE_SQL);
      const row = res.rows[0];
      const sample: ProbeSample = {
        inRecovery: row.in_recovery === true,
        currentLsn: row.current_lsn,
        receiveLsn: row.receive_lsn,
        replayLsn: row.replay_lsn,
        replayTimestamp: row.replay_ts,
        timeline: row.timeline === null ? null : Number(row.timeline),
        systemIdentifier: row.sysid,
        serverVersion: row.version,
        replayPaused: row.replay_paused ?? null,
        caughtUp: row.caught_up ?? null,
        replayAgeSeconds: row.replay_age === null || row.replay_age === undefined ? null : Number(row.replay_age),
        receiverStatus: row.receiver_status ?? null,
        senderHost: row.sender_host ?? null,
        senderPort: row.sender_port === null || row.sender_port === undefined ? null : Number(row.sender_port),
        standbys: Array.isArray(row.standbys)
          ? (row.standbys as { name: string; state: string; sync: string; flush: string | null }[]).map((x) => ({ name: x.name, state: x.state, syncState: x.sync, flushLsn: x.flush }))
          : null,
      };
      return { ok: true, at, sample };
    } catch (err) {
      this.close();
      return { ok: false, at, error: (err as Error).message || String(err) };
    }
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    const s = this.settings();
    const client = monitorClient({ host: this.host, port: this.port }, s, 'pgsplit-monitor', s.probe_timeout, true);
    // A dead socket surfaces as an 'error' event between probes; the next probe reconnects.
    client.on('error', () => this.close());
    this.client = client;
    try {
      await client.connect();
    } catch (err) {
      this.close();
      throw err;
    }
    return client;
  }

  close(): void {
    const c = this.client;
    this.client = null;
    if (c) c.end().catch(() => {});
  }
}

export class Monitor {
  private probes = new Map<string, NodeProbe>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private round: Promise<void> | null = null;

  constructor(
    private readonly topology: Topology,
    private settings: MonitorSettings,
    private readonly log: Logger,
    /** Replica lag bounds (routing.max_replica_lag), read at every round so a reload applies. */
    private readonly bounds: () => LagBounds = () => NO_BOUNDS,
    /** The primary keeps its role while it has failed fewer probes in a row than this (failover.failure_threshold). */
    private readonly keepFailingPrimary: () => number = () => 1,
  ) {
    this.owner = new LocalPrimary(topology, log);
  }

  setSettings(s: MonitorSettings): void {
    this.settings = s;
    for (const p of this.probes.values()) p.close();
    this.probes.clear();
  }

  /** Probe every node once now; resolves when the round is done (never rejects). */
  probeAll(): Promise<void> {
    if (!this.round) {
      this.round = this.doRound().finally(() => {
        this.round = null;
      });
    }
    return this.round;
  }

  private async doRound(): Promise<void> {
    const nodes = this.topology.all();
    // A node removed from the config (or moved to another address) keeps no probe connection behind.
    for (const [name, probe] of this.probes) {
      const n = this.topology.node(name);
      if (n && n.host === probe.host && n.port === probe.port) continue;
      probe.close();
      this.probes.delete(name);
    }
    await Promise.all(
      nodes.map(async (n) => {
        let probe = this.probes.get(n.name);
        if (!probe) {
          probe = new NodeProbe(n.host, n.port, () => this.settings);
          this.probes.set(n.name, probe);
        }
        const result = await probe.probe();
        const current = this.topology.node(n.name);
        if (!current) return;
        const next = applyProbe(current, result);
        if (current.up !== next.up || current.role !== next.role) {
          this.log.info({ node: n.name, up: next.up, role: next.role, error: next.lastError ?? undefined }, 'node state changed');
        }
        this.topology.update(n.name, next);
      }),
    );
    const current = this.topology.primary?.name ?? null;
    const decision = choosePrimary(this.topology.all(), current, this.keepFailingPrimary(), this.topology.fenced);
    // The owner decides what becomes of this view (alone: it is applied; several instances: the published state rules).
    this.owner.observe(decision);
    const primaryName = this.topology.primary?.name ?? null;
    const before = this.topology.all();
    const after = applyLag(before, primaryName, Date.now(), this.bounds());
    after.forEach((n, i) => {
      const was = before[i];
      if (was.banned !== n.banned) {
        if (n.banned) this.log.warn({ node: n.name, reason: n.banReason, lag_bytes: n.lagBytes, lag_seconds: n.lagSeconds }, 'replica banned from reads');
        else this.log.info({ node: n.name, lag_bytes: n.lagBytes, lag_seconds: n.lagSeconds }, 'replica serves reads again');
      }
      if (n !== was) this.topology.update(n.name, n);
    });
    for (const fn of this.roundListeners) fn();
  }

  /** Who sets the primary on the topology (see primary-owner.ts); alone by default. */
  owner: PrimaryOwner;

  private readonly roundListeners: (() => void)[] = [];

  /** Run `fn` after every probe round (the failover controller decides there). */
  afterRound(fn: () => void): void {
    this.roundListeners.push(fn);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const tick = async () => {
      await this.probeAll();
      if (this.running) this.timer = setTimeout(tick, this.settings.interval);
    };
    void tick();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const p of this.probes.values()) p.close();
    this.probes.clear();
  }
}
