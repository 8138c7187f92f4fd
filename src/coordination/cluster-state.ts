// The cluster state the leader publishes and every instance follows: the primary, an epoch that grows with every change of it (the fencing token), fenced nodes, the replication mode.
import type { ReplicationMode } from '../failover/decide.js';

export interface ClusterState {
  /** Grows by one with every change of primary (including to "none" while a promotion is prepared). */
  epoch: number;
  /** The node every instance sends writes to; null: none (a failover is under way, writes wait). */
  primary: string | null;
  fenced: string[];
  mode: ReplicationMode;
  /**
   * The standbys in synchronous_standby_names on that primary, as the leader applied them: the ones a new leader
   * may trust to hold every acknowledged commit (a leader that never ran upkeep itself knows them only from here).
   */
  synchronous: string[];
  /** Fewer synchronous standbys than the mode wants, as the leader last saw it (for display on every instance). */
  degraded: boolean;
  /** The instance that published it. */
  leader: string;
  /** When it was published (the leader's clock, ms since the epoch; for display only). */
  at: number;
}

const MODES: readonly string[] = ['async', 'semi-sync', 'sync'];

/** The state as stored (JSON). */
export function encodeState(s: ClusterState): string {
  return JSON.stringify(s);
}

/** The stored state, or null when it is missing or not one pgsplit wrote (never trusted half-way). */
export function decodeState(text: string | null | undefined): ClusterState | null {
  if (!text) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (!Number.isSafeInteger(o.epoch) || (o.epoch as number) < 0) return null;
  if (o.primary !== null && typeof o.primary !== 'string') return null;
  if (!Array.isArray(o.fenced) || !o.fenced.every((f) => typeof f === 'string')) return null;
  if (typeof o.mode !== 'string' || !MODES.includes(o.mode)) return null;
  if (typeof o.leader !== 'string' || typeof o.at !== 'number') return null;
  const synchronous = Array.isArray(o.synchronous) && o.synchronous.every((f) => typeof f === 'string') ? (o.synchronous as string[]) : [];
  const degraded = typeof o.degraded === 'boolean' ? o.degraded : o.mode !== 'async' && synchronous.length === 0;
  return { epoch: o.epoch as number, primary: o.primary as string | null, fenced: o.fenced as string[], mode: o.mode as ReplicationMode, synchronous, degraded, leader: o.leader, at: o.at };
}

/** The next state after a change by `leader`: the epoch grows when the primary changes (and nobody is synchronous to a new one yet). */
export function nextState(
  prev: ClusterState | null,
  change: { primary: string | null; fenced: readonly string[]; mode: ReplicationMode; synchronous?: readonly string[]; degraded?: boolean },
  leader: string,
  at: number,
): ClusterState {
  const same = prev !== null && prev.primary === change.primary;
  const epoch = prev === null ? 1 : same ? prev.epoch : prev.epoch + 1;
  const synchronous = change.synchronous !== undefined ? [...change.synchronous] : same ? [...prev!.synchronous] : [];
  const degraded = change.degraded ?? (same && prev!.mode === change.mode ? prev!.degraded : change.mode !== 'async' && synchronous.length === 0);
  return { epoch, primary: change.primary, fenced: [...change.fenced].sort(), mode: change.mode, synchronous, degraded, leader, at };
}

/** The two states say the same (a publish that would change nothing is skipped). */
export function sameState(a: ClusterState | null, b: ClusterState | null): boolean {
  if (a === null || b === null) return a === b;
  return a.epoch === b.epoch && a.primary === b.primary && a.mode === b.mode && a.fenced.join(',') === [...b.fenced].sort().join(',') && a.synchronous.join(',') === b.synchronous.join(',') && a.degraded === b.degraded;
}
