// Automatic failover in async mode on clusters of its own: the primary killed under write load, promotion, re-pointing, surviving sessions, fencing of the old primary, and "no candidate".
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, directClient, endQuietly, eventually, metricValue, proxyClient, rejection, sleep, using } from './helpers.js';

interface StatusNode { name: string; role: string; up: boolean; fenced: boolean; receiver_status: string | null; streams_from: string | null; backend_connections: number }
interface FailoverEvent { at: string; kind: string; reason: string; old_primary: string | null; new_primary: string; duration_ms: number; promoted_receive_lsn: string | null; repointed: string[] }
interface Status {
  primary: string | null;
  fenced: string[];
  nodes: StatusNode[];
  failover: { enabled: boolean; phase: string; reason: string | null; failovers: number; events: FailoverEvent[] };
  replication: { mode: string; strict: boolean; synchronous_standby_names: string; synchronous_standbys: string[]; degraded: boolean };
}

interface Ack { id: number; port: number; at: number }
interface LoadError { code: string | undefined; message: string; at: number; client: number }

/** Clients looping INSERT … RETURNING through the proxy (even: simple protocol, odd: extended), recording every acknowledged id. */
async function startLoad(proxy: RunningProxy, info: ClusterInfo, clients: number) {
  const acked: Ack[] = [];
  const errors: LoadError[] = [];
  const events: string[] = [];
  const cs: pg.Client[] = [];
  for (let k = 0; k < clients; k++) {
    const c = await proxyClient(proxy, info, { application_name: 'fo-load' });
    c.on('error', (e) => events.push(`client ${k} error: ${e.message}`));
    c.on('end', () => events.push(`client ${k} ended`));
    cs.push(c);
  }
  let stopped = false;
  const loops = cs.map(async (c, k) => {
    while (!stopped) {
      try {
        const r = k % 2 === 0
          ? await c.query(`INSERT INTO w (client) VALUES (${k}) RETURNING id, inet_server_port() AS port`)
          : await c.query({ text: 'INSERT INTO w (client) VALUES ($1) RETURNING id, inet_server_port() AS port', values: [k] });
        acked.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, at: Date.now() });
      } catch (err) {
        const e = err as Error & { code?: string };
        errors.push({ code: e.code, message: e.message, at: Date.now(), client: k });
        await sleep(10);
      }
    }
  });
  return {
    acked,
    errors,
    events,
    async stop() {
      stopped = true;
      await Promise.race([Promise.all(loops), sleep(20_000)]);
      await Promise.all(cs.map((c) => endQuietly(c)));
    },
  };
}
type Load = Awaited<ReturnType<typeof startLoad>>;

async function status(proxy: RunningProxy): Promise<Status> {
  const r = await adminGet(proxy, '/status');
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as Status;
}
const metrics = async (proxy: RunningProxy): Promise<string> => (await adminGet(proxy, '/metrics')).body;

/** Ids in `ids` that are missing from table w on the node. */
async function missingOn(n: ClusterNode, info: ClusterInfo, ids: number[]): Promise<number[]> {
  return using(directClient(n, info, { database: info.app.database }), async (d) => {
    const r = await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids]);
    const have = new Set(r.rows.map((x) => x.id));
    return ids.filter((id) => !have.has(id));
  });
}

