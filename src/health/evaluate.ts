// Pure decision of what a round of probes means for the topology: node health and which node is the primary.
import type { NodeState, Role, StandbyState } from '../topology/topology.js';
import { parseLsn } from '../topology/lsn.js';
import { measureLag, nextBan, NO_LAG, NOT_BANNED, type LagBounds } from './lag.js';

export interface ProbeSample {
  inRecovery: boolean;
  currentLsn: string | null;
  receiveLsn: string | null;
  replayLsn: string | null;
  replayTimestamp: string | null;
  timeline: number | null;
  systemIdentifier: string | null;
  serverVersion: string | null;
  replayPaused: boolean | null;
  caughtUp: boolean | null;
  replayAgeSeconds: number | null;
  /** Replica: pg_stat_wal_receiver status ('streaming' …), null when no WAL receiver runs; and whom it streams from. */
  receiverStatus: string | null;
  senderHost: string | null;
  senderPort: number | null;
  /** Primary: pg_stat_replication (application_name, sync_state, flush_lsn); null elsewhere. */
  standbys: StandbyState[] | null;
}

export type ProbeResult = { ok: true; at: number; sample: ProbeSample } | { ok: false; at: number; error: string };

/** The node state after one probe. */
export function applyProbe(node: NodeState, r: ProbeResult): NodeState {
  if (!r.ok) {
    return { ...node, up: false, failures: node.failures + 1, lastProbeAt: r.at, lastError: r.error };
  }
  const s = r.sample;
  const role: Role = s.inRecovery ? 'replica' : 'primary';
  return {
    ...node,
    up: true,
    failures: 0,
    lastProbeAt: r.at,
    lastError: null,
    role,
    currentLsn: s.currentLsn,
    receiveLsn: s.receiveLsn,
    replayLsn: s.replayLsn,
    replayTimestamp: s.replayTimestamp,
    timeline: s.timeline,
    systemIdentifier: s.systemIdentifier,
    serverVersion: s.serverVersion,
    replayLsnValue: parseLsn(s.replayLsn),
    replayPaused: s.replayPaused,
    caughtUp: s.caughtUp,
    replayAgeSeconds: s.replayAgeSeconds,
    receiverStatus: s.receiverStatus,
    senderHost: s.senderHost,
    senderPort: s.senderPort,
    standbys: s.standbys,
  };
}

export interface PrimaryDecision {
  primary: string | null;
  /** Nodes that also claim to be primary but were not chosen (split brain); never routed to. */
  conflicting: string[];
}

/**
 * Which node is the primary: the reachable node out of recovery. When several claim it, the current one
 * keeps the role (stability beats guessing); otherwise the one on the highest timeline, then config order.
 * A fenced node (an old primary that came back, or one demoted by a switchover) is never chosen again: its
 * WAL has diverged from the primary that replaced it, so taking it back would drop every commit made since.
 * When the primary is lost and only fenced nodes claim the role, there is none until failover promotes a replica.
 */
export function choosePrimary(nodes: readonly NodeState[], current: string | null, keepFailingFor = 1, fenced: ReadonlySet<string> = new Set()): PrimaryDecision {
  const claimants = nodes.filter((n) => n.up && n.role === 'primary');
  // A primary that failed a probe or two keeps its role (a blip must not stop writes); at the threshold it is lost.
  const cur = current === null ? undefined : nodes.find((n) => n.name === current);
  if (cur && !cur.up && cur.role === 'primary' && cur.failures < keepFailingFor) {
    return { primary: cur.name, conflicting: claimants.map((n) => n.name) };
  }
  let chosen = claimants.find((n) => n.name === current);
  if (!chosen) {
    const eligible = claimants.filter((n) => !fenced.has(n.name));
    if (eligible.length === 0) return { primary: null, conflicting: claimants.map((n) => n.name) };
    chosen = eligible.reduce((best, n) => ((n.timeline ?? 0) > (best.timeline ?? 0) ? n : best), eligible[0]);
  }
  return { primary: chosen.name, conflicting: claimants.filter((n) => n !== chosen).map((n) => n.name) };
}

/**
 * Lag and ban state of every node after a probe round: replicas are measured against the primary's LSN
 * from the same round; the primary itself is never banned.
 */
export function applyLag(nodes: readonly NodeState[], primary: string | null, at: number, bounds: LagBounds): NodeState[] {
  const p = primary === null ? undefined : nodes.find((n) => n.name === primary);
  const primaryLsn = p?.up ? parseLsn(p.currentLsn) : null;
  return nodes.map((n) => {
    if (n.name === primary) return n.banned || n.lagBytes !== null ? { ...n, ...NO_LAG, ...NOT_BANNED } : n;
    if (!n.up) return { ...n, ...NO_LAG, ...nextBan(n, at, false, NO_LAG, bounds) };
    if (n.role !== 'replica') return n;
    // A replica whose WAL receiver is not streaming (its upstream is gone, or it cannot follow a new timeline)
    // falls further behind with every commit it does not see: its time lag runs as if it were behind.
    const streaming = n.receiverStatus === 'streaming';
    const lag = measureLag(n, { at, replayLsn: n.replayLsnValue, primaryLsn, caughtUp: n.caughtUp !== false && streaming, replayAgeSeconds: n.replayAgeSeconds });
    return { ...n, ...lag, ...nextBan(n, at, true, lag, bounds) };
  });
}
