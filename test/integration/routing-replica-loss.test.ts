// Routing on the real cluster when a server connection dies under a session (a replica's, idle or mid-read, or the primary's while idle): the client sees no FATAL and the session goes on.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, proxyClient, sleep, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const byPort = new Map(cluster.nodes.map((n) => [n.port, n]));

let proxy: RunningProxy;

/** Terminates the server sessions with this application_name on the node listening on `port`; returns how many. */
async function terminateOn(port: number, appName: string): Promise<number> {
  return using(directClient(byPort.get(port)!, info), async (d) => {
    const r = await d.query('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t', [appName]);
    return r.rows[0].n as number;
  });
}

/** Watches a client for anything it would report as a broken connection. */
function watch(c: pg.Client): { errors: Error[]; ended: () => boolean } {
  const errors: Error[] = [];
  let ended = false;
  c.on('error', (e) => errors.push(e));
  c.on('end', () => (ended = true));
  return { errors, ended: () => ended };
}

describe('a replica connection lost under a routing session', () => {
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true }' });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('idle: the replica FATAL does not reach the client, and reads and settings go on', async () => {
    const appName = `replica-loss-idle-${process.pid}`;
    await using(proxyClient(proxy, info, { application_name: appName }), async (c) => {
      const w = watch(c);
      await c.query("SET search_path = 'replica_loss', public");
      const first = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
      expect(first).not.toBe(cluster.nodes[0]!.port);
      expect(await terminateOn(first, appName)).toBe(1);
      await sleep(200); // let the FATAL and the close arrive while the session is idle
      const r = await c.query("SELECT inet_server_port() AS port, current_setting('search_path') AS sp");
      expect(r.rows[0].sp).toBe('replica_loss, public');
      // With transaction pooling the idle session held no connection: the pool dropped the dead one and gave a fresh one.
      expect(r.rows[0].port).not.toBe(cluster.nodes[0]!.port);
      expect(await terminateOn(first, `${appName}-none`)).toBe(0);
      expect(w.errors).toEqual([]);
      expect(w.ended()).toBe(false);
    });
  });

  it('mid-read: an autocommit read is run again on the primary and answers normally', async () => {
    const appName = `replica-loss-busy-${process.pid}`;
    await using(proxyClient(proxy, info, { application_name: appName }), async (c) => {
      const w = watch(c);
      const replica = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
      const slow = c.query('SELECT pg_sleep(1.5), inet_server_port() AS port, 42 AS answer');
      await eventually('the slow read is running on the replica', async () =>
        using(directClient(byPort.get(replica)!, info), async (d) =>
          (await d.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep(1.5)%' AND state = 'active'", [appName])).rowCount! > 0 || undefined,
        ),
      );
      expect(await terminateOn(replica, appName)).toBe(1);
      const r = await slow;
      expect(r.rows[0]).toMatchObject({ port: cluster.nodes[0]!.port, answer: 42 });
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      expect(w.errors).toEqual([]);
    });
  });

  it('inside a read-only transaction: a clean 08006 error, the transaction is failed (25P02) until ROLLBACK, then the session continues', async () => {
    const appName = `replica-loss-tx-${process.pid}`;
    await using(proxyClient(proxy, info, { application_name: appName }), async (c) => {
      const w = watch(c);
      await c.query('BEGIN READ ONLY');
      const replica = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
      expect(replica).not.toBe(cluster.nodes[0]!.port);
      expect(await terminateOn(replica, appName)).toBe(1);
      await sleep(200);
      await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '08006' });
      // As on PostgreSQL after any error in a transaction: nothing runs until it is rolled back.
      await expect(c.query('SELECT 2 AS n')).rejects.toMatchObject({ code: '25P02' });
      expect((await c.query('ROLLBACK')).command).toBe('ROLLBACK');
      expect((await c.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
      expect(w.errors).toEqual([]);
      expect(w.ended()).toBe(false);
    });
  });

  it("primary, idle: the terminated backend's FATAL does not reach the client; the session reconnects with its settings", async () => {
    const appName = `primary-loss-idle-${process.pid}`;
    await using(proxyClient(proxy, info, { application_name: appName }), async (c) => {
      const w = watch(c);
      await c.query("SET work_mem = '3MB'");
      const primaryPort = cluster.nodes[0]!.port;
      expect((await c.query('/* pgsplit:primary */ SELECT inet_server_port() AS port')).rows[0].port).toBe(primaryPort);
      expect(await terminateOn(primaryPort, appName)).toBe(1);
      await sleep(200);
      const r = await c.query("/* pgsplit:primary */ SELECT inet_server_port() AS port, current_setting('work_mem') AS wm");
      expect(r.rows[0]).toEqual({ port: primaryPort, wm: '3MB' });
      expect(w.errors).toEqual([]);
      expect(w.ended()).toBe(false);
    });
  });
});