describe('failover in async mode: the primary is killed under write load', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let proxy: RunningProxy | null = null;
  let load: Load | null = null;
  const extra: pg.Client[] = [];
  let idle: pg.Client;
  const idleEvents: string[] = [];
  let tx: pg.Client;
  let txId = 0;
  let killAt = 0;
  let newPrimary: ClusterNode;
  let other: ClusterNode;
  const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    proxy = await startProxy(info, { extra: 'replication: { mode: async }' });
    await using(proxyClient(proxy, info), (c) => c.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL, at timestamptz DEFAULT clock_timestamp())'));
  });

  afterAll(async () => {
    await load?.stop().catch(() => {});
    await Promise.all([idle, tx, ...extra].map((c) => endQuietly(c)));
    await proxy?.close(1_000).catch(() => {});
    await cluster?.stop();
  });

  it('promotes a replica, and writes resume on it with every acknowledged commit accounted for', async () => {
    const st0 = await status(proxy!);
    expect(st0.primary).toBe('pg1');
    expect(st0.replication.mode).toBe('async');
    await eventually("pgsplit to set synchronous_standby_names to '' on the primary", async () => {
      const v = await using(directClient(node('pg1'), info), async (d) => (await d.query('SHOW synchronous_standby_names')).rows[0].synchronous_standby_names as string);
      return v === '' && (await status(proxy!)).replication.synchronous_standby_names === '' ? true : undefined;
    }, 10_000);

    // An idle session with settings, and one inside an explicit transaction, both on pg1.
    idle = await proxyClient(proxy!, info);
    idle.on('error', (e) => idleEvents.push(`error: ${e.message}`));
    idle.on('end', () => idleEvents.push('end'));
    await idle.query("SET application_name = 'fo-idle'");
    await idle.query("SET work_mem = '3MB'");
    expect((await idle.query('/* pgsplit:primary */ SELECT inet_server_port() AS port')).rows[0].port).toBe(node('pg1').port);
    tx = await proxyClient(proxy!, info, { application_name: 'fo-tx' });
    await tx.query('BEGIN');
    txId = (await tx.query('INSERT INTO w (client) VALUES (99) RETURNING id, inet_server_port() AS port')).rows[0].id as number;

    load = await startLoad(proxy!, info, 2);
    await eventually('writes through the proxy before the kill', () => (load!.acked.length >= 50 ? true : undefined), 15_000);
    const ackedBeforeKill = load.acked.length;

    const stopCalled = Date.now();
    await cluster.stopNode('pg1', 'immediate');
    const stopReturned = Date.now();
    const firstAck = await eventually('a write acknowledged by a node other than pg1', () => load!.acked.find((a) => a.at >= stopCalled && a.port !== node('pg1').port), 20_000, 5);
    const firstError = load.errors.find((e) => e.at >= stopCalled);
    killAt = Math.min(stopReturned, firstError?.at ?? stopReturned);

    const st = await status(proxy!);
    expect(['pg2', 'pg3']).toContain(st.primary);
    newPrimary = node(st.primary!);
    other = node(st.primary === 'pg2' ? 'pg3' : 'pg2');
    expect(firstAck.port, 'the first write after the kill ran on the node /status calls primary').toBe(newPrimary.port);
    console.log(`[failover] async: ${newPrimary.name} promoted; kill→first acknowledged write on it ${firstAck.at - killAt} ms (pg_ctl stop -m immediate took ${stopReturned - stopCalled} ms; ${ackedBeforeKill} writes acknowledged before the kill)`);

    // Keep writing for a moment on the new primary, then compare every acknowledged id with what it has.
    await eventually('more writes on the new primary', () => (load!.acked.filter((a) => a.port === newPrimary.port).length >= 20 ? true : undefined), 15_000);
    const before = load.acked.filter((a) => a.at < killAt);
    const missing = await missingOn(newPrimary, info, load.acked.map((a) => a.id));
    const lostAfter = missing.filter((id) => load!.acked.find((a) => a.id === id)!.port === newPrimary.port);
    console.log(`[failover] async: ${load.acked.length} writes acknowledged, ${missing.length} missing on ${newPrimary.name} (lost commits in async mode; ${before.length} acknowledged before the kill)`);
    expect(lostAfter, 'writes acknowledged by the new primary itself are all there').toEqual([]);
    expect(load.acked.filter((a) => a.at > firstAck.at).every((a) => a.port === newPrimary.port), 'after the failover every write went to the new primary').toBe(true);

    // The in-flight statement of each load client failed once with 08006/08007 naming the failover; nothing else failed.
    console.log(`[failover] async: load errors ${JSON.stringify(load.errors.map((e) => `${e.client}:${e.code}`))}`);
    for (const e of load.errors) {
      expect(['08006', '08007'], e.message).toContain(e.code);
      expect(e.message).toMatch(/failover/);
    }
    for (const k of [0, 1]) expect(load.errors.filter((e) => e.client === k).length, `client ${k} errors`).toBeLessThanOrEqual(1);
    expect(load.events).toEqual([]);
  });

  it('re-points the other replica, which then streams from the new primary', async () => {
    const want = `${newPrimary.host}:${newPrimary.port}`;
    const started = Date.now();
    const n = await eventually(`${other.name} to stream from ${want}`, async () => {
      const s = (await status(proxy!)).nodes.find((x) => x.name === other.name)!;
      return s.receiver_status === 'streaming' && s.streams_from === want ? s : undefined;
    }, 30_000, 100);
    console.log(`[failover] async: ${other.name} streams from ${newPrimary.name} ${Date.now() - killAt} ms after the kill (${Date.now() - started} ms after the check began)`);
    expect(n.role).toBe('replica');
    const standbys = await using(directClient(newPrimary, info), async (d) => (await d.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")).rows.map((r) => r.application_name as string));
    expect(standbys).toContain(other.name);
  });

  it('an idle session keeps its connection and settings; a session in a transaction gets 08006, its transaction is failed until ROLLBACK, then it continues', async () => {
    const r = await idle.query("SELECT current_setting('application_name') AS app, current_setting('work_mem') AS wm");
    expect(r.rows[0]).toEqual({ app: 'fo-idle', wm: '3MB' });
    const w = await idle.query("/* pgsplit:primary */ SELECT current_setting('application_name') AS app, current_setting('work_mem') AS wm, inet_server_port() AS port");
    expect(w.rows[0]).toEqual({ app: 'fo-idle', wm: '3MB', port: newPrimary.port });
    const ins = await idle.query('INSERT INTO w (client) VALUES (98) RETURNING inet_server_port() AS port');
    expect(ins.rows[0].port).toBe(newPrimary.port);
    expect(idleEvents).toEqual([]);

    const err = await rejection(tx.query('INSERT INTO w (client) VALUES (97)'));
    console.log(`[failover] async: in-transaction session got ${err.code}: ${err.message}`);
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/failover/);
    // The transaction died with the old primary: as on PostgreSQL after any error in a transaction, nothing runs until ROLLBACK.
    expect((await rejection(tx.query('SELECT 1 AS ok'))).code).toBe('25P02');
    expect((await tx.query('ROLLBACK')).command).toBe('ROLLBACK');
    expect((await tx.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    const again = await tx.query('INSERT INTO w (client) VALUES (96) RETURNING id, inet_server_port() AS port');
    expect(again.rows[0].port).toBe(newPrimary.port);
    expect(await missingOn(newPrimary, info, [txId]), 'the row of the lost transaction never committed').toEqual([txId]);
  });

  it('the old primary, restarted, is fenced and gets no traffic; /status and metrics tell', async () => {
    await cluster.startNode('pg1');
    const st = await eventually('pg1 to be fenced', async () => {
      const s = await status(proxy!);
      return s.fenced.includes('pg1') ? s : undefined;
    }, 15_000);
    expect(st.fenced).toEqual(['pg1']);
    expect(st.primary).toBe(newPrimary.name);
    const pg1 = st.nodes.find((n) => n.name === 'pg1')!;
    expect(pg1).toMatchObject({ fenced: true, up: true });
    expect(st.nodes.filter((n) => n.name !== 'pg1').every((n) => !n.fenced)).toBe(true);
    const m = await metrics(proxy!);
    expect(metricValue(m, 'pgsplit_node_fenced', { node: 'pg1' })).toBe(1);
    expect(metricValue(m, 'pgsplit_node_fenced', { node: newPrimary.name })).toBe(0);
    expect(metricValue(m, 'pgsplit_primary', { node: newPrimary.name })).toBe(1);
    expect(metricValue(m, 'pgsplit_primary', { node: 'pg1' }) ?? 0).toBe(0);

    // New sessions (reads and writes) and the running load: nothing reaches pg1.
    const fencedAt = Date.now();
    for (let i = 0; i < 6; i++) {
      const c = await proxyClient(proxy!, info, { application_name: 'fo-after-fence' });
      extra.push(c);
      const read = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
      const write = (await c.query('INSERT INTO w (client) VALUES (95) RETURNING inet_server_port() AS port')).rows[0].port as number;
      expect(read).not.toBe(node('pg1').port);
      expect(write).toBe(newPrimary.port);
    }
    await sleep(1_000);
    const onPg1 = await using(directClient(node('pg1'), info), async (d) =>
      (await d.query("SELECT application_name, state, query FROM pg_stat_activity WHERE application_name LIKE 'fo-%'")).rows);
    expect(onPg1).toEqual([]);
    expect(load!.acked.filter((a) => a.at >= fencedAt && a.port === node('pg1').port)).toEqual([]);
    expect(load!.acked.filter((a) => a.at >= fencedAt).length, 'the load kept writing').toBeGreaterThan(0);
    expect((await status(proxy!)).nodes.find((n) => n.name === 'pg1')!.backend_connections).toBe(0);
    expect(metricValue(await metrics(proxy!), 'pgsplit_backend_connections', { node: 'pg1' }) ?? 0).toBe(0);
  });

  it('counts one failover, with the event in /status and the metrics', async () => {
    await load!.stop();
    const st = await status(proxy!);
    expect(st.failover.enabled).toBe(true);
    expect(st.failover.failovers).toBe(1);
    expect(st.failover.events).toHaveLength(1);
    const ev = st.failover.events[0]!;
    console.log(`[failover] async: event ${JSON.stringify(ev)}`);
    expect(ev).toMatchObject({ kind: 'failover', old_primary: 'pg1', new_primary: newPrimary.name });
    expect(ev.repointed).toEqual([other.name]);
    expect(typeof ev.duration_ms).toBe('number');
    expect(ev.promoted_receive_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const m = await metrics(proxy!);
    expect(metricValue(m, 'pgsplit_failovers_total')).toBe(1);
    const d = metricValue(m, 'pgsplit_failover_duration_seconds');
    expect(d).toBeGreaterThan(0);
    expect(metricValue(m, 'pgsplit_replication_mode', { mode: 'async' })).toBe(1);
    console.log(`[failover] async: pgsplit_failover_duration_seconds ${d} (first failed probe → writes on the new primary)`);
  });
});

describe('no promotable replica: every replica is tagged nofailover', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let proxy: RunningProxy | null = null;
  let c: pg.Client | null = null;

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    proxy = await startProxy(info, { extra: 'failover: { hold_timeout: 1s }', nodeExtra: { pg2: 'tags: [nofailover]', pg3: 'tags: [nofailover]' } });
  });

  afterAll(async () => {
    await endQuietly(c);
    await proxy?.close(1_000).catch(() => {});
    await cluster?.stop();
  });

  it('promotes nobody, holds then fails statements with 57P03, and takes pg1 back as primary when it returns', async () => {
    const pg1 = cluster.nodes[0]!;
    const events: string[] = [];
    c = await proxyClient(proxy!, info, { application_name: 'nc-client' });
    c.on('error', (e) => events.push(`error: ${e.message}`));
    await c.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL)');
    expect((await c.query('INSERT INTO w (client) VALUES (1) RETURNING inet_server_port() AS port')).rows[0].port).toBe(pg1.port);

    const killAt = Date.now();
    await cluster.stopNode('pg1', 'immediate');
    const st = await eventually('failover phase no-candidate', async () => {
      const s = await status(proxy!);
      return s.failover.phase === 'no-candidate' ? s : undefined;
    }, 10_000, 50);
    console.log(`[failover] no-candidate: phase no-candidate ${Date.now() - killAt} ms after the kill: ${st.failover.reason}`);
    expect(st.failover.failovers).toBe(0);
    expect(st.failover.events).toEqual([]);
    expect(st.primary).toBeNull();

    let t = Date.now();
    const err = await rejection(c.query('INSERT INTO w (client) VALUES (2)'));
    console.log(`[failover] no-candidate: a write in an open session failed after ${Date.now() - t} ms (hold_timeout 1s) with ${err.code}: ${err.message}`);
    expect(err.code).toBe('57P03');
    t = Date.now();
    const connErr = await rejection(proxyClient(proxy!, info, { application_name: 'nc-new' }));
    console.log(`[failover] no-candidate: a new connection failed after ${Date.now() - t} ms with ${connErr.code}: ${connErr.message}`);
    expect(connErr.code).toBe('57P03');

    await sleep(1_500);
    for (const name of ['pg2', 'pg3']) {
      const n = cluster.nodes.find((x) => x.name === name)!;
      const rec = await using(directClient(n, info), async (d) => (await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
      expect(rec, `${name} is still a replica`).toBe(true);
    }
    const m = await metrics(proxy!);
    expect(metricValue(m, 'pgsplit_failovers_total')).toBe(0);
    expect((await status(proxy!)).failover.failovers).toBe(0);

    await cluster.startNode('pg1');
    const back = await eventually('pg1 to be primary again', async () => {
      const s = await status(proxy!);
      return s.primary === 'pg1' ? s : undefined;
    }, 20_000);
    expect(back.fenced).toEqual([]);
    expect(back.failover.failovers).toBe(0);
    const r = await c.query('INSERT INTO w (client) VALUES (3) RETURNING inet_server_port() AS port');
    expect(r.rows[0].port).toBe(pg1.port);
    await using(proxyClient(proxy!, info), async (n) => {
      expect((await n.query('INSERT INTO w (client) VALUES (4) RETURNING inet_server_port() AS port')).rows[0].port).toBe(pg1.port);
    });
    expect(events).toEqual([]);
  });
});
