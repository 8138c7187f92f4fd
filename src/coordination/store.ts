// What coordination needs of its store, as an interface (etcd in production, an in-memory fake in unit tests).
import type { ClusterState } from './cluster-state.js';

export interface LeaderKey {
  name: string;
  lease: string;
}

export interface CoordinationStore {
  /** A new lease of `ttlSeconds`; the caller keeps it alive. */
  grantLease(ttlSeconds: number): Promise<string>;
  /** Renews the lease; false when it is gone (expired or revoked). */
  keepAlive(lease: string): Promise<boolean>;
  revoke(lease: string): Promise<void>;
  /** Takes the leader key on `lease` if nobody holds it; true if this instance holds it now. */
  claimLeadership(name: string, lease: string): Promise<boolean>;
  /** Who holds the leader key (a linearizable read). */
  leader(): Promise<LeaderKey | null>;
  /** The published state (a linearizable read); null if none was published yet. */
  readState(): Promise<ClusterState | null>;
  /** Publishes `state`, only if the leader key still holds (name, lease) and the stored state is still `prev`; false otherwise. */
  publish(state: ClusterState, as: LeaderKey, prev: ClusterState | null): Promise<boolean>;
  /** Calls `fn` with every state published from now on; returns a stop function. */
  watchState(fn: (state: ClusterState | null) => void): Promise<() => Promise<void>>;
  /** This instance's entry among the members (how peers reach it), kept while `lease` lives. */
  register(name: string, info: string, lease: string): Promise<void>;
  /** Every registered member's entry, by name. */
  members(): Promise<Map<string, string>>;
  close(): void;
}
