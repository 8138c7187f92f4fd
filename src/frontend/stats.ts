// Plain counters the relay bumps on its hot path; the metrics layer reads them at scrape time.

/** What units sent to one node as one target (primary or replica) added up to. */
export interface Traffic {
  units: number;
  /** Client messages relayed to the server. */
  bytesToServer: number;
  /** Server output relayed to the client. */
  bytesToClient: number;
  /** From dispatch to ReadyForQuery, summed over the units that owe one (ms). */
  ms: number;
}

export interface NodeTraffic {
  primary: Traffic;
  replica: Traffic;
}

const noTraffic = (): Traffic => ({ units: 0, bytesToServer: 0, bytesToClient: 0, ms: 0 });

export class ProxyStats {
  /** Client sessions (logged in). */
  clientConnections = 0;
  /** Client connections from accept, logging in or logged in: what listen.max_client_connections bounds. */
  clientSockets = 0;
  clientConnectionsTotal = 0;
  clientConnectionsRefused = 0;
  authFailures = 0;
  bytesFromClients = 0;
  bytesFromServers = 0;
  messagesFromClients = 0;
  messagesFromServers = 0;
  cancelRequests = 0;
  /** Cancel requests that reached a worker other than the session's (workers: N) and were passed on to it. */
  cancelsForwarded = 0;
  /** Autocommit reads a replica refused as read-only (25006) and the primary then ran. */
  readOnlyRetries = 0;
  /** Reads that went to the primary because no replica could take them, in all and by reason. */
  readsOnPrimary = 0;
  readonly readsOnPrimaryBy = new Map<string, number>();
  /** Reads refused because no replica could take them and routing.primary_reads is never. */
  readsRefused = 0;
  /** Round-robin position shared by all sessions when they pick a replica. */
  replicaTurn = 0;
  /** Units routed, by target then reason. */
  readonly routes = { primary: new Map<string, number>(), replica: new Map<string, number>() };
  /** Routing sessions' units by node (SHOW STATS in the admin console). */
  readonly traffic = new Map<string, NodeTraffic>();
  readonly backendConnections = new Map<string, number>();
  readonly backendConnectFailures = new Map<string, number>();

  routed(target: 'primary' | 'replica', reason: string): void {
    const m = this.routes[target];
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }

  trafficTo(node: string): NodeTraffic {
    let t = this.traffic.get(node);
    if (t === undefined) this.traffic.set(node, (t = { primary: noTraffic(), replica: noTraffic() }));
    return t;
  }

  readOnPrimary(reason: string): void {
    this.readsOnPrimary++;
    this.readsOnPrimaryBy.set(reason, (this.readsOnPrimaryBy.get(reason) ?? 0) + 1);
  }

  backendOpened(node: string): void {
    this.backendConnections.set(node, (this.backendConnections.get(node) ?? 0) + 1);
  }

  backendClosed(node: string): void {
    this.backendConnections.set(node, (this.backendConnections.get(node) ?? 1) - 1);
  }

  backendFailed(node: string): void {
    this.backendConnectFailures.set(node, (this.backendConnectFailures.get(node) ?? 0) + 1);
  }
}
