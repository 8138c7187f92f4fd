// Routing on the real cluster: explicit transactions stay on one server (BEGIN on the primary, BEGIN READ ONLY on a replica); temp tables and advisory locks pin; DISCARD ALL unpins.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, proxyClient, rejection, using } from './helpers.js';

// These tests pin down where each kind of statement runs, so a read straight after a write must be free to go to a
// replica: read-your-writes (which sends such a read to the primary until a replica has the write) is tested on its own.
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);
const table = `routing_tx_${process.pid}`;

let proxy: RunningProxy;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });
const withClient = <T>(fn: (c: pg.Client) => Promise<T>) => using(proxyClient(proxy, info), fn);
const port = async (c: pg.Client): Promise<number> => (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
const primaryValue = (id: number) => using(appOn(0), async (c) => (await c.query(`SELECT n FROM ${table} WHERE id = $1`, [id])).rows[0]?.n as number | undefined);

describe('transactions and pins on a routed session', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${table}`);
      await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, n int NOT NULL)`);
      await c.query(`INSERT INTO ${table} VALUES (1, 0), (2, 0)`);
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the test table`, async () => {
          const r = await c.query(`SELECT to_regclass('${table}') IS NOT NULL AS ok`);
          if (!r.rows[0].ok) return undefined;
          return (await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n === 2 ? true : undefined;
        }),
      );
    }
    proxy = await startProxy(info, { extra: ROUTING });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(appOn(0), (c) => c.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {});
  });

  it('keeps BEGIN … SELECT … UPDATE … COMMIT on the primary, reads included', async () => {
    await withClient(async (c) => {
      expect(replicaPorts).toContain(await port(c)); // outside: a replica
      await c.query('BEGIN');
      const pid = (await c.query('SELECT pg_backend_pid() AS pid, inet_server_port() AS port')).rows[0];
      expect(pid.port).toBe(primary.port);
      const before = await c.query(`SELECT n, inet_server_port() AS port FROM ${table} WHERE id = 1`);
      expect(before.rows).toEqual([{ n: 0, port: primary.port }]);
      await c.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`);
      // Reads after the write see it (same backend), in both protocols.
      const mid = await c.query({ text: `SELECT n, inet_server_port() AS port, pg_backend_pid() AS pid FROM ${table} WHERE id = $1`, values: [1] });
      expect(mid.rows).toEqual([{ n: 1, port: primary.port, pid: pid.pid }]);
      // Not visible outside the transaction yet.
      expect(await primaryValue(1)).toBe(0);
      const last = await c.query('SELECT inet_server_port() AS port, pg_backend_pid() AS pid');
      expect(last.rows).toEqual([{ port: primary.port, pid: pid.pid }]);
      await c.query('COMMIT');
      expect(await primaryValue(1)).toBe(1);
      expect(replicaPorts).toContain(await port(c)); // after COMMIT: a replica again
    });
  });

  it('rolls back a BEGIN … UPDATE … ROLLBACK on the primary', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query(`UPDATE ${table} SET n = 100 WHERE id = 2`);
      expect((await c.query(`SELECT n FROM ${table} WHERE id = 2`)).rows[0].n).toBe(100);
      await c.query('ROLLBACK');
      expect(await primaryValue(2)).toBe(0);
    });
  });

  it('keeps a transaction whose first statement is a read on the primary, in one multi-statement Query too', async () => {
    await withClient(async (c) => {
      const r = (await c.query(`BEGIN; SELECT inet_server_port() AS port; UPDATE ${table} SET n = n + 1 WHERE id = 2; COMMIT`)) as unknown as pg.QueryResult[];
      expect(r[1]!.rows[0].port).toBe(primary.port);
      expect(await primaryValue(2)).toBe(1);
    });
  });

  it('runs BEGIN READ ONLY on one replica, refuses a write inside it with 25006, and carries on', async () => {
    await withClient(async (c) => {
      const retries = proxy.stats.readOnlyRetries;
      await c.query('BEGIN READ ONLY');
      const p1 = await port(c);
      expect(replicaPorts).toContain(p1);
      const row = await c.query({ text: `SELECT n, inet_server_port() AS port FROM ${table} WHERE id = $1`, values: [1] });
      expect(row.rows[0].port).toBe(p1);
      expect(await port(c)).toBe(p1);
      const err = await rejection(c.query(`UPDATE ${table} SET n = 999 WHERE id = 1`));
      expect(err.code).toBe('25006');
      // The transaction is aborted, as PostgreSQL would have it; nothing was retried elsewhere.
      const aborted = await rejection(c.query('SELECT 1'));
      expect(aborted.code).toBe('25P02');
      await c.query('ROLLBACK');
      expect(proxy.stats.readOnlyRetries).toBe(retries);
      expect(await primaryValue(1)).not.toBe(999);
      expect(replicaPorts).toContain(await port(c));
    });
  });

  it('runs START TRANSACTION READ ONLY … COMMIT on a replica', async () => {
    await withClient(async (c) => {
      await c.query('START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const p = await port(c);
      expect(replicaPorts).toContain(p);
      expect((await c.query('SHOW transaction_isolation')).rows[0].transaction_isolation).toBe('repeatable read');
      expect((await c.query('SELECT current_setting($1) AS v', ['transaction_read_only'])).rows[0].v).toBe('on');
      await c.query('COMMIT');
    });
  });

  it('pins the session to the primary after CREATE TEMP TABLE, so create-then-select works; DISCARD ALL unpins', async () => {
    await withClient(async (c) => {
      expect(replicaPorts).toContain(await port(c));
      await c.query('CREATE TEMP TABLE routing_tmp (x int)');
      await c.query('INSERT INTO routing_tmp VALUES (1), (2)');
      const r = await c.query('SELECT sum(x)::int AS s, inet_server_port() AS port FROM routing_tmp');
      expect(r.rows).toEqual([{ s: 3, port: primary.port }]);
      const e = await c.query({ text: 'SELECT x FROM routing_tmp WHERE x = $1', values: [2] });
      expect(e.rows).toEqual([{ x: 2 }]);
      // Every read, not only those of the temp table.
      expect(await port(c)).toBe(primary.port);
      await c.query('DISCARD ALL');
      expect(replicaPorts).toContain(await port(c));
      const gone = await rejection(c.query('/* pgsplit:primary */ SELECT x FROM routing_tmp'));
      expect(gone.code).toBe('42P01');
    });
  });

  it('pins the session to the primary while it holds a session advisory lock', async () => {
    const key = 7_000_000 + (process.pid % 1_000_000);
    await withClient(async (c) => {
      expect(replicaPorts).toContain(await port(c));
      const got = await c.query('SELECT pg_advisory_lock($1) AS ok, inet_server_port() AS port', [key]);
      expect(got.rows[0].port).toBe(primary.port);
      const holders = await using(directClient(primary, info, { database: info.app.database }), async (d) =>
        (await d.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted", [key])).rows[0].n,
      );
      expect(holders).toBe(1);
      expect(await port(c)).toBe(primary.port);
      expect((await c.query({ text: 'SELECT inet_server_port() AS port, $1::int AS k', values: [1] })).rows[0].port).toBe(primary.port);
      // The lock is released by the backend that holds it.
      const unlocked = await c.query('SELECT pg_advisory_unlock($1) AS ok', [key]);
      expect(unlocked.rows[0].ok).toBe(true);
      await c.query('DISCARD ALL');
      expect(replicaPorts).toContain(await port(c));
    });
  });

  it('unpins after pg_advisory_unlock_all()', async () => {
    await withClient(async (c) => {
      await c.query('SELECT pg_advisory_lock(4242)');
      expect(await port(c)).toBe(primary.port);
      await c.query('SELECT pg_advisory_unlock_all()');
      expect(replicaPorts).toContain(await port(c));
    });
  });

  it('reads on a replica again after DISCARD ALL, and DISCARD ALL resets the settings there too', async () => {
    await withClient(async (c) => {
      await c.query("SET statement_timeout = '6543ms'");
      await c.query('CREATE TEMP TABLE routing_tmp2 (x int)');
      expect(await port(c)).toBe(primary.port);
      await c.query('DISCARD ALL');
      const r = await c.query('SELECT current_setting($1) AS v, inet_server_port() AS port', ['statement_timeout']);
      expect(replicaPorts).toContain(r.rows[0].port);
      expect(r.rows[0].v).toBe('0');
    });
  });
});
