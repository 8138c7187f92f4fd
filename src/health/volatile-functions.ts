// Reads the names of user functions that pg_proc marks VOLATILE from the primary, so routing sends their calls there.
import { withMonitorClient, type MonitorSettings } from './monitor-client.js';

export async function loadVolatileFunctions(host: string, port: number, s: MonitorSettings, sql: string): Promise<{ nspname: string; proname: string }[]> {
  return withMonitorClient({ host, port }, s, 'pgsplit-catalog', s.probe_timeout, async (c) => (await c.query(sql)).rows);
}
