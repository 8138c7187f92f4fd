// Planned switchover on clusters of its own: POST /switchover and the CLI under write load (no failed statement, no lost commit), re-pointing, the 409 refusals, and failover.demote_command.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { REPO_ROOT, TEST_ADMIN_TOKEN, adminAuthHeaders, configYamlFor, startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, directClient, endQuietly, eventually, metricValue, proxyClient, run, sleep, using } from './helpers.js';

interface FailoverEvent { kind: string; reason: string; old_primary: string | null; new_primary: string; duration_ms: number; repointed: string[] }
interface Status {
  primary: string | null;
  fenced: string[];
  nodes: { name: string; role: string; up: boolean; fenced: boolean; receiver_status: string | null; streams_from: string | null }[];
  failover: { phase: string; failovers: number; events: FailoverEvent[] };
}

async function status(proxy: RunningProxy): Promise<Status> {
  const r = await adminGet(proxy, '/status');
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as Status;
}

async function postSwitchover(proxy: RunningProxy, to: string): Promise<{ status: number; body: { ok?: boolean; event?: FailoverEvent; error?: string } }> {
  const r = await fetch(`http://127.0.0.1:${proxy.adminPort}/switchover`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...adminAuthHeaders() },
    body: JSON.stringify({ to }),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: r.status, body: JSON.parse(await r.text()) };
}

/** Clients looping INSERT … RETURNING through the proxy; every acknowledged id, every error and the longest gap between acks. */
async function startLoad(proxy: RunningProxy, info: ClusterInfo, clients: number) {
  const acked: { id: number; port: number; at: number }[] = [];
  const errors: string[] = [];
  const cs: pg.Client[] = [];
  let stopped = false;
  for (let k = 0; k < clients; k++) {
    const c = await proxyClient(proxy, info, { application_name: 'so-load' });
    c.on('error', (e) => errors.push(`client ${k} error event: ${e.message}`));
    c.on('end', () => {
      if (!stopped) errors.push(`client ${k} ended`);
    });
    cs.push(c);
  }
  let stopping: Promise<void> | null = null;
  const loops = cs.map(async (c, k) => {
    while (!stopped) {
      try {
        const r = await c.query({ text: 'INSERT INTO w (client) VALUES ($1) RETURNING id, inet_server_port() AS port', values: [k] });
        acked.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, at: Date.now() });
      } catch (err) {
        errors.push(`client ${k}: ${(err as Error & { code?: string }).code} ${(err as Error).message}`);
        if (/not queryable/.test((err as Error).message)) break; // the connection is gone: nothing more to learn from it
        await sleep(10);
      }
    }
  });
  return {
    acked,
    errors,
    /** Longest time between two consecutive acknowledgements in [from, to]: the pause the clients saw. */
    maxGap(from: number, to: number): number {
      const ts = acked.map((a) => a.at).filter((t) => t >= from && t <= to).sort((a, b) => a - b);
      let gap = 0;
      for (let i = 1; i < ts.length; i++) gap = Math.max(gap, ts[i]! - ts[i - 1]!);
      return gap;
    },
    stop(): Promise<void> {
      stopped = true;
      stopping ??= (async () => {
        await Promise.race([Promise.all(loops), sleep(20_000)]);
        await Promise.all(cs.map((c) => endQuietly(c)));
      })();
      return stopping;
    },
  };
}

async function missingOn(n: ClusterNode, info: ClusterInfo, ids: number[]): Promise<number[]> {
  return using(directClient(n, info, { database: info.app.database }), async (d) => {
    const have = new Set((await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id));
    return ids.filter((id) => !have.has(id));
  });
}

async function streamsFrom(proxy: RunningProxy, names: string[], p: ClusterNode): Promise<void> {
  const want = `${p.host}:${p.port}`;
  await eventually(`${names.join(', ')} to stream from ${p.name} (${want})`, async () => {
    const st = await status(proxy);
    return names.every((name) => {
      const n = st.nodes.find((x) => x.name === name)!;
      return n.receiver_status === 'streaming' && n.streams_from === want;
    }) ? true : undefined;
  }, 30_000);
}

