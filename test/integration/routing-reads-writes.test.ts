// Routing on the real cluster: plain reads run on a replica, every kind of write (and locking reads, volatile functions, nextval) on the primary.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { backendsRunning, directClient, endQuietly, eventually, proxyClient, rejection, using } from './helpers.js';

// These tests pin down where each kind of statement runs, so a read straight after a write must be free to go to a
// replica: read-your-writes (which sends such a read to the primary until a replica has the write) is tested on its own.
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicas = cluster.nodes.slice(1);
const replicaPorts = replicas.map((n) => n.port);
const table = `routing_rw_${process.pid}`;
const seq = `routing_rw_seq_${process.pid}`;
const fn = `routing_rw_fn_${process.pid}`;

let proxy: RunningProxy;
let client: pg.Client;

/** As the app user straight to the primary's appdb (where the proxy's sessions are). */
const appOnPrimary = () => directClient(primary, info, { user: info.app.user, password: info.app.password, database: info.app.database });
const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });

async function port(sql = 'SELECT inet_server_port() AS port'): Promise<number> {
  return (await client.query(sql)).rows[0].port as number;
}

/** Runs fn and expects that no replica refused anything as read-only on the way (a misrouted write would be retried unseen). */
async function withoutRetries<T>(fnToRun: () => Promise<T>): Promise<T> {
  const before = proxy.stats.readOnlyRetries;
  const out = await fnToRun();
  expect(proxy.stats.readOnlyRetries - before, 'statements a replica refused with 25006 and the primary then ran').toBe(0);
  return out;
}

function routedCount(target: 'primary' | 'replica'): number {
  let n = 0;
  for (const v of proxy.stats.routes[target].values()) n += v;
  return n;
}

