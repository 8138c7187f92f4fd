// Queries through pgsplit with node-postgres: simple and extended protocol, prepared statements, pipelining, big data, errors, notices.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import crypto from 'node:crypto';
import pg from 'pg';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { endQuietly, proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const table = `proxy_queries_${process.pid}`;

let proxy: RunningProxy;
let client: pg.Client;

describe('queries through the proxy', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
    client = await proxyClient(proxy, info);
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
  });

  afterAll(async () => {
    await client?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await endQuietly(client);
    await proxy?.close(1_000);
  });

  it('runs a simple-protocol query', async () => {
    const r = await client.query('SELECT 40 + 2 AS answer, current_user AS who, current_database() AS db');
    expect(r.rows).toEqual([{ answer: 42, who: 'app', db: 'appdb' }]);
  });

  it('runs a multi-statement simple query and returns every result', async () => {
    const r = (await client.query(`SELECT 1 AS a; SELECT 'two' AS b; INSERT INTO ${table} VALUES (1000, 'm'); DELETE FROM ${table} WHERE id = 1000`)) as unknown as pg.QueryResult[];
    expect(Array.isArray(r)).toBe(true);
    expect(r.map((x) => x.command)).toEqual(['SELECT', 'SELECT', 'INSERT', 'DELETE']);
    expect(r[0]!.rows).toEqual([{ a: 1 }]);
    expect(r[1]!.rows).toEqual([{ b: 'two' }]);
    expect(r[2]!.rowCount).toBe(1);
    expect(r[3]!.rowCount).toBe(1);
  });

  it('runs extended-protocol queries with parameters', async () => {
    const r = await client.query({ text: 'SELECT $1::int + $2::int AS sum, $3::text AS label, $4::int IS NULL AS isnull', values: [20, 22, 'hello', null] });
    expect(r.rows).toEqual([{ sum: 42, label: 'hello', isnull: true }]);
    await client.query({ text: `INSERT INTO ${table} (id, v) VALUES ($1, $2), ($3, $4)`, values: [1, 'one', 2, 'two'] });
    const back = await client.query({ text: `SELECT v FROM ${table} WHERE id = ANY($1::int[]) ORDER BY id`, values: [[1, 2]] });
    expect(back.rows.map((x) => x.v)).toEqual(['one', 'two']);
  });

  it('runs a named prepared statement several times', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await client.query({ name: 'proxy_q_square', text: 'SELECT $1::int * $1::int AS sq', values: [i] });
      expect(r.rows).toEqual([{ sq: i * i }]);
    }
    // A second name for other text is a different statement, and the first still answers as before.
    const cube = await client.query({ name: 'proxy_q_cube', text: 'SELECT $1::int * $1::int * $1::int AS c', values: [3] });
    expect(cube.rows).toEqual([{ c: 27 }]);
    const again = await client.query({ name: 'proxy_q_square', text: 'SELECT $1::int * $1::int AS sq', values: [7] });
    expect(again.rows).toEqual([{ sq: 49 }]);
  });

  it('keeps results in order for many queries issued without awaiting', async () => {
    const promises = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0 ? client.query({ text: 'SELECT $1::int AS i, md5($1::text) AS h', values: [i] }) : client.query(`SELECT ${i} AS i, md5('${i}') AS h`),
    );
    const results = await Promise.all(promises);
    results.forEach((r, i) => expect(r.rows).toEqual([{ i, h: crypto.createHash('md5').update(String(i)).digest('hex') }]));
  });

  it('keeps results in order with a pipelined connection (queries on the wire before the first answer)', async () => {
    await using(proxyClient(proxy, info, { pipeline: true } as Partial<pg.ClientConfig>), async (p) => {
      const ps = Array.from({ length: 300 }, (_, i) =>
        i === 150
          ? p.query({ text: 'SELECT 1 / $1::int AS boom', values: [0] }).then(
              () => 'no error',
              (e: { code?: string }) => `error ${e.code}`,
            )
          : p.query({ text: 'SELECT $1::int AS i, repeat($2::text, $1::int % 50) AS s', values: [i, 'x'] }).then((r) => r.rows[0]),
      );
      const results = await Promise.all(ps);
      results.forEach((r, i) => {
        if (i === 150) expect(r).toBe('error 22012');
        else expect(r).toEqual({ i, s: 'x'.repeat(i % 50) });
      });
      const after = await p.query('SELECT 7 AS seven');
      expect(after.rows).toEqual([{ seven: 7 }]);
    });
  });

  it('streams a large result set intact', async () => {
    const n = 200_000;
    const r = await client.query<{ i: number; t: string }>(`SELECT i, 'row-' || i || '-' || md5(i::text) AS t FROM generate_series(1, ${n}) AS i`);
    expect(r.rowCount).toBe(n);
    expect(r.rows.length).toBe(n);
    const local = crypto.createHash('md5');
    const expected = crypto.createHash('md5');
    let sum = 0;
    for (let k = 0; k < r.rows.length; k++) {
      const row = r.rows[k]!;
      sum += row.i;
      local.update(row.t).update('\n');
      const i = k + 1;
      expected.update(`row-${i}-${crypto.createHash('md5').update(String(i)).digest('hex')}`).update('\n');
    }
    expect(sum).toBe((n * (n + 1)) / 2);
    expect(local.digest('hex')).toBe(expected.digest('hex'));
    // The server's own checksum of the same text agrees.
    const srv = await client.query(`SELECT md5(string_agg('row-' || i || '-' || md5(i::text), E'\\n' ORDER BY i) || E'\\n') AS h FROM generate_series(1, ${n}) AS i`);
    const joined = crypto.createHash('md5').update(r.rows.map((x) => x.t).join('\n') + '\n').digest('hex');
    expect(srv.rows[0].h).toBe(joined);
  });

  it('round-trips a 5 MB text parameter', async () => {
    const big = crypto.randomBytes(5 * 1024 * 1024 * 3 / 4).toString('base64'); // 5 MiB of text
    expect(big.length).toBe(5 * 1024 * 1024);
    const r = await client.query({ text: 'SELECT length($1::text) AS len, md5($1::text) AS h, $1::text AS echo', values: [big] });
    expect(r.rows[0].len).toBe(big.length);
    expect(r.rows[0].h).toBe(crypto.createHash('md5').update(big).digest('hex'));
    expect(r.rows[0].echo === big).toBe(true);
  });

  it('relays errors with their SQLSTATE, and the session goes on', async () => {
    const missing = await rejection(client.query('SELECT * FROM no_such_table_pgsplit'));
    expect(missing.code).toBe('42P01');
    expect(missing.message).toMatch(/no_such_table_pgsplit/);
    const div = await rejection(client.query({ text: 'SELECT 1 / $1::int', values: [0] }));
    expect(div.code).toBe('22012');
    expect(div.message).toMatch(/division by zero/);
    const syntax = await rejection(client.query('SELEC 1'));
    expect(syntax.code).toBe('42601');
    expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('recovers from an error mid-transaction with ROLLBACK', async () => {
    await client.query('BEGIN');
    await client.query(`INSERT INTO ${table} VALUES (10, 'in-tx')`);
    const dup = await rejection(client.query(`INSERT INTO ${table} VALUES (10, 'again')`));
    expect(dup.code).toBe('23505');
    const aborted = await rejection(client.query('SELECT 1'));
    expect(aborted.code).toBe('25P02');
    await client.query('ROLLBACK');
    const r = await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE id = 10`);
    expect(r.rows[0].n).toBe(0);
    await client.query('BEGIN');
    await client.query(`INSERT INTO ${table} VALUES (11, 'committed')`);
    await client.query('COMMIT');
    expect((await client.query(`SELECT v FROM ${table} WHERE id = 11`)).rows).toEqual([{ v: 'committed' }]);
  });

  it('talks to the primary when the statement writes, or when asked to by a hint', async () => {
    const hinted = await client.query('/* pgsplit:primary */ SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby');
    expect(hinted.rows[0]).toEqual({ port: primary.port, standby: false });
    const locking = await client.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby FROM (VALUES (1)) v FOR UPDATE');
    expect(locking.rows[0]).toEqual({ port: primary.port, standby: false });
  });

  it("hands the client the server's ParameterStatus (server_version etc.)", async () => {
    const params: Record<string, string> = {};
    const c = new pg.Client({ connectionString: proxy.url, connectionTimeoutMillis: 10_000 });
    c.on('error', () => {});
    const conn = (c as unknown as { connection: import('node:events').EventEmitter }).connection;
    conn.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => (params[m.parameterName] = m.parameterValue));
    try {
      await c.connect();
      const shown = (await c.query('SHOW server_version')).rows[0].server_version as string;
      expect(params.server_version).toBe(shown);
      expect(params.client_encoding).toBe('UTF8');
      expect(params.server_encoding).toBe('UTF8');
      expect(params.session_authorization).toBe('app');
      expect(params.integer_datetimes).toBe('on');
    } finally {
      await endQuietly(c);
    }
  });

  it('delivers NOTICE messages to the client', async () => {
    const notices: { message?: string; severity?: string }[] = [];
    const onNotice = (n: { message?: string; severity?: string }) => notices.push(n);
    client.on('notice', onNotice);
    try {
      await client.query("DO $$ BEGIN RAISE NOTICE 'hello from %', 'pgsplit'; RAISE WARNING 'careful'; END $$");
    } finally {
      client.off('notice', onNotice);
    }
    expect(notices.map((n) => n.message)).toEqual(['hello from pgsplit', 'careful']);
    expect(notices[0]!.severity).toBe('NOTICE');
  });

  it('round-trips binary and unicode data', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const text = 'héllo wörld — 日本語 — 😀🚀 — \u{1F9EA}';
    const r = await client.query({ text: 'SELECT $1::bytea AS b, $2::text AS t, length($2::text) AS chars, octet_length($1::bytea) AS n', values: [bytes, text] });
    expect(Buffer.compare(r.rows[0].b, bytes)).toBe(0);
    expect(r.rows[0].t).toBe(text);
    expect(r.rows[0].chars).toBe([...text].length);
    expect(r.rows[0].n).toBe(256);
    await client.query({ text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [20, text] });
    const s = await client.query(`SELECT v, v = '${text}' AS same FROM ${table} WHERE id = 20`);
    expect(s.rows).toEqual([{ v: text, same: true }]);
  });
});
