// A transaction open across a switchover or a failover (the primary killed) is all-or-nothing: never half-committed on the new primary.
// Each test has three sessions in a transaction at the moment of the cut, one per protocol: simple, extended (parameters, a
// named statement, BEGIN and COMMIT as Parse/Bind/Execute) and pipelined (node-postgres pipeline mode: the rest of the
// transaction sent at once).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { configFor, startProxy, type RunningProxy } from '../harness/proxy.js';
import { endQuietly, eventually, proxyClient, using } from './helpers.js';
import { committedRows, recordEnd, recordStatuses, ROUTING, runSteps, settledOutcome, watchBackendCloses, type Outcome, type Step } from './cut-helpers.js';

// A cluster of its own (as in failover.test.ts and switchover.test.ts): the shared one is never failed over.
// hold_timeout is generous so that a statement waiting for the new primary never fails for want of time.
const PROXY_OPTS = { extra: 'failover: { hold_timeout: 30s }' };
const TABLE = 'cut_fo_rows';

let cluster: Cluster;
let info: ClusterInfo;
let proxy: RunningProxy;
let closes: (node: string) => number;
const clients: pg.Client[] = [];
const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;

type Protocol = 'simple' | 'extended' | 'pipelined';
const PROTOCOLS: readonly Protocol[] = ['simple', 'extended', 'pipelined'];

const RETURNING = 'RETURNING inet_server_port() AS port';
const insert = (tag: string, v: number): string => `INSERT INTO ${TABLE} (tag, v) VALUES ('${tag}', ${v}) ${RETURNING}`;
const insertX = (tag: string, v: number, name?: string): pg.QueryConfig => ({ ...(name ? { name } : {}), text: `INSERT INTO ${TABLE} (tag, v) VALUES ($1, $2) ${RETURNING}`, values: [tag, v] });
/** node-postgres's queryMode: 'extended' (Parse/Bind/Execute/Sync even without parameters; missing from @types/pg). */
const extended = (text: string): pg.QueryConfig => ({ text, queryMode: 'extended' }) as pg.QueryConfig;

/** How a session of each protocol says BEGIN, INSERT row v and COMMIT. */
const STEPS: Record<Protocol, { begin: Step; insert: (tag: string, v: number) => Step; commit: Step }> = {
  simple: { begin: 'BEGIN', insert, commit: 'COMMIT' },
  // Row 2 with an unnamed statement, the others with a named one: prepared on the old primary (row 1), used again
  // after the cut (row 3) and on the new primary (row 4), where the proxy has to prepare it anew.
  extended: { begin: extended('BEGIN'), insert: (tag, v) => insertX(tag, v, v === 2 ? undefined : 'cutfo_ins'), commit: extended('COMMIT') },
  // All sent at once: statements with parameters and simple ones mixed, as in an application's batch.
  pipelined: { begin: 'BEGIN', insert: (tag, v) => (v % 2 === 0 ? insertX(tag, v) : insert(tag, v)), commit: 'COMMIT' },
};

interface Session {
  protocol: Protocol;
  tag: string;
  app: string;
  c: pg.Client;
  statuses: string[];
  end: { ended: boolean };
}

async function session(protocol: Protocol, tag: string, app: string): Promise<Session> {
  const c = await proxyClient(proxy, info, { application_name: app, pipeline: protocol === 'pipelined' });
  clients.push(c);
  return { protocol, tag, app, c, statuses: recordStatuses(c), end: recordEnd(c) };
}

/** One session per protocol, each with a tag of its own for its rows. */
const sessions = (name: string): Promise<Session[]> => Promise.all(PROTOCOLS.map((p) => session(p, `${name}-${p}`, `cutfo-${name}-${p}`)));

/** Sends the statements the session's way (one after another, or all at once when pipelined); outcomes and results in order. */
async function send(s: Session, steps: Step[]): Promise<{ got: Outcome[]; results: PromiseSettledResult<pg.QueryResult>[] }> {
  const results = await runSteps(s.c, steps, s.protocol === 'pipelined');
  return { got: await Promise.all(results.map(settledOutcome)), results };
}

