// Server pooling (issue 10): state that cannot move (temp tables, session advisory locks, LISTEN, WITH HOLD cursors, SET SESSION AUTHORIZATION, SQL PREPARE) pins its client to one server connection until the state is gone; pins are counted in /status and /metrics.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import type { RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, using } from './helpers.js';
import { Churn, connectThrough, expectActive, expectPinned, startPoolProxy } from './pool-helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const churnTable = `pool_pins_churn_${process.pid}`;
const APP = info.app.user;
const DB = info.app.database;
const ROUNDS = 8;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: APP, password: info.app.password, database: DB });

type PgError = Error & { code?: string };
const failure = (p: Promise<unknown>): Promise<PgError | null> => p.then(() => null, (e: PgError) => e);

let proxy: RunningProxy;
const client = () => connectThrough(proxy, info);

/** The backend that runs the client's transactions. */
async function pidInTransaction(c: pg.Client): Promise<number> {
  await c.query('BEGIN');
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  await c.query('COMMIT');
  return pid;
}

/**
 * Runs `round` ROUNDS times while background clients churn through the pool (size 2), checking each time that the
 * pinned client's transactions stay on one backend; returns that backend's pid. Fails on anything the churners saw.
 */
async function whileOthersChurn(pinned: pg.Client, round: (r: number) => Promise<void>): Promise<number> {
  const churn = await Churn.start(proxy, info, 3, churnTable);
  let problems: string[] = [];
  let pid = -1;
  try {
    pid = await pidInTransaction(pinned);
    for (let r = 0; r < ROUNDS; r++) {
      await round(r);
      expect(await pidInTransaction(pinned), `the pinned client's backend, round ${r}`).toBe(pid);
    }
  } finally {
    problems = await churn.stop();
  }
  expect(problems, 'what the background clients saw').toEqual([]);
  return pid;
}

