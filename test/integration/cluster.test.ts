// Checks that the test harness really provides a working streaming-replication cluster with the expected roles.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { attachCluster, type Cluster, type ClusterNode } from '../harness/cluster.js';

const cluster: Cluster = attachCluster(inject('cluster'));
const [primary, ...replicas] = cluster.nodes as [ClusterNode, ...ClusterNode[]];
const table = `harness_check_${process.pid}`;

async function withClient<T>(
  node: ClusterNode,
  conn: { user: string; password?: string; database?: string },
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  const c = new pg.Client({
    host: node.host,
    port: node.port,
    user: conn.user,
    password: conn.password,
    database: conn.database ?? 'postgres',
    connectionTimeoutMillis: 5_000,
  });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

const asSuper = <T>(node: ClusterNode, fn: (c: pg.Client) => Promise<T>, database = 'postgres'): Promise<T> =>
  withClient(node, { user: cluster.superuser, database }, fn);

const asApp = <T>(node: ClusterNode, fn: (c: pg.Client) => Promise<T>): Promise<T> =>
  withClient(node, { user: cluster.app.user, password: cluster.app.password, database: cluster.app.database }, fn);

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

const streamingReplicas = (): Promise<string[]> =>
  asSuper(primary, async (c) =>
    (await c.query<{ application_name: string }>("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")).rows
      .map((r) => r.application_name)
      .sort(),
  );

describe('test cluster harness', () => {
  beforeAll(() => {
    expect(replicas.length).toBeGreaterThanOrEqual(2);
  });

  afterAll(async () => {
    await asApp(primary, (c) => c.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {});
  });

  it('has one primary and streaming hot standbys named after the nodes', async () => {
    expect(primary.name).toBe('pg1');
    expect(await asSuper(primary, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(false);
    for (const r of replicas) {
      expect(await asSuper(r, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(true);
    }
    expect(await streamingReplicas()).toEqual(replicas.map((r) => r.name).sort());
  });

  it('replicates a row written on the primary to every replica within seconds', async () => {
    const marker = `m-${Date.now()}`;
    await asApp(primary, async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial PRIMARY KEY, v text NOT NULL)`);
      await c.query(`INSERT INTO ${table} (v) VALUES ($1)`, [marker]);
    });
    for (const r of replicas) {
      await eventually(`row on ${r.name}`, () =>
        asApp(r, async (c) => {
          const res = await c.query(`SELECT v FROM ${table} WHERE v = $1`, [marker]);
          return res.rowCount === 1 ? true : undefined;
        }),
      );
    }
  });

  it('lets app log in to appdb with a SCRAM-stored password and rejects a wrong one', async () => {
    const who = await asApp(primary, async (c) => (await c.query('SELECT current_user AS u, current_database() AS d')).rows[0]);
    expect(who).toEqual({ u: 'app', d: 'appdb' });
    const stored = await asSuper(primary, async (c) =>
      (await c.query<{ rolname: string; p: string }>(
        "SELECT rolname, left(rolpassword, 13) AS p FROM pg_authid WHERE rolname IN ('app','md5user','pwuser') ORDER BY rolname",
      )).rows,
    );
    expect(stored.find((r) => r.rolname === 'app')?.p).toBe('SCRAM-SHA-256');
    expect(stored.find((r) => r.rolname === 'pwuser')?.p).toBe('SCRAM-SHA-256');
    expect(stored.find((r) => r.rolname === 'md5user')?.p.startsWith('md5')).toBe(true);
    await expect(withClient(primary, { user: 'app', password: 'wrong', database: 'appdb' }, async () => 1)).rejects.toThrow(
      /password authentication failed/,
    );
  });

  it('lets md5user and pwuser log in to appdb (on a replica too)', async () => {
    for (const node of [primary, replicas[0]!]) {
      for (const [user, password] of [['md5user', 'md5secret'], ['pwuser', 'pwsecret']] as const) {
        const u = await withClient(node, { user, password, database: 'appdb' }, async (c) => (await c.query('SELECT current_user AS u')).rows[0].u);
        expect(u).toBe(user);
        await expect(withClient(node, { user, password: 'nope', database: 'appdb' }, async () => 1)).rejects.toThrow(/authentication failed/);
      }
    }
  });

  it('stops and restarts a replica, which then streams again', async () => {
    const victim = replicas[replicas.length - 1]!;
    await cluster.stopNode(victim.name, 'fast');
    await expect(asSuper(victim, async () => 1)).rejects.toThrow();
    await eventually(`${victim.name} gone from pg_stat_replication`, async () =>
      (await streamingReplicas()).includes(victim.name) ? undefined : true,
    );
    await cluster.stopNode(victim.name); // already stopped: a no-op, not an error

    await cluster.startNode(victim.name);
    expect(await asSuper(victim, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(true);
    await eventually(`${victim.name} streaming again`, async () =>
      (await streamingReplicas()).includes(victim.name) ? true : undefined,
    );
  });

  it('runs PostgreSQL client binaries as the server user', async () => {
    const r = await cluster.runAsServerUser(cluster.bin('psql'), [
      '-XAt', '-h', primary.host, '-p', String(primary.port), '-U', cluster.superuser, '-d', 'postgres', '-c', 'SELECT 40 + 2',
    ]);
    expect(r).toMatchObject({ code: 0, stdout: '42\n' });
  });
});
