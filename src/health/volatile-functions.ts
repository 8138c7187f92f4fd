// Reads the names of user functions that pg_proc marks VOLATILE from the primary, so routing sends their calls there.
import pg from 'pg';
import type { MonitorSettings } from './monitor.js';

export async function loadVolatileFunctions(host: string, port: number, s: MonitorSettings, sql: string): Promise<{ nspname: string; proname: string }[]> {
  const client = new pg.Client({
    host,
    port,
    user: s.user,
    password: s.password,
    database: s.database,
    application_name: 'pgsplit-catalog',
    connectionTimeoutMillis: s.connect_timeout,
    query_timeout: s.probe_timeout,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}
