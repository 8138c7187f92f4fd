// Failover in semi-sync and sync replication modes: pgsplit sets synchronous_standby_names, and a primary killed under write load loses zero acknowledged commits (one fresh cluster per trial).
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, directClient, endQuietly, eventually, metricValue, proxyClient, sleep, using } from './helpers.js';

// A trial (cluster, proxy, load, kill, checks, teardown) takes ~4 s here, so the suite runs 10 of them
// (~40 s). `npm run bench:failover` (scripts/failover-bench.ts) runs more per mode, async included.

type Mode = 'semi-sync' | 'sync';
interface StatusNode { name: string; role: string; receiver_status: string | null; streams_from: string | null; banned: boolean; ban_reason: string | null }
interface Status {
  primary: string | null;
  nodes: StatusNode[];
  failover: { phase: string; failovers: number; events: { kind: string; old_primary: string | null; new_primary: string; duration_ms: number; repointed: string[] }[] };
  replication: { mode: string; synchronous_standby_names: string; synchronous_standbys: string[]; degraded: boolean };
}
interface Trial {
  mode: Mode;
  label: string;
  nodeExtra?: Record<string, string>;
  /** What pgsplit must set on the primary, and the sync_state pg_stat_replication must then show per standby. */
  names: string;
  syncState: Record<string, string>;
  /** Nodes that may be promoted (all synchronous members unless restricted). */
  promotable: string[];
  /** Also check that the other replica streams from the new primary afterwards. */
  checkRepoint?: boolean;
}

const PLAIN: Record<Mode, Omit<Trial, 'label'>> = {
  'semi-sync': { mode: 'semi-sync', names: 'ANY 1 ("pg2", "pg3")', syncState: { pg2: 'quorum', pg3: 'quorum' }, promotable: ['pg2', 'pg3'] },
  sync: { mode: 'sync', names: 'FIRST 2 ("pg2", "pg3")', syncState: { pg2: 'sync', pg3: 'sync' }, promotable: ['pg2', 'pg3'] },
};
// pg2 is made as attractive as possible (first in config order, priority 100) but may not be promoted: only pg3 is synchronous.
const TRIALS: Trial[] = [
  ...[1, 2, 3, 4].map((i) => ({ ...PLAIN['semi-sync'], label: `semi-sync #${i}` })),
  ...[1, 2, 3, 4].map((i) => ({ ...PLAIN.sync, label: `sync #${i}` })),
  {
    mode: 'sync', label: 'sync, pg2 tagged nofailover', nodeExtra: { pg2: 'tags: [nofailover], priority: 100' },
    names: 'FIRST 1 ("pg3")', syncState: { pg2: 'async', pg3: 'sync' }, promotable: ['pg3'], checkRepoint: true,
  },
  {
    mode: 'semi-sync', label: 'semi-sync, pg2 delayed', nodeExtra: { pg2: 'delayed: true, priority: 100' },
    names: 'ANY 1 ("pg3")', syncState: { pg2: 'async', pg3: 'quorum' }, promotable: ['pg3'], checkRepoint: true,
  },
];

const results: { label: string; mode: Mode; promoted: string; killToWriteMs: number; acked: number; lost: number }[] = [];
let cluster: Cluster | null = null;
let proxy: RunningProxy | null = null;
const clients: pg.Client[] = [];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** synchronous_standby_names in a canonical form: the member order does not change what ANY n / FIRST n (all members) mean. */
function canonicalNames(v: string): string {
  const m = /^(ANY|FIRST) (\d+) \((.*)\)$/.exec(v.trim());
  if (!m) return v;
  const members = m[3]!.split(',').map((x) => x.trim()).sort();
  // FIRST n of exactly n members waits for all of them, whatever the order; otherwise FIRST's order is priority and kept.
  const ordered = m[1] === 'ANY' || Number(m[2]) === members.length ? members : m[3]!.split(',').map((x) => x.trim());
  return `${m[1]} ${m[2]} (${ordered.join(', ')})`;
}

async function status(): Promise<Status> {
  const r = await adminGet(proxy!, '/status');
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as Status;
}

