// Statement statistics through the real proxy on the real cluster: GET /statements counts calls, where they ran and why, rows and errors per normalized statement; bounded, reset, merged across workers.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { adminAuthHeaders, spawnProxy, startProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { RawConn, scramLogin, type BackendMsg } from '../harness/fuzz-client.js';
import { cstr, frame, i16, i32 } from '../harness/fuzz.js';
import { pidOwner } from '../../src/frontend/cancel-registry.js';
import type { StatementRow } from '../../src/stats/statement-stats.js';
import { directClient, endQuietly, eventually, proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const table = `stmt_stats_${process.pid}`;
// Reads right after the test's own writes must be free to go to a replica (the read-your-writes rule is tested elsewhere).
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const STATS = (max = 1000, enabled = true) => `${ROUTING}\nstats: { enabled: ${enabled}, max_statements: ${max} }`;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });

interface StatementsAnswer {
  enabled: boolean;
  statements: StatementRow[];
}

async function getStatements(adminPort: number, query = '', headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${adminPort}/statements${query}`, { headers, signal: AbortSignal.timeout(10_000) });
}

async function statements(adminPort: number, limit = 1000): Promise<StatementRow[]> {
  const r = await getStatements(adminPort, `?limit=${limit}`);
  expect(r.status).toBe(200);
  return ((await r.json()) as StatementsAnswer).statements;
}

async function resetStatements(adminPort: number, headers: Record<string, string> = { ...adminAuthHeaders(), 'content-type': 'application/json' }): Promise<Response> {
  return fetch(`http://127.0.0.1:${adminPort}/statements/reset`, { method: 'POST', headers, body: '{}', signal: AbortSignal.timeout(10_000) });
}

/** The rows whose text mentions this test's table and `needle`. */
const ours = (rows: StatementRow[], needle: string) => rows.filter((r) => r.query.includes(table) && r.query.includes(needle));

function one(rows: StatementRow[], needle: string): StatementRow {
  const found = ours(rows, needle);
  expect(found.map((r) => r.query), `statements with "${needle}"`).toHaveLength(1);
  return found[0]!;
}

/** What every row must satisfy whatever the timings were. */
function consistent(r: StatementRow): void {
  expect(r.primary_calls + r.replica_calls).toBe(r.calls);
  expect(r.routes.reduce((n, x) => n + x.calls, 0)).toBe(r.calls);
  expect(r.min_ms).toBeLessThanOrEqual(r.p99_ms);
  expect(r.p99_ms).toBeLessThanOrEqual(r.max_ms);
  expect(r.mean_ms * r.calls).toBeCloseTo(r.total_ms, 1);
  expect(r.errors).toBeLessThanOrEqual(r.calls);
}

const P = (sql: string) => frame('P', Buffer.concat([cstr(''), cstr(sql), i16(0)]));
const B = () => frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(0)]));
const E = () => frame('E', Buffer.concat([cstr(''), i32(0)]));
const S = () => frame('S', Buffer.alloc(0));

async function untilReady(c: RawConn): Promise<BackendMsg[]> {
  const out: BackendMsg[] = [];
  for (;;) {
    const m = await c.next(Date.now() + 10_000);
    if (!m) throw new Error(`no ReadyForQuery (got ${out.map((x) => String.fromCharCode(x.type)).join(' ')})`);
    out.push(m);
    if (m.type === 'Z'.charCodeAt(0)) return out;
  }
}

beforeAll(async () => {
  await using(appOn(0), async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${table}`);
    await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
    await c.query(`INSERT INTO ${table} VALUES (1, 'one'), (2, 'two')`);
  });
  for (let i = 1; i < cluster.nodes.length; i++) {
    await using(appOn(i), (c) =>
      eventually(`${cluster.nodes[i]!.name} to replay the test table`, async () => {
        const r = await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE id <= 2`).catch(() => null);
        return r?.rows[0].n === 2 ? true : undefined;
      }),
    );
  }
});

afterAll(async () => {
  await using(appOn(0), (c) => c.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {});
});

