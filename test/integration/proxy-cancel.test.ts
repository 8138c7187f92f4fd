// CancelRequest through pgsplit: the proxy's own BackendKeyData cancels the running query; a wrong key cancels nothing.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { backendsRunning, endQuietly, eventually, proxyClient, rejection, sendCancelRequest, sleep, using, usingAllNodes } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);

let proxy: RunningProxy;

const keyOf = (c: pg.Client): { pid: number; secret: number } => {
  const k = c as unknown as { processID: number; secretKey: number };
  return { pid: k.processID, secret: k.secretKey };
};

/** Waits until a backend on some node (a read may run on a replica) is running a query containing `marker`. */
async function waitRunning(marker: string): Promise<void> {
  await usingAllNodes(info, (all) =>
    eventually(`backend running ${marker}`, async () => ((await backendsRunning(all, marker)).some((b) => b.state === 'active') ? true : undefined)),
  );
}

describe('cancel through the proxy', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it("hands the client the proxy's own BackendKeyData, not the server's", async () => {
    await using(proxyClient(proxy, info), async (c) => {
      const serverPid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const { pid, secret } = keyOf(c);
      expect(typeof pid).toBe('number');
      expect(typeof secret).toBe('number');
      expect(pid).not.toBe(serverPid);
    });
  });

  it('cancels a running pg_sleep with SQLSTATE 57014, and the connection keeps working', async () => {
    await using(proxyClient(proxy, info), async (c) => {
      const marker = `cancel_me_${Date.now()}`;
      const running = rejection(c.query(`SELECT pg_sleep(30) /* ${marker} */`));
      await waitRunning(marker);
      const { pid, secret } = keyOf(c);
      await sendCancelRequest(proxy.listenPort, pid, secret);
      const err = await Promise.race([running, sleep(10_000).then(() => new Error('query not cancelled within 10 s') as Error & { code?: string })]);
      expect(err.message).toMatch(/canceling statement due to user request/);
      expect(err.code).toBe('57014');
      expect((await c.query('SELECT 42 AS after')).rows).toEqual([{ after: 42 }]);
    });
  });

  it('cancels a query inside a transaction, which is then aborted until ROLLBACK', async () => {
    await using(proxyClient(proxy, info), async (c) => {
      const marker = `cancel_tx_${Date.now()}`;
      await c.query('BEGIN');
      const running = rejection(c.query({ text: `SELECT pg_sleep($1) /* ${marker} */`, values: [30] }));
      await waitRunning(marker);
      const { pid, secret } = keyOf(c);
      await sendCancelRequest(proxy.listenPort, pid, secret);
      const err = await Promise.race([running, sleep(10_000).then(() => new Error('query not cancelled within 10 s') as Error & { code?: string })]);
      expect(err.code).toBe('57014');
      expect((await rejection(c.query('SELECT 1'))).code).toBe('25P02');
      await c.query('ROLLBACK');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    });
  });

  it('ignores a cancel with a wrong secret or an unknown pid', async () => {
    await using(proxyClient(proxy, info), async (c) => {
      const marker = `not_cancelled_${Date.now()}`;
      const q = c.query(`SELECT pg_sleep(1.5) AS slept /* ${marker} */`);
      await waitRunning(marker);
      const { pid, secret } = keyOf(c);
      await sendCancelRequest(proxy.listenPort, pid, secret ^ 0x5a5a5a5a);
      await sendCancelRequest(proxy.listenPort, pid + 1_000_003, secret);
      const r = await q;
      expect(r.rows).toEqual([{ slept: '' }]);
    });
  });

  it('cancels only the session whose key was sent', async () => {
    const a = await proxyClient(proxy, info);
    const b = await proxyClient(proxy, info);
    try {
      const ma = `victim_${Date.now()}`;
      const mb = `bystander_${Date.now()}`;
      const qa = rejection(a.query(`SELECT pg_sleep(30) /* ${ma} */`));
      const qb = b.query(`SELECT pg_sleep(1) AS slept /* ${mb} */`);
      await waitRunning(ma);
      await waitRunning(mb);
      const { pid, secret } = keyOf(a);
      await sendCancelRequest(proxy.listenPort, pid, secret);
      expect((await qa).code).toBe('57014');
      expect((await qb).rows).toEqual([{ slept: '' }]);
    } finally {
      await endQuietly(a);
      await endQuietly(b);
    }
  });
});
