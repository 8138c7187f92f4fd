// Whether this instance may act on nodes: alone it always may; with several instances only the one holding the lease, checked right before every action.
import type { NodeActions } from './node-actions.js';

export interface Leadership {
  /** This instance believes it leads (followers do not even decide; actions still confirm). */
  leading(): boolean;
  /** True only if this instance may act on the cluster's nodes at this moment. */
  confirm(): Promise<boolean>;
}

/** One pgsplit instance: nobody else acts on the nodes. */
export const soleInstance: Leadership = { leading: () => true, confirm: async () => true };

export class NotLeader extends Error {
  constructor(action: string) {
    super(`not acting (${action}): this instance does not hold the leadership`);
  }
}

/** `actions` whose every change to a node first confirms the leadership (a leader paused past its lease must not act on stale leadership). */
export function guardedActions(actions: NodeActions, leadership: Leadership): NodeActions {
  const guard = async (action: string): Promise<void> => {
    if (!(await leadership.confirm())) throw new NotLeader(action);
  };
  return {
    promote: async (node, timeoutMs) => (await guard(`promote ${node.name}`), actions.promote(node, timeoutMs)),
    repoint: async (replica, primary) => (await guard(`re-point ${replica.name}`), actions.repoint(replica, primary)),
    openTransactions: (node) => actions.openTransactions(node),
    stopWrites: async (node, readOnly) => (await guard(`stop writes on ${node.name}`), actions.stopWrites(node, readOnly)),
    allowWrites: async (node) => (await guard(`allow writes on ${node.name}`), actions.allowWrites(node)),
    replayLsn: (node) => actions.replayLsn(node),
    terminateClients: async (node) => (await guard(`end clients on ${node.name}`), actions.terminateClients(node)),
    applySyncStandbys: async (primary, names, commit) => (await guard(`set synchronous_standby_names on ${primary.name}`), actions.applySyncStandbys(primary, names, commit)),
  };
}
