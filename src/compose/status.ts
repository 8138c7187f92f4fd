// The document GET /status serves: nodes, pools, clients, failover and replication, from the control half and the frontends' totals.
import type { Config } from '../config/schema.js';
import { redactConfig } from '../config/load.js';
import { standbyNames } from '../failover/sync-standbys.js';
import type { Control } from './control.js';
import type { FrontendTotals } from '../workers/frontend-snapshot.js';

export function statusDocument(config: Config, control: Control, totals: FrontendTotals, startedAt: number, extra: Record<string, unknown> = {}) {
  const { topology, failover } = control;
  const stats = totals.stats;
  const bans = topology.operatorBans;
  return {
    version: '0.1.0',
    uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
    primary: topology.primary?.name ?? null,
    client_connections: stats.clientConnections,
    pinned_clients: totals.pinnedClients,
    pools: totals.pools,
    // An operator's PAUSE (admin console): every new statement is held until RESUME or `until`.
    paused: control.pausedUntil === null ? null : { until: new Date(control.pausedUntil).toISOString() },
    ...extra,
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
      // An operator's ban (BAN in the admin console) is named before any the monitor holds: only UNBAN lifts it.
      banned: n.banned || bans.has(n.name),
      ban_reason: bans.has(n.name) ? 'operator' : n.banReason,
      banned_since: bans.has(n.name) ? new Date(bans.get(n.name)!).toISOString() : n.banned && n.banSince ? new Date(n.banSince).toISOString() : null,
      weight: n.weight ?? 1,
      tags: n.tags ?? [],
      delayed: n.delayed ?? false,
      backend_connections: stats.backendConnections.get(n.name) ?? 0,
    })),
    fenced: [...topology.fenced],
    coordination: coordinationStatus(control),
    failover: {
      enabled: config.failover.enabled,
      phase: failover.phase,
      reason: failover.phaseReason || null,
      failovers: failover.failovers,
      events: failover.events,
    },
    replication: replicationStatus(config, control),
    config: redactConfig(config),
  };
}

export type StatusDocument = ReturnType<typeof statusDocument>;

/** Several instances: this one's role, the leader, the published state and how fresh this instance's confirmation of it is. */
function coordinationStatus(control: Control) {
  const m = control.member;
  if (m === null) return null;
  const until = control.topology.writableUntil;
  return {
    instance: m.name,
    role: m.role,
    leader: m.leaderName,
    epoch: m.state?.epoch ?? null,
    published_primary: m.state?.primary ?? null,
    published_by: m.state?.leader ?? null,
    state_age_ms: m.confirmedAt === 0 ? null : Date.now() - m.confirmedAt,
    writes_allowed: Date.now() < until,
    lease_ttl_ms: m.ttlMs,
    leadership_changes: m.leadershipChanges,
  };
}

/** The replication mode in force: this instance's own upkeep, or (on a follower, which runs none) what the leader published. */
function replicationStatus(config: Config, control: Control) {
  const { failover, member } = control;
  const base = { mode: config.replication.mode, strict: config.replication.strict };
  if (member !== null && member.role !== 'leader') {
    const s = member.state;
    if (s === null) return { ...base, synchronous_standby_names: null, synchronous_standbys: [], degraded: null, published_by: null };
    return { ...base, synchronous_standby_names: standbyNames(s.mode, s.synchronous), synchronous_standbys: s.synchronous, degraded: s.degraded, published_by: s.leader };
  }
  return { ...base, synchronous_standby_names: failover.sync.names, synchronous_standbys: failover.sync.members, degraded: failover.sync.degraded };
}