describe('statement statistics (one process)', () => {
  let proxy: RunningProxy;
  let client: pg.Client;

  beforeAll(async () => {
    proxy = await startProxy(info, { extra: STATS() });
    client = await proxyClient(proxy, info);
  });

  afterAll(async () => {
    await endQuietly(client);
    await proxy?.close(1_000);
  });

  it('counts reads on a replica and writes on the primary, with the routing reason and the rows of their command tags', async () => {
    expect((await resetStatements(proxy.adminPort!)).status).toBe(200);
    const inserted = await client.query(`INSERT INTO ${table} (id, v) VALUES (101, 'a'), (102, 'b'), (103, 'c')`);
    expect(inserted.rowCount).toBe(3);
    for (let i = 0; i < 5; i++) expect((await client.query(`SELECT v FROM ${table} WHERE id <= 2 AND v <> '${'x'.repeat(i)}'`)).rowCount).toBe(2);
    // Answered by the proxy itself: not counted.
    await client.query('SHOW pgsplit.route');
    const rows = await statements(proxy.adminPort!);
    const write = one(rows, 'INSERT');
    expect(write).toMatchObject({ calls: 1, rows: 3, errors: 0, primary_calls: 1, replica_calls: 0, routes: [{ target: 'primary', reason: 'write', calls: 1 }] });
    const read = one(rows, 'WHERE id <= ?');
    expect(read.query).toBe(`SELECT v FROM ${table} WHERE id <= ? AND v <> ?`);
    expect(read).toMatchObject({ calls: 5, rows: 10, errors: 0, primary_calls: 0, replica_calls: 5, routes: [{ target: 'replica', reason: 'select', calls: 5 }] });
    expect(read.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(rows.some((r) => r.query.includes('pgsplit.route'))).toBe(false);
    for (const r of rows) consistent(r);
    await client.query(`DELETE FROM ${table} WHERE id > 100`);
  });

  it('counts a prepared statement executed with different parameters (and its simple-protocol form) as one statement', async () => {
    await resetStatements(proxy.adminPort!);
    for (let i = 0; i < 20; i++) {
      const r = await client.query({ name: 'stats_by_id', text: `SELECT v FROM ${table} WHERE id = $1`, values: [(i % 2) + 1] });
      expect(r.rowCount).toBe(1);
    }
    for (let i = 0; i < 5; i++) await client.query({ text: `SELECT v FROM ${table} WHERE id = $1`, values: [i] });
    for (const id of [1, 2, 7]) await client.query(`SELECT v FROM ${table} WHERE id = ${id}`);
    const r = one(await statements(proxy.adminPort!), 'WHERE id =');
    // 20 named + 5 unnamed executions (ids 0..4: 1 and 2 exist) + 3 simple queries (7 does not).
    expect(r).toMatchObject({ calls: 28, rows: 20 + 2 + 2, errors: 0, replica_calls: 28 });
    consistent(r);
  });

  it('counts errors, on a replica and on the primary, as calls of their statement', async () => {
    await resetStatements(proxy.adminPort!);
    expect((await rejection(client.query(`SELECT no_such_column FROM ${table} WHERE id = 1`))).code).toBe('42703');
    expect((await rejection(client.query({ text: `SELECT no_such_column FROM ${table} WHERE id = $1`, values: [2] }))).code).toBe('42703');
    expect((await rejection(client.query(`INSERT INTO ${table} (id, v) VALUES (1, 'dup')`))).code).toBe('23505');
    await client.query(`INSERT INTO ${table} (id, v) VALUES (201, 'fine')`);
    const rows = await statements(proxy.adminPort!);
    expect(one(rows, 'no_such_column')).toMatchObject({ calls: 2, errors: 2, rows: 0, replica_calls: 2 });
    expect(one(rows, 'INSERT')).toMatchObject({ calls: 2, errors: 1, rows: 1, primary_calls: 2 });
    await client.query(`DELETE FROM ${table} WHERE id > 100`);
  });

  it('counts each Execute of one extended-protocol batch as a call of its own statement', async () => {
    await resetStatements(proxy.adminPort!);
    const c = new RawConn(proxy.listenPort);
    try {
      expect(await scramLogin(c, { user: info.app.user, password: info.app.password, database: info.app.database }, Date.now() + 10_000)).toBeNull();
      const batch = [P(`INSERT INTO ${table} (id, v) VALUES (301, 'x'), (302, 'y')`), B(), E(), P(`UPDATE ${table} SET v = 'z' WHERE id > 300`), B(), E(), P(`SELECT v FROM ${table} WHERE id > 300`), B(), E(), S()];
      await c.write(Buffer.concat(batch), Date.now() + 10_000);
      const answer = await untilReady(c);
      expect(answer.filter((m) => m.type === 'C'.charCodeAt(0))).toHaveLength(3);
      const rows = await statements(proxy.adminPort!);
      // The batch writes, so all of it runs on the primary.
      expect(one(rows, 'INSERT')).toMatchObject({ calls: 1, rows: 2, primary_calls: 1 });
      expect(one(rows, 'UPDATE')).toMatchObject({ calls: 1, rows: 2, primary_calls: 1 });
      expect(one(rows, 'SELECT v FROM')).toMatchObject({ calls: 1, rows: 2, primary_calls: 1 });
      // An error skips the rest of the batch: only what ran counts.
      await resetStatements(proxy.adminPort!);
      await c.write(Buffer.concat([P(`SELECT v::int FROM ${table} WHERE id > 300`), B(), E(), P(`DELETE FROM ${table} WHERE id > 300`), B(), E(), S()]), Date.now() + 10_000);
      const failed = await untilReady(c);
      expect(failed.some((m) => m.type === 'E'.charCodeAt(0))).toBe(true);
      const after = await statements(proxy.adminPort!);
      expect(one(after, 'v::int')).toMatchObject({ calls: 1, errors: 1 });
      expect(ours(after, 'DELETE')).toEqual([]);
    } finally {
      c.destroy();
      await client.query(`DELETE FROM ${table} WHERE id > 100`);
    }
  });

  it('POST /statements/reset needs admin credentials and JSON, and empties the table', async () => {
    await client.query(`SELECT v FROM ${table} WHERE id = 1`);
    expect((await statements(proxy.adminPort!)).length).toBeGreaterThan(0);
    expect((await resetStatements(proxy.adminPort!, { 'content-type': 'application/json' })).status).toBe(401);
    expect((await resetStatements(proxy.adminPort!, { ...adminAuthHeaders('wrong'), 'content-type': 'application/json' })).status).toBe(401);
    expect((await resetStatements(proxy.adminPort!, adminAuthHeaders())).status).toBe(415);
    expect((await fetch(`http://127.0.0.1:${proxy.adminPort}/statements/reset`)).status).toBe(405);
    expect((await statements(proxy.adminPort!)).length).toBeGreaterThan(0);
    const ok = await resetStatements(proxy.adminPort!);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true, enabled: true });
    expect(await statements(proxy.adminPort!)).toEqual([]);
    await client.query(`SELECT v FROM ${table} WHERE id = 2`);
    expect(one(await statements(proxy.adminPort!), 'WHERE id =').calls).toBe(1);
  });

  it('GET /statements takes a limit and lists the most total time first', async () => {
    await resetStatements(proxy.adminPort!);
    for (let i = 0; i < 3; i++) await client.query(`SELECT v, ${i} AS n${i} FROM ${table}`);
    const all = await statements(proxy.adminPort!);
    expect(all.length).toBe(3);
    for (let i = 1; i < all.length; i++) expect(all[i - 1]!.total_ms).toBeGreaterThanOrEqual(all[i]!.total_ms);
    const r = await getStatements(proxy.adminPort!, '?limit=1');
    expect(((await r.json()) as StatementsAnswer).statements).toEqual([all[0]]);
    for (const bad of ['0', 'abc', '-1', '1.5']) expect((await getStatements(proxy.adminPort!, `?limit=${bad}`)).status, `limit=${bad}`).toBe(400);
  });
});

