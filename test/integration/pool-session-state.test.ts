// Server pooling (issue 10): session settings (SET, RESET, DISCARD ALL, startup parameters, SET LOCAL, SHOW, rolled-back SETs) hold for their client across pooled connections and never reach another client.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import type { RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, using } from './helpers.js';
import { Churn, connectThrough, startPoolProxy } from './pool-helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const schema = `pool_ss_${process.pid}`;
const churnTable = `pool_ss_churn_${process.pid}`;
const SIZE = 2;
const ROUNDS = 12;

let proxy: RunningProxy;
let churn: Churn | null = null;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });

interface Settings {
  search_path: string;
  statement_timeout: string;
  application_name: string;
  timezone: string;
}
const SETTINGS_SQL =
  "SELECT current_setting('search_path') AS search_path, current_setting('statement_timeout') AS statement_timeout, current_setting('application_name') AS application_name, current_setting('TimeZone') AS timezone";

/** The primary backends that ran the transactions of views(), whichever client ran them. */
const primaryPids = new Set<number>();

/** The session's settings as three kinds of statement see them: an autocommit read (a replica), a read hinted to the primary, and a transaction. */
async function views(c: pg.Client): Promise<Record<'read' | 'primary' | 'transaction', Settings>> {
  const read = (await c.query<Settings>(SETTINGS_SQL)).rows[0]!;
  const primary = (await c.query<Settings>(`/* pgsplit:primary */ ${SETTINGS_SQL}`)).rows[0]!;
  await c.query('BEGIN');
  const transaction = (await c.query<Settings & { pid: number }>(`${SETTINGS_SQL}, pg_backend_pid() AS pid`)).rows[0]!;
  await c.query('COMMIT');
  primaryPids.add(transaction.pid);
  const { pid: _pid, ...settings } = transaction;
  return { read, primary, transaction: settings };
}

/** Asserts that every kind of statement sees `expected` (a subset of the settings). */
async function expectSettings(c: pg.Client, expected: Partial<Settings>, label: string): Promise<void> {
  const v = await views(c);
  expect(v, label).toEqual({ read: expect.objectContaining(expected), primary: expect.objectContaining(expected), transaction: expect.objectContaining(expected) });
}

/** Runs each client's round function ROUNDS times, all clients at once (they share a pool of SIZE). */
async function interleave(parts: [pg.Client, (c: pg.Client, round: number) => Promise<void>][], rounds = ROUNDS): Promise<void> {
  await Promise.all(
    parts.map(async ([c, fn]) => {
      for (let r = 0; r < rounds; r++) await fn(c, r);
    }),
  );
}

const client = (o: Partial<pg.ClientConfig> = {}) => connectThrough(proxy, info, o);

/** A client that never SETs anything, and the settings it sees at first (the server defaults). */
let plain: pg.Client;
let defaults: Settings;

