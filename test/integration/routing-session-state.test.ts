// Routing on the real cluster: SET/RESET/set_config() made through the proxy hold on the replica that serves the session's reads; SET LOCAL does not leak.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, proxyClient, using } from './helpers.js';

// These tests pin down where each kind of statement runs, so a read straight after a write must be free to go to a
// replica: read-your-writes (which sends such a read to the primary until a replica has the write) is tested on its own.
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);
const schema = `routing_ss_${process.pid}`;
const table = `only_in_schema_${process.pid}`;

let proxy: RunningProxy;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });

/** Runs fn with a fresh client through the proxy, always ending it. */
const withClient = <T>(fn: (c: pg.Client) => Promise<T>, o: Partial<pg.ClientConfig> = {}) => using(proxyClient(proxy, info, o), fn);

/** A setting as seen by the server that serves reads (checked to be a replica) and by the primary (hint). */
async function settingOnBoth(c: pg.Client, name: string): Promise<{ replica: string; primary: string }> {
  const r = await c.query({ text: 'SELECT current_setting($1) AS v, inet_server_port() AS port', values: [name] });
  expect(replicaPorts, 'the read ran on a replica').toContain(r.rows[0].port);
  const p = await c.query({ text: '/* pgsplit:primary */ SELECT current_setting($1) AS v, inet_server_port() AS port', values: [name] });
  expect(p.rows[0].port, 'the hinted read ran on the primary').toBe(primary.port);
  return { replica: r.rows[0].v, primary: p.rows[0].v };
}

