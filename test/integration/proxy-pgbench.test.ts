// pgbench through pgsplit: initialisation, then select-only in simple/extended/prepared modes and the default TPC-B-like script.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, proxyClient, run, using, type RunResult } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const db = `pgbench_${process.pid}`;

let proxy: RunningProxy;

function pgbench(args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run(cluster.bin('pgbench'), ['-h', '127.0.0.1', '-p', String(proxy.listenPort), '-U', info.app.user, ...args, db], {
    env: { PGPASSWORD: info.app.password, PGSSLMODE: 'disable' },
    timeoutMs,
  });
}

/** The figures every pgbench run must show: exit 0, transactions processed, none failed. */
function expectCleanRun(r: RunResult): number {
  const out = `${r.stdout}\n${r.stderr}`;
  expect(r.code, out).toBe(0);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  expect(failed, out).not.toBeNull();
  expect(Number(failed![1])).toBe(0);
  const processed = /number of transactions actually processed: (\d+)/.exec(out);
  expect(processed, out).not.toBeNull();
  expect(Number(processed![1])).toBeGreaterThan(0);
  expect(out).not.toMatch(/\berror\b|aborted/i);
  return Number(processed![1]);
}

describe('pgbench through the proxy', () => {
  beforeAll(async () => {
    await using(directClient(primary, info), async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${db} OWNER ${info.app.user}`);
    });
    proxy = await startProxy(info);
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(directClient(primary, info), (c) => c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)).catch(() => {});
  });

  it('initialises with pgbench -i -s 1 (COPY of 100k rows)', async () => {
    const r = await pgbench(['-i', '-s', '1', '-q'], 120_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/done in/);
    const n = await using(proxyClient(proxy, info, { database: db }), async (c) => (await c.query('SELECT count(*)::int AS n FROM pgbench_accounts')).rows[0].n);
    expect(n).toBe(100_000);
  });

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    it(`runs select-only (-S) in -M ${mode} with 4 clients`, async () => {
      expectCleanRun(await pgbench(['-S', '-T', '3', '-c', '4', '-j', '2', '-M', mode]));
    });
  }

  it('runs the default TPC-B-like script with 4 clients', async () => {
    const before = await using(proxyClient(proxy, info, { database: db }), async (c) => (await c.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n as number);
    const processed = expectCleanRun(await pgbench(['-T', '3', '-c', '4', '-j', '2']));
    // Every TPC-B transaction inserts one history row: the writes really happened.
    const after = await using(proxyClient(proxy, info, { database: db }), async (c) => (await c.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n as number);
    expect(after - before).toBe(processed);
  });

  it('runs the TPC-B-like script in -M prepared with more clients than threads', async () => {
    expectCleanRun(await pgbench(['-T', '3', '-c', '8', '-j', '2', '-M', 'prepared']));
  });
});