async function runTrial(t: Trial): Promise<void> {
  cluster = await startCluster({ signalHandlers: false });
  const info: ClusterInfo = clusterInfo(cluster);
  const node = (name: string): ClusterNode => cluster!.nodes.find((n) => n.name === name)!;
  const pg1 = node('pg1');
  proxy = await startProxy(info, { extra: `replication: { mode: ${t.mode} }`, nodeExtra: t.nodeExtra });
  await using(proxyClient(proxy, info), (c) => c.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL)'));

  let seenNames = '';
  // pgsplit applies the mode on the primary itself: the setting, and the standbys PostgreSQL then waits for.
  const applied = await eventually(`synchronous_standby_names = ${t.names} on pg1`, async () => {
    const s = await status();
    seenNames = s.replication.synchronous_standby_names;
    if (canonicalNames(s.replication.synchronous_standby_names) !== t.names) return undefined;
    return using(directClient(pg1, info), async (d) => {
      const names = (await d.query('SHOW synchronous_standby_names')).rows[0].synchronous_standby_names as string;
      const states = Object.fromEntries((await d.query("SELECT application_name, sync_state FROM pg_stat_replication WHERE state = 'streaming'")).rows.map((r) => [r.application_name, r.sync_state]));
      seenNames += ` / on pg1: ${names} ${JSON.stringify(states)}`;
      return canonicalNames(names) === t.names && JSON.stringify(states, Object.keys(t.syncState).sort()) === JSON.stringify(t.syncState, Object.keys(t.syncState).sort()) ? s : undefined;
    });
  }, 15_000).catch((err: Error) => {
    throw new Error(`${err.message} (last seen in /status: ${seenNames})`);
  });
  console.log(`[failover-modes] ${t.label}: pgsplit set synchronous_standby_names = ${applied.replication.synchronous_standby_names}`);
  expect(applied.replication.mode).toBe(t.mode);
  expect([...applied.replication.synchronous_standbys].sort()).toEqual(t.promotable);
  expect(applied.replication.degraded).toBe(false);
  expect(metricValue((await adminGet(proxy, '/metrics')).body, 'pgsplit_replication_mode', { mode: t.mode, degraded: '0' })).toBe(1);

  // Write load: 3 clients, each acknowledged id recorded.
  const acked: { id: number; port: number; at: number }[] = [];
  const errors: { code?: string; message: string; at: number }[] = [];
  const events: string[] = [];
  for (let k = 0; k < 3; k++) {
    const c = await proxyClient(proxy, info, { application_name: 'fo-modes-load' });
    c.on('error', (e) => events.push(`client ${k}: ${e.message}`));
    clients.push(c);
  }
  let stopped = false;
  const loops = clients.map(async (c, k) => {
    while (!stopped) {
      try {
        const r = await c.query({ text: 'INSERT INTO w (client) VALUES ($1) RETURNING id, inet_server_port() AS port', values: [k] });
        acked.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, at: Date.now() });
      } catch (err) {
        const e = err as Error & { code?: string };
        errors.push({ code: e.code, message: e.message, at: Date.now() });
        await sleep(10);
      }
    }
  });
  try {
    await eventually('writes before the kill', () => (acked.length >= 30 ? true : undefined), 15_000);
    const stopCalled = Date.now();
    await cluster.stopNode('pg1', 'immediate');
    const stopReturned = Date.now();
    const first = await eventually('a write acknowledged by the new primary', () => acked.find((a) => a.at >= stopCalled && a.port !== pg1.port), 20_000, 5);
    const killAt = Math.min(stopReturned, errors.find((e) => e.at >= stopCalled)?.at ?? stopReturned);
    const killToWriteMs = first.at - killAt;
    await eventually('a few more writes on the new primary', () => (acked.filter((a) => a.port === first.port).length >= 10 ? true : undefined), 15_000);
    stopped = true;
    await Promise.race([Promise.all(loops), sleep(20_000)]);

    const st = await status();
    expect(t.promotable, `${st.primary} promoted`).toContain(st.primary);
    const np = node(st.primary!);
    expect(first.port).toBe(np.port);
    expect(st.failover.failovers).toBe(1);
    expect(st.failover.events.map((e) => [e.kind, e.old_primary, e.new_primary])).toEqual([['failover', 'pg1', np.name]]);
    const ids = acked.map((a) => a.id);
    const lost = await using(directClient(np, info, { database: info.app.database }), async (d) => {
      const have = new Set((await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id));
      return ids.filter((id) => !have.has(id));
    });
    const beforeKill = acked.filter((a) => a.at < killAt).length;
    results.push({ label: t.label, mode: t.mode, promoted: np.name, killToWriteMs, acked: acked.length, lost: lost.length });
    console.log(`[failover-modes] ${t.label}: ${np.name} promoted, kill→first write ${killToWriteMs} ms (event duration_ms ${st.failover.events[0]!.duration_ms}), ${beforeKill} acknowledged before the kill, ${acked.length} in all, ${lost.length} lost; errors ${JSON.stringify(errors.map((e) => e.code))}`);
    expect(lost, `acknowledged commits missing on ${np.name} in ${t.mode} mode`).toEqual([]);
    for (const e of errors) expect(['08006', '08007'], e.message).toContain(e.code);
    expect(errors.length).toBeLessThanOrEqual(clients.length);
    expect(events).toEqual([]);

    if (t.checkRepoint) {
      // pg2 was an async standby here, so it may have received WAL past the point where pg3 took over; such a
      // replica cannot follow the new timeline (it needs pg_rewind: failover.rejoin_command). Either way it must
      // not serve reads from a history the new primary does not have: it streams from pg3, or it is banned.
      const other = st.primary === 'pg2' ? 'pg3' : 'pg2';
      const want = `${np.host}:${np.port}`;
      const outcome = await eventually(`${other} to stream from ${want} or be banned`, async () => {
        const s = (await status()).nodes.find((n) => n.name === other)!;
        if (s.receiver_status === 'streaming' && s.streams_from === want) return 'streams from the new primary';
        return s.banned ? `banned (${s.ban_reason}), receiver ${s.receiver_status}` : undefined;
      }, 30_000);
      console.log(`[failover-modes] ${t.label}: ${other} ${outcome}`);
    }
  } finally {
    stopped = true;
    await Promise.race([Promise.all(loops), sleep(20_000)]);
  }
}

async function teardown(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => endQuietly(c)));
  await proxy?.close(1_000).catch(() => {});
  proxy = null;
  await cluster?.stop();
  cluster = null;
}

describe('failover in semi-sync and sync modes loses no acknowledged commit', () => {
  afterEach(teardown);

  afterAll(async () => {
    await teardown();
    for (const mode of ['semi-sync', 'sync'] as const) {
      const rs = results.filter((r) => r.mode === mode);
      console.log(`[failover-modes] ${mode}: ${rs.length} trials, kill→first write median ${median(rs.map((r) => r.killToWriteMs))} ms (${rs.map((r) => r.killToWriteMs).join(', ')}), lost ${rs.reduce((s, r) => s + r.lost, 0)} of ${rs.reduce((s, r) => s + r.acked, 0)} acknowledged`);
    }
  });

  for (const t of TRIALS) {
    it(`${t.label}: synchronous_standby_names ${t.names}, kill pg1 under load, ${t.promotable.join(' or ')} promoted, zero lost`, () => runTrial(t), 90_000);
  }
});