describe('pins with pool.size 2', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${churnTable}`);
      await c.query(`CREATE TABLE ${churnTable} (who text NOT NULL, n int NOT NULL)`);
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the table`, async () => ((await c.query(`SELECT to_regclass('${churnTable}') IS NOT NULL AS ok`)).rows[0].ok ? true : undefined)),
      );
    }
    proxy = await startPoolProxy(info, { pool: { size: 2, max_client_wait: '10s' } });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(appOn(0), (c) => c.query(`DROP TABLE IF EXISTS ${churnTable}`)).catch(() => {});
  });

  it('keeps a temp table usable across transactions, invisible to others, until DISCARD ALL frees the connection', async () => {
    const a = await client();
    const b = await client();
    try {
      await expectPinned(proxy, 0, 'before');
      await a.query('CREATE TEMP TABLE pool_tt (x int)');
      await expectPinned(proxy, 1, 'after CREATE TEMP TABLE');
      await whileOthersChurn(a, async (r) => {
        await a.query('INSERT INTO pool_tt VALUES ($1)', [r]);
        expect((await a.query('SELECT count(*)::int AS n FROM pool_tt')).rows, `count, round ${r}`).toEqual([{ n: 2 * r + 1 }]);
        await a.query('BEGIN');
        await a.query('INSERT INTO pool_tt VALUES ($1)', [-r]);
        expect((await a.query('SELECT count(*)::int AS n FROM pool_tt')).rows).toEqual([{ n: 2 * r + 2 }]);
        await a.query('COMMIT');
        // Another client never lands on the pinned connection.
        expect((await failure(b.query('/* pgsplit:primary */ SELECT count(*) FROM pool_tt')))?.code, `b, round ${r}`).toBe('42P01');
      });
      await expectActive(proxy, APP, DB, 1, 'while a (idle) is pinned');
      await a.query('DISCARD ALL');
      await expectPinned(proxy, 0, 'after DISCARD ALL');
      await expectActive(proxy, APP, DB, 0, 'after DISCARD ALL');
      expect((await failure(a.query('SELECT count(*) FROM pool_tt')))?.code).toBe('42P01');
    } finally {
      await endQuietly(a);
      await endQuietly(b);
    }
  });

  it('holds a session advisory lock across transactions until pg_advisory_unlock_all()', async () => {
    const key = 770_000 + (process.pid % 10_000);
    const a = await client();
    const b = await client();
    const direct = await directClient(primary, info);
    const holders = async () =>
      (await direct.query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted", [key])).rows.map((r) => r.pid as number);
    try {
      await a.query('SELECT pg_advisory_lock($1)', [key]);
      await expectPinned(proxy, 1, 'after pg_advisory_lock');
      const pid = await whileOthersChurn(a, async (r) => {
        // The lock is held by a's backend: another client cannot take it (on a's connection it would be re-entrant).
        expect((await b.query('SELECT pg_try_advisory_lock($1) AS got', [key])).rows, `b tries, round ${r}`).toEqual([{ got: false }]);
        await b.query('SELECT pg_advisory_unlock_all()');
      });
      expect(await holders()).toEqual([pid]);
      await expectPinned(proxy, 1, 'a pinned, b (which holds nothing) not');
      await expectActive(proxy, APP, DB, 1, 'while a (idle) holds the lock');
      await a.query('SELECT pg_advisory_unlock_all()');
      await expectPinned(proxy, 0, 'after pg_advisory_unlock_all()');
      await expectActive(proxy, APP, DB, 0, 'after pg_advisory_unlock_all()');
      expect(await holders()).toEqual([]);
      expect((await b.query('SELECT pg_try_advisory_lock($1) AS got', [key])).rows, 'b once a let go').toEqual([{ got: true }]);
      await b.query('SELECT pg_advisory_unlock_all()');
      await expectPinned(proxy, 0, 'after b let go');
    } finally {
      await endQuietly(a);
      await endQuietly(b);
      await endQuietly(direct);
    }
  });

  it('delivers notifications to a LISTENing client between its transactions, until UNLISTEN *', async () => {
    const channel = `pool_pins_${process.pid}`;
    const a = await client();
    const b = await client();
    const got: string[] = [];
    a.on('notification', (n) => {
      if (n.channel === channel) got.push(n.payload ?? '');
    });
    try {
      await a.query(`LISTEN ${channel}`);
      await expectPinned(proxy, 1, 'after LISTEN');
      await whileOthersChurn(a, async (r) => {
        await b.query(`NOTIFY ${channel}, 'n${r}'`);
        await b.query('SELECT pg_notify($1, $2)', [channel, `p${r}`]);
        // a is idle: the notifications must reach it without it sending anything.
        await eventually(`notifications of round ${r}`, () => (got.includes(`p${r}`) ? true : undefined), 10_000, 20);
      });
      expect(got).toEqual(Array.from({ length: ROUNDS }, (_, r) => [`n${r}`, `p${r}`]).flat());
      await expectActive(proxy, APP, DB, 1, 'while a (idle) listens');
      await a.query('UNLISTEN *');
      await expectPinned(proxy, 0, 'after UNLISTEN *');
      await expectActive(proxy, APP, DB, 0, 'after UNLISTEN *');
    } finally {
      await endQuietly(a);
      await endQuietly(b);
    }
  });

  it('fetches from a WITH HOLD cursor across transactions until CLOSE ALL', async () => {
    const a = await client();
    try {
      await a.query('DECLARE pool_cur CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 1000) g ORDER BY g');
      await expectPinned(proxy, 1, 'after DECLARE … WITH HOLD');
      let next = 1;
      const fetch5 = async (label: string) => {
        const rows = (await a.query('FETCH 5 FROM pool_cur')).rows.map((r) => r.g as number);
        expect(rows, label).toEqual([next, next + 1, next + 2, next + 3, next + 4]);
        next += 5;
      };
      await whileOthersChurn(a, async (r) => {
        await fetch5(`autocommit FETCH, round ${r}`);
        await a.query('BEGIN');
        await fetch5(`FETCH in a transaction, round ${r}`);
        await a.query('COMMIT');
      });
      await expectActive(proxy, APP, DB, 1, 'while a (idle) holds the cursor');
      await a.query('CLOSE ALL');
      await expectPinned(proxy, 0, 'after CLOSE ALL');
      await expectActive(proxy, APP, DB, 0, 'after CLOSE ALL');
      expect((await failure(a.query('FETCH 1 FROM pool_cur')))?.code).toBe('34000');
    } finally {
      await endQuietly(a);
    }
  });

  it('keeps SET SESSION AUTHORIZATION on its connection until RESET SESSION AUTHORIZATION', async () => {
    const a = await client();
    try {
      // A non-superuser may set it to the user it logged in as; the proxy cannot know it changes nothing.
      await a.query(`SET SESSION AUTHORIZATION ${APP}`);
      await expectPinned(proxy, 1, 'after SET SESSION AUTHORIZATION');
      await whileOthersChurn(a, async (r) => {
        expect((await a.query('SELECT session_user AS s, current_user AS c')).rows, `round ${r}`).toEqual([{ s: APP, c: APP }]);
      });
      await expectActive(proxy, APP, DB, 1, 'while a (idle) is pinned');
      await a.query('RESET SESSION AUTHORIZATION');
      await expectPinned(proxy, 0, 'after RESET SESSION AUTHORIZATION');
      await expectActive(proxy, APP, DB, 0, 'after RESET SESSION AUTHORIZATION');
      expect((await a.query('SELECT session_user AS s')).rows).toEqual([{ s: APP }]);
    } finally {
      await endQuietly(a);
    }
  });

  it('keeps an SQL-level PREPARE on its connection until DEALLOCATE ALL', async () => {
    const a = await client();
    try {
      await a.query('PREPARE pool_pin_pq AS SELECT pg_backend_pid() AS pid');
      await expectPinned(proxy, 1, 'after PREPARE');
      const pid = await whileOthersChurn(a, async (r) => {
        expect((await a.query('EXECUTE pool_pin_pq')).rows, `EXECUTE, round ${r}`).toHaveLength(1);
      });
      expect((await a.query('EXECUTE pool_pin_pq')).rows, 'EXECUTE runs on the pinned backend').toEqual([{ pid }]);
      await expectActive(proxy, APP, DB, 1, 'while a (idle) has a prepared statement');
      await a.query('DEALLOCATE ALL');
      await expectPinned(proxy, 0, 'after DEALLOCATE ALL');
      await expectActive(proxy, APP, DB, 0, 'after DEALLOCATE ALL');
      expect((await failure(a.query('EXECUTE pool_pin_pq')))?.code).toBe('26000');
    } finally {
      await endQuietly(a);
    }
  });

  it('counts each pinned client once, and stays pinned until every pinning state is gone', async () => {
    const a = await client();
    const c = await client();
    const channel = `pool_pins_multi_${process.pid}`;
    try {
      await a.query('CREATE TEMP TABLE pool_tt2 (x int)');
      await a.query(`LISTEN ${channel}`);
      await expectPinned(proxy, 1, 'a pinned twice over');
      await c.query(`LISTEN ${channel}`);
      await expectPinned(proxy, 2, 'a and c pinned');
      await expectActive(proxy, APP, DB, 2, 'two idle pinned clients');
      await c.query('UNLISTEN *');
      await expectPinned(proxy, 1, 'c unpinned');
      await a.query('UNLISTEN *');
      // The temp table still holds a to its connection.
      await expectPinned(proxy, 1, 'a still has its temp table');
      await a.query('INSERT INTO pool_tt2 VALUES (1)');
      expect((await a.query('SELECT count(*)::int AS n FROM pool_tt2')).rows).toEqual([{ n: 1 }]);
      await a.query('DISCARD ALL');
      await expectPinned(proxy, 0, 'after DISCARD ALL');
      await expectActive(proxy, APP, DB, 0, 'nobody pinned');
    } finally {
      await endQuietly(a);
      await endQuietly(c);
    }
  });

  it('forgets the pin of a client that disconnects, and its server connection serves others', async () => {
    const a = await client();
    await a.query('CREATE TEMP TABLE pool_tt3 (x int)');
    await expectPinned(proxy, 1, 'a pinned');
    await endQuietly(a);
    await expectPinned(proxy, 0, 'after a disconnected');
    await expectActive(proxy, APP, DB, 0, 'after a disconnected');
    // The connection it held was cleaned (or closed): a new client does not see the temp table.
    const b = await client();
    try {
      for (let i = 0; i < 3; i++) expect((await failure(b.query('/* pgsplit:primary */ SELECT count(*) FROM pool_tt3')))?.code).toBe('42P01');
    } finally {
      await endQuietly(b);
    }
  });
});
