// Read-your-writes on a cluster of its own with pg2's replay paused: no session misses its own write (simple, extended, transactions, 4 sessions at once), eventual mode does, and reads return to replicas after catch-up.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import type { NodeState } from '../../src/topology/topology.js';
import { directClient, endQuietly, eventually, proxyClient, sleep, using } from './helpers.js';

type LagNode = NodeState & { lagBytes: number | null; banned: boolean; banReason: string | null };
type Mode = 'simple' | 'extended' | 'transaction';

const SESSIONS = 4;
const ITERATIONS = 250;
// No time bound and a huge byte bound: the paused pg2 is never banned, so only read-your-writes keeps a session's reads away from it.
const ROUTING = 'max_replica_lag: { bytes: 1GB }';

let cluster: Cluster;
let info: ClusterInfo;
let ryw: RunningProxy | null = null;
let pg2Paused = false;
let nextId = 1;

const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;
const nameOf = (port: number): string => cluster.nodes.find((n) => n.port === port)?.name ?? String(port);
const asApp = (n: ClusterNode) => directClient(n, info, { user: info.app.user, password: info.app.password, database: info.app.database });
const port = async (c: pg.Client): Promise<number> => (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;

async function setPg2Paused(on: boolean): Promise<void> {
  await using(directClient(node('pg2'), info), (c) => c.query(on ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()'));
  pg2Paused = on;
}

async function caughtUp(name: string): Promise<void> {
  const lsn = (await using(directClient(node('pg1'), info), (c) => c.query('SELECT pg_current_wal_lsn()::text AS l'))).rows[0].l as string;
  await using(directClient(node(name), info), (c) =>
    eventually(`${name} to replay up to ${lsn}`, async () => ((await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0].ok ? true : undefined), 30_000),
  );
}

/** One write of a fresh id by this session, then a read of it; returns where the read ran and whether it saw the row. */
async function writeThenRead(c: pg.Client, mode: Mode, id: number, s: number): Promise<{ port: number; n: number }> {
  if (mode === 'simple') {
    await c.query(`INSERT INTO ryw VALUES (${id}, ${s})`);
    return (await c.query(`SELECT inet_server_port() AS port, (SELECT count(*)::int FROM ryw WHERE id = ${id}) AS n`)).rows[0];
  }
  if (mode === 'transaction') await c.query('BEGIN');
  await c.query('INSERT INTO ryw VALUES ($1, $2)', [id, s]);
  if (mode === 'transaction') await c.query('COMMIT');
  return (await c.query('SELECT inet_server_port() AS port, (SELECT count(*)::int FROM ryw WHERE id = $1) AS n', [id])).rows[0];
}

interface LoopResult {
  misses: number;
  reads: Map<string, number>;
  missesOn: Map<string, number>;
  firstReads: string[];
  ids: [number, number];
  /** With settle: where each session's reads ended up once it stopped writing, and reads that missed some of its rows. */
  settled: string[];
  settleMisses: number;
}

/**
 * SESSIONS concurrent sessions, each ITERATIONS times: write a unique id, read it back. With `settle`, each
 * session then only reads (all its rows, every 20 ms for up to 3 s) until a read runs on a replica.
 */
async function loop(proxy: RunningProxy, mode: Mode, settle = false): Promise<LoopResult> {
  const clients: pg.Client[] = [];
  const firstId = nextId;
  nextId += SESSIONS * ITERATIONS;
  const res: LoopResult = { misses: 0, reads: new Map(), missesOn: new Map(), firstReads: [], ids: [firstId, nextId - 1], settled: [], settleMisses: 0 };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  try {
    // A read first, so each session has been given its replica (round-robin: pg2, pg3, pg2, pg3) before it writes.
    for (let s = 0; s < SESSIONS; s++) {
      const c = await proxyClient(proxy, info);
      clients.push(c);
      res.firstReads.push(nameOf(await port(c)));
    }
    await Promise.all(
      clients.map(async (c, s) => {
        for (let i = 0; i < ITERATIONS; i++) {
          const r = await writeThenRead(c, mode, firstId + s * ITERATIONS + i, s);
          bump(res.reads, nameOf(r.port));
          if (r.n !== 1) {
            res.misses++;
            bump(res.missesOn, nameOf(r.port));
          }
        }
      }),
    );
    if (settle) {
      res.settled = await Promise.all(
        clients.map(async (c, s) => {
          const deadline = Date.now() + 3_000;
          for (;;) {
            const from = firstId + s * ITERATIONS;
            const r = (await c.query('SELECT inet_server_port() AS port, (SELECT count(*)::int FROM ryw WHERE id BETWEEN $1 AND $2) AS n', [from, from + ITERATIONS - 1])).rows[0];
            if (r.n !== ITERATIONS) res.settleMisses++;
            if (r.port !== node('pg1').port || Date.now() > deadline) return nameOf(r.port);
            await sleep(20);
          }
        }),
      );
    }
  } finally {
    await Promise.all(clients.map((c) => endQuietly(c)));
  }
  return res;
}

const show = (m: Map<string, number>) => JSON.stringify(Object.fromEntries([...m].sort()));

describe('read-your-writes with a replica whose replay is paused', () => {
  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    await using(asApp(node('pg1')), (c) => c.query('CREATE TABLE ryw (id bigint PRIMARY KEY, session int NOT NULL)'));
    await caughtUp('pg2');
    await caughtUp('pg3');
    await setPg2Paused(true);
    ryw = await startProxy(info, { extra: `routing: { enabled: true, ${ROUTING} }` });
  });

  afterAll(async () => {
    await ryw?.close(1_000);
    if (pg2Paused) await setPg2Paused(false).catch(() => {});
    await cluster?.stop();
  });

  for (const mode of ['simple', 'extended', 'transaction'] as const) {
    it(`no session misses its own write (${mode}${mode === 'transaction' ? ': BEGIN; INSERT; COMMIT; then SELECT' : ' protocol'}, ${SESSIONS} sessions x ${ITERATIONS})`, async () => {
      const r = await loop(ryw!, mode, true);
      console.log(`[read-your-writes] ${mode}: first reads ${r.firstReads.join(',')}; reads right after a write ${show(r.reads)}; misses ${r.misses} ${show(r.missesOn)}; once writes stopped, reads settled on ${r.settled.join(',')}`);
      expect([...r.firstReads].sort(), 'sessions were given both replicas').toEqual(['pg2', 'pg2', 'pg3', 'pg3']);
      expect([...r.reads.values()].reduce((a, b) => a + b, 0)).toBe(SESSIONS * ITERATIONS);
      expect(r.misses).toBe(0);
      expect(r.reads.get('pg2') ?? 0, 'no read went to the paused replica').toBe(0);
      expect(r.settleMisses).toBe(0);
      // Not "everything on the primary": a session that wrote reads from its replica again once the replica has
      // replayed its writes (pg3 replays as it goes; pg2 never does while paused).
      expect(r.settled.filter((_, s) => r.firstReads[s] === 'pg3'), 'sessions given pg3 read there again after their writes').toEqual(['pg3', 'pg3']);
      expect(r.settled).not.toContain('pg2');
      // The paused replica really lacks the rows, so a read sent there would have missed.
      const onPg2 = (await using(asApp(node('pg2')), (c) => c.query('SELECT count(*)::int AS n FROM ryw WHERE id BETWEEN $1 AND $2', r.ids))).rows[0].n;
      expect(onPg2).toBe(0);
      const s = ryw!.topology.node('pg2') as LagNode;
      expect(s.banned, `pg2 must not be banned (lag ${s.lagBytes} B): only read-your-writes keeps reads off it`).toBe(false);
    });
  }

  it('with consistency: eventual, sessions reading from the paused replica miss their own writes', async () => {
    const eventual = await startProxy(info, { extra: `routing: { enabled: true, consistency: eventual, ${ROUTING} }` });
    try {
      const r = await loop(eventual, 'extended');
      console.log(`[read-your-writes] eventual: first reads ${r.firstReads.join(',')}; reads ${show(r.reads)}; misses ${r.misses} ${show(r.missesOn)}`);
      expect([...r.firstReads].sort()).toEqual(['pg2', 'pg2', 'pg3', 'pg3']);
      expect(r.misses).toBeGreaterThan(0);
      expect(r.missesOn.get('pg2') ?? 0).toBeGreaterThan(0);
    } finally {
      await eventual.close(1_000);
    }
  });

  it('after the replica catches up, the reads of sessions that wrote go back to replicas', async () => {
    const clients: pg.Client[] = [];
    try {
      const given: string[] = [];
      const ids: number[] = [];
      for (let s = 0; s < SESSIONS; s++) {
        const c = await proxyClient(ryw!, info);
        clients.push(c);
        given.push(nameOf(await port(c)));
        ids.push(nextId++);
        await c.query('INSERT INTO ryw VALUES ($1, $2)', [ids[s], s]);
      }
      const read = async (s: number) => (await clients[s]!.query('SELECT inet_server_port() AS port, (SELECT count(*)::int FROM ryw WHERE id = $1) AS n', [ids[s]])).rows[0] as { port: number; n: number };
      const before: string[] = [];
      for (let s = 0; s < SESSIONS; s++) {
        const r = await read(s);
        expect(r.n).toBe(1);
        before.push(nameOf(r.port));
      }
      expect(before).not.toContain('pg2');

      await setPg2Paused(false);
      await caughtUp('pg2');
      const after: string[] = [];
      const misses: string[] = [];
      for (let s = 0; s < SESSIONS; s++) {
        const landed = await eventually(`session ${s} (given ${given[s]}) to read from a replica again`, async () => {
          const r = await read(s);
          if (r.n !== 1) misses.push(`session ${s} on ${nameOf(r.port)}`);
          return r.port === node('pg1').port ? undefined : nameOf(r.port);
        }, 15_000, 200);
        after.push(landed);
        // And it stays there for the next reads.
        for (let k = 0; k < 3; k++) {
          const r = await read(s);
          expect(r).toEqual({ port: node(landed).port, n: 1 });
        }
      }
      console.log(`[read-your-writes] after resume: given ${given.join(',')}; reads before catch-up ${before.join(',')}; after ${after.join(',')}`);
      expect(misses, 'no read missed its own write on the way back').toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => endQuietly(c)));
    }
  });
});
