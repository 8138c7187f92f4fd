// workers: 2 through a switchover and a failover: every worker follows the coordinator's new primary; no commit is lost, no worker writes to the old primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { adminAuthHeaders, spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { pidOwner } from '../../src/frontend/cancel-registry.js';
import { directClient, endQuietly, eventually, proxyClient, sleep, using } from './helpers.js';

interface Status { primary: string | null; replication: { degraded: boolean; synchronous_standbys: string[] }; workers: { index: number; serving: boolean }[]; failover: { events: { kind: string; old_primary: string; new_primary: string }[] } }

/** Clients looping INSERT … RETURNING through the proxy: every acknowledged id with the port that took it and the worker that relayed it. */
async function startLoad(target: RunningProxy, info: ClusterInfo, n: number) {
  const acked: { id: number; port: number; worker: number | null; at: number }[] = [];
  const errors: string[] = [];
  const cs: pg.Client[] = [];
  for (let k = 0; k < n; k++) cs.push(await proxyClient(target, info));
  let stopped = false;
  const loops = cs.map(async (c, k) => {
    const worker = pidOwner((c as unknown as { processID: number }).processID);
    while (!stopped) {
      try {
        const r = await c.query('INSERT INTO wf (client) VALUES ($1) RETURNING id, inet_server_port() AS port', [k]);
        acked.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, worker, at: Date.now() });
      } catch (err) {
        errors.push(`client ${k} (worker ${worker}): ${(err as Error & { code?: string }).code} ${(err as Error).message}`);
        if (/not queryable|Connection terminated/.test((err as Error).message)) break;
        await sleep(20);
      }
    }
  });
  return {
    acked,
    errors,
    workers: cs.map((c) => pidOwner((c as unknown as { processID: number }).processID)),
    async stop() {
      stopped = true;
      await Promise.race([Promise.all(loops), sleep(20_000)]);
      await Promise.all(cs.map(endQuietly));
    },
  };
}

async function missingOn(n: ClusterNode, info: ClusterInfo, ids: number[]): Promise<number[]> {
  return using(directClient(n, info, { database: info.app.database }), async (d) => {
    const have = new Set((await d.query<{ id: number }>('SELECT id FROM wf WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id));
    return ids.filter((id) => !have.has(id));
  });
}

describe('workers: 2 across a switchover and a failover', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let proxy: ProxyProcess;
  let target: RunningProxy;
  const node = (name: string) => cluster.nodes.find((n) => n.name === name)!;
  const status = async (): Promise<Status> => (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) })).json() as Promise<Status>;

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    proxy = await spawnProxy(info, { logLevel: 'warn', extra: 'workers: 2\nreplication: { mode: semi-sync }\nfailover: { hold_timeout: 20s }' });
    target = { listenPort: proxy.port } as RunningProxy;
    await using(proxyClient(target, info), (c) => c.query('CREATE TABLE wf (id serial PRIMARY KEY, client int NOT NULL)'));
  });

  afterAll(async () => {
    await proxy?.stop();
    await cluster?.stop();
  });

  it('switchover: both workers hold writes, then write to the new primary; nothing fails, nothing is lost', async () => {
    const load = await startLoad(target, info, 4);
    try {
      expect(new Set(load.workers)).toEqual(new Set([0, 1]));
      await eventually('writes before the switchover', () => (load.acked.length >= 40 ? true : undefined), 15_000);
      const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/switchover`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...adminAuthHeaders() },
        body: JSON.stringify({ to: 'pg2' }),
        signal: AbortSignal.timeout(60_000),
      });
      expect(r.status, await r.clone().text()).toBe(200);
      const done = Date.now();
      await eventually('writes from both workers after the switchover', () => {
        const after = load.acked.filter((a) => a.at > done);
        return new Set(after.map((a) => a.worker)).size === 2 && after.length >= 40 ? true : undefined;
      }, 15_000);
    } finally {
      await load.stop();
    }
    expect(load.errors).toEqual([]);
    // The coordinator's promotion reached every worker: no write acknowledged after it came from pg1.
    const firstOnPg2 = Math.min(...load.acked.filter((a) => a.port === node('pg2').port).map((a) => a.at));
    expect(load.acked.filter((a) => a.at > firstOnPg2 && a.port !== node('pg2').port)).toEqual([]);
    expect(await missingOn(node('pg2'), info, load.acked.map((a) => a.id))).toEqual([]);
    expect((await status()).failover.events.map((e) => [e.kind, e.old_primary, e.new_primary])).toEqual([['switchover', 'pg1', 'pg2']]);
  });

  it('failover (semi-sync): after the primary is killed both workers write to the promoted replica, and no acknowledged commit is lost', async () => {
    // replication.strict is off: until pg3 streams from pg2 again, commits are acknowledged without it (degraded).
    await eventually('pg3 a synchronous standby of pg2', async () => {
      const st = await status();
      return !st.replication.degraded && st.replication.synchronous_standbys.includes('pg3') ? true : undefined;
    }, 30_000);
    const load = await startLoad(target, info, 4);
    let killedAt = 0;
    try {
      expect(new Set(load.workers)).toEqual(new Set([0, 1]));
      await eventually('writes before the kill', () => (load.acked.length >= 40 ? true : undefined), 15_000);
      killedAt = Date.now();
      await cluster.stopNode('pg2', 'immediate');
      const st = await eventually('a new primary', async () => {
        const s = await status();
        return s.primary && s.primary !== 'pg2' ? s : undefined;
      }, 30_000);
      const promoted = node(st.primary!);
      await eventually('writes from both workers on the new primary', () => {
        const after = load.acked.filter((a) => a.port === promoted.port);
        return new Set(after.map((a) => a.worker)).size === 2 && after.length >= 20 ? true : undefined;
      }, 30_000);
      expect(st.workers.every((w) => w.serving)).toBe(true);
      // Only pg3 streamed from pg2 (pg1 was demoted by the switchover), so pg3 is the one promoted.
      expect(st.primary).toBe('pg3');
    } catch (err) {
      throw new Error(`${(err as Error).message}; client errors: ${JSON.stringify(load.errors.slice(0, 20))}`);
    } finally {
      await load.stop();
    }
    const promoted = node('pg3');
    expect(load.acked.filter((a) => a.at > killedAt).length).toBeGreaterThan(0);
    expect(await missingOn(promoted, info, load.acked.map((a) => a.id))).toEqual([]);
  });
});