describe('statement statistics: bounds, protected reads, off', () => {
  let proxy: RunningProxy;
  let client: pg.Client;

  beforeAll(async () => {
    proxy = await startProxy(info, { extra: STATS(10), adminAuth: 'token: stats-token, protect_reads: true' });
    client = await proxyClient(proxy, info);
  });

  afterAll(async () => {
    await endQuietly(client);
    await proxy?.close(1_000);
  });

  const auth = { authorization: 'Bearer stats-token' };

  it('GET /statements needs credentials with admin.auth.protect_reads, as /status does', async () => {
    expect((await getStatements(proxy.adminPort!)).status).toBe(401);
    expect((await getStatements(proxy.adminPort!, '', { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).status).toBe(401);
    const r = await getStatements(proxy.adminPort!, '', auth);
    expect(r.status).toBe(200);
    expect(((await r.json()) as StatementsAnswer).enabled).toBe(true);
  });

  it('keeps at most stats.max_statements statements: a new one evicts the least used', async () => {
    expect((await resetStatements(proxy.adminPort!, { ...auth, 'content-type': 'application/json' })).status).toBe(200);
    for (let i = 0; i < 9; i++) for (let k = 0; k < 3; k++) await client.query(`SELECT v AS busy${i} FROM ${table} WHERE id = ${k}`);
    await client.query(`SELECT v AS rare FROM ${table} WHERE id = 1`);
    const list = async () => ((await (await getStatements(proxy.adminPort!, '', auth)).json()) as StatementsAnswer).statements;
    expect(await list()).toHaveLength(10);
    await client.query(`SELECT v AS newcomer FROM ${table} WHERE id = 1`);
    const rows = await list();
    expect(rows).toHaveLength(10);
    expect(rows.some((r) => r.query.includes(' rare '))).toBe(false);
    expect(rows.filter((r) => r.query.includes(' newcomer '))).toHaveLength(1);
    for (let i = 0; i < 9; i++) expect(one(rows, `busy${i} `).calls).toBe(3);
  });

  it('says it is off (and counts nothing) with stats.enabled: false', async () => {
    const off = await startProxy(info, { extra: STATS(1000, false) });
    try {
      const c = await proxyClient(off, info);
      await c.query(`SELECT v FROM ${table} WHERE id = 1`);
      await endQuietly(c);
      const r = await getStatements(off.adminPort!);
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ enabled: false, statements: [] });
      expect(await off.statements.rows()).toEqual([]);
      expect((await resetStatements(off.adminPort!)).status).toBe(200);
    } finally {
      await off.close(1_000);
    }
  });
});

