// Lag-checked replicas on a cluster of its own: bans by bytes, time and failed probes, unbans, the idle primary, all replicas lagging, and the max_lag hint against lagging replicas.
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import type { NodeState } from '../../src/topology/topology.js';
import { adminGet, directClient, endQuietly, eventually, metricValue, proxyClient, sleep, using } from './helpers.js';

/** The issue-4 fields of a node's state (declared here so this file does not depend on how src/ spells the types). */
type LagNode = NodeState & { lagBytes: number | null; lagSeconds: number | null; replayPaused: boolean | null; banned: boolean; banReason: string | null };
interface StatusNode { name: string; up: boolean; lag_bytes: number | null; lag_seconds: number | null; replay_paused: boolean | null; banned: boolean; ban_reason: string | null }

const MiB = 1024 * 1024;
let cluster: Cluster;
let info: ClusterInfo;
let proxy: RunningProxy | null = null;
const paused = new Set<string>();
let pg3Stopped = false;
/** Stops of the trackers still running; afterEach stops them when a test failed before it did. */
const trackers = new Set<() => void>();

const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;
const state = (name: string): LagNode => proxy!.topology.node(name) as LagNode;
const replicaNames = (): string[] => proxy!.topology.replicas().map((n) => n.name);
const readsOnPrimary = (reason: string): number => (proxy!.stats as unknown as { readsOnPrimaryBy: Map<string, number> }).readsOnPrimaryBy.get(reason) ?? 0;
const asApp = (n: ClusterNode) => directClient(n, info, { user: info.app.user, password: info.app.password, database: info.app.database });
const port = async (c: pg.Client, prefix = ''): Promise<number> => (await c.query(`${prefix}SELECT inet_server_port() AS port`)).rows[0].port as number;

async function start(routing: string): Promise<RunningProxy> {
  proxy = await startProxy(info, { extra: `routing: { enabled: true, ${routing} }` });
  return proxy;
}