describe('routing of reads and writes', () => {
  beforeAll(async () => {
    // Created before the proxy starts: it loads pg_proc's VOLATILE functions at start (then every minute).
    await using(appOnPrimary(), async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${table}`);
      await c.query(`DROP SEQUENCE IF EXISTS ${seq}`);
      await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
      await c.query(`INSERT INTO ${table} VALUES (1, 'one'), (2, 'two')`);
      await c.query(`CREATE SEQUENCE ${seq}`);
      await c.query(
        `CREATE OR REPLACE FUNCTION ${fn}(p_id int, p_v text) RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO ${table} VALUES (p_id, p_v) RETURNING id $$`,
      );
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the test table and function`, async () => {
          const r = await c.query(`SELECT count(*)::int AS n, to_regproc('${fn}') IS NOT NULL AS f FROM ${table}`);
          return r.rows[0].n === 2 && r.rows[0].f ? true : undefined;
        }),
      );
    }
    proxy = await startProxy(info, { extra: ROUTING });
    client = await proxyClient(proxy, info);
  });

  afterAll(async () => {
    await endQuietly(client);
    await proxy?.close(1_000);
    await using(appOnPrimary(), async (c) => {
      await c.query(`DROP FUNCTION IF EXISTS ${fn}(int, text)`);
      await c.query(`DROP TABLE IF EXISTS ${table}`);
      await c.query(`DROP SEQUENCE IF EXISTS ${seq}`);
    }).catch(() => {});
  });

  it('runs a plain SELECT on a replica', async () => {
    const before = routedCount('replica');
    const p = await port();
    expect(replicaPorts).toContain(p);
    // A session keeps its replica.
    for (let i = 0; i < 5; i++) expect(await port()).toBe(p);
    const r = await client.query(`SELECT v, inet_server_port() AS port FROM ${table} WHERE id = 1`);
    expect(r.rows).toEqual([{ v: 'one', port: p }]);
    expect(routedCount('replica') - before).toBe(7);
  });

  it('runs a parameterised (extended protocol) SELECT on a replica', async () => {
    const r = await client.query({ text: `SELECT v, inet_server_port() AS port FROM ${table} WHERE id = $1`, values: [2] });
    expect(r.rows[0].v).toBe('two');
    expect(replicaPorts).toContain(r.rows[0].port);
  });

  it('runs INSERT … RETURNING on the primary and the row is there', async () => {
    const r = await withoutRetries(() => client.query(`INSERT INTO ${table} VALUES (10, 'ten') RETURNING inet_server_port() AS port`));
    expect(r.rows).toEqual([{ port: primary.port }]);
    const rows = await using(appOnPrimary(), async (c) => (await c.query(`SELECT v FROM ${table} WHERE id = 10`)).rows);
    expect(rows).toEqual([{ v: 'ten' }]);
  });

  it('runs UPDATE and DELETE on the primary', async () => {
    await withoutRetries(async () => {
      await client.query(`INSERT INTO ${table} VALUES (11, 'eleven'), (12, 'twelve')`);
      const u = await client.query(`UPDATE ${table} SET v = 'ELEVEN' WHERE id = 11 RETURNING inet_server_port() AS port`);
      expect(u.rows).toEqual([{ port: primary.port }]);
      const d = await client.query({ text: `DELETE FROM ${table} WHERE id = $1`, values: [12] });
      expect(d.rowCount).toBe(1);
    });
    const rows = await using(appOnPrimary(), async (c) => (await c.query(`SELECT id, v FROM ${table} WHERE id IN (11, 12) ORDER BY id`)).rows);
    expect(rows).toEqual([{ id: 11, v: 'ELEVEN' }]);
  });

  it('runs DDL on the primary', async () => {
    const t2 = `${table}_ddl`;
    await withoutRetries(async () => {
      await client.query(`CREATE TABLE ${t2} (x int)`);
      await client.query(`ALTER TABLE ${t2} ADD COLUMN y text`);
      await client.query(`CREATE INDEX ON ${t2} (y)`);
    });
    const cols = await using(appOnPrimary(), async (c) =>
      (await c.query(`SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 ORDER BY attnum`, [t2])).rows.map((r) => r.attname),
    );
    expect(cols).toEqual(['x', 'y']);
    await withoutRetries(() => client.query(`DROP TABLE ${t2}`));
    const gone = await using(appOnPrimary(), async (c) => (await c.query(`SELECT to_regclass($1) AS t`, [t2])).rows[0].t);
    expect(gone).toBeNull();
  });

  it('runs SELECT … FOR UPDATE (and FOR SHARE) on the primary', async () => {
    const r = await withoutRetries(() => client.query(`SELECT id, inet_server_port() AS port FROM ${table} WHERE id = 1 FOR UPDATE`));
    expect(r.rows).toEqual([{ id: 1, port: primary.port }]);
    const s = await withoutRetries(() => client.query({ text: `SELECT inet_server_port() AS port FROM ${table} WHERE id = $1 FOR SHARE`, values: [2] }));
    expect(s.rows).toEqual([{ port: primary.port }]);
  });

  it('runs SELECT of a VOLATILE user function that inserts on the primary, and its row is there', async () => {
    // The proxy's own decision, before any statement is sent: pg_proc says the function is VOLATILE.
    const decision = proxy.classifier.classify(`SELECT ${fn}(20, 'from-function') AS id`);
    expect({ target: decision.target, reason: decision.reason }, `catalog has ${proxy.classifier.catalog.volatileCount} volatile functions`).toEqual({
      target: 'primary',
      reason: `volatile-function:public.${fn}`,
    });
    const r = await withoutRetries(() => client.query(`SELECT ${fn}(20, 'from-function') AS id`));
    expect(r.rows).toEqual([{ id: 20 }]);
    const rows = await using(appOnPrimary(), async (c) => (await c.query(`SELECT v FROM ${table} WHERE id = 20`)).rows);
    expect(rows).toEqual([{ v: 'from-function' }]);
    // In the extended protocol too.
    const e = await withoutRetries(() => client.query({ text: `SELECT ${fn}($1, $2) AS id`, values: [21, 'extended'] }));
    expect(e.rows).toEqual([{ id: 21 }]);
  });

  it('runs SELECT nextval() on the primary', async () => {
    const a = await withoutRetries(() => client.query(`SELECT nextval('${seq}')::int AS v, inet_server_port() AS port`));
    const b = await withoutRetries(() => client.query(`SELECT nextval('${seq}')::int AS v, inet_server_port() AS port`));
    expect(a.rows[0].port).toBe(primary.port);
    expect(b.rows[0].v).toBe(a.rows[0].v + 1);
    const last = await using(appOnPrimary(), async (c) => (await c.query(`SELECT last_value::int AS v FROM ${seq}`)).rows[0].v);
    expect(last).toBe(b.rows[0].v);
  });

  it('runs a multi-statement Query with a write in it on the primary', async () => {
    const results = (await withoutRetries(() =>
      client.query(`SELECT inet_server_port() AS port; INSERT INTO ${table} VALUES (30, 'multi'); SELECT inet_server_port() AS port`),
    )) as unknown as pg.QueryResult[];
    expect(results.map((r) => r.command)).toEqual(['SELECT', 'INSERT', 'SELECT']);
    expect(results[0]!.rows[0].port).toBe(primary.port);
    expect(results[2]!.rows[0].port).toBe(primary.port);
    const rows = await using(appOnPrimary(), async (c) => (await c.query(`SELECT v FROM ${table} WHERE id = 30`)).rows);
    expect(rows).toEqual([{ v: 'multi' }]);
  });

  it('runs a multi-statement Query of reads only on a replica', async () => {
    const results = (await client.query('SELECT inet_server_port() AS port; SELECT 2 AS two')) as unknown as pg.QueryResult[];
    expect(replicaPorts).toContain(results[0]!.rows[0].port);
    expect(results[1]!.rows).toEqual([{ two: 2 }]);
  });

  it('runs EXPLAIN SELECT on a replica', async () => {
    const marker = `explain_marker_${process.pid}`;
    const r = await client.query(`EXPLAIN SELECT * FROM ${table} WHERE v = '${marker}'`);
    expect(r.rows.length).toBeGreaterThan(0);
    expect(Object.keys(r.rows[0])).toEqual(['QUERY PLAN']);
    // The backend that ran it shows it as its last query: it is on a replica, not on the primary.
    const nodes = await Promise.all(cluster.nodes.map((n) => directClient(n, info, { database: info.app.database })));
    try {
      const onPrimary = await backendsRunning(nodes[0]!, marker);
      const onReplicas = await backendsRunning(nodes.slice(1), marker);
      expect(onPrimary).toEqual([]);
      expect(onReplicas).toHaveLength(1);
    } finally {
      await Promise.all(nodes.map((c) => endQuietly(c)));
    }
  });

  it("returns PostgreSQL's own syntax error (42601) for a statement the parser rejects", async () => {
    const err = await rejection(client.query('SELEC 1'));
    expect(err.code).toBe('42601');
    expect(err.message).toBe('syntax error at or near "SELEC"');
    const err2 = await rejection(client.query({ text: 'SELECT FROM WHERE $1', values: [1] }));
    expect(err2.code).toBe('42601');
    // The session carries on, reads still on a replica.
    expect(replicaPorts).toContain(await port());
  });
});