describe('statement statistics with workers: 2', () => {
  let proxy: ProxyProcess;
  const target = () => ({ listenPort: proxy.port }) as RunningProxy;
  const owner = (c: pg.Client) => pidOwner((c as unknown as { processID: number }).processID);

  beforeAll(async () => {
    proxy = await spawnProxy(info, { logLevel: 'warn', extra: `${STATS()}\nworkers: 2\npool: { size: 4 }` });
  });

  afterAll(async () => {
    await proxy?.stop();
  });

  it('adds up every worker\'s table (calls, rows, routes, latency buckets), and a reset empties them all', async () => {
    const cs: pg.Client[] = [];
    try {
      for (let i = 0; i < 4; i++) cs.push(await proxyClient(target(), info));
      expect(new Set(cs.map(owner))).toEqual(new Set([0, 1]));
      expect((await resetStatements(proxy.adminPort)).status).toBe(200);
      for (const c of cs) for (let k = 0; k < 5; k++) await c.query({ text: `SELECT v FROM ${table} WHERE id = $1`, values: [(k % 2) + 1] });
      await cs[0]!.query(`UPDATE ${table} SET v = v WHERE id = 1`);
      const rows = await statements(proxy.adminPort);
      const read = one(rows, 'WHERE id = $1');
      expect(read).toMatchObject({ calls: 20, rows: 20, errors: 0, replica_calls: 20, routes: [{ target: 'replica', reason: 'select', calls: 20 }] });
      consistent(read);
      expect(one(rows, 'UPDATE')).toMatchObject({ calls: 1, rows: 1, primary_calls: 1 });
      expect((await resetStatements(proxy.adminPort)).status).toBe(200);
      expect(ours(await statements(proxy.adminPort), 'WHERE')).toEqual([]);
      await cs[1]!.query({ text: `SELECT v FROM ${table} WHERE id = $1`, values: [1] });
      expect(one(await statements(proxy.adminPort), 'WHERE id = $1').calls).toBe(1);
    } finally {
      for (const c of cs) await endQuietly(c);
    }
  });
});
