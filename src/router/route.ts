// The pure routing decision for one unit of client traffic (a Query, or an extended-protocol batch up to Sync).
import type { Classification } from './classification.js';

export type RouteHint = 'primary' | 'replica' | 'auto';

export interface RouteContext {
  /** Pins held by the session (temp tables, session advisory locks, LISTEN, …): everything goes to the primary. */
  pinned: boolean;
  /** SET pgsplit.route / startup option. */
  hint: RouteHint;
}

export interface RouteDecision {
  target: 'primary' | 'replica';
  reason: string;
}

/**
 * Where a unit goes when no transaction is open: the primary unless every statement in it may run on a
 * replica. Session statements (SET …) run on the primary, which every session keeps, and are recorded so
 * that replicas get them before they serve the session.
 */
export function routeUnit(parts: readonly Classification[], ctx: RouteContext): RouteDecision {
  if (ctx.pinned) return { target: 'primary', reason: 'pinned' };
  for (const c of parts) {
    if (c.target !== 'replica') return { target: 'primary', reason: c.target === 'session' ? `session:${c.reason}` : c.reason };
  }
  if (parts.length === 0) return { target: 'primary', reason: 'no-statement' };
  if (ctx.hint === 'primary') return { target: 'primary', reason: 'route-hint' };
  return { target: 'replica', reason: parts.length === 1 ? parts[0].reason : 'batch-read' };
}

export type LoadBalance = 'round-robin' | 'random' | 'least-connections';

export interface ReplicaCandidate {
  name: string;
  /** Share of the picks relative to the others (default 1); 0 is never picked. */
  weight?: number;
}

const weightOf = (c: ReplicaCandidate): number => Math.max(0, c.weight ?? 1);

/** Choose a replica; `turn` is the caller's round-robin counter, `connections` the open server connections per node. */
export function pickReplica<C extends ReplicaCandidate>(
  candidates: readonly C[],
  strategy: LoadBalance,
  turn: number,
  connections: ReadonlyMap<string, number>,
  random = Math.random,
): C | null {
  let total = 0;
  for (const c of candidates) total += weightOf(c);
  if (total === 0) return null;
  if (strategy === 'least-connections') {
    // Fewest connections per unit of weight; ties go to the first listed.
    let best: C | null = null;
    let bestLoad = Infinity;
    for (const c of candidates) {
      const w = weightOf(c);
      if (w === 0) continue;
      const load = (connections.get(c.name) ?? 0) / w;
      if (load < bestLoad) {
        best = c;
        bestLoad = load;
      }
    }
    return best;
  }
  // Weighted: position `at` in [0, total) falls into one candidate's share of the line.
  let at = strategy === 'random' ? Math.floor(random() * total) : turn % total;
  for (const c of candidates) {
    at -= weightOf(c);
    if (at < 0) return c;
  }
  return null;
}
