// A transaction open across a switchover or a failover (the primary killed) is all-or-nothing: never half-committed on the new primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { configFor, startProxy, type RunningProxy } from '../harness/proxy.js';
import { endQuietly, eventually, proxyClient, using } from './helpers.js';
import { committedRows, outcome, recordEnd, recordStatuses, ROUTING, watchBackendCloses, type Outcome } from './cut-helpers.js';

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

async function client(app: string): Promise<{ c: pg.Client; statuses: string[]; end: { ended: boolean } }> {
  const c = await proxyClient(proxy, info, { application_name: app });
  clients.push(c);
  return { c, statuses: recordStatuses(c), end: recordEnd(c) };
}

const insert = (tag: string, v: number): string => `INSERT INTO ${TABLE} (tag, v) VALUES ('${tag}', ${v}) RETURNING inet_server_port() AS port`;

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
  it('the primary killed (pg_ctl stop -m immediate) during an open transaction: nothing of it commits on the new primary; after ROLLBACK the session commits there', async () => {
    const tag = 'failover';
    const old = node('pg1');
    expect(proxy.topology.primary?.name).toBe(old.name);
    const { c, statuses, end } = await client('cutfo-failover');
    await c.query('BEGIN');
    expect((await c.query(insert(tag, 1))).rows[0].port).toBe(old.port);

    const before = closes(old.name);
    await cluster.stopNode(old.name, 'immediate');
    await eventually(`the proxy to see its connection to ${old.name} close`, () => (closes(old.name) > before ? true : undefined), 10_000, 5);
    statuses.length = 0;
    const got: Outcome[] = [];
    for (const sql of [insert(tag, 2), insert(tag, 3), 'COMMIT']) got.push(await outcome(c.query(sql)));
    const next = await eventually('a new primary', () => {
      const p = proxy.topology.primary;
      return p && p.up && p.name !== old.name ? node(p.name) : undefined;
    }, 60_000);
    console.log(`[cut] primary ${old.name} killed with an open transaction: ${JSON.stringify(got)} statuses ${statuses.join('')}; new primary ${next.name}`);
    expect(await committedRows(next, info, TABLE, tag), `rows of the cut transaction that committed on ${next.name}`).toEqual([]);

    let w = c;
    if (ROUTING) {
      expect(got[0]).toMatchObject({ ok: false, code: '08006', severity: 'ERROR' });
      expect(got[1]).toMatchObject({ ok: false, code: '25P02' });
      expect(got[2]).toEqual({ ok: true, command: 'ROLLBACK' });
      expect(statuses).toEqual(['E', 'E', 'I']);
      expect(end.ended, 'the session survived the failover').toBe(false);
    } else {
      for (const o of got) expect(o.ok, `statement after the kill: ${JSON.stringify(o)}`).toBe(false);
      await eventually('the relay to close the client connection', () => (end.ended ? true : undefined), 10_000);
      w = (await client('cutfo-failover-after')).c;
    }
    await w.query('BEGIN');
    expect((await w.query(insert(tag, 4))).rows[0].port).toBe(next.port);
    expect((await w.query('COMMIT')).command).toBe('COMMIT');
    expect(await committedRows(next, info, TABLE, tag)).toEqual([4]);
  }, 150_000);

  it('switchover requested while the session is idle in a transaction: the transaction is all or nothing, then the session writes on the new primary', async () => {
    const tag = 'switchover';
    // After the failover test: the primary is the promoted replica, the switchover goes to the other one.
    const from = node(proxy.topology.primary!.name);
    const to = node(from.name === 'pg2' ? 'pg3' : 'pg2');
    await replicasStreamFrom(from, ['pg1']);
    const { c, statuses, end } = await client('cutfo-switchover');
    await c.query('BEGIN');
    expect((await c.query(insert(tag, 1))).rows[0].port).toBe(from.port);

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
    statuses.length = 0;
    const got: Outcome[] = [];
    for (const sql of [insert(tag, 2), insert(tag, 3), 'COMMIT']) got.push(await outcome(c.query(sql)));
    const sw = await switching;
    console.log(`[cut] switchover with an open transaction: ${JSON.stringify(got)} statuses ${statuses.join('')}; POST /switchover ${sw.status} ${JSON.stringify(sw.body)}`);
    expect(sw.status, JSON.stringify(sw.body)).toBe(200);
    expect(proxy.topology.primary?.name).toBe(to.name);

    const committed = got[2]!.ok && got[2]!.command === 'COMMIT';
    const have = await committedRows(to, info, TABLE, tag);
    if (committed) {
      // The switchover let the open transaction finish on the old primary: all of it is on the new one.
      expect(got.slice(0, 2).every((o) => o.ok), 'a transaction that answered COMMIT had no failed statement').toBe(true);
      expect(have).toEqual([1, 2, 3]);
    } else {
      // The switchover cut it: nothing of it committed, and (routing) the client saw a failed transaction.
      expect(have, 'rows of the cut transaction that committed').toEqual([]);
      if (ROUTING) {
        expect(got[0]).toMatchObject({ ok: false, code: '08006' });
        expect(got[1]).toMatchObject({ ok: false, code: '25P02' });
        expect(got[2]).toEqual({ ok: true, command: 'ROLLBACK' });
        expect(statuses).toEqual(['E', 'E', 'I']);
      } else for (const o of got) expect(o.ok).toBe(false);
    }

    // A new transaction commits on the new primary: the same session with routing (the relay session ends with its server).
    const w = ROUTING ? c : (await client('cutfo-switchover-after')).c;
    if (!ROUTING) await eventually('the relay session to end with its server', () => (end.ended ? true : undefined), 10_000);
    await w.query('BEGIN');
    expect((await w.query(insert(tag, 4))).rows[0].port).toBe(to.port);
    expect((await w.query('COMMIT')).command).toBe('COMMIT');
    expect(await committedRows(to, info, TABLE, tag)).toEqual(committed ? [1, 2, 3, 4] : [4]);
  }, 120_000);

});
