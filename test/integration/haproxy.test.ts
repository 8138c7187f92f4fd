// HAProxy in front of two pgsplit instances coordinated through etcd (issue 11, deploy/haproxy.cfg): clients reach both, an instance cut off from etcd fails /ready and HAProxy stops sending it clients, and uses it again once healed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo } from '../harness/cluster.js';
import { adminAuthHeaders, spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { startEtcd, type EtcdCluster } from '../harness/etcd.js';
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy.js';
import { startHaproxy, type Haproxy } from '../harness/haproxy.js';
import { endQuietly, eventually, proxyClient, using } from './helpers.js';

interface Status { client_connections: number; coordination: { role: string; published_primary: string | null; writes_allowed: boolean } }

const LEASE_TTL_MS = 2000;
const HOLD_MS = 4000;
// HAProxy checks every 300 ms and needs 2 in a row (fall 2, rise 2).
const CHECK_INTER_MS = 300;

interface Instance {
  name: string;
  proc: ProxyProcess;
}

describe('HAProxy in front of two pgsplit instances, checking /ready', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let etcd: EtcdCluster;
  let fault: FaultProxy;
  let haproxy: Haproxy;
  const instances: Instance[] = [];
  const open: pg.Client[] = [];
  const prefix = `/pgsplit/haproxy-${process.pid}`;

  const status = async (i: Instance): Promise<Status> =>
    (await fetch(`http://127.0.0.1:${i.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) })).json() as Promise<Status>;
  const ready = async (i: Instance): Promise<number> => (await fetch(`http://127.0.0.1:${i.proc.adminPort}/ready`, { signal: AbortSignal.timeout(5_000) })).status;
  const primaryPort = () => cluster.nodes[0]!.port;
  const write = (c: pg.Client) => c.query<{ id: number; port: number }>('INSERT INTO ha (v) VALUES (1) RETURNING id, inet_server_port() AS port').then((r) => r.rows[0]!);
  const viaHaproxy = { listenPort: 0 } as RunningProxy;

  /** Sessions HAProxy has sent to each server so far (show stat stot). */
  const totals = async (): Promise<Record<string, number>> => Object.fromEntries((await haproxy.servers()).map((s) => [s.name, s.stot]));

  /** A client through HAProxy, and the instance it landed on (the one server whose session total grew; connects are sequential). */
  const connect = async (): Promise<{ c: pg.Client; via: string }> => {
    const before = await totals();
    const c = await proxyClient(viaHaproxy, info);
    open.push(c);
    const after = await totals();
    const grown = Object.keys(after).filter((k) => after[k]! > (before[k] ?? 0));
    expect(grown, `exactly one server took the session: ${JSON.stringify({ before, after })}`).toHaveLength(1);
    return { c, via: grown[0]! };
  };
  const closeAll = async () => {
    await Promise.all(open.splice(0).map(endQuietly));
    // Both instances have seen their clients leave before the next trial counts connections.
    await eventually('client connections closed on every instance', async () => ((await Promise.all(instances.map(status))).every((s) => s.client_connections === 0) ? true : undefined), 5_000);
  };

  beforeAll(async () => {
    [cluster, etcd] = await Promise.all([startCluster({ signalHandlers: false }), startEtcd({ members: 3 })]);
    info = clusterInfo(cluster);
    // p2 reaches etcd only through a link the test can cut.
    fault = await startFaultProxy('127.0.0.1', etcd.members[0]!.clientPort);
    for (const name of ['p1', 'p2']) {
      const endpoints = name === 'p2' ? [`http://127.0.0.1:${fault.port}`] : etcd.endpoints;
      const extra = [
        `coordination: { name: ${name}, etcd: { endpoints: [${endpoints.join(', ')}], prefix: ${prefix}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
        `failover: { hold_timeout: ${HOLD_MS}ms, failure_threshold: 2 }`,
      ].join('\n');
      const proc = await spawnProxy(info, { logLevel: process.env.COORD_LOG ?? 'warn', extra });
      instances.push({ name, proc });
      // p1 starts alone for a moment, so it is the leader and the one cut off later is a follower.
      if (name === 'p1') await eventually('p1 to lead', async () => ((await status(instances[0]!)).coordination.role === 'leader' ? true : undefined), 15_000);
    }
    await eventually('both instances following pg1', async () => ((await Promise.all(instances.map(status))).every((s) => s.coordination.published_primary === 'pg1' && s.coordination.writes_allowed) ? true : undefined), 15_000);
    await using(proxyClient({ listenPort: instances[0]!.proc.port } as RunningProxy, info), (c) => c.query('CREATE TABLE ha (id serial PRIMARY KEY, v int NOT NULL)'));
    // roundrobin rather than deploy/'s leastconn: consecutive connections alternate, so both instances are used predictably.
    haproxy = await startHaproxy(
      instances.map((i) => ({ name: i.name, port: i.proc.port, adminPort: i.proc.adminPort })),
      { balance: 'roundrobin', inter: `${CHECK_INTER_MS}ms`, fall: 2, rise: 2, signalHandlers: false },
    );
    viaHaproxy.listenPort = haproxy.port;
    for (const i of instances) await haproxy.waitForStatus(i.name, 'UP', 10_000);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(open.splice(0).map(endQuietly));
    await haproxy?.stop();
    await Promise.all(instances.map((i) => i.proc.stop().catch(() => {})));
    await fault?.stop();
    await etcd?.stop();
    await cluster?.stop();
  });

  it('clients through HAProxy reach both instances, and every write lands on the primary', async () => {
    const via: string[] = [];
    for (let k = 0; k < 6; k++) {
      const { c, via: v } = await connect();
      via.push(v);
      expect((await write(c)).port, `write through ${v}`).toBe(primaryPort());
    }
    expect(via.filter((v) => v === 'p1')).toHaveLength(3);
    expect(via.filter((v) => v === 'p2')).toHaveLength(3);
    // The instances agree: each holds the three sessions HAProxy says it sent there.
    expect((await Promise.all(instances.map(status))).map((s) => s.client_connections)).toEqual([3, 3]);
    expect((await haproxy.servers()).map((s) => [s.name, s.scur])).toEqual([['p1', 3], ['p2', 3]]);
    await closeAll();
  });

  it('p2 cut off from etcd: its /ready fails, HAProxy marks it down within seconds and closes its sessions, new clients all go to p1 and write; healed, p2 is used again', async () => {
    const p2 = instances[1]!;
    // A session on p2 from before the cut: on-marked-down shutdown-sessions ends it.
    let onP2: pg.Client | null = null;
    for (let k = 0; k < 2 && !onP2; k++) {
      const { c, via } = await connect();
      if (via === 'p2') onP2 = c;
    }
    expect(onP2, 'a session on p2').not.toBeNull();
    expect((await write(onP2!)).port).toBe(primaryPort());
    const p2Closed = new Promise<number>((resolve) => onP2!.once('end', () => resolve(Date.now())));

    const cutAt = Date.now();
    fault.break('blackhole');
    try {
      const notReadyMs = await eventually('p2 /ready to answer 503', async () => ((await ready(p2)) === 503 ? Date.now() - cutAt : undefined), LEASE_TTL_MS * 3, 50);
      await haproxy.waitForStatus('p2', 'DOWN', LEASE_TTL_MS * 3);
      const downMs = Date.now() - cutAt;
      const closedMs = (await Promise.race([p2Closed, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 3_000))])) - cutAt;
      console.log(`[haproxy] p2 cut off from etcd: /ready 503 after ${notReadyMs} ms, HAProxy marked it DOWN after ${downMs} ms (${downMs - notReadyMs} ms after /ready failed), its session closed after ${closedMs} ms`);
      expect(downMs).toBeLessThan(LEASE_TTL_MS + 3 * CHECK_INTER_MS + 1500);
      expect(downMs - notReadyMs).toBeLessThan(4 * CHECK_INTER_MS + 1000);
      expect(Number.isNaN(closedMs), 'HAProxy closed the session on p2 (on-marked-down shutdown-sessions)').toBe(false);
      const p2Row = await haproxy.server('p2');
      expect(p2Row.checkCode).toBe('503');
      expect(p2Row.scur).toBe(0);

      // New clients all go to p1, and their writes succeed right away (no hold: p1 may write).
      const p1Before = (await haproxy.server('p1')).stot;
      const p2Before = p2Row.stot;
      for (let k = 0; k < 6; k++) {
        const { c, via } = await connect();
        expect(via).toBe('p1');
        const started = Date.now();
        expect((await write(c)).port).toBe(primaryPort());
        expect(Date.now() - started).toBeLessThan(HOLD_MS / 2);
      }
      expect((await haproxy.server('p1')).stot - p1Before).toBe(6);
      expect((await haproxy.server('p2')).stot).toBe(p2Before);
      expect((await status(p2)).client_connections).toBe(0);
      await closeAll();

      const healAt = Date.now();
      fault.heal();
      const readyAgainMs = await eventually('p2 /ready to answer 200', async () => ((await ready(p2)) === 200 ? Date.now() - healAt : undefined), LEASE_TTL_MS * 4, 50);
      await haproxy.waitForStatus('p2', 'UP', LEASE_TTL_MS * 4);
      const upMs = Date.now() - healAt;
      if (process.env.HAPROXY_LOG) console.log(haproxy.logTail(14));
      console.log(`[haproxy] p2 healed: /ready 200 after ${readyAgainMs} ms, HAProxy marked it UP after ${upMs} ms`);
      expect(upMs - readyAgainMs).toBeLessThan(4 * CHECK_INTER_MS + 1000);
    } finally {
      fault.heal();
    }

    // Used again: roundrobin sends it every other new client, and its writes reach the primary.
    const via: string[] = [];
    for (let k = 0; k < 4; k++) {
      const { c, via: v } = await connect();
      via.push(v);
      expect((await write(c)).port, `write through ${v}`).toBe(primaryPort());
    }
    expect(via.filter((v) => v === 'p2')).toHaveLength(2);
    expect((await status(p2)).client_connections).toBe(2);
    await closeAll();
  });
});
