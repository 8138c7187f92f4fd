// workers: N — clients spread over worker processes that share the port, with one pool bound, cancels, counters, reload, crash restart and drain across them.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { attachCluster } from '../harness/cluster.js';
import { adminAuthHeaders, spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { pidOwner } from '../../src/frontend/cancel-registry.js';
import { backendsRunning, directClient, endQuietly, eventually, metricValue, proxyClient, rejection, sendCancelRequest, sleep, usingAllNodes } from './helpers.js';
import { sampleBackends } from './pool-helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);

interface WorkerRow { index: number; pid: number | null; running: boolean; serving: boolean; restarts: number; client_connections: number; client_sockets: number }
interface Status { client_connections: number; workers: WorkerRow[]; pools: { node: string; user: string; database: string; max: number }[] }

let proxy: ProxyProcess;
/** What the helpers need of a proxy: its client port. */
let target: RunningProxy;

async function status(): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) });
  return (await r.json()) as Status;
}
async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
}
const keyOf = (c: pg.Client) => c as unknown as { processID: number; secretKey: number };
/** The worker that owns a session, as its BackendKeyData says. */
const workerOf = (c: pg.Client) => pidOwner(keyOf(c).processID);

async function clients(n: number, o: Partial<pg.ClientConfig> = {}): Promise<pg.Client[]> {
  const out: pg.Client[] = [];
  for (let i = 0; i < n; i++) out.push(await proxyClient(target, info, o));
  return out;
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** One statement on the primary as the superuser, in the app's database. */
async function onPrimary(sql: string): Promise<pg.QueryResult> {
  const c = await directClient(cluster.nodes[0]!, info, { database: info.app.database });
  try {
    return await c.query(sql);
  } finally {
    await endQuietly(c);
  }
}

describe('workers: 2', () => {
  beforeAll(async () => {
    proxy = await spawnProxy(info, { logLevel: 'warn', extra: 'workers: 2\npool: { size: 4 }' });
    target = { listenPort: proxy.port } as RunningProxy;
    const c = await proxyClient(target, info);
    await c.query('CREATE TABLE IF NOT EXISTS workers_rw (id bigint PRIMARY KEY, who text)');
    await endQuietly(c);
  });

  afterAll(async () => {
    await proxy?.stop();
  });

  it('spreads clients over both workers, and /status and /metrics count them all', async () => {
    const cs = await clients(8);
    try {
      const owners = cs.map(workerOf);
      expect(new Set(owners)).toEqual(new Set([0, 1]));
      for (const c of cs) expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      const st = await status();
      expect(st.client_connections).toBe(8);
      expect(st.workers.map((w) => [w.index, w.running, w.serving])).toEqual([[0, true, true], [1, true, true]]);
      // The coordinator hands each new client to the worker with the fewest.
      expect(Math.abs(st.workers[0]!.client_sockets - st.workers[1]!.client_sockets)).toBeLessThanOrEqual(1);
      expect(st.workers.map((w) => w.client_connections)).toEqual([owners.filter((o) => o === 0).length, owners.filter((o) => o === 1).length]);
      // Each worker has half of pool.size; the instance-wide pool shows the whole of it.
      for (const p of st.pools) expect(p.max).toBe(4);
      const m = await metrics();
      expect(metricValue(m, 'pgsplit_client_connections')).toBe(8);
      expect(metricValue(m, 'pgsplit_workers', { state: 'serving' })).toBe(2);
      expect(metricValue(m, 'pgsplit_statements_routed_total')).toBeGreaterThanOrEqual(8);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });

  it('keeps pool.size for the whole instance: 24 clients at once, at most 4 server connections per node', async () => {
    const cs = await clients(24);
    const directs = await Promise.all(cluster.nodes.map((n) => directClient(n, info)));
    const sampler = sampleBackends(directs, info.app.user, info.app.database);
    try {
      const results = await Promise.all(cs.map(async (c, i) => (await c.query(`SELECT pg_sleep(0.2), ${i} AS i`)).rows[0].i as number));
      expect(results).toEqual(cs.map((_, i) => i));
      const { max, samples } = await sampler.stop();
      expect(samples).toBeGreaterThan(0);
      for (const m of max) expect(m).toBeLessThanOrEqual(4);
      // Both workers' shares (2 each) were in use on the busiest node at once.
      expect(Math.max(...max)).toBe(4);
    } finally {
      await sampler.stop();
      await Promise.all([...cs, ...directs].map(endQuietly));
    }
  });

  it('cancels the right query whichever worker the cancel request reaches', async () => {
    // Five sessions: consecutive connections alternate between the workers, so cancels land on both.
    const cs = await clients(5);
    try {
      const before = metricValue(await metrics(), 'pgsplit_cancel_requests_forwarded_total') ?? 0;
      const marker = `workers_cancel_${Date.now()}`;
      const running = cs.map((c, i) => rejection(c.query(`SELECT pg_sleep(30) /* ${marker}_${i} */`)));
      await usingAllNodes(info, (all) => eventually('five sleeps running', async () => ((await backendsRunning(all, marker)).filter((b) => b.state === 'active').length >= 5 ? true : undefined)));
      for (const c of cs) await sendCancelRequest(proxy.port, keyOf(c).processID, keyOf(c).secretKey);
      const errors = await Promise.race([Promise.all(running), sleep(10_000).then(() => null)]);
      expect(errors, 'every query cancelled within 10 s').not.toBeNull();
      for (const e of errors!) expect(e.code).toBe('57014');
      for (const c of cs) expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
      expect(metricValue(await metrics(), 'pgsplit_cancel_requests_forwarded_total')! - before).toBeGreaterThan(0);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });

  it('reads its own writes from every worker (the coordinator answers the LSN tickets)', async () => {
    const cs = await clients(4);
    try {
      expect(new Set(cs.map(workerOf)).size).toBe(2);
      const base = Date.now() % 1_000_000 * 100;
      const routedBefore = metricValue(await metrics(), 'pgsplit_statements_routed_total', { target: 'replica' }) ?? 0;
      await Promise.all(cs.map(async (c, w) => {
        for (let i = 0; i < 60; i++) {
          const id = base + w * 1000 + i;
          await c.query('INSERT INTO workers_rw VALUES ($1, $2)', [id, `w${w}`]);
          // Now and then the next read comes a little later, when a replica may have it.
          if (i % 10 === 9) await sleep(30);
          const r = await c.query('SELECT who FROM workers_rw WHERE id = $1', [id]);
          expect(r.rows, `row ${id} read back`).toEqual([{ who: `w${w}` }]);
        }
      }));
      const routedAfter = metricValue(await metrics(), 'pgsplit_statements_routed_total', { target: 'replica' }) ?? 0;
      expect(routedAfter - routedBefore, 'some reads after writes went to replicas').toBeGreaterThan(0);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });

  it('applies a reload (SIGHUP) in every worker: a user added to the file can log in through both', async () => {
    await onPrimary("DO $$ BEGIN CREATE ROLE workers_new LOGIN PASSWORD 'workers_pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    const as = { user: 'workers_new', password: 'workers_pw' };
    const refused = await rejection(proxyClient(target, info, as));
    expect(refused.code).toBe('28P01');
    const file = fs.readFileSync(proxy.configFile, 'utf8');
    fs.writeFileSync(proxy.configFile, file.replace('users:\n', 'users:\n  - { name: workers_new, password: workers_pw }\n'));
    proxy.child.kill('SIGHUP');
    const cs = await eventually('the new user logs in', async () => {
      try {
        return await clients(4, as);
      } catch {
        return undefined;
      }
    });
    try {
      expect(new Set(cs.map(workerOf))).toEqual(new Set([0, 1]));
      for (const c of cs) expect((await c.query('SELECT current_user AS u')).rows).toEqual([{ u: 'workers_new' }]);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });

  it('restarts a worker that dies; its clients get an error, the other worker’s clients carry on', async () => {
    const cs = await clients(6);
    try {
      const victim = (await status()).workers[0]!;
      expect(victim.pid).not.toBeNull();
      const onVictim = cs.filter((c) => workerOf(c) === 0);
      const onOther = cs.filter((c) => workerOf(c) === 1);
      expect(onVictim.length).toBeGreaterThan(0);
      expect(onOther.length).toBeGreaterThan(0);
      process.kill(victim.pid!, 'SIGKILL');
      for (const c of onVictim) expect((await rejection(c.query('SELECT 1'))).message).toMatch(/terminated|ECONNRESET|closed|not queryable/i);
      for (const c of onOther) expect((await c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
      const back = await eventually('worker 0 restarted', async () => {
        const w = (await status()).workers[0]!;
        return w.running && w.serving && w.pid !== victim.pid ? w : undefined;
      }, 15_000);
      expect(back.restarts).toBe(victim.restarts + 1);
      expect(metricValue(await metrics(), 'pgsplit_worker_restarts_total')).toBe(victim.restarts + 1);
      const fresh = await clients(onOther.length + 2);
      try {
        // The restarted worker has the fewest clients, so it gets the new ones until it has as many as the other.
        expect(fresh.slice(0, onOther.length).map(workerOf)).toEqual(onOther.map(() => 0));
        expect(new Set(fresh.slice(onOther.length).map(workerOf))).toEqual(new Set([0, 1]));
        for (const c of fresh) expect((await c.query('SELECT 4 AS four')).rows).toEqual([{ four: 4 }]);
      } finally {
        await Promise.all(fresh.map(endQuietly));
      }
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });

  it('drains every worker on SIGTERM: an open transaction commits, then all processes exit', async () => {
    const pids = (await status()).workers.map((w) => w.pid!);
    const c = await proxyClient(target, info);
    const id = 900_000_000 + (Date.now() % 1_000_000);
    try {
      await c.query('BEGIN');
      await c.query('INSERT INTO workers_rw VALUES ($1, $2)', [id, 'drain']);
      const exited = new Promise<number | null>((r) => proxy.child.once('exit', (code) => r(code)));
      proxy.child.kill('SIGTERM');
      await sleep(300);
      await c.query('COMMIT');
      await endQuietly(c);
      expect(await Promise.race([exited, sleep(15_000).then(() => 'still running')])).toBe(0);
      for (const pid of pids) await eventually(`worker ${pid} gone`, () => (alive(pid) ? undefined : true), 5_000);
      expect((await onPrimary(`SELECT who FROM workers_rw WHERE id = ${id}`)).rows).toEqual([{ who: 'drain' }]);
    } finally {
      await endQuietly(c);
    }
  });
});

describe('workers: 2, when the coordinator or the port is lost', () => {
  it('workers exit when their coordinator is killed (no orphan keeps the port or serves a stale topology)', async () => {
    const p = await spawnProxy(info, { logLevel: 'warn', extra: 'workers: 2\nshutdown: { drain_timeout: 1s }' });
    try {
      const st = (await (await fetch(`http://127.0.0.1:${p.adminPort}/status`, { headers: adminAuthHeaders() })).json()) as Status;
      const pids = st.workers.map((w) => w.pid!);
      expect(pids.every(alive)).toBe(true);
      const c = await proxyClient({ listenPort: p.port } as RunningProxy, info);
      expect((await c.query('SELECT 5 AS five')).rows).toEqual([{ five: 5 }]);
      p.child.kill('SIGKILL');
      for (const pid of pids) await eventually(`worker ${pid} gone`, () => (alive(pid) ? undefined : true), 10_000);
      expect((await rejection(c.query('SELECT 1'))).message).toMatch(/terminated|ECONNRESET|closed|not queryable/i);
      await endQuietly(c);
    } finally {
      await p.stop();
    }
  });

  it('counts listen.max_client_connections for the whole instance: every client up to it is served, the next gets 53300', async () => {
    const p = await spawnProxy(info, { logLevel: 'warn', listenExtra: 'max_client_connections: 5', extra: 'workers: 2' });
    const t = { listenPort: p.port } as RunningProxy;
    const cs: pg.Client[] = [];
    try {
      for (let i = 0; i < 5; i++) cs.push(await proxyClient(t, info));
      expect(new Set(cs.map(workerOf))).toEqual(new Set([0, 1]));
      const refused = await rejection(proxyClient(t, info));
      expect(refused.code).toBe('53300');
      expect(refused.message).toMatch(/max_client_connections = 5/);
      await endQuietly(cs.pop());
      // The closed place is free again once its worker has reported it.
      const again = await eventually('a place after a client left', async () => {
        try {
          return await proxyClient(t, info);
        } catch {
          return undefined;
        }
      });
      cs.push(again);
      for (const c of cs) expect((await c.query('SELECT 6 AS six')).rows).toEqual([{ six: 6 }]);
      const m = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
      expect(metricValue(m, 'pgsplit_client_connections_refused_total')).toBeGreaterThanOrEqual(1);
    } finally {
      await Promise.all(cs.map(endQuietly));
      await p.stop();
    }
  });

  it('replaces a worker that stops answering (SIGSTOP): new clients go to the other one meanwhile', async () => {
    const p = await spawnProxy(info, { logLevel: 'error', extra: 'workers: 2' });
    const t = { listenPort: p.port } as RunningProxy;
    const get = async () => (await (await fetch(`http://127.0.0.1:${p.adminPort}/status`, { headers: adminAuthHeaders() })).json()) as Status & { workers: (WorkerRow & { missed_heartbeats: number })[] };
    let stopped: number | null = null;
    try {
      const frozen = (await get()).workers[1]!;
      stopped = frozen.pid!;
      process.kill(stopped, 'SIGSTOP');
      await eventually('a missed heartbeat', async () => ((await get()).workers[1]!.missed_heartbeats > 0 ? true : undefined), 10_000);
      const cs: pg.Client[] = [];
      try {
        for (let i = 0; i < 3; i++) cs.push(await proxyClient(t, info));
        expect(cs.map(workerOf)).toEqual([0, 0, 0]);
      } finally {
        await Promise.all(cs.map(endQuietly));
      }
      const back = await eventually('the frozen worker replaced', async () => {
        const w = (await get()).workers[1]!;
        return w.serving && w.pid !== frozen.pid ? w : undefined;
      }, 30_000);
      expect(back.restarts).toBe(frozen.restarts + 1);
      expect(alive(frozen.pid!)).toBe(false);
      stopped = null;
      const fresh = [await proxyClient(t, info), await proxyClient(t, info)];
      try {
        expect(new Set(fresh.map(workerOf))).toEqual(new Set([0, 1]));
        for (const c of fresh) expect((await c.query('SELECT 7 AS seven')).rows).toEqual([{ seven: 7 }]);
      } finally {
        await Promise.all(fresh.map(endQuietly));
      }
    } finally {
      if (stopped !== null && alive(stopped)) process.kill(stopped, 'SIGCONT');
      await p.stop();
    }
  });

  it('refuses to start, with the reason, when the client port is taken', async () => {
    const net = await import('node:net');
    const blocker = net.createServer();
    const port = await new Promise<number>((r) => blocker.listen(0, '127.0.0.1', () => r((blocker.address() as { port: number }).port)));
    try {
      const err = await rejection(spawnProxy(info, { port, logLevel: 'warn', extra: 'workers: 2' }));
      expect(err.message).toMatch(/exited with 1/);
      expect(err.message).toMatch(/EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});
