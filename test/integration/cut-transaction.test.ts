// A transaction whose server backend is terminated never half-commits: error, then failed (E) and 25P02 until ROLLBACK (routing), or the connection closes (relay).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { attachCluster, type ClusterNode } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { endQuietly, eventually, proxyClient, using } from './helpers.js';
import {
  committedRows, cutBackend, describeMsg, fe, outcome, recordEnd, recordStatuses, RawClient, ROUTING, waitActive, watchBackendCloses, type Msg, type Outcome,
} from './cut-helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const TABLE = `cut_rows_${process.pid}`;
const SLOW = `cut_slow_${process.pid}`;

let proxy: RunningProxy;
let closes: (node: string) => number;
const clients: pg.Client[] = [];
let seq = 0;

/** A client through the proxy with an application_name of its own, so its backend can be found and cut. */
async function client(o: Partial<pg.ClientConfig> & { pipeline?: boolean } = {}): Promise<{ c: pg.Client; app: string; statuses: string[]; end: { ended: boolean } }> {
  const app = `cut-${process.pid}-${++seq}`;
  const c = await proxyClient(proxy, info, { application_name: app, ...o } as Partial<pg.ClientConfig>);
  clients.push(c);
  return { c, app, statuses: recordStatuses(c), end: recordEnd(c) };
}

const rows = (tag: string): Promise<number[]> => committedRows(primary, info, TABLE, tag);
const insert = (tag: string, v: number): string => `INSERT INTO ${TABLE} (tag, v) VALUES ('${tag}', ${v})`;
const insertX = (tag: string, v: number) => ({ text: `INSERT INTO ${TABLE} (tag, v) VALUES ($1, $2)`, values: [tag, v] });

/** Routing on: the cut statement fails with `first`, later ones 25P02 with status E, COMMIT answers ROLLBACK and the session is idle. */
function expectFailedTransaction(got: Outcome[], statuses: string[], first: RegExp): void {
  const [head, ...rest] = got;
  const commit = rest.pop()!;
  expect(head!.ok, `the first statement after the cut fails: ${JSON.stringify(head)}`).toBe(false);
  expect(head!.ok ? '' : head!.code).toMatch(first);
  expect(head!.ok ? '' : head!.severity, 'an ERROR, not a FATAL: the session goes on').toBe('ERROR');
  for (const o of rest) expect(o, 'later statements of the failed transaction').toMatchObject({ ok: false, code: '25P02' });
  expect(commit, 'COMMIT of a failed transaction').toEqual({ ok: true, command: 'ROLLBACK' });
  expect(statuses, 'ReadyForQuery after each statement').toEqual([...got.slice(0, -1).map(() => 'E'), 'I']);
}

/** Relay: the client sees its connection die; nothing of what followed ran. */
async function expectConnectionDied(got: Outcome[], end: { ended: boolean }): Promise<void> {
  for (const o of got) expect(o.ok, `statement after the cut: ${JSON.stringify(o)}`).toBe(false);
  await eventually('the client connection to be closed', () => (end.ended ? true : undefined), 10_000);
}

