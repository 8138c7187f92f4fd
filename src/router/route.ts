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
}

/** Choose a replica; `turn` is the caller's round-robin counter, `connections` the open server connections per node. */
export function pickReplica<C extends ReplicaCandidate>(
  candidates: readonly C[],
  strategy: LoadBalance,
  turn: number,
  connections: ReadonlyMap<string, number>,
  random = Math.random,
): C | null {
  if (candidates.length === 0) return null;
  if (strategy === 'random') return candidates[Math.floor(random() * candidates.length)];
  if (strategy === 'least-connections') {
    const load = (c: C) => connections.get(c.name) ?? 0;
    return candidates.reduce((best, c) => (load(c) < load(best) ? c : best), candidates[0]);
  }
  return candidates[turn % candidates.length];
}