/** BEGIN and INSERT row v (then COMMIT unless `open`): every statement succeeds and the row goes to `on`. */
async function transaction(s: Session, v: number, on: ClusterNode, open = false): Promise<void> {
  const st = STEPS[s.protocol];
  const { got, results } = await send(s, open ? [st.begin, st.insert(s.tag, v)] : [st.begin, st.insert(s.tag, v), st.commit]);
  expect(got, `${s.protocol} session: BEGIN, INSERT ${v}${open ? '' : ', COMMIT'}`).toEqual(['BEGIN', 'INSERT', 'COMMIT'].slice(0, got.length).map((command) => ({ ok: true, command })));
  expect((results[1] as PromiseFulfilledResult<pg.QueryResult>).value.rows[0].port, `${s.protocol} session: row ${v} written on ${on.name}`).toBe(on.port);
}

/** INSERT rows 2 and 3, then COMMIT, in the session's transaction (after or during the cut); what each ended with. */
async function restOfTransaction(s: Session): Promise<Outcome[]> {
  const st = STEPS[s.protocol];
  return (await send(s, [st.insert(s.tag, 2), st.insert(s.tag, 3), st.commit])).got;
}

const rows = (on: ClusterNode, s: Session): Promise<number[]> => committedRows(on, info, TABLE, s.tag);

/**
 * How the client saw its cut transaction. Routing: 08006 (an ERROR: the session goes on), 25P02, COMMIT answers ROLLBACK,
 * ReadyForQuery E E I, the session alive. Relay: every statement failed (the connection closes, see goOn).
 */
function expectCut(s: Session, got: Outcome[]): void {
  if (!ROUTING) {
    for (const o of got) expect(o.ok, `${s.protocol} session, statement after the cut: ${JSON.stringify(o)}`).toBe(false);
    return;
  }
  expect(got[0], `${s.protocol} session: the first statement after the cut`).toMatchObject({ ok: false, code: '08006', severity: 'ERROR' });
  expect(got[1], `${s.protocol} session: a statement of the failed transaction`).toMatchObject({ ok: false, code: '25P02' });
  expect(got[2], `${s.protocol} session: COMMIT of the failed transaction`).toEqual({ ok: true, command: 'ROLLBACK' });
  expect(s.statuses, `${s.protocol} session: ReadyForQuery after each statement`).toEqual(['E', 'E', 'I']);
  expect(s.end.ended, `${s.protocol} session survived`).toBe(false);
}

/**
 * A new transaction commits row 4 on `on`: in the same session with routing; the relay closes a session whose server
 * went away, so there in a new one of the same protocol. Then the committed rows of the tag are `before` and 4.
 */
async function commitsAfter(s: Session, on: ClusterNode, before: number[]): Promise<void> {
  let w = s;
  if (!ROUTING) {
    await eventually(`the relay to close the ${s.protocol} session`, () => (s.end.ended ? true : undefined), 10_000);
    w = await session(s.protocol, s.tag, `${s.app}-after`);
  }
  await transaction(w, 4, on);
  expect(await rows(on, s), `${s.protocol} session: committed rows on ${on.name}`).toEqual([...before, 4]);
}

/** The admin credentials of the harness config (admin.auth), if it has any. */
function adminHeaders(): Record<string, string> {
  const auth = (configFor(info, PROXY_OPTS).admin as { auth?: { token?: string; user?: string; password?: string } }).auth;
  if (auth?.token) return { authorization: `Bearer ${auth.token}` };
  if (auth?.user !== undefined) return { authorization: `Basic ${Buffer.from(`${auth.user}:${auth.password ?? ''}`).toString('base64')}` };
  return {};
}

async function postSwitchover(to: string): Promise<{ status: number; body: { ok?: boolean; error?: string } }> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/switchover`, { method: 'POST', headers: { 'content-type': 'application/json', ...adminHeaders() }, body: JSON.stringify({ to }), signal: AbortSignal.timeout(60_000) });
  return { status: r.status, body: JSON.parse(await r.text()) };
}

/** Waits until every replica but `except` streams from `p` (per /status). */
async function replicasStreamFrom(p: ClusterNode, except: string[] = []): Promise<void> {
  const want = `${p.host}:${p.port}`;
  await eventually(`the replicas to stream from ${p.name}`, async () => {
    const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/status`, { headers: adminHeaders(), signal: AbortSignal.timeout(5_000) });
    const st = JSON.parse(await r.text()) as { nodes: { name: string; receiver_status: string | null; streams_from: string | null }[] };
    const others = st.nodes.filter((n) => n.name !== p.name && !except.includes(n.name));
    return others.length > 0 && others.every((n) => n.receiver_status === 'streaming' && n.streams_from === want) ? true : undefined;
  }, 30_000);
}

