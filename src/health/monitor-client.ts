// Connections pgsplit opens to a node for itself (probes, LSN polls, the function catalog, failover steps), all with the monitor's credentials.
import type tls from 'node:tls';
import pg from 'pg';

export interface MonitorSettings {
  user: string;
  password: string;
  database: string;
  interval: number;
  connect_timeout: number;
  probe_timeout: number;
  /** TLS options for the node at host:port (server_tls / nodes[].tls), or undefined for plaintext. */
  tls?: (host: string, port: number) => tls.ConnectionOptions | undefined;
}

/**
 * A client for `node`, not yet connected. `applicationName` shows in pg_stat_activity (pgsplit-*: the
 * switchover leaves these alone); queries time out after probe_timeout unless `queryTimeout` says otherwise.
 * The caller attaches its own 'error' handler (a dead socket surfaces there between queries).
 */
export function monitorClient(node: { host: string; port: number }, s: MonitorSettings, applicationName: string, queryTimeout = s.probe_timeout, keepAlive = false): pg.Client {
  return new pg.Client({
    host: node.host,
    port: node.port,
    user: s.user,
    password: s.password,
    database: s.database,
    application_name: applicationName,
    connectionTimeoutMillis: s.connect_timeout,
    query_timeout: queryTimeout,
    keepAlive,
    ssl: s.tls?.(node.host, node.port),
  });
}

/** Connect, run `fn`, and close, whatever happens. */
export async function withMonitorClient<T>(node: { host: string; port: number }, s: MonitorSettings, applicationName: string, queryTimeout: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = monitorClient(node, s, applicationName, queryTimeout);
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}
