// Routing on the real cluster: named prepared statements follow the session between replica and primary, and pgbench -M prepared -S spreads over both replicas.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, proxyClient, run, using, type RunResult, pgbenchDatabase } from './helpers.js';

// These tests pin down where each kind of statement runs, so a read straight after a write must be free to go to a
// replica: read-your-writes (which sends such a read to the primary until a replica has the write) is tested on its own.
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);
const table = `routing_prep_${process.pid}`;
const benchDb = `routing_pgbench_${process.pid}`;

let proxy: RunningProxy;

const appOn = (i: number, database: string = info.app.database) =>
  directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database });
const withClient = <T>(fn: (c: pg.Client) => Promise<T>) => using(proxyClient(proxy, info), fn);

const readPort = (c: pg.Client, n: number) => c.query({ name: 'routing_prep_read', text: 'SELECT inet_server_port() AS port, $1::int * 2 AS twice', values: [n] });

describe('named prepared statements on a routed session', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${table}`);
      await c.query(`CREATE TABLE ${table} (id serial PRIMARY KEY, v text NOT NULL)`);
    });
    proxy = await startProxy(info, { extra: ROUTING });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(appOn(0), (c) => c.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {});
  });

  it('executes a named read prepared on a replica on the primary and back, many times', async () => {
    await withClient(async (c) => {
      const first = await readPort(c, 0); // Parse happens here, on the replica
      const replica = first.rows[0].port as number;
      expect(replicaPorts).toContain(replica);
      for (let i = 1; i <= 12; i++) {
        switch (i % 3) {
          case 0: {
            // Inside a transaction: the primary runs it.
            await c.query('BEGIN');
            const r = await readPort(c, i);
            expect(r.rows, `round ${i} in a transaction`).toEqual([{ port: primary.port, twice: 2 * i }]);
            await c.query('COMMIT');
            break;
          }
          case 1: {
            // Forced to the primary by the session hint.
            await c.query('SET pgsplit.route = primary');
            const r = await readPort(c, i);
            expect(r.rows, `round ${i} with pgsplit.route = primary`).toEqual([{ port: primary.port, twice: 2 * i }]);
            await c.query('SET pgsplit.route = auto');
            break;
          }
          default: {
            // Forced-primary work in between, then the statement on the replica again.
            await c.query(`INSERT INTO ${table} (v) VALUES ('between-${i}')`);
            const r = await readPort(c, i);
            expect(r.rows, `round ${i} on the replica`).toEqual([{ port: replica, twice: 2 * i }]);
          }
        }
      }
      // The client still believes in one prepared statement; it is known by name on both servers now.
      const again = await readPort(c, 100);
      expect(again.rows).toEqual([{ port: replica, twice: 200 }]);
    });
  });

  it('executes a named read prepared inside a transaction on the primary later on a replica', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      const r1 = await readPort(c, 1); // Parse happens on the primary
      expect(r1.rows[0].port).toBe(primary.port);
      await c.query('COMMIT');
      const r2 = await readPort(c, 2);
      expect(replicaPorts).toContain(r2.rows[0].port);
      expect(r2.rows[0].twice).toBe(4);
      const r3 = await readPort(c, 3);
      expect(r3.rows[0]).toEqual({ port: r2.rows[0].port, twice: 6 });
    });
  });

  it('runs a named write statement on the primary every time, between named reads', async () => {
    const retriesBefore = proxy.stats.readOnlyRetries;
    const marker = `named-write-${process.pid}`;
    await withClient(async (c) => {
      for (let i = 0; i < 6; i++) {
        const w = await c.query({ name: 'routing_prep_write', text: `INSERT INTO ${table} (v) VALUES ($1) RETURNING inet_server_port() AS port`, values: [`${marker}-${i}`] });
        expect(w.rows, `write ${i}`).toEqual([{ port: primary.port }]);
        const r = await readPort(c, i);
        expect(replicaPorts, `read ${i}`).toContain(r.rows[0].port);
      }
    });
    expect(proxy.stats.readOnlyRetries - retriesBefore, 'writes a replica refused (25006) before the primary ran them').toBe(0);
    const n = await using(appOn(0), async (c) => (await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE v LIKE $1`, [`${marker}-%`])).rows[0].n);
    expect(n).toBe(6);
  });

  it('runs the new text after DEALLOCATE and a re-Parse of the same name, on both servers', async () => {
    await withClient(async (c) => {
      const name = 'routing_prep_reuse';
      const a = await c.query({ name, text: "SELECT 'A' AS v, inet_server_port() AS port" });
      expect(a.rows[0].v).toBe('A');
      expect(replicaPorts).toContain(a.rows[0].port);
      await c.query('BEGIN');
      expect((await c.query({ name, text: "SELECT 'A' AS v, inet_server_port() AS port" })).rows[0]).toEqual({ v: 'A', port: primary.port });
      await c.query('COMMIT');
      // Now prepared on both servers. DEALLOCATE through SQL; then make node-postgres Parse the name again, as a
      // client that tracks DEALLOCATE would (node-postgres keeps its own list of parsed names per connection).
      await c.query(`DEALLOCATE ${name}`);
      delete (c as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements[name];
      const b = await c.query({ name, text: "SELECT 'B' AS v, inet_server_port() AS port" });
      expect(b.rows[0]).toEqual({ v: 'B', port: a.rows[0].port });
      await c.query('BEGIN');
      expect((await c.query({ name, text: "SELECT 'B' AS v, inet_server_port() AS port" })).rows[0]).toEqual({ v: 'B', port: primary.port });
      await c.query('COMMIT');
      expect((await c.query({ name, text: "SELECT 'B' AS v, inet_server_port() AS port" })).rows[0]).toEqual({ v: 'B', port: a.rows[0].port });
    });
  });
});

