// Three pgsplit instances in front of one cluster through a real 3-member etcd: one leader, one published primary; a cut-off instance stops writing; a killed leader is replaced; a killed primary is promoted over exactly once.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { adminAuthHeaders, spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { startEtcd, type EtcdCluster } from '../harness/etcd.js';
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy.js';
import { freePort } from '../harness/ports.js';
import { directClient, endQuietly, eventually, proxyClient, sleep, using } from './helpers.js';

interface Coordination { instance: string; role: string; leader: string | null; epoch: number | null; published_primary: string | null; state_age_ms: number | null; writes_allowed: boolean }
interface Status { primary: string | null; coordination: Coordination; failover: { events: { kind: string; old_primary: string | null; new_primary: string; error?: string }[] } }

const LEASE_TTL_MS = 2000;
const INSERT_PORT = 'INSERT INTO coord (v) VALUES (1) RETURNING inet_server_port()';
/** Debian's pgJDBC (libpostgresql-jdbc-java, installed by .ci/run). */
const PGJDBC = '/usr/share/java/postgresql.jar';

/** Runs a client program to its end: what it printed, its error output, and how long it took. */
function runClient(cmd: string, args: string[], password: string): { out: string; stderr: string; error: string; ms: number } {
  const started = Date.now();
  const r = spawnSync(cmd, args, { env: { ...process.env, PGPASSWORD: password }, encoding: 'utf8', timeout: 30_000 });
  return { out: r.stdout.trim(), stderr: r.stderr, error: r.status === 0 ? '' : `exit ${r.status ?? r.signal}: ${r.stderr}`, ms: Date.now() - started };
}
const HOLD_MS = 4000;

interface Instance {
  name: string;
  proc: ProxyProcess;
  target: RunningProxy;
}

