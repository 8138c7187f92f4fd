// The pure failover decision: given what the last probe round saw, is the primary lost, and which replica takes over?
import type { NodeState } from '../topology/topology.js';
import { parseLsn } from '../topology/lsn.js';

export type ReplicationMode = 'async' | 'semi-sync' | 'sync';

export interface FailoverSettings {
  failureThreshold: number;
  mode: ReplicationMode;
  strict: boolean;
}

export type FailoverDecision =
  | { kind: 'healthy' }
  /** The primary fails probes but is not yet considered lost (threshold, or replicas still stream from it). */
  | { kind: 'suspect'; reason: string }
  | { kind: 'promote'; node: string; reason: string; receiveLsn: string | null }
  /** The primary is lost and no replica may take over; writes wait (then fail) until one can or it returns. */
  | { kind: 'no-candidate'; reason: string };

/** Nodes that may never be promoted: delayed replicas and those tagged nofailover. */
export function promotable(n: NodeState): boolean {
  return !n.delayed && !(n.tags ?? []).includes('nofailover');
}

/**
 * `elected` is the primary pgsplit routes writes to; `syncSet` the standbys that were synchronous while it
 * was alive (the names in synchronous_standby_names pgsplit applied). Node order breaks the last ties.
 */
export function decideFailover(nodes: readonly NodeState[], elected: string | null, syncSet: readonly string[], s: FailoverSettings): FailoverDecision {
  const p = elected === null ? undefined : nodes.find((n) => n.name === elected);
  if (!p || (p.up && p.role === 'primary')) return { kind: 'healthy' };
  if (p.up && p.role === 'replica') return { kind: 'healthy' }; // demoted on purpose (switchover): not ours to fix
  if (p.failures < s.failureThreshold) return { kind: 'suspect', reason: `primary ${p.name} failed ${p.failures} of ${s.failureThreshold} probes` };
  const replicas = nodes.filter((n) => n !== p && n.up && n.role === 'replica');
  // A replica still streaming means the primary lives and only we cannot reach it: do not promote.
  const streaming = replicas.find((n) => n.receiverStatus === 'streaming');
  if (streaming) return { kind: 'suspect', reason: `primary ${p.name} is unreachable from pgsplit but ${streaming.name} still streams from it` };
  let candidates = replicas.filter(promotable);
  if (s.mode !== 'async') {
    if (syncSet.length === 0) {
      if (s.strict) return { kind: 'no-candidate', reason: `replication.mode is ${s.mode} (strict) but no replica was synchronous` };
    } else {
      const reachable = candidates.filter((n) => syncSet.includes(n.name));
      // ANY 1 (…): an acknowledged commit is on at least one member, not necessarily a reachable one.
      const missing = syncSet.filter((name) => !reachable.some((n) => n.name === name));
      if (s.mode === 'semi-sync' && s.strict && missing.length > 0) {
        return { kind: 'no-candidate', reason: `semi-sync (strict): synchronous replica(s) ${missing.join(', ')} unreachable; promoting another could lose commits` };
      }
      candidates = reachable;
    }
  }
  if (candidates.length === 0) return { kind: 'no-candidate', reason: replicas.length === 0 ? 'no replica is reachable' : 'no reachable replica may be promoted (delayed, nofailover or not synchronous)' };
  const order = new Map(nodes.map((n, i) => [n.name, i]));
  const best = [...candidates].sort((a, b) => {
    const la = parseLsn(a.receiveLsn ?? a.replayLsn) ?? -1;
    const lb = parseLsn(b.receiveLsn ?? b.replayLsn) ?? -1;
    if (la !== lb) return lb - la;
    const pa = a.priority ?? 0;
    const pb = b.priority ?? 0;
    if (pa !== pb) return pb - pa;
    return order.get(a.name)! - order.get(b.name)!;
  })[0];
  return { kind: 'promote', node: best.name, reason: `primary ${p.name} lost (${p.failures} failed probes: ${p.lastError ?? 'no answer'})`, receiveLsn: best.receiveLsn };
}
