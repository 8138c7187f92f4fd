// Routing on the real cluster: how sessions' reads are spread over the replicas (load_balance strategies) and when the primary takes reads (primary_reads).
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, proxyClient, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);

let proxy: RunningProxy | null = null;
let clients: pg.Client[] = [];

const appName = `routing-balance-${process.pid}`;

/** Opens n sessions and returns the port each one reads from; with `stable`, checks it keeps reading there. */
async function readPorts(n: number, stable = true): Promise<number[]> {
  for (let i = 0; i < n; i++) clients.push(await proxyClient(proxy!, info, { application_name: appName }));
  const ports: number[] = [];
  for (const c of clients) {
    const p = (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;
    if (stable) {
      for (let k = 0; k < 3; k++) {
        const again = (await c.query({ text: 'SELECT inet_server_port() AS port, $1::int AS k', values: [k] })).rows[0].port;
        expect(again, 'a session keeps reading from the server it was given').toBe(p);
      }
    }
    ports.push(p);
  }
  return ports;
}

/** Server sessions of our clients on each replica, as the replicas see them. */
async function replicaBackends(): Promise<number[]> {
  return Promise.all(
    cluster.nodes.slice(1).map((n) =>
      using(directClient(n, info), async (d) => (await d.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [appName])).rows[0].n as number),
    ),
  );
}

const countBy = (ports: number[]) => ports.reduce((m, p) => m.set(p, (m.get(p) ?? 0) + 1), new Map<number, number>());

describe('spreading reads over the replicas', () => {
  afterEach(async () => {
    await Promise.all(clients.map((c) => endQuietly(c)));
    clients = [];
    await proxy?.close(1_000);
    proxy = null;
  });

  it('round-robin (the default) gives consecutive sessions alternate replicas', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true }' });
    const ports = await readPorts(4);
    for (const p of ports) expect(replicaPorts).toContain(p);
    const counts = countBy(ports);
    expect([...counts.keys()].sort()).toEqual([...replicaPorts].sort());
    expect([...counts.values()]).toEqual([2, 2]);
  });

  it('random keeps every read on a replica', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true, load_balance: random }' });
    const ports = await readPorts(6);
    for (const p of ports) expect(replicaPorts).toContain(p);
  });

  it('in session pooling, opens one replica connection per session, not one to every replica', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true }\npool: { mode: session }' });
    await readPorts(4);
    const perReplica = await replicaBackends();
    expect(perReplica.reduce((a, b) => a + b, 0), `server sessions on ${cluster.nodes.slice(1).map((n) => n.name).join(', ')}: ${perReplica.join(', ')}`).toBe(4);
    const inStats = cluster.nodes.slice(1).reduce((a, n) => a + (proxy!.stats.backendConnections.get(n.name) ?? 0), 0);
    expect(inStats).toBe(4);
  });

  it('least-connections uses both replicas for concurrent sessions', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true, load_balance: least-connections }' });
    const ports = await readPorts(4);
    for (const p of ports) expect(replicaPorts).toContain(p);
    expect(countBy(ports).size).toBe(2);
  });

  it('primary_reads: include lets the primary take a share of the reads', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true, primary_reads: include }' });
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) clients.push(await proxyClient(proxy, info));
    for (let k = 0; k < 4; k++) for (const c of clients) ports.push((await c.query('SELECT inet_server_port() AS port')).rows[0].port);
    const counts = countBy(ports);
    expect(counts.get(primary.port)).toBeGreaterThan(0);
    for (const p of replicaPorts) expect(counts.get(p)).toBeGreaterThan(0);
  });

  it('primary_reads: include still keeps each session on the server it reads from', async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true, primary_reads: include }' });
    await readPorts(6, true);
  });
});
