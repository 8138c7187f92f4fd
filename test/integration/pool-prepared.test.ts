// Server pooling (issue 10): prepared statements across pooled connections: pgbench in all three protocol modes, node-postgres and postgres.js named statements, a pgJDBC-style Parse/Describe then Bind, SQL PREPARE, pool.max_prepared_statements.
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import type { RunningProxy } from '../harness/proxy.js';
import { describeMsg, fe, RawClient, type Msg } from './cut-helpers.js';
import { directClient, endQuietly, eventually, run, using, type RunResult, pgbenchDatabase } from './helpers.js';
import { Churn, connectThrough, dataRowValues, feMore, parameterTypes, rowDescriptionNames, sampleBackends, startPoolProxy } from './pool-helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);
const benchDb = `pool_pgbench_${process.pid}`;
const table = `pool_prep_${process.pid}`;
const churnTable = `pool_prep_churn_${process.pid}`;

const appOn = (i: number, database: string = info.app.database) =>
  directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database });

type PgError = Error & { code?: string };
const failure = (p: Promise<unknown>): Promise<PgError | null> => p.then(() => null, (e: PgError) => e);

let proxy: RunningProxy;

beforeAll(async () => {
  await using(appOn(0), async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${table}, ${churnTable}`);
    await c.query(`CREATE TABLE ${table} (who text NOT NULL, n int NOT NULL)`);
    await c.query(`CREATE TABLE ${churnTable} (who text NOT NULL, n int NOT NULL)`);
  });
  for (let i = 1; i < cluster.nodes.length; i++) {
    await using(appOn(i), (c) =>
      eventually(`${cluster.nodes[i]!.name} to replay the tables`, async () => ((await c.query(`SELECT to_regclass('${churnTable}') IS NOT NULL AS ok`)).rows[0].ok ? true : undefined)),
    );
  }
  // auth: trust lets the raw protocol client log in; the proxy still logs in to PostgreSQL with app's password.
  proxy = await startPoolProxy(info, { pool: { size: 3, max_client_wait: '10s' }, auth: 'trust' });
});

afterAll(async () => {
  await proxy?.close(1_000);
  await using(appOn(0), (c) => c.query(`DROP TABLE IF EXISTS ${table}, ${churnTable}`)).catch(() => {});
});

describe('pgbench with 16 clients on pool.size 3', () => {
  function pgbench(args: string[], port: number, timeoutMs = 60_000): Promise<RunResult> {
    return run(cluster.bin('pgbench'), ['-h', '127.0.0.1', '-p', String(port), '-U', info.app.user, ...args, benchDb], {
      env: { PGPASSWORD: info.app.password, PGSSLMODE: 'disable' },
      timeoutMs,
    });
  }
  const history = () => using(appOn(0, benchDb), async (c) => (await c.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n as number);

  let directs: pg.Client[] = [];

  beforeAll(async () => {
    directs = await Promise.all(cluster.nodes.map((n) => directClient(n, info)));
    await pgbenchDatabase(info, benchDb, () => pgbench(['-i', '-s', '1', '-q'], primary.port, 120_000));
  });

  afterAll(async () => {
    await Promise.all(directs.map((d) => endQuietly(d)));
    await using(directClient(primary, info), (c) => c.query(`DROP DATABASE IF EXISTS ${benchDb} WITH (FORCE)`)).catch(() => {});
  });

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    it(`runs TPC-B and select-only mixed in -M ${mode}: every transaction succeeds and every write lands`, async () => {
      const sampler = sampleBackends(directs, info.app.user, benchDb);
      const r = await pgbench(['-M', mode, '-b', 'tpcb-like@1', '-b', 'select-only@4', '-c', '16', '-j', '2', '-T', '2'], proxy.listenPort);
      const seen = await sampler.stop();
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.code, out).toBe(0);
      expect(out).not.toMatch(/\berror\b|aborted/i);
      expect(Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? -1), out).toBe(0);
      expect(Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0), out).toBeGreaterThan(0);
      const tpcb = /SQL script \d+: <builtin: TPC-B[^\n]*\n\s*- weight[^\n]*\n\s*- (\d+) transactions/.exec(out);
      expect(tpcb, out).not.toBeNull();
      expect(Number(tpcb![1])).toBeGreaterThan(0);
      // pgbench empties pgbench_history before it runs (no -n), and each TPC-B transaction inserts one row.
      expect(await history(), 'rows in pgbench_history').toBe(Number(tpcb![1]));
      // The 16 clients really shared the pool: never more than 3 backends per node.
      expect(seen.max[0], 'primary backends seen').toBeGreaterThan(0);
      cluster.nodes.forEach((n, i) => expect(seen.max[i], `backends of pgbench's clients on ${n.name}`).toBeLessThanOrEqual(3));
    });
  }
});

