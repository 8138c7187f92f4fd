// Where a session sends its next unit, decided from the session's state alone: a pure function, tested without sockets.
import type { Classification } from './classification.js';
import { routeUnit, type RouteHint } from './route.js';

export interface PlacementInput {
  /** A retry that must run on the primary (a replica refused it with 25006, or was lost under it). */
  forcePrimary: boolean;
  /** A server connection holds the session's open transaction or unfinished batch. */
  sticky: boolean;
  /** The last unit still running: whether it runs on the primary and opens a transaction; null when none runs. */
  inFlight: { onPrimary: boolean; opensTransaction: boolean } | null;
  /** The rest of an extended batch whose error was already answered is being discarded up to its Sync. */
  discarding: boolean;
  /** The open transaction died with its server connection: the proxy answers as a failed transaction would. */
  cut: boolean;
  /** A transaction is open (ReadyForQuery said T or E). */
  inTransaction: boolean;
  /** What the unit's statements are. */
  parts: readonly Classification[];
  /** A piece of a batch too large to hold (it runs where the rest of the batch can follow). */
  split: boolean;
  /** State only the session's primary connection has (temp tables, LISTEN, …). */
  pinned: boolean;
  hint: RouteHint;
}

export type Placement =
  /** Behind the unit in flight, on its server (pipelining on the primary; the rest of a transaction opened there). */
  | { to: 'behind'; reason: 'pipelined' | 'transaction' }
  /** On the server that holds the transaction or batch. */
  | { to: 'sticky'; reason: 'transaction' }
  /** Not yet: a replica unit runs alone, so it waits for the one in flight. */
  | { to: 'wait' }
  /** Answered by the proxy: the rest of a failed batch, or a statement in a cut transaction. */
  | { to: 'discard' }
  | { to: 'cut' }
  | { to: 'primary'; reason: string }
  /** A replica if one can take it (the session then chooses which, or falls back to the primary). */
  | { to: 'replica'; reason: string };

export function placeUnit(s: PlacementInput): Placement {
  if (s.forcePrimary && s.inFlight === null) return { to: 'primary', reason: 'retry' };
  if (s.sticky) return { to: 'sticky', reason: 'transaction' };
  if (s.inFlight !== null) {
    // Pipelining is kept on the primary (any statement may run there); a replica unit goes alone.
    if (s.inFlight.onPrimary) return { to: 'behind', reason: 'pipelined' };
    if (s.inFlight.opensTransaction) return { to: 'behind', reason: 'transaction' };
    return { to: 'wait' };
  }
  if (s.discarding) return { to: 'discard' };
  if (s.cut) return { to: 'cut' };
  if (s.inTransaction) return { to: 'primary', reason: 'transaction' };
  const d = routeUnit(s.parts, { pinned: s.pinned, hint: s.hint });
  if (d.target === 'primary' || s.split) return { to: 'primary', reason: d.reason };
  return { to: 'replica', reason: d.reason };
}
