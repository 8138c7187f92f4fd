// The synchronous_standby_names a replication mode asks for, over the replicas that can acknowledge commits now.
import type { ReplicationMode } from './decide.js';

export interface SyncPlan {
  /** The value to set on the primary. */
  names: string;
  /** Standbys listed: the ones that hold every acknowledged commit (sync) or at least one of them holds it (semi-sync). */
  members: string[];
  /** Fewer synchronous replicas than the mode wants (some are down or catching up); with none, async in effect. */
  degraded: boolean;
}

const quoted = (names: readonly string[]) => names.map((n) => `"${n}"`).join(', ');

/** The synchronous_standby_names value a mode gives for these standbys (also how a follower shows what the leader published). */
export function standbyNames(mode: ReplicationMode, list: readonly string[]): string {
  if (mode === 'async' || list.length === 0) return '';
  return mode === 'semi-sync' ? `ANY 1 (${quoted(list)})` : `FIRST ${list.length} (${quoted(list)})`;
}

/**
 * `streaming`: promotable replicas streaming from the primary now; `all`: every promotable replica configured.
 * Without strict, a missing replica is left out (writes go on with fewer acknowledgements, or async when none);
 * with strict the list keeps everyone, so writes wait for them rather than be acknowledged with less.
 */
export function planSyncStandbys(mode: ReplicationMode, strict: boolean, streaming: readonly string[], all: readonly string[]): SyncPlan {
  if (mode === 'async' || all.length === 0) return { names: '', members: [], degraded: mode !== 'async' };
  const list = strict ? [...all] : [...streaming];
  if (list.length === 0) return { names: '', members: [], degraded: true };
  const degraded = streaming.length < all.length;
  return { names: standbyNames(mode, list), members: list, degraded };
}