describe('session settings with pool.size 2 and clients taking turns', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.query(`CREATE TABLE ${schema}.only_here (x int)`);
      await c.query(`INSERT INTO ${schema}.only_here VALUES (42)`);
      await c.query(`DROP TABLE IF EXISTS ${churnTable}`);
      await c.query(`CREATE TABLE ${churnTable} (who text NOT NULL, n int NOT NULL)`);
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the schema`, async () => {
          const r = await c.query(`SELECT to_regclass('${schema}.only_here') IS NOT NULL AND to_regclass('${churnTable}') IS NOT NULL AS ok`);
          return r.rows[0].ok ? true : undefined;
        }),
      );
    }
    proxy = await startPoolProxy(info, { pool: { size: SIZE, max_client_wait: '10s' } });
    plain = await client();
    const v = await views(plain);
    defaults = v.read;
    expect(v.primary).toEqual(defaults);
    expect(v.transaction).toEqual(defaults);
    expect(defaults.search_path).toBe('"$user", public');
    expect(defaults.statement_timeout).toBe('0');
    // Background clients with settings of their own keep the pool busy for the whole file.
    churn = await Churn.start(proxy, info, 3, churnTable);
  });

  afterAll(async () => {
    const problems = (await churn?.stop()) ?? [];
    await endQuietly(plain);
    await proxy?.close(1_000);
    await using(appOn(0), async (c) => {
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.query(`DROP TABLE IF EXISTS ${churnTable}`);
    }).catch(() => {});
    expect(problems, 'what the background clients saw').toEqual([]);
  });

  it('keeps each client’s SETs on every pooled connection it uses, and shows them to no other client', async () => {
    const a = await client();
    const c = await client();
    try {
      await a.query(`SET search_path TO ${schema}, public`);
      await a.query("SET statement_timeout = '4321ms'");
      await a.query("SET application_name = 'pool-ss-a'");
      await c.query("SET SESSION statement_timeout = '1234ms'");
      await c.query("SET application_name TO 'pool-ss-c'");
      const aWants = { search_path: `${schema}, public`, statement_timeout: '4321ms', application_name: 'pool-ss-a' };
      const cWants = { search_path: defaults.search_path, statement_timeout: '1234ms', application_name: 'pool-ss-c' };
      await interleave([
        [
          a,
          async (x, r) => {
            await expectSettings(x, aWants, `a, round ${r}`);
            // search_path really applies: the unqualified table resolves.
            expect((await x.query('SELECT x FROM only_here')).rows, `a reads only_here, round ${r}`).toEqual([{ x: 42 }]);
          },
        ],
        [
          plain,
          async (x, r) => {
            await expectSettings(x, defaults, `the client without SETs, round ${r}`);
            const err = await x.query('SELECT x FROM only_here').then(() => null, (e: Error & { code?: string }) => e);
            expect(err?.code, `only_here is not on the default search_path, round ${r}`).toBe('42P01');
          },
        ],
        [c, (x, r) => expectSettings(x, cWants, `c, round ${r}`)],
      ]);
    } finally {
      await endQuietly(a);
      await endQuietly(c);
    }
  });

  it('applies startup parameters (application_name in the URL, search_path and TimeZone in options) on every connection, and resets to them', async () => {
    const d = await client({
      connectionString: `postgres://${info.app.user}:${info.app.password}@127.0.0.1:${proxy.listenPort}/${info.app.database}?application_name=pool-ss-startup`,
      options: `-c search_path=${schema},public -c TimeZone=Pacific/Chatham`,
    });
    try {
      const startup = { application_name: 'pool-ss-startup', search_path: `${schema},public`, timezone: 'Pacific/Chatham' };
      await interleave([
        [
          d,
          async (x, r) => {
            await expectSettings(x, startup, `startup parameters, round ${r}`);
            expect((await x.query('SHOW TimeZone')).rows, `SHOW TimeZone, round ${r}`).toEqual([{ TimeZone: 'Pacific/Chatham' }]);
            expect((await x.query('SELECT x FROM only_here')).rows).toEqual([{ x: 42 }]);
          },
        ],
        [plain, (x, r) => expectSettings(x, defaults, `the client without startup parameters, round ${r}`)],
      ]);
      // RESET and DISCARD ALL go back to the startup values, as on PostgreSQL.
      await d.query("SET application_name = 'pool-ss-changed'");
      await d.query("SET TimeZone = 'UTC'");
      await expectSettings(d, { application_name: 'pool-ss-changed', timezone: 'UTC' }, 'after SET');
      await d.query('RESET application_name');
      await expectSettings(d, { application_name: 'pool-ss-startup', timezone: 'UTC' }, 'after RESET application_name');
      await d.query('RESET ALL');
      await expectSettings(d, startup, 'after RESET ALL');
      await d.query("SET application_name = 'pool-ss-changed'");
      await d.query('DISCARD ALL');
      await interleave([[d, (x, r) => expectSettings(x, startup, `after DISCARD ALL, round ${r}`)]], 4);
    } finally {
      await endQuietly(d);
    }
  });

  it('ends SET LOCAL with its transaction', async () => {
    const a = await client();
    try {
      await a.query("SET statement_timeout = '7s'");
      await a.query('BEGIN');
      await a.query("SET LOCAL statement_timeout = '5s'");
      await a.query(`SET LOCAL search_path TO ${schema}`);
      expect((await a.query('SHOW statement_timeout')).rows).toEqual([{ statement_timeout: '5s' }]);
      expect((await a.query('SELECT x FROM only_here')).rows).toEqual([{ x: 42 }]);
      await a.query('COMMIT');
      // SELECT set_config(…, true) is SET LOCAL too.
      await a.query('BEGIN');
      await a.query("SELECT set_config('application_name', 'pool-ss-local', true)");
      expect((await a.query('SHOW application_name')).rows).toEqual([{ application_name: 'pool-ss-local' }]);
      await a.query('COMMIT');
      const wants = { statement_timeout: '7s', search_path: defaults.search_path, application_name: defaults.application_name };
      await interleave([
        [a, (x, r) => expectSettings(x, wants, `after the SET LOCAL transactions, round ${r}`)],
        [plain, (x, r) => expectSettings(x, defaults, `the other client, round ${r}`)],
      ]);
    } finally {
      await endQuietly(a);
    }
  });

  it('applies RESET of one setting, RESET ALL and DISCARD ALL on every connection', async () => {
    const a = await client();
    try {
      const set = async () => {
        await a.query(`SET search_path TO ${schema}, public`);
        await a.query("SET statement_timeout = '3333ms'");
        await a.query("SET application_name = 'pool-ss-reset'");
      };
      await set();
      await interleave([[a, (x, r) => expectSettings(x, { statement_timeout: '3333ms', application_name: 'pool-ss-reset' }, `after SET, round ${r}`)]], 3);
      await a.query('RESET statement_timeout');
      await interleave([
        [a, (x, r) => expectSettings(x, { statement_timeout: defaults.statement_timeout, search_path: `${schema}, public`, application_name: 'pool-ss-reset' }, `after RESET statement_timeout, round ${r}`)],
        [plain, (x, r) => expectSettings(x, defaults, `the other client, round ${r}`)],
      ], 4);
      await a.query('RESET ALL');
      await interleave([[a, (x, r) => expectSettings(x, defaults, `after RESET ALL, round ${r}`)]], 4);
      await set();
      await a.query('DISCARD ALL');
      await interleave([
        [a, (x, r) => expectSettings(x, defaults, `after DISCARD ALL, round ${r}`)],
        [plain, (x, r) => expectSettings(x, defaults, `the other client, round ${r}`)],
      ], 4);
    } finally {
      await endQuietly(a);
    }
  });

  it('answers SHOW with the session’s value, in and out of transactions', async () => {
    const a = await client();
    try {
      await a.query("SET statement_timeout = '2222ms'");
      await a.query(`SET search_path = ${schema}, public`);
      await a.query("SET application_name = 'pool-ss-show'");
      const wants = [{ statement_timeout: '2222ms' }, { search_path: `${schema}, public` }, { application_name: 'pool-ss-show' }];
      const show = async (x: pg.Client) => [
        (await x.query('SHOW statement_timeout')).rows[0],
        (await x.query('SHOW search_path')).rows[0],
        (await x.query('SHOW application_name')).rows[0],
      ];
      await interleave([
        [
          a,
          async (x, r) => {
            expect(await show(x), `SHOW, round ${r}`).toEqual(wants);
            await x.query('BEGIN');
            expect(await show(x), `SHOW in a transaction, round ${r}`).toEqual(wants);
            await x.query('COMMIT');
          },
        ],
        [
          plain,
          async (x, r) => {
            expect((await x.query('SHOW statement_timeout')).rows, `SHOW on the other client, round ${r}`).toEqual([{ statement_timeout: defaults.statement_timeout }]);
            expect((await x.query('SHOW application_name')).rows).toEqual([{ application_name: defaults.application_name }]);
          },
        ],
      ]);
    } finally {
      await endQuietly(a);
    }
  });

  it('forgets SETs undone by ROLLBACK, by a failed transaction or by ROLLBACK TO SAVEPOINT, and a SET that failed', async () => {
    const a = await client();
    try {
      await a.query("SET statement_timeout = '8s'");
      await a.query('BEGIN');
      await a.query("SET statement_timeout = '9s'");
      await a.query("SET application_name = 'pool-ss-rolled-back'");
      await a.query('ROLLBACK');

      await a.query('BEGIN');
      await a.query(`SET search_path TO ${schema}`);
      const failed = await a.query('SELECT 1 / 0').then(() => null, (e: Error & { code?: string }) => e);
      expect(failed?.code).toBe('22012');
      await a.query('ROLLBACK');

      await a.query('BEGIN');
      await a.query("SET work_mem = '1111kB'");
      await a.query('SAVEPOINT s');
      await a.query("SET work_mem = '2222kB'");
      await a.query("SET statement_timeout = '10s'");
      await a.query('ROLLBACK TO SAVEPOINT s');
      await a.query('COMMIT');

      const bad = await a.query("SET statement_timeout = 'banana'").then(() => null, (e: Error & { code?: string }) => e);
      expect(bad?.code).toBe('22023');

      const wants = { statement_timeout: '8s', application_name: defaults.application_name, search_path: defaults.search_path };
      await interleave([
        [
          a,
          async (x, r) => {
            await expectSettings(x, wants, `round ${r}`);
            expect((await x.query("SELECT current_setting('work_mem') AS w")).rows, `work_mem kept from before the savepoint, round ${r}`).toEqual([{ w: '1111kB' }]);
            await x.query('BEGIN');
            expect((await x.query("SELECT current_setting('work_mem') AS w")).rows).toEqual([{ w: '1111kB' }]);
            await x.query('COMMIT');
          },
        ],
        [plain, (x, r) => expectSettings(x, defaults, `the other client, round ${r}`)],
      ]);
    } finally {
      await endQuietly(a);
    }
  });

  it('keeps a setting made with set_config(…, false) like a SET', async () => {
    const a = await client();
    try {
      await a.query("SELECT set_config('statement_timeout', '6543ms', false)");
      await interleave([
        [a, (x, r) => expectSettings(x, { statement_timeout: '6543ms' }, `round ${r}`)],
        [plain, (x, r) => expectSettings(x, defaults, `the other client, round ${r}`)],
      ], 6);
    } finally {
      await endQuietly(a);
    }
  });

  // What makes the checks above mean something: many clients, and their transactions ran on the pool's few backends.
  it('ran the transactions of all these clients on no more primary backends than pool.size', () => {
    expect(primaryPids.size).toBeGreaterThan(0);
    expect([...primaryPids].length, `distinct primary backends: ${[...primaryPids].join(' ')}`).toBeLessThanOrEqual(SIZE);
  });
});
