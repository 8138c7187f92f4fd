// A client that vanishes mid-query leaves no server backend behind, and the proxy's connection counts drop back.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, backendsRunning, directClient, endQuietly, eventually, metricValue, proxyClient } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;

let proxy: RunningProxy;
let direct: pg.Client;
/** Reads run on replicas, so a query may be on any node. */
let everywhere: pg.Client[];

/** Server connections the proxy holds, summed over every node. */
const backendMetric = async (p: RunningProxy = proxy): Promise<number | undefined> =>
  metricValue((await adminGet(p, '/metrics')).body, 'pgsplit_backend_connections');

/** Destroys the client's socket without a Terminate message, as a crashed or killed client would. */
function vanish(c: pg.Client): void {
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

describe('a client that vanishes mid-query', () => {
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: 'pool: { server_idle_timeout: 1s }' });
    direct = await directClient(primary, info);
    everywhere = [direct, ...(await Promise.all(cluster.nodes.slice(1).map((n) => directClient(n, info))))];
  });

  afterAll(async () => {
    await Promise.all((everywhere ?? [direct]).map(endQuietly));
    await proxy?.close(1_000);
  });

  it('leaves no backend running its query, and the counts drop back', async () => {
    expect(proxy.stats.clientConnections).toBe(0);
    expect(await backendMetric()).toBe(0);

    const marker = `vanish_${Date.now()}`;
    const c = await proxyClient(proxy, info);
    try {
      const q = c.query(`SELECT pg_sleep(60) /* ${marker} */`).catch((e: Error) => e);
      await eventually('the query to run', async () =>
        (await backendsRunning(everywhere, marker)).some((b) => b.state === 'active') ? true : undefined,
      );
      expect(proxy.stats.clientConnections).toBe(1);
      expect(await backendMetric()).toBeGreaterThanOrEqual(1);

      vanish(c);
      await q;
      await eventually('no backend left with the query', async () => ((await backendsRunning(everywhere, marker)).length === 0 ? true : undefined), 10_000);
      await eventually('stats.clientConnections back to 0', () => (proxy.stats.clientConnections === 0 ? true : undefined), 10_000);
      await eventually('pgsplit_backend_connections back to 0', async () => ((await backendMetric()) === 0 ? true : undefined), 10_000);
      expect(metricValue((await adminGet(proxy, '/metrics')).body, 'pgsplit_client_connections')).toBe(0);
    } finally {
      await endQuietly(c);
    }
  });

  it('leaves no backend behind when it vanishes inside an open transaction holding a lock', async () => {
    const table = `vanish_lock_${process.pid}`;
    const owner = await proxyClient(proxy, info);
    let c: pg.Client | null = null;
    try {
      await owner.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int)`);
      c = await proxyClient(proxy, info);
      await c.query('BEGIN');
      await c.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      vanish(c);
      await eventually('the backend to exit', async () => {
        const r = await direct.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
        return r.rows[0].n === 0 ? true : undefined;
      });
      // The lock went with it: another session can read the table right away.
      await owner.query("SET lock_timeout = '5s'");
      const got = await owner.query(`SELECT count(*)::int AS n FROM ${table}`);
      expect(got.rows[0].n).toBe(0);
    } finally {
      await endQuietly(c);
      await owner.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await endQuietly(owner);
    }
  });

  // The race (server answers arriving after the client is gone) shows up only sometimes, so do it a few times.
  it('cleans up after many clients that vanish at once mid-query, round after round', async () => {
    for (let round = 0; round < 3; round++) {
      const marker = `vanish_many_${round}_${Date.now()}`;
      const clients = await Promise.all(Array.from({ length: 10 }, () => proxyClient(proxy, info)));
      try {
        const qs = clients.map((c, i) => c.query(`SELECT pg_sleep(60), ${i} /* ${marker} */`).catch((e: Error) => e));
        await eventually('all ten queries running', async () => ((await backendsRunning(everywhere, marker)).filter((b) => b.state === 'active').length === 10 ? true : undefined));
        clients.forEach(vanish);
        await Promise.all(qs);
        await eventually('no backend left with the queries', async () => ((await backendsRunning(everywhere, marker)).length === 0 ? true : undefined), 10_000);
        await eventually('stats.clientConnections back to 0', () => (proxy.stats.clientConnections === 0 ? true : undefined), 10_000);
        await eventually(`pgsplit_backend_connections back to 0 (round ${round + 1})`, async () => ((await backendMetric()) === 0 ? true : undefined), 10_000);
      } finally {
        await Promise.all(clients.map(endQuietly));
      }
    }
  });
});

// Only routing sends a statement to a replica, where the proxy prepares it first (the relay does neither).
describe('a client that vanishes while a replica prepares its statement', () => {
  let routed: RunningProxy;

  beforeAll(async () => {
    routed = await startProxy(info, { extra: 'routing: { enabled: true }\npool: { server_idle_timeout: 1s }' });
  });

  afterAll(async () => {
    await routed?.close(1_000);
  });

  // A replica that is still preparing a session's statement (its Parse waits for a lock, as during a migration
  // on the primary) when the client leaves: the proxy cancels it, the preparation fails, and that failure must not
  // send the statement on to the primary for a session that is gone, whose connection would never be given back.
  it('leaves no server connection behind when it vanishes while a replica is still preparing its statement', async () => {
    const table = `vanish_prepare_${process.pid}`;
    const text = `SELECT count(*)::int AS n FROM ${table}`;
    const owner = await proxyClient(routed, info);
    const locker = await directClient(primary, info, { database: info.app.database });
    const flusher = await directClient(primary, info);
    const replicas = await Promise.all(cluster.nodes.slice(1).map((n) => directClient(n, info, { database: info.app.database })));
    let c: pg.Client | null = null;
    try {
      await owner.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int)`);
      c = await proxyClient(routed, info);
      // Prepared on the primary only: a replica needs its Parse before it can run the statement.
      await c.query('SET pgsplit.route = primary');
      expect((await c.query({ name: 'vanish_prepare', text })).rows).toEqual([{ n: 0 }]);
      await c.query('SET pgsplit.route = auto');

      // ACCESS EXCLUSIVE on the primary is replayed on the replicas: a Parse of the statement there waits for it.
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      // A commit elsewhere flushes the WAL that carries the lock to the replicas.
      await flusher.query('SELECT txid_current()');
      await eventually('the lock on every replica', async () => {
        for (const r of replicas) {
          const got = await r.query("SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = $1 AND l.mode = 'AccessExclusiveLock'", [table]);
          if (got.rows[0].n === 0) return undefined;
        }
        return true;
      });

      const q = c.query({ name: 'vanish_prepare', text }).catch((e: Error) => e);
      await eventually('the Parse waiting on a replica', async () => ((await backendsRunning(replicas, table)).some((b) => b.state === 'active') ? true : undefined));
      // An idle primary connection in the pool, which a retry there would take at once (one it had to wait for
      // would be handed back: the pool's waiter checks whether the session ended meanwhile).
      await owner.query('SET pgsplit.route = primary');
      await owner.query('SELECT 1');
      vanish(c);
      await q;
      await eventually('no backend left with the statement on the replicas', async () => ((await backendsRunning(replicas, table)).length === 0 ? true : undefined), 10_000);
      await locker.query('ROLLBACK');
      await eventually('stats.clientConnections back to 1 (the owner)', () => (routed.stats.clientConnections === 1 ? true : undefined), 10_000);
      await endQuietly(owner);
      // pool.server_idle_timeout is 1s here: every server connection not checked out is closed by then.
      await eventually('pgsplit_backend_connections back to 0', async () => ((await backendMetric(routed)) === 0 ? true : undefined), 10_000);
    } finally {
      await endQuietly(c);
      await locker.query('ROLLBACK').catch(() => {});
      await locker.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await Promise.all([locker, flusher, ...replicas].map(endQuietly));
      await endQuietly(owner);
    }
  });
});
