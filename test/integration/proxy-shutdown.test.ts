// Draining shutdown (close with a deadline): idle clients get 57P01, open transactions may still COMMIT, leftovers are cut at the deadline.
import { afterEach, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const table = `proxy_shutdown_${process.pid}`;

// Each test shuts its proxy down, so each starts its own; afterEach makes sure none is left running.
let proxy: RunningProxy | null = null;
let clients: pg.Client[] = [];

/** Errors and end of a client, as the application would see them. */
function watch(c: pg.Client): { errors: (Error & { code?: string })[]; ended: Promise<void> } {
  const errors: (Error & { code?: string })[] = [];
  c.on('error', (e) => errors.push(e));
  const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
  return { errors, ended };
}

const rowsInTable = async (): Promise<number[]> =>
  using(directClient(primary, info, { database: info.app.database }), async (d) => (await d.query(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id as number));

async function freshTable(): Promise<void> {
  await using(directClient(primary, info, { database: info.app.database }), async (d) => {
    await d.query(`DROP TABLE IF EXISTS ${table}`);
    await d.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    await d.query(`GRANT ALL ON ${table} TO ${info.app.user}`);
  });
}

describe('draining shutdown', () => {
  afterEach(async () => {
    await Promise.all(clients.map(endQuietly));
    clients = [];
    await proxy?.close(0).catch(() => {});
    proxy = null;
    await using(directClient(primary, info, { database: info.app.database }), (d) => d.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {});
  });

  it('ends an idle client with 57P01 and refuses new connections', async () => {
    proxy = await startProxy(info);
    const c = await proxyClient(proxy, info);
    clients.push(c);
    const seen = watch(c);
    await c.query('SELECT 1');
    const closing = proxy.close(2_000);
    await Promise.race([seen.ended, new Promise((r) => setTimeout(r, 10_000))]);
    await closing;
    expect(seen.errors.map((e) => e.code)).toContain('57P01');
    expect(seen.errors.find((e) => e.code === '57P01')!.message).toMatch(/shutting down/);
    await expect(c.query('SELECT 1')).rejects.toThrow();
    const late = await rejection(proxyClient(proxy, info, { connectionTimeoutMillis: 5_000 }));
    expect(late.message).toMatch(/ECONNREFUSED|57P01|shutting down|terminated/i);
  });

  it('lets an open transaction COMMIT before the close completes, then ends the client', async () => {
    await freshTable();
    proxy = await startProxy(info);
    const c = await proxyClient(proxy, info);
    clients.push(c);
    const seen = watch(c);
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${table} VALUES (1)`);
    let closed = false;
    const closing = proxy.close(5_000).then(() => (closed = true));
    // The transaction is still usable while the proxy drains.
    await c.query(`INSERT INTO ${table} VALUES (2)`);
    expect(closed).toBe(false);
    await c.query('COMMIT');
    await closing;
    expect(await rowsInTable()).toEqual([1, 2]);
    await Promise.race([seen.ended, new Promise((r) => setTimeout(r, 5_000))]);
    expect(seen.errors.map((e) => e.code)).toContain('57P01');
  });

  it('cuts a transaction still open at the deadline, which is rolled back', async () => {
    await freshTable();
    proxy = await startProxy(info);
    const c = await proxyClient(proxy, info);
    clients.push(c);
    const seen = watch(c);
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${table} VALUES (3)`);
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    await proxy.close(500);
    await Promise.race([seen.ended, new Promise((r) => setTimeout(r, 5_000))]);
    await expect(c.query('COMMIT')).rejects.toThrow();
    await using(directClient(primary, info), (d) =>
      eventually('the server backend to go away', async () => ((await d.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0 ? true : undefined)),
    );
    expect(await rowsInTable()).toEqual([]);
  });

  it('lets a running query finish before ending the session', async () => {
    proxy = await startProxy(info);
    const c = await proxyClient(proxy, info);
    clients.push(c);
    const seen = watch(c);
    const q = c.query('SELECT pg_sleep(0.5) AS slept, 42 AS answer');
    await new Promise((r) => setTimeout(r, 100));
    const closing = proxy.close(5_000);
    expect((await q).rows).toEqual([{ slept: '', answer: 42 }]);
    await closing;
    await Promise.race([seen.ended, new Promise((r) => setTimeout(r, 5_000))]);
    expect(seen.errors.map((e) => e.code)).toContain('57P01');
  });
});