beforeAll(async () => {
  proxy = await startProxy(info);
  closes = watchBackendCloses(proxy);
  await using(proxyClient(proxy, info), async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (tag text NOT NULL, v int NOT NULL)`);
    // COMMIT of a row here runs a deferred trigger that sleeps: a commit that stays in flight until it is cut.
    await c.query(`DROP TABLE IF EXISTS ${SLOW}; CREATE TABLE ${SLOW} (tag text NOT NULL, v int NOT NULL)`);
    await c.query(`CREATE OR REPLACE FUNCTION ${SLOW}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$`);
    await c.query(`CREATE CONSTRAINT TRIGGER ${SLOW}_trg AFTER INSERT ON ${SLOW} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${SLOW}_fn()`);
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  if (proxy) {
    await using(proxyClient(proxy, info), (c) => c.query(`DROP TABLE IF EXISTS ${TABLE}; DROP TABLE IF EXISTS ${SLOW}; DROP FUNCTION IF EXISTS ${SLOW}_fn()`)).catch(() => {});
    await proxy.close(1_000);
  }
});

describe('the backend of a session idle in a transaction is terminated', () => {
  it('simple protocol: BEGIN; INSERT 1; cut; INSERT 2; INSERT 3; COMMIT commits nothing', async () => {
    const tag = 'simple';
    const { c, app, statuses, end } = await client();
    await c.query('BEGIN');
    await c.query(insert(tag, 1));
    await cutBackend(proxy, closes, primary, info, app);
    statuses.length = 0;

    const got: Outcome[] = [];
    for (const sql of [insert(tag, 2), insert(tag, 3), 'COMMIT']) got.push(await outcome(c.query(sql)));
    console.log(`[cut] simple, idle in transaction: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    expect(await rows(tag), 'rows of the cut transaction that committed').toEqual([]);
    if (!ROUTING) return expectConnectionDied(got, end);
    expectFailedTransaction(got, statuses, /^08006$/);

    // After the ROLLBACK the session works again.
    expect((await c.query(insert(tag, 4))).rowCount).toBe(1);
    expect(c.getTransactionStatus()).toBe('I');
    expect(await rows(tag)).toEqual([4]);
  });

  it('extended protocol (parameters, a named statement): nothing of the cut transaction commits', async () => {
    const tag = 'extended';
    const { c, app, statuses, end } = await client();
    const named = { name: 'cut_ins', ...insertX(tag, 0) };
    await c.query('BEGIN');
    await c.query({ ...named, values: [tag, 1] });
    await cutBackend(proxy, closes, primary, info, app);
    statuses.length = 0;

    const got: Outcome[] = [];
    got.push(await outcome(c.query(insertX(tag, 2))));
    got.push(await outcome(c.query({ ...named, values: [tag, 3] })));
    got.push(await outcome(c.query({ text: 'SELECT $1::int AS x', values: [5] })));
    got.push(await outcome(c.query('COMMIT')));
    console.log(`[cut] extended, idle in transaction: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    expect(await rows(tag), 'rows of the cut transaction that committed').toEqual([]);
    if (!ROUTING) return expectConnectionDied(got, end);
    expectFailedTransaction(got, statuses, /^08006$/);

    // The named statement still works afterwards (prepared again on the new backend), in a new transaction.
    await c.query('BEGIN');
    await c.query({ ...named, values: [tag, 4] });
    expect((await c.query('COMMIT')).command).toBe('COMMIT');
    expect(await rows(tag)).toEqual([4]);
  });

  it('the first statement after the cut is ROLLBACK: the session is idle again at once', async () => {
    const tag = 'rollback';
    const { c, app, statuses, end } = await client();
    await c.query('BEGIN');
    await c.query(insert(tag, 1));
    await cutBackend(proxy, closes, primary, info, app);
    statuses.length = 0;
    const rb = await outcome(c.query('ROLLBACK'));
    const next = await outcome(c.query(insert(tag, 2)));
    console.log(`[cut] ROLLBACK right after the cut: ${JSON.stringify([rb, next])} statuses ${statuses.join('')}`);
    expect(await rows(tag).then((r) => r.filter((v) => v === 1)), 'row 1 never commits').toEqual([]);
    if (!ROUTING) return expectConnectionDied([rb, next], end);
    // PostgreSQL would have reported the error on the ROLLBACK (it is the first statement to learn of the cut) or
    // accepted it; either way the session ends up idle and the next statement autocommits.
    if (rb.ok) expect(rb.command).toBe('ROLLBACK');
    else expect(rb.code).toMatch(/^08006$/);
    expect(next).toEqual({ ok: true, command: 'INSERT' });
    expect(statuses).toEqual(['I', 'I']);
    expect(await rows(tag)).toEqual([2]);
  });
});

describe('pipelined: statements of the transaction already on their way when it is cut', () => {
  it('node-postgres pipeline mode: INSERT 2, INSERT 3 and COMMIT sent at once after the cut', async () => {
    const tag = 'pipeline-after';
    const { c, app, statuses, end } = await client({ pipeline: true });
    await c.query('BEGIN');
    await c.query(insert(tag, 1));
    await cutBackend(proxy, closes, primary, info, app);
    statuses.length = 0;
    const settled = await Promise.allSettled([c.query(insertX(tag, 2)), c.query(insert(tag, 3)), c.query('COMMIT')]);
    const got = await Promise.all(settled.map((s) => outcome(s.status === 'fulfilled' ? Promise.resolve(s.value) : Promise.reject(s.reason))));
    console.log(`[cut] pipelined after the cut: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    expect(await rows(tag), 'rows of the cut transaction that committed').toEqual([]);
    if (!ROUTING) return expectConnectionDied(got, end);
    expectFailedTransaction(got, statuses, /^08006$/);
    expect((await c.query(insert(tag, 4))).command).toBe('INSERT');
    expect(await rows(tag)).toEqual([4]);
  });

  it('node-postgres pipeline mode: the whole transaction sent at once, cut while a statement of it runs', async () => {
    const tag = 'pipeline-during';
    const { c, app, statuses, end } = await client({ pipeline: true });
    const sent = [
      c.query('BEGIN'),
      c.query(insertX(tag, 1)),
      c.query(`SELECT pg_sleep(60) /* ${app} */`),
      c.query(insertX(tag, 2)),
      c.query(insert(tag, 3)),
      c.query('COMMIT'),
    ];
    const settling = Promise.allSettled(sent); // handlers attached now: the running statement fails during the cut
    await waitActive(primary, info, app, 'pg_sleep');
    await cutBackend(proxy, closes, primary, info, app);
    const settled = await settling;
    const got = await Promise.all(settled.map((s) => outcome(s.status === 'fulfilled' ? Promise.resolve(s.value) : Promise.reject(s.reason))));
    console.log(`[cut] pipelined, cut during pg_sleep: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    expect(await rows(tag), 'rows of the cut transaction that committed').toEqual([]);
    expect(got.slice(0, 2), 'BEGIN and INSERT 1 ran before the cut').toEqual([{ ok: true, command: 'BEGIN' }, { ok: true, command: 'INSERT' }]);
    if (!ROUTING) return expectConnectionDied(got.slice(2), end);
    // The statement that was running gets the connection error (an ERROR: never a FATAL that reads as the session's end).
    // INSERT 2, INSERT 3 and COMMIT had been sent on: the proxy cannot know whether the server read them, so they fail
    // (25P02, or 08006 for a statement lost on the way) and COMMIT answers ROLLBACK or, honestly, 08007 (unknown).
    const [sleep, ins2, ins3, commit] = got.slice(2);
    expect(sleep).toMatchObject({ ok: false, code: '08006', severity: 'ERROR' });
    for (const o of [ins2, ins3]) {
      expect(o!.ok, `statement after the cut: ${JSON.stringify(o)}`).toBe(false);
      expect(o!.ok ? '' : o!.code).toMatch(/^(25P02|08006)$/);
    }
    if (commit!.ok) expect(commit).toEqual({ ok: true, command: 'ROLLBACK' });
    else expect(commit).toMatchObject({ ok: false, code: '08007' });
    expect(statuses, 'ReadyForQuery after each statement').toEqual(['T', 'T', 'E', 'E', 'E', 'I']);
    expect(end.ended, 'the session survived').toBe(false);
    expect((await c.query(insert(tag, 4))).command).toBe('INSERT');
    expect(await rows(tag)).toEqual([4]);
  });
});

describe('an extended-protocol batch cut between Flush and Sync (raw protocol)', () => {
  let trustProxy: RunningProxy;
  let trustCloses: (node: string) => number;
  const raws: RawClient[] = [];

  beforeAll(async () => {
    trustProxy = await startProxy(info, { auth: 'trust' });
    trustCloses = watchBackendCloses(trustProxy);
  });
  afterAll(async () => {
    for (const r of raws) r.close();
    await trustProxy?.close(1_000);
  });

  async function raw(): Promise<{ r: RawClient; app: string }> {
    const app = `cut-raw-${process.pid}-${++seq}`;
    const r = await RawClient.connect(trustProxy.listenPort, { user: info.app.user, database: info.app.database, application_name: app });
    raws.push(r);
    return { r, app };
  }

  /** Sends P/B/E INSERT + Flush and reads its three answers (the batch is now open on the server). */
  async function openBatch(r: RawClient, tag: string): Promise<void> {
    r.send(fe.parse('', `INSERT INTO ${TABLE} (tag, v) VALUES ($1, $2)`), fe.bind('', '', [tag, '1']), fe.execute(''), fe.flush());
    const got: Msg[] = [];
    for (let i = 0; i < 3; i++) got.push((await r.next())!);
    expect(got.map(describeMsg)).toEqual(['1', '2', 'C:INSERT 0 1']);
  }

  const insertBatch = (tag: string, v: number): Buffer[] => [fe.parse('', `INSERT INTO ${TABLE} (tag, v) VALUES ($1, $2)`), fe.bind('', '', [tag, String(v)]), fe.execute('')];
  /** A query sent after the statements under test: reading through its answer means nothing else is on its way. */
  const SENTINEL = "SELECT 'sentinel' AS s";

  it('implicit transaction: after the cut the rest of the batch is discarded up to Sync, then one ReadyForQuery (I)', async () => {
    const tag = 'raw-implicit';
    const { r, app } = await raw();
    await openBatch(r, tag);
    await cutBackend(trustProxy, trustCloses, primary, info, app);
    r.send(...insertBatch(tag, 2), fe.sync(), fe.query(SENTINEL));
    const after = (await r.through('C:SELECT 1')).map(describeMsg);
    console.log(`[cut] raw batch (implicit transaction) after the cut: ${after.join(' ')}${r.closed ? ' (closed)' : ''}`);
    expect(await rows(tag), 'rows of the cut batch that committed').toEqual([]);
    if (!ROUTING) {
      expect(after, 'nothing of INSERT 2 ran').not.toContain('C:INSERT 0 1');
      expect(r.closed, 'the relay closed the client connection').toBe(true);
      return;
    }
    // An error, nothing for the rest of the batch, one ReadyForQuery at Sync; then exactly the sentinel's answer.
    expect(after).toEqual(['E:08006', 'Z:I', 'T', 'D', 'C:SELECT 1', 'Z:I']);
  });

  it('explicit transaction: the batch after BEGIN ends in E, then 25P02, and COMMIT answers ROLLBACK', async () => {
    const tag = 'raw-explicit';
    const { r, app } = await raw();
    r.send(fe.query('BEGIN'));
    expect((await r.untilReady()).map(describeMsg)).toEqual(['C:BEGIN', 'Z:T']);
    await openBatch(r, tag);
    await cutBackend(trustProxy, trustCloses, primary, info, app);
    r.send(...insertBatch(tag, 2), fe.sync());
    r.send(fe.query(`INSERT INTO ${TABLE} (tag, v) VALUES ('${tag}', 3)`));
    r.send(...insertBatch(tag, 4), fe.sync());
    r.send(fe.query('COMMIT'), fe.query(SENTINEL));
    const after = (await r.through('C:SELECT 1')).map(describeMsg);
    console.log(`[cut] raw batch (explicit transaction) after the cut: ${after.join(' ')}${r.closed ? ' (closed)' : ''}`);
    expect(await rows(tag), 'rows of the cut transaction that committed').toEqual([]);
    if (!ROUTING) {
      expect(after, 'nothing after the cut ran').not.toContain('C:INSERT 0 1');
      expect(r.closed, 'the relay closed the client connection').toBe(true);
      return;
    }
    expect(after).toEqual(['E:08006', 'Z:E', 'E:25P02', 'Z:E', 'E:25P02', 'Z:E', 'C:ROLLBACK', 'Z:I', 'T', 'D', 'C:SELECT 1', 'Z:I']);
    r.send(...insertBatch(tag, 5), fe.sync());
    expect((await r.untilReady()).map(describeMsg)).toEqual(['1', '2', 'C:INSERT 0 1', 'Z:I']);
    expect(await rows(tag)).toEqual([5]);
  });
});

describe('a COMMIT in flight when the connection dies', () => {
  it('gets 08007 (outcome unknown) and the session is idle afterwards', async () => {
    const tag = 'commit-in-flight';
    const { c, app, statuses, end } = await client();
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${SLOW} (tag, v) VALUES ('${tag}', 1)`);
    statuses.length = 0;
    const commit = outcome(c.query('COMMIT'));
    await waitActive(primary, info, app, 'COMMIT');
    await cutBackend(proxy, closes, primary, info, app);
    const got = await commit;
    console.log(`[cut] COMMIT in flight: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    // The deferred trigger was still running: PostgreSQL did not commit.
    expect(await committedRows(primary, info, SLOW, tag)).toEqual([]);
    expect(got.ok).toBe(false);
    if (!ROUTING) return expectConnectionDied([got], end);
    expect(got).toMatchObject({ ok: false, code: '08007' });
    expect(statuses).toEqual(['I']);
    expect(end.ended, 'the session survived').toBe(false);
    expect(await outcome(c.query(insert(tag, 2)))).toEqual({ ok: true, command: 'INSERT' });
    expect(await rows(tag)).toEqual([2]);
  });
});

describe('a read-only transaction on a replica whose backend is terminated', () => {
  it('reports E and 25P02 until ROLLBACK, like a transaction on the primary', async () => {
    const { c, app, statuses, end } = await client();
    await c.query('BEGIN READ ONLY');
    const port = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
    const node: ClusterNode = cluster.nodes.find((n) => n.port === port)!;
    if (ROUTING) expect(node.name, 'a read-only transaction runs on a replica').not.toBe(primary.name);
    await cutBackend(proxy, closes, node, info, app);
    statuses.length = 0;
    const got: Outcome[] = [];
    for (const sql of ['SELECT 1 AS one', 'SELECT 2 AS two', 'COMMIT']) got.push(await outcome(c.query(sql)));
    console.log(`[cut] read-only transaction on ${node.name}: ${JSON.stringify(got)} statuses ${statuses.join('')}`);
    if (!ROUTING) return expectConnectionDied(got, end);
    expectFailedTransaction(got, statuses, /^08006$/);
    expect((await c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    expect(c.getTransactionStatus()).toBe('I');
  });
});