describe('several pgsplit instances through etcd', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let etcd: EtcdCluster;
  let fault: FaultProxy;
  const instances: Instance[] = [];
  const prefix = `/pgsplit/test-${process.pid}`;
  const node = (name: string) => cluster.nodes.find((n) => n.name === name)!;
  const status = async (i: Instance): Promise<Status> =>
    (await fetch(`http://127.0.0.1:${i.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) })).json() as Promise<Status>;
  const alive = () => instances.filter((i) => i.proc.child.exitCode === null && i.proc.child.signalCode === null);
  const leaders = async () => (await Promise.all(alive().map(async (i) => ({ i, s: await status(i) })))).filter((x) => x.s.coordination.role === 'leader');

  /** INSERT through `i`: the port of the server that took it. */
  const write = (c: pg.Client) => c.query<{ id: number; port: number }>('INSERT INTO coord (v) VALUES (1) RETURNING id, inet_server_port() AS port').then((r) => r.rows[0]!);

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    etcd = await startEtcd({ members: 3 });
    // p3 reaches etcd only through a link the test can cut.
    const m0 = etcd.members[0]!;
    fault = await startFaultProxy('127.0.0.1', m0.clientPort);
    for (const name of ['p1', 'p2', 'p3']) {
      const endpoints = name === 'p3' ? [`http://127.0.0.1:${fault.port}`] : etcd.endpoints;
      const extra = [
        `coordination: { name: ${name}, etcd: { endpoints: [${endpoints.join(', ')}], prefix: ${prefix}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
        'replication: { mode: semi-sync }',
        `failover: { hold_timeout: ${HOLD_MS}ms, failure_threshold: 2 }`,
      ].join('\n');
      const proc = await spawnProxy(info, { logLevel: process.env.COORD_LOG ?? 'warn', extra });
      instances.push({ name, proc, target: { listenPort: proc.port } as RunningProxy });
      // p1 starts alone for a moment, so it is the first leader.
      if (name === 'p1') await eventually('p1 to lead', async () => ((await status(instances[0]!)).coordination.role === 'leader' ? true : undefined), 15_000);
    }
    await using(proxyClient(instances[0]!.target, info), (c) => c.query('CREATE TABLE coord (id serial PRIMARY KEY, v int NOT NULL)'));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(instances.map((i) => i.proc.stop().catch(() => {})));
    await fault?.stop();
    await etcd?.stop();
    await cluster?.stop();
  });

  it('one leader; every instance follows the same published primary and epoch, and writes through each reach it', async () => {
    const all = await eventually('every instance to follow the published state', async () => {
      const ss = await Promise.all(instances.map(status));
      return ss.every((s) => s.coordination.published_primary === 'pg1' && s.coordination.writes_allowed) ? ss : undefined;
    }, 15_000);
    expect(all.filter((s) => s.coordination.role === 'leader').map((s) => s.coordination.instance)).toEqual(['p1']);
    expect(new Set(all.map((s) => s.coordination.epoch))).toEqual(new Set([all[0]!.coordination.epoch]));
    expect(all.map((s) => s.coordination.leader)).toEqual(['p1', 'p1', 'p1']);
    for (const i of instances) {
      const r = await using(proxyClient(i.target, info), write);
      expect(r.port, `write through ${i.name}`).toBe(node('pg1').port);
    }
    // The leader's synchronous standbys are published: a follower shows them (and would decide a failover on them if it led).
    const replication = (s: Status) => (s as unknown as { replication: { synchronous_standbys: string[]; synchronous_standby_names: string; degraded: boolean } }).replication;
    const shown = (s: Status) => JSON.stringify([replication(s).synchronous_standbys, replication(s).synchronous_standby_names, replication(s).degraded]);
    const ss = await eventually('followers to show the synchronous standbys the leader applied', async () => {
      const ss = await Promise.all(instances.map(status));
      return replication(ss[0]!).synchronous_standbys.length > 0 && ss.every((x) => shown(x) === shown(ss[0]!)) ? ss : undefined;
    }, 15_000);
    expect(replication(ss[1]!)).toMatchObject({ synchronous_standby_names: 'ANY 1 ("pg2", "pg3")', degraded: false });
  });

  it('an instance cut off from etcd stops writing within lease_ttl while reads go on, and writes again once healed', async () => {
    const p3 = instances[2]!;
    const c = await proxyClient(p3.target, info);
    try {
      await write(c);
      const cutAt = Date.now();
      fault.break('blackhole');
      await eventually('p3 to stop allowing writes', async () => ((await status(p3)).coordination.writes_allowed ? undefined : true), LEASE_TTL_MS * 3);
      const stoppedAfter = Date.now() - cutAt;
      expect(stoppedAfter).toBeLessThan(LEASE_TTL_MS + 1500);
      const ready = await fetch(`http://127.0.0.1:${p3.proc.adminPort}/ready`);
      expect(ready.status).toBe(503);
      // A write waits failover.hold_timeout, then fails with 57P03; a read is served meanwhile.
      const started = Date.now();
      const err = await write(c).then(() => null, (e: Error & { code?: string; detail?: string }) => e);
      expect(err?.code, err?.message).toBe('57P03');
      expect(err?.detail).toMatch(/could not confirm the cluster state/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(HOLD_MS - 100);
      expect((await c.query('SELECT count(*)::int AS n FROM coord')).rows[0].n).toBeGreaterThan(0);
      // The others write on.
      expect((await using(proxyClient(instances[0]!.target, info), write)).port).toBe(node('pg1').port);
      // Multi-host clients asking for a writable server skip p3 (it says in_hot_standby = on at login) and write
      // through the next host at once, instead of waiting hold_timeout on p3.
      const hosts = [p3, instances[1]!];
      const psql = runClient(cluster.bin('psql'), [`host=${hosts.map(() => '127.0.0.1').join(',')} port=${hosts.map((h) => h.proc.port).join(',')} user=${info.app.user} dbname=${info.app.database} target_session_attrs=read-write connect_timeout=5`, '-XAtq', '-c', INSERT_PORT], info.app.password);
      expect(psql.error, psql.stderr).toBe('');
      expect(Number(psql.out)).toBe(node('pg1').port);
      expect(psql.ms).toBeLessThan(HOLD_MS);
      const jdbc = runClient('java', ['-cp', PGJDBC, 'test/clients/JdbcStatements.java', `jdbc:postgresql://${hosts.map((h) => `127.0.0.1:${h.proc.port}`).join(',')}/${info.app.database}?targetServerType=primary&connectTimeout=5&sslmode=disable`, info.app.user, info.app.password, INSERT_PORT], info.app.password);
      expect(jdbc.error, jdbc.stderr).toBe('');
      expect(Number(jdbc.out)).toBe(node('pg1').port);
      expect(jdbc.ms).toBeLessThan(HOLD_MS);
      // Pointed at p3 alone, such a client is told why it was refused.
      const alone = runClient(cluster.bin('psql'), [`host=127.0.0.1 port=${p3.proc.port} user=${info.app.user} dbname=${info.app.database} target_session_attrs=read-write connect_timeout=5`, '-XAtq', '-c', 'SELECT 1'], info.app.password);
      expect(alone.stderr).toMatch(/read-only|hot standby/i);
      fault.heal();
      await eventually('p3 to write again', async () => ((await status(p3)).coordination.writes_allowed ? true : undefined), LEASE_TTL_MS * 4);
      expect((await write(c)).port).toBe(node('pg1').port);
    } finally {
      fault.heal();
      await endQuietly(c);
    }
  });

  it('the leader killed (SIGKILL): another instance leads within about lease_ttl', async () => {
    const [lead] = await leaders();
    expect(lead?.i.name).toBe('p1');
    const killedAt = Date.now();
    lead!.i.proc.child.kill('SIGKILL');
    const next = await eventually('a new leader', async () => {
      const l = await leaders();
      return l.length === 1 && l[0]!.i !== lead!.i ? l[0] : undefined;
    }, LEASE_TTL_MS * 5);
    const tookMs = Date.now() - killedAt;
    console.log(`[coordination] leader p1 killed: ${next!.i.name} leads after ${tookMs} ms (lease_ttl ${LEASE_TTL_MS} ms)`);
    expect(tookMs).toBeLessThan(LEASE_TTL_MS * 3);
    // The published state stays: same primary, same epoch.
    expect(next!.s.coordination.published_primary).toBe('pg1');
  });

  it('the primary killed: exactly one promotion, every instance writes to the new primary, no acknowledged commit lost', async () => {
    const live = alive();
    // The leader runs the replication upkeep (followers show what it published, without a degraded flag).
    await eventually('semi-sync not degraded on the leader', async () => {
      const [l] = await leaders();
      const s = l ? ((await status(l.i)) as unknown as { replication: { degraded: boolean | null } }) : null;
      return s?.replication.degraded === false ? true : undefined;
    }, 30_000);
    const clients = await Promise.all(live.map((i) => proxyClient(i.target, info)));
    const acked: { id: number; port: number; via: string; at: number }[] = [];
    const errors: string[] = [];
    let stop = false;
    const loops = clients.map(async (c, k) => {
      while (!stop) {
        try {
          const r = await write(c);
          acked.push({ ...r, via: live[k]!.name, at: Date.now() });
        } catch (err) {
          errors.push(`${live[k]!.name}: ${(err as Error & { code?: string }).code} ${(err as Error).message}`);
          await sleep(50);
        }
      }
    });
    let promoted: ClusterNode;
    try {
      await eventually('writes before the kill', () => (acked.length >= 20 ? true : undefined), 15_000);
      const killedAt = Date.now();
      await cluster.stopNode('pg1', 'immediate');
      const st = await eventually('every instance on one new primary', async () => {
        const ss = await Promise.all(live.map(status));
        const p = ss[0]!.coordination.published_primary;
        return p && p !== 'pg1' && ss.every((s) => s.coordination.published_primary === p && s.coordination.writes_allowed) ? ss : undefined;
      }, 30_000);
      promoted = node(st[0]!.coordination.published_primary!);
      await eventually('writes through every instance on the new primary', () => {
        const after = acked.filter((a) => a.port === promoted.port);
        return live.every((i) => after.some((a) => a.via === i.name)) ? true : undefined;
      }, 30_000);
      console.log(`[coordination] primary killed: ${promoted.name} takes writes through ${live.map((i) => i.name).join(', ')} after ${Math.min(...acked.filter((a) => a.port === promoted.port).map((a) => a.at)) - killedAt} ms`);
      // Exactly one promotion, by the one leader.
      // (The event is recorded once the other replica is re-pointed, a moment after writes resume.)
      const events = await eventually('the promotion recorded', async () => {
        const ev = (await Promise.all(live.map(status))).flatMap((s) => s.failover.events.filter((e) => e.kind === 'failover' && !e.error));
        return ev.length > 0 ? ev : undefined;
      }, 15_000);
      expect(events.map((e) => [e.old_primary, e.new_primary])).toEqual([['pg1', promoted.name]]);
      const other = cluster.nodes.find((n) => n.name !== 'pg1' && n.name !== promoted.name)!;
      const inRecovery = await using(directClient(other, info), async (d) => (await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
      expect(inRecovery, `${other.name} must still be a replica`).toBe(true);
    } finally {
      stop = true;
      await Promise.race([Promise.all(loops), sleep(20_000)]);
      await Promise.all(clients.map(endQuietly));
    }
    // Nothing acknowledged went missing (semi-sync), and nothing acknowledged after the promotion came from pg1.
    const ids = acked.map((a) => a.id);
    const have = await using(directClient(promoted!, info, { database: info.app.database }), async (d) => new Set((await d.query<{ id: number }>('SELECT id FROM coord WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id)));
    expect(ids.filter((id) => !have.has(id))).toEqual([]);
    const firstOnNew = Math.min(...acked.filter((a) => a.port === promoted!.port).map((a) => a.at));
    expect(acked.filter((a) => a.at > firstOnNew && a.port !== promoted!.port)).toEqual([]);
  });

  it('the leader paused (SIGSTOP) past lease_ttl while the primary fails and comes back: once woken it acts on nothing and no write reaches the old primary', async () => {
    const [lead] = await leaders();
    const paused = lead!.i;
    const other = alive().find((i) => i !== paused)!;
    const oldPrimary = node((await status(paused)).coordination.published_primary!);
    // pg1 is gone for good, so semi-sync stays degraded; what counts is a synchronous standby of the current primary.
    await eventually('a synchronous standby', async () => (((await status(paused)) as unknown as { replication: { synchronous_standbys: string[] } }).replication.synchronous_standbys.length > 0 ? true : undefined), 30_000);
    const c = await proxyClient(paused.target, info);
    try {
      expect((await write(c)).port).toBe(oldPrimary.port);
      const eventsBefore = (await status(paused)).failover.events.length;
      paused.proc.child.kill('SIGSTOP');
      await cluster.stopNode(oldPrimary.name, 'immediate');
      const st = await eventually('the other instance to lead and promote', async () => {
        const s2 = await status(other);
        return s2.coordination.role === 'leader' && s2.coordination.published_primary && s2.coordination.published_primary !== oldPrimary.name ? s2 : undefined;
      }, 30_000);
      const promoted = node(st.coordination.published_primary!);
      // The old primary comes back, still a primary on its old timeline.
      await cluster.startNode(oldPrimary.name);
      const countOld = () => using(directClient(oldPrimary, info, { database: info.app.database }), async (d) => (await d.query('SELECT count(*)::int AS n FROM coord')).rows[0].n as number);
      const before = await countOld();
      paused.proc.child.kill('SIGCONT');
      // Its first write after waking: held until it has read the published state, then sent to the new primary.
      const r = await write(c).catch((e: Error & { code?: string }) => e);
      if (r instanceof Error) expect((r as Error & { code?: string }).code, r.message).toBe('57P03');
      else expect(r.port).toBe(promoted.port);
      for (let k = 0; k < 20; k++) {
        const w = await write(c).catch((e: Error) => e);
        if (!(w instanceof Error)) expect(w.port).toBe(promoted.port);
      }
      const woke = await eventually('the woken instance to follow', async () => {
        const s3 = await status(paused);
        return s3.coordination.role === 'follower' && s3.coordination.published_primary === promoted.name ? s3 : undefined;
      }, 15_000);
      expect(woke.coordination.leader).toBe(other.name);
      expect(await countOld()).toBe(before);
      // It promoted nothing and switched nothing after waking.
      expect(woke.failover.events.slice(eventsBefore).filter((e) => !e.error)).toEqual([]);
    } finally {
      paused.proc.child.kill('SIGCONT');
      await endQuietly(c);
    }
  });

  it('etcd stopped entirely, failsafe off: every instance stops writing within lease_ttl; writes resume when etcd is back', async () => {
    const live = alive();
    const cs = await Promise.all(live.map((i) => proxyClient(i.target, info)));
    try {
      const primary = (await status(live[0]!)).coordination.published_primary!;
      for (const c of cs) expect((await write(c)).port).toBe(node(primary).port);
      const stoppedAt = Date.now();
      await etcd.stopAll();
      await eventually('every instance to stop allowing writes', async () => ((await Promise.all(live.map(status))).every((s) => !s.coordination.writes_allowed) ? true : undefined), LEASE_TTL_MS * 4);
      console.log(`[coordination] etcd down, failsafe off: writes stopped on every instance after ${Date.now() - stoppedAt} ms`);
      const err = await write(cs[0]!).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('57P03');
      // (No replica is left by now, pg1 dead and pg2 fenced, so reads need the primary too: they wait like writes.)
      await etcd.startAll();
      for (const c of cs) await eventually('writes again', async () => ((await write(c)).port === node(primary).port ? true : undefined), 20_000, 300);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });
});

describe('two pgsplit instances with coordination.failsafe', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let etcd: EtcdCluster;
  const instances: Instance[] = [];
  const node = (name: string) => cluster.nodes.find((n) => n.name === name)!;
  const status = async (i: Instance): Promise<Status & { coordination: { failsafe?: boolean } }> =>
    (await fetch(`http://127.0.0.1:${i.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) })).json() as Promise<Status>;
  const write = (c: pg.Client) => c.query<{ id: number; port: number }>('INSERT INTO coord (v) VALUES (1) RETURNING id, inet_server_port() AS port').then((r) => r.rows[0]!);

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    etcd = await startEtcd({ members: 3 });
    for (const name of ['f1', 'f2']) {
      const extra = [
        `coordination: { name: ${name}, failsafe: true, etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: /pgsplit/failsafe-${process.pid}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
        `failover: { hold_timeout: ${HOLD_MS}ms, failure_threshold: 2 }`,
      ].join('\n');
      const proc = await spawnProxy(info, { logLevel: process.env.COORD_LOG ?? 'warn', extra });
      instances.push({ name, proc, target: { listenPort: proc.port } as RunningProxy });
      if (name === 'f1') await eventually('f1 to lead', async () => ((await status(instances[0]!)).coordination.role === 'leader' ? true : undefined), 15_000);
    }
    await using(proxyClient(instances[0]!.target, info), (c) => c.query('CREATE TABLE coord (id serial PRIMARY KEY, v int NOT NULL)'));
    // Both have registered and read each other before the trials.
    await eventually('both following pg1', async () => ((await Promise.all(instances.map(status))).every((s) => s.coordination.published_primary === 'pg1' && s.coordination.writes_allowed) ? true : undefined), 15_000);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(instances.map((i) => i.proc.stop().catch(() => {})));
    await etcd?.stop();
    await cluster?.stop();
  });

  it('libpq with a multi-host connection string (host=a,b) skips an instance that is down and writes through the next', async () => {
    const down = await freePort();
    const f2 = instances[1]!;
    const conn = `host=127.0.0.1,127.0.0.1 port=${down},${f2.proc.port} user=${info.app.user} dbname=${info.app.database} target_session_attrs=read-write connect_timeout=5`;
    const r = spawnSync(cluster.bin('psql'), [conn, '-XAtq', '-c', 'INSERT INTO coord (v) VALUES (1) RETURNING inet_server_port()'], { env: { ...process.env, PGPASSWORD: info.app.password }, encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(Number(r.stdout.trim())).toBe(node('pg1').port);
  });

  it('POST /switchover to a follower is handed to the leader; both instances then write to the new primary', async () => {
    const follower = instances[1]!;
    expect((await status(follower)).coordination.role).toBe('follower');
    const r = await fetch(`http://127.0.0.1:${follower.proc.adminPort}/switchover`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminAuthHeaders() },
      body: JSON.stringify({ to: 'pg2' }),
      signal: AbortSignal.timeout(60_000),
    });
    const body = (await r.json()) as { event?: { new_primary: string; old_primary: string } ; error?: string };
    expect(r.status, JSON.stringify(body)).toBe(200);
    expect(body.event).toMatchObject({ old_primary: 'pg1', new_primary: 'pg2' });
    for (const i of instances) {
      await eventually(`${i.name} to write to pg2`, async () => ((await using(proxyClient(i.target, info), write)).port === node('pg2').port ? true : undefined), 15_000, 200);
    }
    // The leader did it: the event is in its history, not the follower's.
    expect((await status(instances[0]!)).failover.events.map((e) => [e.kind, e.new_primary])).toEqual([['switchover', 'pg2']]);
    expect((await status(follower)).failover.events).toEqual([]);
  });

  it('etcd down for both: writes go on to the agreed primary, nobody promotes; with one instance gone they stop; etcd back, they resume', async () => {
    const cs = await Promise.all(instances.map((i) => proxyClient(i.target, info)));
    try {
      const primary = node((await status(instances[0]!)).coordination.published_primary!);
      await etcd.stopAll();
      await sleep(LEASE_TTL_MS * 2);
      for (const c of cs) expect((await write(c)).port).toBe(primary.port);
      const ss = await Promise.all(instances.map(status));
      expect(ss.map((s) => s.coordination.writes_allowed)).toEqual([true, true]);
      // f2 gone: f1 cannot tell whether f2 still reaches etcd, so it stops writing.
      await instances[1]!.proc.stop();
      await eventually('f1 to stop allowing writes', async () => ((await status(instances[0]!)).coordination.writes_allowed ? undefined : true), LEASE_TTL_MS * 4);
      const err = await write(cs[0]!).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('57P03');
      await etcd.startAll();
      await eventually('f1 writes again', async () => ((await write(cs[0]!)).port === primary.port ? true : undefined), 20_000, 300);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });
});

describe('workers: 2 with coordination', () => {
  let cluster: Cluster;
  let info: ClusterInfo;
  let etcd: EtcdCluster;
  let proc: ProxyProcess;

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    etcd = await startEtcd({ members: 3 });
    proc = await spawnProxy(info, {
      logLevel: 'warn',
      extra: [
        'workers: 2',
        `coordination: { name: w1, etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: /pgsplit/workers-${process.pid}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
        `failover: { hold_timeout: ${HOLD_MS}ms }`,
      ].join('\n'),
    });
    await using(proxyClient({ listenPort: proc.port } as RunningProxy, info), (c) => c.query('CREATE TABLE coord (id serial PRIMARY KEY, v int NOT NULL)'));
  }, 120_000);

  afterAll(async () => {
    await proc?.stop();
    await etcd?.stop();
    await cluster?.stop();
  });

  it('both workers keep writing for many lease_ttl while the coordinator confirms the state, and stop when it cannot', async () => {
    const target = { listenPort: proc.port } as RunningProxy;
    // Sessions are spread over the workers: four clients cover both.
    const cs = await Promise.all([0, 1, 2, 3].map(() => proxyClient(target, info)));
    const write = (c: pg.Client) => c.query<{ port: number }>('INSERT INTO coord (v) VALUES (1) RETURNING inet_server_port() AS port').then((r) => r.rows[0]!.port);
    try {
      const until = Date.now() + LEASE_TTL_MS * 3;
      while (Date.now() < until) {
        for (const c of cs) expect(await write(c)).toBe(cluster.nodes[0]!.port);
        await sleep(200);
      }
      await etcd.stopAll();
      await sleep(LEASE_TTL_MS + 500);
      const errs = await Promise.all(cs.map((c) => write(c).then(() => null, (e: Error & { code?: string }) => e.code)));
      expect(errs).toEqual(['57P03', '57P03', '57P03', '57P03']);
      await etcd.startAll();
      for (const c of cs) await eventually('writes again', async () => ((await write(c)) === cluster.nodes[0]!.port ? true : undefined), 20_000, 300);
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });
});
