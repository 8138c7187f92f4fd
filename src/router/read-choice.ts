// Which node serves a session's read: the pure choice among replicas by tags, weight, lag bound and read-your-writes LSN.
import { pickReplica, type LoadBalance } from './route.js';

/** What a replica looks like to the choice (a subset of the topology's NodeState). */
export interface ReadCandidate {
  name: string;
  weight?: number;
  tags?: readonly string[];
  delayed?: boolean;
  lagSeconds: number | null;
}

export interface ReadNeeds {
  /** The session's tags (its own, its user's or routing.read_tags); empty = any ordinary replica. */
  tags: readonly string[];
  /** The WAL position the session's own last write reached; only replicas that replayed it qualify. */
  lsn: number | null;
  /** pgsplit.max_lag for this read, in ms. */
  maxLagMs: number | null;
}

/** Why a read went to the primary instead. */
export type PrimaryReadReason = 'no-replica' | 'replica-lag' | 'read-your-writes' | 'max-lag';

export type ReadChoice<C> = { node: C } | { node: null; reason: PrimaryReadReason; waitingFor: C[] };

/** The share of reads a replica takes from a session with these tags; 0 = it does not serve them. */
export function readWeight(n: ReadCandidate, tags: readonly string[]): number {
  const weight = n.weight ?? 1;
  if (tags.length > 0) return n.tags?.some((t) => tags.includes(t)) ? Math.max(1, weight) : 0;
  return n.delayed ? 0 : weight;
}

export function meetsNeeds(n: ReadCandidate, needs: ReadNeeds, replayLsn: (name: string) => number | null): boolean {
  if (needs.maxLagMs !== null && (n.lagSeconds === null || n.lagSeconds * 1000 > needs.maxLagMs)) return false;
  if (needs.lsn !== null) {
    const r = replayLsn(n.name);
    if (r === null || r < needs.lsn) return false;
  }
  return true;
}

/**
 * Choose among `replicas` (those the topology lets serve reads). `preferred` (the session's current replica)
 * is kept when it qualifies; otherwise one is picked by `strategy`. With none, the reason for the primary:
 * `bannedCount` tells "all replicas are lagging" from "there are none".
 */
export function chooseRead<C extends ReadCandidate>(
  replicas: readonly C[],
  needs: ReadNeeds,
  o: {
    preferred: string | null;
    bannedCount: number;
    replayLsn: (name: string) => number | null;
    strategy: LoadBalance;
    turn: number;
    connections: ReadonlyMap<string, number>;
  },
): ReadChoice<C> {
  const serving: { c: C; weight: number }[] = [];
  for (const c of replicas) {
    const weight = readWeight(c, needs.tags);
    if (weight > 0) serving.push({ c, weight });
  }
  if (serving.length === 0) return { node: null, reason: o.bannedCount > 0 ? 'replica-lag' : 'no-replica', waitingFor: [] };
  const qualified = serving.filter((s) => meetsNeeds(s.c, needs, o.replayLsn));
  if (qualified.length === 0) {
    const lagOk = serving.filter((s) => meetsNeeds(s.c, { ...needs, lsn: null }, o.replayLsn));
    if (needs.lsn !== null && lagOk.length > 0) return { node: null, reason: 'read-your-writes', waitingFor: lagOk.map((s) => s.c) };
    return { node: null, reason: 'max-lag', waitingFor: [] };
  }
  const kept = o.preferred === null ? undefined : qualified.find((s) => s.c.name === o.preferred);
  if (kept) return { node: kept.c };
  const pick = pickReplica(qualified.map((s) => ({ name: s.c.name, weight: s.weight, c: s.c })), o.strategy, o.turn, o.connections);
  return pick ? { node: pick.c } : { node: null, reason: 'no-replica', waitingFor: [] };
}