beforeAll(async () => {
  cluster = await startCluster({ signalHandlers: false });
  info = clusterInfo(cluster);
  proxy = await startProxy(info, PROXY_OPTS);
  closes = watchBackendCloses(proxy);
  await using(proxyClient(proxy, info), (c) => c.query(`CREATE TABLE ${TABLE} (tag text NOT NULL, v int NOT NULL)`));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await proxy?.close(1_000).catch(() => {});
  await cluster?.stop();
});

describe('a transaction open across a failover, then a switchover', () => {
  it('the primary killed (pg_ctl stop -m immediate) during open transactions (simple, extended, pipelined): nothing of them commits on the new primary; after ROLLBACK each session commits there', async () => {
    const old = node('pg1');
    expect(proxy.topology.primary?.name).toBe(old.name);
    const ss = await sessions('failover');
    for (const s of ss) await transaction(s, 1, old, true);

    const before = closes(old.name);
    await cluster.stopNode(old.name, 'immediate');
    // At least one connection per session (the proxy may have others there too).
    await eventually(`the proxy to see its connections to ${old.name} close`, () => (closes(old.name) >= before + ss.length ? true : undefined), 10_000, 5);
    for (const s of ss) s.statuses.length = 0;
    const got = await Promise.all(ss.map(restOfTransaction));
    const next = await eventually('a new primary', () => {
      const p = proxy.topology.primary;
      return p && p.up && p.name !== old.name ? node(p.name) : undefined;
    }, 60_000);
    ss.forEach((s, i) => console.log(`[cut] primary ${old.name} killed with an open transaction (${s.protocol}): ${JSON.stringify(got[i])} statuses ${s.statuses.join('')}; new primary ${next.name}`));

    for (const [i, s] of ss.entries()) {
      expect(await rows(next, s), `${s.protocol} session: rows of the cut transaction that committed on ${next.name}`).toEqual([]);
      expectCut(s, got[i]!);
    }
    for (const s of ss) await commitsAfter(s, next, []);
  }, 150_000);

  it('switchover requested while sessions (simple, extended, pipelined) are idle in a transaction: each transaction is all or nothing, then each session writes on the new primary', async () => {
    // After the failover test: the primary is the promoted replica, the switchover goes to the other one.
    const from = node(proxy.topology.primary!.name);
    const to = node(from.name === 'pg2' ? 'pg3' : 'pg2');
    await replicasStreamFrom(from, ['pg1']);
    const ss = await sessions('switchover');
    for (const s of ss) await transaction(s, 1, from, true);

    // Right after the failover the controller may still be busy (re-pointing, fencing): a 409 then is retried.
    let switching = postSwitchover(to.name);
    let answered: { status: number; body: unknown } | null = null;
    void switching.then((r) => (answered = r));
    await eventually('the switchover to hold new writes', async () => {
      if (proxy.topology.writesPaused) return true;
      const a = answered as { status: number; body: unknown } | null;
      if (a !== null) {
        if (a.status !== 409) throw new Error(`switchover answered ${a.status} ${JSON.stringify(a.body)} without holding writes`);
        answered = null;
        switching = postSwitchover(to.name);
        void switching.then((r) => (answered = r));
      }
      return undefined;
    }, 30_000, 5);
    for (const s of ss) s.statuses.length = 0;
    const got = await Promise.all(ss.map(restOfTransaction));
    const sw = await switching;
    ss.forEach((s, i) => console.log(`[cut] switchover with an open transaction (${s.protocol}): ${JSON.stringify(got[i])} statuses ${s.statuses.join('')}`));
    console.log(`[cut] POST /switchover ${sw.status} ${JSON.stringify(sw.body)}`);
    expect(sw.status, JSON.stringify(sw.body)).toBe(200);
    expect(proxy.topology.primary?.name).toBe(to.name);

    for (const [i, s] of ss.entries()) {
      const g = got[i]!;
      const committed = g[2]!.ok && g[2]!.command === 'COMMIT';
      if (committed) {
        // The switchover let the open transaction finish on the old primary: all of it is on the new one.
        expect(g.slice(0, 2).every((o) => o.ok), `${s.protocol} session: a transaction that answered COMMIT had no failed statement`).toBe(true);
        expect(await rows(to, s), `${s.protocol} session: rows of the committed transaction`).toEqual([1, 2, 3]);
      } else {
        // The switchover cut it: nothing of it committed, and the client saw it fail.
        expect(await rows(to, s), `${s.protocol} session: rows of the cut transaction that committed`).toEqual([]);
        expectCut(s, g);
      }
      await commitsAfter(s, to, committed ? [1, 2, 3] : []);
    }
  }, 120_000);
});
