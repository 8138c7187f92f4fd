// Plain counters the relay bumps on its hot path; the metrics layer reads them at scrape time.

export class ProxyStats {
  clientConnections = 0;
  clientConnectionsTotal = 0;
  clientConnectionsRefused = 0;
  authFailures = 0;
  bytesFromClients = 0;
  bytesFromServers = 0;
  messagesFromClients = 0;
  messagesFromServers = 0;
  cancelRequests = 0;
  readonly backendConnections = new Map<string, number>();
  readonly backendConnectFailures = new Map<string, number>();

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