describe('pgbench -M prepared -S through a routed proxy', () => {
  let bench: RunningProxy;

  function pgbench(args: string[], port: number, timeoutMs = 60_000): Promise<RunResult> {
    return run(cluster.bin('pgbench'), ['-h', '127.0.0.1', '-p', String(port), '-U', info.app.user, ...args, benchDb], {
      env: { PGPASSWORD: info.app.password, PGSSLMODE: 'disable' },
      timeoutMs,
    });
  }

  async function xactCommits(): Promise<number[]> {
    return Promise.all(
      cluster.nodes.map((n) =>
        using(directClient(n, info), async (c) => {
          const r = await c.query('SELECT xact_commit::bigint::text AS n FROM pg_stat_database WHERE datname = $1', [benchDb]);
          return Number(r.rows[0]?.n ?? 0);
        }),
      ),
    );
  }

  beforeAll(async () => {
    // Initialised straight on the primary: this test is about where the -S reads go.
    await pgbenchDatabase(info, benchDb, () => pgbench(['-i', '-s', '1', '-q'], primary.port, 120_000));
    bench = await startProxy(info, { extra: ROUTING });
  });

  afterAll(async () => {
    await bench?.close(1_000);
    await using(directClient(primary, info), (c) => c.query(`DROP DATABASE IF EXISTS ${benchDb} WITH (FORCE)`)).catch(() => {});
  });

  it('succeeds and its reads reach both replicas', async () => {
    const before = await xactCommits();
    const r = await pgbench(['-M', 'prepared', '-S', '-c', '4', '-j', '2', '-T', '3'], bench.listenPort);
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.code, out).toBe(0);
    expect(out).not.toMatch(/\berror\b|aborted/i);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
    const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? -1);
    expect(failed).toBe(0);
    expect(processed).toBeGreaterThan(0);

    // Backends flush their counters when they exit; wait until both replicas show the run.
    const deltas = await eventually(
      'pg_stat_database on the replicas to count the run',
      async () => {
        const after = await xactCommits();
        const d = after.map((v, i) => v - before[i]!);
        return d.slice(1).every((x) => x > 0) && d.slice(1).reduce((a, b) => a + b, 0) >= processed ? d : undefined;
      },
      15_000,
      250,
    ).catch(async () => (await xactCommits()).map((v, i) => v - before[i]!));
    const [onPrimary, ...onReplicas] = deltas;
    const replicaTotal = onReplicas.reduce((a, b) => a + b, 0);
    const share = replicaTotal / (replicaTotal + onPrimary!);
    console.log(
      `[routing-prepared] pgbench -S -M prepared: ${processed} transactions; xact_commit deltas ` +
        cluster.nodes.map((n, i) => `${n.name}=${deltas[i]}`).join(' ') +
        `; share on replicas ${(share * 100).toFixed(2)}%`,
    );
    for (let i = 0; i < onReplicas.length; i++) expect(onReplicas[i], `${cluster.nodes[i + 1]!.name} served some of the reads`).toBeGreaterThan(0);
    // Every select-only transaction ran on a replica (the primary saw at most a handful of session set-up statements).
    expect(replicaTotal).toBeGreaterThanOrEqual(processed);
    expect(onPrimary!).toBeLessThan(processed / 100 + 20);
  });
});