describe('switchover: POST /switchover and the CLI, without a failed statement or a lost commit', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let proxy: RunningProxy | null = null;
  const open: pg.Client[] = [];
  let load: Awaited<ReturnType<typeof startLoad>> | null = null;
  const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;

  beforeAll(async () => {
    // pg4 may never be promoted (nofailover) and pg5 is a delayed replica: both are refused as targets.
    cluster = await startCluster({ signalHandlers: false, replicas: 4 });
    info = clusterInfo(cluster);
    proxy = await startProxy(info, { nodeExtra: { pg4: 'tags: [nofailover]', pg5: 'delayed: true' } });
    await using(proxyClient(proxy, info), (c) => c.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL)'));
  });

  afterAll(async () => {
    await load?.stop().catch(() => {});
    await Promise.all(open.map((c) => endQuietly(c)));
    await proxy?.close(1_000).catch(() => {});
    await cluster?.stop();
  });

  it('refuses with 409 an unknown node, the primary itself, a nofailover and a delayed replica, and changes nothing', async () => {
    for (const [to, why] of [['pg9', /pg9/], ['pg1', /already the primary/], ['pg4', /nofailover|may not be promoted/], ['pg5', /delayed|may not be promoted/]] as const) {
      const r = await postSwitchover(proxy!, to);
      console.log(`[switchover] to ${to}: ${r.status} ${JSON.stringify(r.body)}`);
      expect(r.status, `switchover to ${to}`).toBe(409);
      expect(r.body.error).toMatch(why);
    }
    const st = await status(proxy!);
    expect(st.primary).toBe('pg1');
    expect(st.failover.events).toEqual([]);
    await using(proxyClient(proxy!, info), async (c) => {
      expect((await c.query('INSERT INTO w (client) VALUES (90) RETURNING inet_server_port() AS port')).rows[0].port).toBe(node('pg1').port);
    });
  });

  it('switches pg1 → pg3 under write load: 200, statements paused not failed, every commit on pg3, the replicas re-pointed, pg1 read-only and fenced', async () => {
    const idle = await proxyClient(proxy!, info);
    open.push(idle);
    const idleEvents: string[] = [];
    idle.on('error', (e) => idleEvents.push(e.message));
    await idle.query("SET application_name = 'so-idle'");
    load = await startLoad(proxy!, info, 2);
    await eventually('writes before the switchover', () => (load!.acked.length >= 50 ? true : undefined), 15_000);

    const t0 = Date.now();
    const r = await postSwitchover(proxy!, 'pg3');
    const t1 = Date.now();
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.ok).toBe(true);
    expect(r.body.event).toMatchObject({ kind: 'switchover', old_primary: 'pg1', new_primary: 'pg3' });
    await eventually('writes on pg3', () => (load!.acked.filter((a) => a.at > t1 && a.port === node('pg3').port).length >= 20 ? true : undefined), 15_000);
    const pause = load.maxGap(t0 - 1_000, Date.now());
    console.log(`[switchover] POST /switchover pg1→pg3 answered in ${t1 - t0} ms (event duration_ms ${r.body.event!.duration_ms}); longest gap between acknowledged writes ${pause} ms; repointed ${JSON.stringify(r.body.event!.repointed)}`);
    expect(load.acked.filter((a) => a.at > t1 + 200 && a.port !== node('pg3').port), 'writes after the switchover go to pg3').toEqual([]);
    expect(load.errors, 'no client statement failed').toEqual([]);
    expect(await missingOn(node('pg3'), info, load.acked.map((a) => a.id)), 'acknowledged commits missing on pg3').toEqual([]);


    const st = await status(proxy!);
    expect(st.primary).toBe('pg3');
    expect(st.failover.events.map((e) => [e.kind, e.old_primary, e.new_primary])).toEqual([['switchover', 'pg1', 'pg3']]);
    expect(metricValue((await adminGet(proxy!, '/metrics')).body, 'pgsplit_primary', { node: 'pg3' })).toBe(1);
    await streamsFrom(proxy!, ['pg2', 'pg4', 'pg5'], node('pg3'));

    // The old primary was made read-only, is fenced, and gets nothing.
    await using(directClient(node('pg1'), info), async (d) => {
      expect((await d.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only).toBe('on');
      expect((await d.query("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'so-%'")).rows).toEqual([]);
    });
    const fenced = await eventually('pg1 fenced (or no longer claiming primary)', async () => {
      const s = await status(proxy!);
      const n = s.nodes.find((x) => x.name === 'pg1')!;
      return n.fenced || n.role === 'replica' || !n.up ? n : undefined;
    }, 10_000);
    console.log(`[switchover] pg1 after the switchover: ${JSON.stringify(fenced)}`);

    // A session that sat idle through the switchover (its connection to pg1 unused) continues on pg3 with its settings.
    expect(idleEvents, 'the idle session saw no error').toEqual([]);
    const w = await idle.query("/* pgsplit:primary */ SELECT current_setting('application_name') AS app, inet_server_port() AS port");
    expect(w.rows[0]).toEqual({ app: 'so-idle', port: node('pg3').port });
  });

  it('then refuses the old primary, which is not a replica, with 409', async () => {
    const r = await postSwitchover(proxy!, 'pg1');
    console.log(`[switchover] to pg1 (the old primary): ${r.status} ${JSON.stringify(r.body)}`);
    expect(r.status).toBe(409);
    expect(r.body.error).toMatch(/pg1/);
  });

  it('the CLI switches pg3 → pg2 while a transaction is open; it commits, and the CLI fails cleanly for an unknown node', async () => {
    const bin = path.join(REPO_ROOT, 'bin/pgsplit.js');
    const admin = `127.0.0.1:${proxy!.adminPort}`;
    // The CLI takes the admin address and its admin.auth credentials from the config file.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-so-cli-'));
    const configFile = path.join(dir, 'pgsplit.yaml');
    fs.writeFileSync(configFile, configYamlFor(info, { adminPort: proxy!.adminPort! }));
    // Named like pgsplit's own connections on purpose: a name must not let a transaction slip past the switchover.
    const tx = await proxyClient(proxy!, info, { application_name: 'pgsplit-so-tx' });
    open.push(tx);
    await tx.query('BEGIN');
    const txRow = await tx.query('INSERT INTO w (client) VALUES (91) RETURNING id, inet_server_port() AS port');
    expect(txRow.rows[0].port).toBe(node('pg3').port);
    const ackedBefore = load!.acked.length;

    const t0 = Date.now();
    const cli = run(process.execPath, [bin, 'switchover', '--to', 'pg2', '--config', configFile], { timeoutMs: 60_000 });
    // The transaction goes on only once the switchover is under way (writes held), and after a switchover's usual
    // length: had the switchover not waited for it, it would now commit on the demoted pg3 and be missing on pg2.
    await eventually('the switchover to hold new writes', () => (proxy!.topology.writesPaused ? true : undefined), 30_000, 5);
    await sleep(500);
    await tx.query('INSERT INTO w (client) VALUES (92)');
    await tx.query('COMMIT');
    const committedAt = Date.now();
    const res = await cli;
    const t1 = Date.now();
    console.log(`[switchover] CLI pg3→pg2: exit ${res.code} after ${t1 - t0} ms (the open transaction committed at +${committedAt - t0} ms); longest gap between acknowledged writes ${load!.maxGap(t0 - 1_000, t1 + 1_000)} ms; stdout ${res.stdout.trim()}`);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { ok: boolean; event: FailoverEvent };
    expect(out.ok).toBe(true);
    expect(out.event).toMatchObject({ kind: 'switchover', old_primary: 'pg3', new_primary: 'pg2' });

    await eventually('writes on pg2', () => (load!.acked.filter((a) => a.at > t1 && a.port === node('pg2').port).length >= 20 ? true : undefined), 15_000);
    expect(load!.acked.length).toBeGreaterThan(ackedBefore);
    await load!.stop();
    expect(load!.errors, 'no client statement failed').toEqual([]);
    expect(await missingOn(node('pg2'), info, [...load!.acked.map((a) => a.id), txRow.rows[0].id as number]), 'acknowledged commits missing on pg2').toEqual([]);
    expect((await status(proxy!)).primary).toBe('pg2');
    await streamsFrom(proxy!, ['pg4', 'pg5'], node('pg2'));

    const bad = await run(process.execPath, [bin, 'switchover', '--to', 'pg9', '--admin', admin], { timeoutMs: 30_000, env: { PGSPLIT_ADMIN_TOKEN: TEST_ADMIN_TOKEN } });
    console.log(`[switchover] CLI to pg9: exit ${bad.code}, stderr ${bad.stderr.trim()}`);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/409/);
    expect(bad.stderr).toMatch(/pg9/);
    // Without credentials the CLI is refused (401) before anything is looked at.
    const anon = await run(process.execPath, [bin, 'switchover', '--to', 'pg3', '--admin', admin], { timeoutMs: 30_000, env: { PGSPLIT_ADMIN_TOKEN: '' } });
    expect(anon.code).toBe(1);
    expect(anon.stderr).toMatch(/401/);
    fs.rmSync(dir, { recursive: true, force: true });
    expect((await status(proxy!)).failover.events.map((e) => [e.kind, e.new_primary])).toEqual([['switchover', 'pg3'], ['switchover', 'pg2']]);
    // The session whose transaction committed on pg3 during the switchover goes on, on pg2.
    expect((await tx.query('INSERT INTO w (client) VALUES (93) RETURNING inet_server_port() AS port')).rows[0].port).toBe(node('pg2').port);
  });
});