async function setPaused(name: string, on: boolean): Promise<void> {
  await using(directClient(node(name), info), (c) => c.query(on ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()'));
  if (on) paused.add(name);
  else paused.delete(name);
}

/** ~5 MB of WAL on the primary in one transaction. */
const bigWrite = () => using(asApp(node('pg1')), (c) => c.query("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"));

/** Waits until every running replica has replayed everything the primary has written so far. */
async function caughtUp(names = ['pg2', 'pg3']): Promise<void> {
  const lsn = (await using(directClient(node('pg1'), info), (c) => c.query('SELECT pg_current_wal_lsn()::text AS l'))).rows[0].l as string;
  for (const name of names) {
    await using(directClient(node(name), info), (c) =>
      eventually(`${name} to replay up to ${lsn}`, async () => ((await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0].ok ? true : undefined), 30_000),
    );
  }
}

/** Opens n fresh sessions through the proxy at once and returns the port each one's first read ran on. */
async function freshReads(n: number): Promise<number[]> {
  const clients: pg.Client[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const c = await proxyClient(proxy!, info);
      clients.push(c);
      ports.push(await port(c));
    }
    return ports;
  } finally {
    await Promise.all(clients.map((c) => endQuietly(c)));
  }
}

interface Sample { probes: number; at: number; s: LagNode }
/** Records every change of a node's state (on topology 'change' and a 10 ms poll) with the number of its probes completed since tracking began. */
function track(name: string) {
  const samples: Sample[] = [];
  let probes = 0;
  let lastProbe = state(name).lastProbeAt;
  let lastKey = '';
  const tick = (): void => {
    const s = proxy?.topology.node(name) as LagNode | undefined;
    if (!s) return;
    if (s.lastProbeAt !== lastProbe) {
      lastProbe = s.lastProbeAt;
      probes++;
    }
    const key = `${s.lastProbeAt}|${s.banned}|${s.banReason}|${s.lagBytes}|${s.lagSeconds}`;
    if (key !== lastKey) {
      lastKey = key;
      samples.push({ probes, at: Date.now(), s: { ...s } });
    }
  };
  proxy!.topology.on('change', tick);
  const timer = setInterval(tick, 10);
  const topology = proxy!.topology;
  const stop = (): void => {
    topology.off('change', tick);
    clearInterval(timer);
  };
  trackers.add(stop);
  return {
    samples,
    get probes() {
      tick();
      return probes;
    },
    first: (pred: (s: LagNode) => boolean, since = 0): Sample | undefined => samples.find((x) => x.at >= since && pred(x.s)),
    stop,
  };
}

async function statusNode(name: string): Promise<StatusNode> {
  const r = await adminGet(proxy!, '/status');
  expect(r.status).toBe(200);
  return (JSON.parse(r.body) as { nodes: StatusNode[] }).nodes.find((n) => n.name === name)!;
}

describe('lag-checked replicas', () => {
  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    await using(asApp(node('pg1')), async (c) => {
      await c.query('CREATE TABLE big (id int, pad text)');
      await c.query('CREATE TABLE small (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
    });
    await caughtUp();
  });

  afterEach(async () => {
    for (const stop of trackers) stop();
    trackers.clear();
    await proxy?.close(1_000);
    proxy = null;
    for (const name of [...paused]) await setPaused(name, false).catch(() => {});
    if (pg3Stopped) {
      await cluster.startNode('pg3');
      pg3Stopped = false;
    }
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await cluster?.stop();
  });

  it('an idle primary bans no replica and their lag time stays 0', async () => {
    await caughtUp();
    await start('max_replica_lag: { bytes: 1MB, time: 1s }, unban_after: 1s');
    const tracks = [track('pg2'), track('pg3')];
    let maxLag = 0;
    let samples = 0;
    const started = Date.now();
    while (Date.now() - started < 10_000) {
      for (const name of ['pg2', 'pg3']) {
        const s = state(name);
        expect(s.banned, `${name} banned (${s.banReason}) on an idle primary, lag ${s.lagBytes} B / ${s.lagSeconds} s`).toBe(false);
        expect(typeof s.lagSeconds, `${name}.lagSeconds is known`).toBe('number');
        expect(s.lagSeconds!).toBeLessThan(1);
        maxLag = Math.max(maxLag, s.lagSeconds!);
      }
      expect(replicaNames().sort()).toEqual(['pg2', 'pg3']);
      samples++;
      await sleep(100);
    }
    for (const t of tracks) t.stop();
    // Every state change in between, not just the 100 ms samples.
    const changes = tracks.flatMap((t) => t.samples);
    console.log(`[lag-bans] idle primary: ${samples} samples over 10 s, ${tracks.map((t) => t.probes).join('/')} probes of pg2/pg3, max lagSeconds ${maxLag}`);
    expect(changes.filter((x) => x.s.banned).map((x) => `${x.s.name}: ${x.s.banReason}`)).toEqual([]);
    expect(changes.filter((x) => (x.s.lagSeconds ?? 0) >= 1).map((x) => `${x.s.name}: ${x.s.lagSeconds}`)).toEqual([]);
  });

  it('bans a replica over max_replica_lag.bytes within two probes, keeps reads off it, and unbans it after it catches up', async () => {
    await caughtUp();
    await start('max_replica_lag: { bytes: 1MB }, unban_after: 1s');
    await eventually('pg2 to be unbanned at start', () => (state('pg2').banned ? undefined : true), 5_000);
    await setPaused('pg2', true);
    const t = track('pg2');
    try {
      const writeStart = Date.now();
      await bigWrite();
      const writeEnd = Date.now();
      const probesAtWrite = t.probes;
      await eventually('pg2 to be banned', () => (state('pg2').banned ? true : undefined), 10_000, 10);
      const ban = t.first((s) => s.banned)!;
      const probesAfterWrite = ban.probes - probesAtWrite;
      console.log(`[lag-bans] lag-bytes ban: ${probesAfterWrite} probe(s) of pg2 after the write committed, ${ban.at - writeEnd} ms after commit (${ban.at - writeStart} ms after the write began; lag ${ban.s.lagBytes} B)`);
      expect(probesAfterWrite).toBeLessThanOrEqual(2);
      const s = state('pg2');
      expect(s.banReason).toBe('lag-bytes');
      expect(s.lagBytes!).toBeGreaterThan(MiB);
      expect(s.replayPaused).toBe(true);
      expect(state('pg3').banned).toBe(false);
      expect(replicaNames()).toEqual(['pg3']);

      const ports = await freshReads(20);
      expect(ports).toEqual(Array(20).fill(node('pg3').port));
      expect(state('pg2').banned, 'pg2 stayed banned while the sessions read').toBe(true);

      const st = await statusNode('pg2');
      expect(st).toMatchObject({ banned: true, ban_reason: 'lag-bytes', replay_paused: true });
      expect(st.lag_bytes!).toBeGreaterThan(MiB);
      expect(await statusNode('pg3')).toMatchObject({ banned: false, ban_reason: null });
      const metrics = (await adminGet(proxy!, '/metrics')).body;
      expect(metricValue(metrics, 'pgsplit_node_banned', { node: 'pg2' })).toBe(1);
      expect(metricValue(metrics, 'pgsplit_node_banned', { node: 'pg3' })).toBe(0);
      expect(metricValue(metrics, 'pgsplit_replica_lag_bytes', { node: 'pg2' })!).toBeGreaterThan(MiB);
      expect(metricValue(metrics, 'pgsplit_replica_lag_seconds', { node: 'pg2' })).toBeDefined();

      const resumeAt = Date.now();
      await setPaused('pg2', false);
      await eventually('pg2 to be unbanned after resuming replay', () => (state('pg2').banned ? undefined : true), 15_000, 10);
      const under = t.first((x) => x.lagBytes !== null && x.lagBytes < MiB, resumeAt);
      const unban = t.first((x) => !x.banned, resumeAt);
      if (!under || !unban) throw new Error(`no sample of pg2 under the bound / unbanned after resume: ${JSON.stringify(t.samples.slice(-5).map((x) => [x.probes, x.s.banned, x.s.lagBytes]))}`);
      console.log(`[lag-bans] unban: ${unban.probes - under.probes} probe(s) / ${unban.at - under.at} ms after pg2 was first seen under the bound (${unban.at - resumeAt} ms after resume; unban_after 1s)`);
      expect(under.s.banned, 'the first probe under the bound does not unban yet (unban_after: 1s)').toBe(true);
      expect(unban.at - under.at).toBeGreaterThanOrEqual(500);
      const after = await freshReads(6);
      expect(after).toContain(node('pg2').port);
      expect(after).not.toContain(node('pg1').port);
    } finally {
      t.stop();
    }
  });

  it('bans a replica over max_replica_lag.time (lag-time) while the primary keeps writing, and unbans it after resume', async () => {
    await caughtUp();
    await start('max_replica_lag: { time: 1s }, unban_after: 1s');
    await eventually('both replicas unbanned at start', () => (state('pg2').banned || state('pg3').banned ? undefined : true), 5_000);
    const t3 = track('pg3');
    const t2 = track('pg2');
    await setPaused('pg2', true);
    const started = Date.now();
    const probesAtStart = t2.probes;
    try {
      await using(asApp(node('pg1')), async (c) => {
        while (Date.now() - started < 3_000) {
          await c.query('INSERT INTO small DEFAULT VALUES');
          await sleep(100);
        }
      });
      await eventually('pg2 to be banned for lag time', () => (state('pg2').banned ? true : undefined), 5_000);
      const s = state('pg2');
      const ban = t2.first((x) => x.banned)!;
      console.log(`[lag-bans] lag-time: pg2 banned (${ban.s.banReason}) ${ban.probes - probesAtStart} probe(s) / ${ban.at - started} ms after the writes began, lagSeconds ${ban.s.lagSeconds} at the ban, now ${s.lagSeconds} (lagBytes ${s.lagBytes})`);
      expect(s.banReason).toBe('lag-time');
      expect(s.lagSeconds!).toBeGreaterThan(1);
      expect(t3.samples.filter((x) => x.s.banned).map((x) => x.s.banReason), 'pg3 replays as it goes and is never banned').toEqual([]);
      expect(replicaNames()).toEqual(['pg3']);
      expect(await freshReads(6)).toEqual(Array(6).fill(node('pg3').port));

      await setPaused('pg2', false);
      await eventually('pg2 to be unbanned after resume', () => (state('pg2').banned ? undefined : true), 15_000);
      expect(state('pg2').lagSeconds!).toBeLessThan(1);
      expect(await freshReads(6)).toContain(node('pg2').port);
    } finally {
      t3.stop();
    }
  });

  it('sends reads to the primary when every replica is banned for lag, counting them as replica-lag', async () => {
    await caughtUp();
    await start('max_replica_lag: { bytes: 1MB }, unban_after: 1s');
    await setPaused('pg2', true);
    await setPaused('pg3', true);
    await bigWrite();
    await eventually('both replicas banned', () => (state('pg2').banned && state('pg3').banned && replicaNames().length === 0 ? true : undefined), 10_000);
    expect([state('pg2').banReason, state('pg3').banReason]).toEqual(['lag-bytes', 'lag-bytes']);
    const before = readsOnPrimary('replica-lag');
    const metricBefore = metricValue((await adminGet(proxy!, '/metrics')).body, 'pgsplit_reads_on_primary_total', { reason: 'replica-lag' }) ?? 0;
    const ports = await freshReads(10);
    expect(ports).toEqual(Array(10).fill(node('pg1').port));
    const rows = (await using(asApp(node('pg1')), (c) => c.query('SELECT count(*)::int AS n FROM big'))).rows[0].n as number;
    await using(proxyClient(proxy!, info), async (c) => {
      const r = await c.query('SELECT count(*)::int AS n, inet_server_port() AS port FROM big');
      expect(r.rows[0], 'the read succeeds on the primary and sees the latest write').toEqual({ n: rows, port: node('pg1').port });
    });
    const counted = readsOnPrimary('replica-lag') - before;
    console.log(`[lag-bans] all replicas banned: 11 reads on the primary, readsOnPrimaryBy replica-lag +${counted}`);
    expect(counted).toBeGreaterThanOrEqual(11);
    const metricAfter = metricValue((await adminGet(proxy!, '/metrics')).body, 'pgsplit_reads_on_primary_total', { reason: 'replica-lag' })!;
    expect(metricAfter - metricBefore).toBeGreaterThanOrEqual(11);

    await setPaused('pg2', false);
    await setPaused('pg3', false);
    await eventually('both replicas unbanned after resume', () => (state('pg2').banned || state('pg3').banned ? undefined : true), 15_000);
    const after = await freshReads(4);
    expect(after.sort()).toEqual([node('pg2').port, node('pg2').port, node('pg3').port, node('pg3').port].sort());
  });

  it('a pgsplit:max_lag hint or SET pgsplit.max_lag sends reads to the primary when the replicas lag more than it allows', async () => {
    await caughtUp();
    // No time bound and a huge byte bound: the replicas are lagging but not banned; only max_lag keeps reads off them.
    await start('max_replica_lag: { bytes: 1GB }, unban_after: 1s');
    await setPaused('pg2', true);
    await setPaused('pg3', true);
    await using(asApp(node('pg1')), async (c) => {
      for (let i = 0; i < 3; i++) await c.query('INSERT INTO small DEFAULT VALUES');
    });
    await sleep(1_500);
    await eventually('both replicas to lag more than 1 s', () => ((state('pg2').lagSeconds ?? 0) > 1 && (state('pg3').lagSeconds ?? 0) > 1 ? true : undefined), 10_000);
    expect(replicaNames().sort()).toEqual(['pg2', 'pg3']);
    const replicaPorts = [node('pg2').port, node('pg3').port];
    const before = readsOnPrimary('max-lag');
    await using(proxyClient(proxy!, info), async (c) => {
      expect(replicaPorts).toContain(await port(c));
      expect(await port(c, '/* pgsplit:max_lag=1s */ ')).toBe(node('pg1').port);
      expect(replicaPorts, 'a hint lasts for its statement only').toContain(await port(c));
      expect(replicaPorts, 'a generous bound still allows the replica').toContain(await port(c, '/* pgsplit:max_lag=1h */ '));
      await c.query("SET pgsplit.max_lag = '1s'");
      expect(await port(c)).toBe(node('pg1').port);
      expect((await c.query({ text: 'SELECT inet_server_port() AS port, $1::int AS k', values: [1] })).rows[0].port).toBe(node('pg1').port);
      await c.query('RESET pgsplit.max_lag');
      expect(replicaPorts).toContain(await port(c));
    });
    const counted = readsOnPrimary('max-lag') - before;
    console.log(`[lag-bans] max_lag: pg2 ${state('pg2').lagSeconds} s, pg3 ${state('pg3').lagSeconds} s behind; readsOnPrimaryBy max-lag +${counted}`);
    expect(counted).toBeGreaterThanOrEqual(3);
    expect(metricValue((await adminGet(proxy!, '/metrics')).body, 'pgsplit_reads_on_primary_total', { reason: 'max-lag' })!).toBeGreaterThanOrEqual(3);
  });

  it('a stopped replica stops serving reads (probe-failed) and serves again once it is back', async () => {
    await caughtUp();
    await start('max_replica_lag: { bytes: 16MB, time: 2s }, unban_after: 1s');
    await cluster.stopNode('pg3', 'immediate');
    pg3Stopped = true;
    await eventually('pg3 to leave the usable replicas', () => (replicaNames().includes('pg3') ? undefined : true), 10_000);
    const s = state('pg3');
    console.log(`[lag-bans] stopped pg3: up ${s.up}, banned ${s.banned} (${s.banReason})`);
    if (s.banned) expect(s.banReason).toBe('probe-failed');
    expect((await statusNode('pg3')).up).toBe(false);
    expect(await freshReads(10)).toEqual(Array(10).fill(node('pg2').port));

    await cluster.startNode('pg3');
    pg3Stopped = false;
    await eventually('pg3 to serve reads again', () => (replicaNames().includes('pg3') && !state('pg3').banned ? true : undefined), 30_000);
    expect(await freshReads(4)).toContain(node('pg3').port);
  });
});