describe('session state across the servers of a routed session', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.query(`CREATE TABLE ${schema}.${table} (x int)`);
      await c.query(`INSERT INTO ${schema}.${table} VALUES (42)`);
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the schema`, async () => {
          const r = await c.query(`SELECT to_regclass('${schema}.${table}') IS NOT NULL AS ok`);
          if (!r.rows[0].ok) return undefined;
          return (await c.query(`SELECT count(*)::int AS n FROM ${schema}.${table}`)).rows[0].n === 1 ? true : undefined;
        }),
      );
    }
    proxy = await startProxy(info, { extra: ROUTING });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(appOn(0), (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => {});
  });

  it('uses SET search_path for an unqualified read on a replica (SET before the replica is opened)', async () => {
    await withClient(async (c) => {
      await c.query(`SET search_path TO ${schema}, public`);
      const r = await c.query(`SELECT x, inet_server_port() AS port FROM ${table}`);
      expect(r.rows[0].x).toBe(42);
      expect(replicaPorts).toContain(r.rows[0].port);
      const sp = await c.query('SHOW search_path');
      expect(sp.rows[0].search_path).toBe(`${schema}, public`);
    });
  });

  it('uses SET search_path on a replica that already served the session before the SET', async () => {
    await withClient(async (c) => {
      const first = (await c.query('SELECT inet_server_port() AS port')).rows[0].port;
      expect(replicaPorts).toContain(first);
      await c.query(`SET search_path TO ${schema}, public`);
      const r = await c.query({ text: `SELECT x, inet_server_port() AS port FROM ${table} WHERE x = $1`, values: [42] });
      expect(r.rows).toEqual([{ x: 42, port: first }]);
      // Back to the default: the table is not reachable unqualified any more, on the replica either.
      await c.query('RESET search_path');
      const err = await c.query(`SELECT x FROM ${table}`).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('42P01');
    });
  });

  it('shows SET application_name and SET statement_timeout on the replica, and the default after RESET', async () => {
    await withClient(async (c) => {
      await c.query("SELECT 1"); // opens the replica link with the startup state
      await c.query("SET application_name = 'routing-ss-app'");
      await c.query("SET statement_timeout = '1234ms'");
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '1234ms', primary: '1234ms' });
      expect(await settingOnBoth(c, 'application_name')).toEqual({ replica: 'routing-ss-app', primary: 'routing-ss-app' });
      expect((await c.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('1234ms');

      await c.query('RESET statement_timeout');
      expect((await c.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('0');
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '0', primary: '0' });
      // The other setting is untouched by a RESET of one.
      expect(await settingOnBoth(c, 'application_name')).toEqual({ replica: 'routing-ss-app', primary: 'routing-ss-app' });

      await c.query('RESET ALL');
      const after = await settingOnBoth(c, 'application_name');
      expect(after.replica).toBe(after.primary);
      expect(after.replica).not.toBe('routing-ss-app');
    });
  });

  it('applies set_config(…, false) with a literal value on the replica too', async () => {
    await withClient(async (c) => {
      await c.query("SELECT 1");
      await c.query("SELECT set_config('statement_timeout', '2345ms', false)");
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '2345ms', primary: '2345ms' });
    });
  });

  // A value that arrives as a Bind parameter cannot be replayed from the statement text, so pgsplit keeps
  // the session on the primary instead: the setting holds for every later statement, wherever it runs.
  it('keeps a set_config(…, $1, false) session on the primary, where the setting and later SETs hold', async () => {
    await withClient(async (c) => {
      await c.query('SELECT 1');
      await c.query({ text: "SELECT set_config('statement_timeout', $1, false)", values: ['3456ms'] });
      const after = await c.query({ text: 'SELECT current_setting($1) AS v, inet_server_port() AS port', values: ['statement_timeout'] });
      expect(after.rows).toEqual([{ v: '3456ms', port: primary.port }]);
      await c.query("SET statement_timeout = '4567ms'");
      expect((await c.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('4567ms');
      expect((await c.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(primary.port);
    });
  });

  it('does not leak SET LOCAL past COMMIT, on either server', async () => {
    await withClient(async (c) => {
      await c.query("SET statement_timeout = '7s'");
      await c.query('BEGIN');
      await c.query("SET LOCAL statement_timeout = '5s'");
      const inside = await c.query('SELECT current_setting($1) AS v, inet_server_port() AS port', ['statement_timeout']);
      expect(inside.rows).toEqual([{ v: '5s', port: primary.port }]);
      await c.query('COMMIT');
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '7s', primary: '7s' });
      expect((await c.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('7s');
    });
  });

  it('forgets a SET made inside a transaction that rolled back', async () => {
    await withClient(async (c) => {
      await c.query("SET statement_timeout = '8s'");
      await c.query('BEGIN');
      await c.query("SET statement_timeout = '9s'");
      await c.query('ROLLBACK');
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '8s', primary: '8s' });
    });
  });

  it('holds a SET committed inside a read-only transaction on the primary too, not only on the replica that ran it', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN READ ONLY');
      const port = (await c.query('SELECT inet_server_port() AS port')).rows[0].port;
      expect(replicaPorts).toContain(port);
      await c.query("SET work_mem = '1234kB'");
      await c.query('COMMIT');
      expect(await settingOnBoth(c, 'work_mem')).toEqual({ replica: '1234kB', primary: '1234kB' });
    });
  });

  it('forgets a SET undone by ROLLBACK TO SAVEPOINT, and keeps one made before the savepoint or after RELEASE', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query("SET work_mem = '1111kB'");
      await c.query('SAVEPOINT a');
      await c.query("SET work_mem = '2345kB'");
      await c.query("SET maintenance_work_mem = '77MB'");
      await c.query('ROLLBACK TO SAVEPOINT a');
      await c.query('SAVEPOINT b');
      await c.query("SET statement_timeout = '41s'");
      await c.query('RELEASE SAVEPOINT b');
      await c.query('COMMIT');
      expect(await settingOnBoth(c, 'work_mem')).toEqual({ replica: '1111kB', primary: '1111kB' });
      const mwm = (await c.query("/* pgsplit:primary */ SELECT current_setting('maintenance_work_mem') AS v")).rows[0].v;
      expect(await settingOnBoth(c, 'maintenance_work_mem')).toEqual({ replica: mwm, primary: mwm });
      expect(mwm).not.toBe('77MB');
      expect(await settingOnBoth(c, 'statement_timeout')).toEqual({ replica: '41s', primary: '41s' });
    });
  });
});