describe('protocol-level named statements from many clients', () => {
  it('gives 30 node-postgres clients, interleaved, their own statement under the same name', async () => {
    const clients = await Promise.all(Array.from({ length: 30 }, () => connectThrough(proxy, info)));
    const problems: string[] = [];
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          const who = `np-${process.pid}-${i}`;
          // Same names everywhere; the text (and even the result type) differs per client.
          const same = (n: number) =>
            c.query({ name: 'pool_same', text: i % 2 === 0 ? `SELECT $1::int + ${i} AS v` : `SELECT ($1::int * ${i})::text || '-odd' AS v`, values: [n] });
          const want = (n: number) => (i % 2 === 0 ? n + i : `${n * i}-odd`);
          const insert = (n: number) => c.query({ name: 'pool_ins', text: `INSERT INTO ${table} (who, n) VALUES ($1, $2)`, values: [who, n] });
          const count = () => c.query({ name: 'pool_count', text: `SELECT count(*)::int AS k FROM ${table} WHERE who = $1`, values: [who] });
          try {
            for (let r = 0; r < 8; r++) {
              const a = await same(r);
              if (a.rows[0]?.v !== want(r)) problems.push(`${who} round ${r}: ${JSON.stringify(a.rows)}`);
              await c.query('BEGIN');
              await insert(r);
              const k = await count();
              const b = await same(r + 100);
              await c.query('COMMIT');
              if (k.rows[0]?.k !== r + 1) problems.push(`${who} round ${r} count in its transaction: ${JSON.stringify(k.rows)}`);
              if (b.rows[0]?.v !== want(r + 100)) problems.push(`${who} round ${r} in a transaction: ${JSON.stringify(b.rows)}`);
              const after = await count();
              if (after.rows[0]?.k !== r + 1) problems.push(`${who} round ${r} count after COMMIT: ${JSON.stringify(after.rows)}`);
            }
          } catch (err) {
            problems.push(`${who}: ${(err as Error).message}`);
          }
        }),
      );
      expect(problems.slice(0, 10)).toEqual([]);
      // The client's statement names are pgsplit's business: they never reach the server.
      const c = clients[0]!;
      await c.query('BEGIN');
      await c.query({ name: 'pool_count', text: `SELECT count(*)::int AS k FROM ${table} WHERE who = $1`, values: ['x'] });
      const names = (await c.query('SELECT name FROM pg_prepared_statements')).rows.map((r) => r.name as string);
      await c.query('COMMIT');
      expect(names).not.toContain('pool_count');
      expect(names).not.toContain('pool_same');
      expect(names).not.toContain('pool_ins');
    } finally {
      await Promise.all(clients.map((c) => endQuietly(c)));
    }
  });

  it('serves many concurrent postgres.js queries (prepared by default), pipelined on each connection', async () => {
    const sqls = Array.from({ length: 3 }, () => postgres(proxy.url, { max: 8, connect_timeout: 30, onnotice: () => {} }));
    try {
      const work: Promise<string | null>[] = [];
      for (let n = 0; n < 300; n++) {
        const sql = sqls[n % sqls.length]!;
        switch (n % 3) {
          case 0:
            work.push(sql`SELECT ${n}::int * 2 AS twice, ${`s${n}`}::text AS s`.then(([r]) => (r?.twice === n * 2 && r?.s === `s${n}` ? null : `query ${n}: ${JSON.stringify(r)}`)));
            break;
          case 1:
            work.push(sql`SELECT ${n}::int + 1 AS plus`.then(([r]) => (r?.plus === n + 1 ? null : `query ${n}: ${JSON.stringify(r)}`)));
            break;
          default:
            work.push(
              sql.begin(async (tx) => {
                const who = `pjs-${process.pid}-${n}`;
                await tx`INSERT INTO ${tx(table)} (who, n) VALUES (${who}, ${n})`;
                const [r] = await tx`SELECT n FROM ${tx(table)} WHERE who = ${who}`;
                return r?.n === n ? null : `transaction ${n}: ${JSON.stringify(r)}`;
              }),
            );
        }
      }
      const results = await Promise.all(work.map((p) => p.catch((e: Error) => `failed: ${e.message}`)));
      expect(results.filter((r) => r !== null).slice(0, 10)).toEqual([]);
      const written = await using(appOn(0), async (c) => (await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE who LIKE $1`, [`pjs-${process.pid}-%`])).rows[0].n);
      expect(written).toBe(100);
    } finally {
      await Promise.all(sqls.map((s) => s.end({ timeout: 2 })));
    }
  });
});

describe('a pgJDBC-style statement: Parse + Describe(S) + Sync, later Bind/Execute', () => {
  it('binds the statement on whichever connection runs it, while others churn and reuse its name', async () => {
    const churn = await Churn.start(proxy, info, 4, churnTable);
    let churnProblems: string[] = [];
    const params = { user: info.app.user, database: info.app.database };
    const r1 = await RawClient.connect(proxy.listenPort, params);
    const r2 = await RawClient.connect(proxy.listenPort, params);
    const kinds = (ms: Msg[]) => ms.map(describeMsg);
    try {
      const prepare = async (c: RawClient, sql: string) => {
        c.send(fe.parse('S_1', sql), feMore.describe('S', 'S_1'), fe.sync());
        const ms = await c.untilReady();
        expect(kinds(ms)).toEqual(['1', 't', 'T', 'Z:I']);
        return ms;
      };
      const d1 = await prepare(r1, 'SELECT $1::int * 3 AS v, inet_server_port() AS port');
      expect(parameterTypes(d1[1]!.body)).toEqual([23]);
      expect(rowDescriptionNames(d1[2]!.body)).toEqual(['v', 'port']);
      const d2 = await prepare(r2, "SELECT $1::text || '-r2' AS w, inet_server_port() AS port");
      expect(parameterTypes(d2[1]!.body)).toEqual([25]);
      expect(rowDescriptionNames(d2[2]!.body)).toEqual(['w', 'port']);

      const execute = async (c: RawClient, arg: string, status = 'I') => {
        c.send(fe.bind('', 'S_1', [arg]), fe.execute(''), fe.sync());
        const ms = await c.untilReady();
        expect(kinds(ms), `Bind/Execute of ${arg}`).toEqual(['2', 'D', 'C:SELECT 1', `Z:${status}`]);
        return dataRowValues(ms[1]!.body);
      };
      const simple = async (c: RawClient, sql: string, status: string) => {
        c.send(fe.query(sql));
        expect(kinds(await c.untilReady())).toEqual([expect.stringMatching(/^C:/), `Z:${status}`]);
      };
      const ports = new Set<number>();
      for (let round = 0; round < 8; round++) {
        const inTx = round % 2 === 1;
        if (inTx) await simple(r1, 'BEGIN', 'T');
        const [v, port] = await execute(r1, String(round), inTx ? 'T' : 'I');
        expect(v, `r1 round ${round}`).toBe(String(round * 3));
        ports.add(Number(port));
        if (inTx) {
          expect(Number(port), 'in a transaction: the primary').toBe(primary.port);
          await simple(r1, 'COMMIT', 'I');
        }
        const [w] = await execute(r2, `r${round}`);
        expect(w, `r2 round ${round}`).toBe(`r${round}-r2`);
        // pgJDBC's metadata calls: a lone Describe of the statement, on whatever connection is free now.
        r1.send(feMore.describe('S', 'S_1'), fe.sync());
        const again = await r1.untilReady();
        expect(kinds(again), `lone Describe, round ${round}`).toEqual(['t', 'T', 'Z:I']);
        expect(rowDescriptionNames(again[1]!.body)).toEqual(['v', 'port']);
      }
      // Run on the primary and on a replica: prepared on more than the connection that saw the Parse.
      expect(ports.has(primary.port), `ports seen: ${[...ports].join(' ')}`).toBe(true);
      expect([...ports].some((p) => replicaPorts.includes(p)), `ports seen: ${[...ports].join(' ')}`).toBe(true);
      // Close works, and the name is then unknown (26000) to this client only.
      r1.send(feMore.close('S', 'S_1'), fe.sync());
      expect(kinds(await r1.untilReady())).toEqual(['3', 'Z:I']);
      r1.send(fe.bind('', 'S_1', ['1']), fe.execute(''), fe.sync());
      expect(kinds(await r1.untilReady())).toEqual(['E:26000', 'Z:I']);
      const [w] = await execute(r2, 'still');
      expect(w).toBe('still-r2');
    } finally {
      r1.close();
      r2.close();
      churnProblems = await churn.stop();
    }
    expect(churnProblems, 'what the background clients saw').toEqual([]);
  });
});

describe('SQL-level PREPARE / EXECUTE / DEALLOCATE', () => {
  it('works across transactions while others churn, per client', async () => {
    const churn = await Churn.start(proxy, info, 4, churnTable);
    let churnProblems: string[] = [];
    const a = await connectThrough(proxy, info);
    const b = await connectThrough(proxy, info);
    try {
      await a.query('PREPARE pool_pq(int) AS SELECT $1 * 7 AS v');
      await b.query("PREPARE pool_pq(int) AS SELECT $1::text || '-b' AS v");
      for (let r = 0; r < 8; r++) {
        expect((await a.query(`EXECUTE pool_pq(${r})`)).rows, `a round ${r}`).toEqual([{ v: r * 7 }]);
        expect((await b.query(`EXECUTE pool_pq(${r})`)).rows, `b round ${r}`).toEqual([{ v: `${r}-b` }]);
        await a.query('BEGIN');
        expect((await a.query(`EXECUTE pool_pq(${r + 1})`)).rows, `a round ${r} in a transaction`).toEqual([{ v: (r + 1) * 7 }]);
        await a.query('COMMIT');
      }
      await a.query('DEALLOCATE pool_pq');
      expect((await failure(a.query('EXECUTE pool_pq(1)')))?.code).toBe('26000');
      expect((await b.query('EXECUTE pool_pq(2)')).rows, 'b keeps its own').toEqual([{ v: '2-b' }]);
      await a.query('PREPARE pool_pq(int) AS SELECT $1 + 1000 AS v');
      await a.query('BEGIN');
      await a.query('COMMIT');
      expect((await a.query('EXECUTE pool_pq(1)')).rows).toEqual([{ v: 1001 }]);
      await a.query('DEALLOCATE ALL');
      await b.query('DEALLOCATE ALL');
      expect((await failure(b.query('EXECUTE pool_pq(1)')))?.code).toBe('26000');
    } finally {
      await endQuietly(a);
      await endQuietly(b);
      churnProblems = await churn.stop();
    }
    expect(churnProblems, 'what the background clients saw').toEqual([]);
  });
});

describe('pool.max_prepared_statements: 2', () => {
  let small: RunningProxy;
  beforeAll(async () => {
    // One connection per node: the client's five statements must share its two slots.
    small = await startPoolProxy(info, { pool: { size: 1, max_prepared_statements: 2 } });
  });
  afterAll(async () => {
    await small?.close(1_000);
  });

  it('answers right while cycling 5 statements (evicted ones are prepared again), keeps at most 2 on the server, under names of its own', async () => {
    const c = await connectThrough(small, info);
    const other = await connectThrough(small, info);
    try {
      const q = (k: number, n: number) => c.query({ name: `pool_lru_${k}`, text: `SELECT $1::int + ${k} AS v`, values: [n] });
      for (let round = 0; round < 6; round++) {
        for (let k = 0; k < 5; k++) {
          expect((await q(k, round)).rows, `statement ${k}, round ${round}`).toEqual([{ v: round + k }]);
          // Another client takes the same connections in between.
          await other.query({ name: 'pool_lru_0', text: "SELECT 'other' AS v" });
          await c.query('BEGIN');
          expect((await q(k, round * 10)).rows, `statement ${k}, round ${round}, in a transaction`).toEqual([{ v: round * 10 + k }]);
          await c.query('COMMIT');
        }
      }
      await c.query('BEGIN');
      expect((await q(4, 1)).rows).toEqual([{ v: 5 }]);
      const onServer = (await c.query('SELECT name, statement FROM pg_prepared_statements')).rows as { name: string; statement: string }[];
      await c.query('COMMIT');
      expect(onServer.length, JSON.stringify(onServer)).toBeGreaterThan(0);
      expect(onServer.length, JSON.stringify(onServer)).toBeLessThanOrEqual(2);
      expect(onServer.some((s) => s.statement.includes('+ 4 AS v')), 'the statement just run is prepared there').toBe(true);
      const clientNames = Array.from({ length: 5 }, (_, k) => `pool_lru_${k}`);
      for (const s of onServer) expect(clientNames, `server-side name ${s.name}`).not.toContain(s.name);
    } finally {
      await endQuietly(c);
      await endQuietly(other);
    }
  });
});