describe('switchover with failover.demote_command', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let proxy: RunningProxy | null = null;
  let dir = '';

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-demote-'));
    // Records its environment, then demotes the old primary by stopping it (as the server user when we are root).
    const pgCtl = `${info.binDir}/pg_ctl stop -D "$DATA" -m fast -w -t 60`;
    fs.writeFileSync(path.join(dir, 'demote.sh'), [
      '#!/bin/sh',
      `env | grep '^PGSPLIT_' | sort > ${dir}/env.txt`,
      `case "$PGSPLIT_NODE" in ${cluster.nodes.map((n) => `${n.name}) DATA=${n.dataDir} ;;`).join(' ')} *) exit 3 ;; esac`,
      'cd /',
      info.serverUser ? `exec runuser -u ${info.serverUser} -- ${pgCtl}` : `exec ${pgCtl}`,
      '',
    ].join('\n'));
    proxy = await startProxy(info, { extra: `failover: { demote_command: "sh ${dir}/demote.sh" }` });
    await using(proxyClient(proxy, info), (c) => c.query('CREATE TABLE w (id serial PRIMARY KEY, client int NOT NULL)'));
  });

  afterAll(async () => {
    await proxy?.close(1_000).catch(() => {});
    await cluster?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs the command with the PGSPLIT_* variables instead of making the old primary read-only, and switches without loss', async () => {
    const [pg1, pg2] = [cluster.nodes[0]!, cluster.nodes[1]!];
    const load = await startLoad(proxy!, info, 2);
    try {
      await eventually('writes before the switchover', () => (load.acked.length >= 30 ? true : undefined), 15_000);
      const t0 = Date.now();
      const r = await postSwitchover(proxy!, 'pg2');
      const t1 = Date.now();
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.event).toMatchObject({ kind: 'switchover', old_primary: 'pg1', new_primary: 'pg2' });

      const env = Object.fromEntries(fs.readFileSync(path.join(dir, 'env.txt'), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      expect(env).toMatchObject({ PGSPLIT_NODE: 'pg1', PGSPLIT_NODE_HOST: pg1.host, PGSPLIT_NODE_PORT: String(pg1.port), PGSPLIT_NEW_PRIMARY_HOST: pg2.host, PGSPLIT_NEW_PRIMARY_PORT: String(pg2.port) });
      const st = await eventually('pg1 down after the demote command', async () => {
        const s = await status(proxy!);
        return s.nodes.find((n) => n.name === 'pg1')!.up ? undefined : s;
      }, 10_000);
      expect(st.primary).toBe('pg2');
      await streamsFrom(proxy!, ['pg3'], pg2);
      const auto = fs.readFileSync(path.join(pg1.dataDir, 'postgresql.auto.conf'), 'utf8');
      expect(auto, 'with a demote_command the old primary is not made read-only').not.toMatch(/default_transaction_read_only/);

      // The clients: paused, never failed, and every acknowledged commit is on pg2.
      const resumed = await eventually('writes on pg2', () => (load.acked.filter((a) => a.at > t1 && a.port === pg2.port).length >= 20 ? true : undefined), 10_000).catch((err: Error) => err);
      console.log(`[switchover] with demote_command: answered in ${t1 - t0} ms (duration_ms ${r.body.event!.duration_ms}); longest gap between acknowledged writes ${load.maxGap(t0 - 1_000, Date.now())} ms; client errors ${JSON.stringify(load.errors.slice(0, 3))} (${load.errors.length} in all)`);
      await load.stop();
      expect(load.errors, 'no client statement failed').toEqual([]);
      expect(resumed).toBe(true);
      expect(await missingOn(pg2, info, load.acked.map((a) => a.id))).toEqual([]);
    } finally {
      await load.stop();
    }
  });
});
