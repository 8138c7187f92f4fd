// Reloading the config of a running pgsplit (SIGHUP and POST /reload): every live key takes effect, restart-only keys are kept by name, an invalid file is rejected whole, the metric counts each result, and workers: 2 applies a change in every worker.
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ClusterNode } from '../harness/cluster.js';
import { adminAuthHeaders, configYamlFor, spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { freePort } from '../harness/ports.js';
import { pidOwner } from '../../src/frontend/cancel-registry.js';
import { directClient, endQuietly, eventually, metricValue, proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const suffix = process.pid;
const stableFn = `reload_fn_${suffix}`;
const lagTable = `reload_lag_${suffix}`;
/** ~2 kB: over a max_parse_length of 1kB, well under the default 64kB. */
const LONG_READ = `SELECT pg_is_in_recovery() AS on_replica, '${'x'.repeat(2000)}' AS pad`;

interface Reloaded {
  result: 'applied' | 'partial' | 'rejected';
  applied: string[];
  kept: { key: string; reason: string }[];
  error?: string;
  workers?: { confirmed: number; serving: number };
}
interface StatusNode { name: string; banned: boolean; ban_reason: string | null; lag_bytes: number | null }
interface StatusPool { node: string; user: string; active: number; idle: number; opening: number; waiting: number; max: number }
interface Status { nodes: StatusNode[]; pools: StatusPool[] }

/** A spawned pgsplit with its log lines (JSON) collected as they come. */
interface Running {
  proc: ProxyProcess;
  target: RunningProxy;
  lines: Record<string, unknown>[];
}

async function spawn(o: Parameters<typeof configYamlFor>[1], nodes = info.nodes): Promise<Running> {
  const proc = await spawnProxy({ ...info, nodes }, { logLevel: 'info', ...o });
  const lines: Record<string, unknown>[] = [];
  let rest = '';
  proc.child.stderr!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        /* not a log line */
      }
    }
  });
  return { proc, target: { listenPort: proc.port } as RunningProxy, lines };
}

/** Rewrites the running proxy's file: the same ports, `extra` and log level, the nodes given. */
function rewrite(r: Running, o: { extra: string; logLevel?: string; nodes?: ClusterNode[]; port?: number; adminPort?: number }): void {
  const cfg = configYamlFor({ ...info, nodes: o.nodes ?? info.nodes }, { port: o.port ?? r.proc.port, adminPort: o.adminPort ?? r.proc.adminPort, logLevel: o.logLevel ?? 'info', extra: o.extra });
  fs.writeFileSync(r.proc.configFile, cfg);
}

/** SIGHUP, then the reload's log line (applied, partial or rejected). */
async function sighup(r: Running): Promise<Record<string, unknown>> {
  const seen = r.lines.length;
  r.proc.child.kill('SIGHUP');
  return eventually('the reload log line', () => r.lines.slice(seen).find((l) => /^config reload/.test(String(l.msg))));
}

const reloadLines = (r: Running) => r.lines.filter((l) => /^config reload/.test(String(l.msg))).length;

/**
 * POST /reload; unless `logged` is false (a log.level that hides the line), also waits for its log line, so that
 * a later sighup() does not take this reload's line for its own.
 */
async function postReload(r: Running, o: { headers?: Record<string, string>; logged?: boolean } = {}): Promise<{ status: number; body: Reloaded }> {
  const before = reloadLines(r);
  const res = await fetch(`http://127.0.0.1:${r.proc.adminPort}/reload`, { method: 'POST', headers: { 'content-type': 'application/json', ...(o.headers ?? adminAuthHeaders()) }, body: '{}', signal: AbortSignal.timeout(10_000) });
  const out = { status: res.status, body: (await res.json()) as Reloaded };
  if (res.status !== 401 && o.logged !== false) await eventually('the reload log line', () => (reloadLines(r) > before ? true : undefined));
  return out;
}

async function status(r: Running): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${r.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(5_000) })).json()) as Status;
}

async function metrics(r: Running): Promise<string> {
  return (await fetch(`http://127.0.0.1:${r.proc.adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
}

const asApp = (n: ClusterNode) => directClient(n, info, { user: info.app.user, password: info.app.password, database: info.app.database });

/** Which node is the primary now (failover tests elsewhere may have moved it). */
async function roles(): Promise<{ primary: ClusterNode; replicas: ClusterNode[] }> {
  const inRecovery = await Promise.all(info.nodes.map((n) => using(directClient(n, info), async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean)));
  return { primary: info.nodes[inRecovery.indexOf(false)]!, replicas: info.nodes.filter((_, i) => inRecovery[i]) };
}

/** The node port the first read of each of n fresh sessions ran on. */
async function freshReadPorts(r: Running, n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await using(proxyClient(r.target, info), async (c) => (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number));
  return ports;
}

/** Sessions pgsplit keeps on a node: its monitor probe and LSN polls, and pooled server connections of the app user. */
async function pgsplitSessionsOn(node: ClusterNode): Promise<{ monitor: number; pooled: number }> {
  return using(directClient(node, info), async (c) => {
    const r = await c.query<{ monitor: number; pooled: number }>(
      "SELECT count(*) FILTER (WHERE application_name LIKE 'pgsplit-%')::int AS monitor, count(*) FILTER (WHERE usename = $1)::int AS pooled FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
      [info.app.user],
    );
    return r.rows[0]!;
  });
}

const ROUTING = 'routing: { max_parse_length: 64kB, max_replica_lag: { bytes: 1GB, time: 1h } }';
const BASE = `${ROUTING}\npool: { size: 4 }`;

describe('config reload, one process', () => {
  let r: Running;
  let primary: ClusterNode;
  let replicas: ClusterNode[];

  beforeAll(async () => {
    ({ primary, replicas } = await roles());
    await using(asApp(primary), async (c) => {
      await c.query(`CREATE OR REPLACE FUNCTION ${stableFn}() RETURNS int LANGUAGE sql STABLE AS $$ SELECT inet_server_port() $$`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${lagTable} (id int, pad text)`);
    });
    for (const n of replicas) {
      await using(asApp(n), (c) => eventually(`${n.name} to replay the function and table`, async () => ((await c.query(`SELECT to_regproc('${stableFn}') IS NOT NULL AND to_regclass('${lagTable}') IS NOT NULL AS ok`)).rows[0].ok ? true : undefined), 30_000));
    }
    r = await spawn({ extra: BASE });
  });

  // Each test starts from the same running config, whatever the one before left in the file.
  afterEach(async () => {
    rewrite(r, { extra: BASE });
    await postReload(r);
  });

  afterAll(async () => {
    await r?.proc.stop();
    for (const n of info.nodes) await using(directClient(n, info), (c) => c.query('SELECT pg_wal_replay_resume()')).catch(() => {});
    await using(asApp(primary), async (c) => {
      await c.query(`DROP FUNCTION IF EXISTS ${stableFn}()`);
      await c.query(`DROP TABLE IF EXISTS ${lagTable}`);
    }).catch(() => {});
  });

  it('routing.max_parse_length: a long read cached on a replica goes to the primary once the bound drops under it (SIGHUP), and back', async () => {
    const c = await proxyClient(r.target, info);
    try {
      // Twice: the second answer comes from the classifier's cache.
      for (let i = 0; i < 2; i++) expect((await c.query(LONG_READ)).rows[0].on_replica).toBe(true);
      rewrite(r, { extra: BASE.replace('max_parse_length: 64kB', 'max_parse_length: 1kB') });
      expect(await sighup(r)).toMatchObject({ msg: 'config reloaded', applied: ['routing.max_parse_length'] });
      expect((await c.query(LONG_READ)).rows[0].on_replica).toBe(false);
      rewrite(r, { extra: BASE });
      expect(await sighup(r)).toMatchObject({ msg: 'config reloaded', applied: ['routing.max_parse_length'] });
      // The primary ran it as a possible write (too long to parse): the next read may wait for its LSN (read-your-writes).
      await eventually('reads to go to a replica again', async () => ((await c.query(LONG_READ)).rows[0].on_replica ? true : undefined), 5_000, 20);
    } finally {
      await endQuietly(c);
    }
  });

  it('limits.max_prepared_bytes and max_prepared_statements: a running session\'s next Parse follows the reloaded bounds', async () => {
    const c = await proxyClient(r.target, info);
    try {
      const pad = 'p'.repeat(100 * 1024);
      const prepare = (i: number) => c.query({ name: `rl${i}`, text: `SELECT ${i}::int AS n /* ${pad} */` });
      await prepare(1);
      rewrite(r, { extra: `${BASE}\nlimits: { max_prepared_bytes: 128kB }` });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['limits.max_prepared_bytes'] });
      expect((await rejection(prepare(2))).code).toBe('53400');
      rewrite(r, { extra: `${BASE}\nlimits: { max_prepared_statements: 2 }` });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: expect.arrayContaining(['limits.max_prepared_bytes', 'limits.max_prepared_statements']) });
      // The refused rl2 was never prepared, as on PostgreSQL: the same name again now fits.
      expect((await prepare(2)).rows).toEqual([{ n: 2 }]);
      const err = await rejection(prepare(4));
      expect(err.code).toBe('53400');
      expect(err.message).toContain('prepared statements');
    } finally {
      await endQuietly(c);
    }
  });

  it('routing.parse_cache_size: with 0 every statement is parsed again, with a cache repeats are answered from it (POST /reload)', async () => {
    const classified = async () => {
      const m = await metrics(r);
      return { parser: metricValue(m, 'pgsplit_classifications_total', { source: 'parser' })!, cache: metricValue(m, 'pgsplit_classifications_total', { source: 'cache' })! };
    };
    const c = await proxyClient(r.target, info);
    try {
      const sql = `SELECT ${suffix} AS n FROM pg_class LIMIT 1`;
      rewrite(r, { extra: BASE.replace('max_parse_length: 64kB', 'max_parse_length: 64kB, parse_cache_size: 0') });
      expect(await postReload(r)).toEqual({ status: 200, body: { result: 'applied', applied: ['routing.parse_cache_size'], kept: [] } });
      let before = await classified();
      for (let i = 0; i < 3; i++) await c.query(sql);
      let after = await classified();
      expect([after.parser - before.parser, after.cache - before.cache]).toEqual([3, 0]);
      rewrite(r, { extra: BASE.replace('max_parse_length: 64kB', 'max_parse_length: 64kB, parse_cache_size: 100') });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['routing.parse_cache_size'] });
      before = await classified();
      for (let i = 0; i < 3; i++) await c.query(sql);
      after = await classified();
      expect([after.parser - before.parser, after.cache - before.cache]).toEqual([1, 2]);
    } finally {
      await endQuietly(c);
    }
  });

  it('nodes: a removed replica gets no reads and pgsplit closes its probe and pooled connections there; added back, it gets reads again', async () => {
    const gone = replicas[replicas.length - 1]!;
    await eventually(`reads on ${gone.name}`, async () => ((await freshReadPorts(r, 4)).includes(gone.port) ? true : undefined), 20_000);
    rewrite(r, { extra: BASE, nodes: info.nodes.filter((n) => n !== gone) });
    expect((await postReload(r)).body).toEqual({ result: 'applied', applied: [`nodes[${gone.name}]`], kept: [] });
    expect((await freshReadPorts(r, 6)).filter((p) => p === gone.port)).toEqual([]);
    const st = await status(r);
    expect(st.nodes.map((n) => n.name)).not.toContain(gone.name);
    expect(st.pools.map((p) => p.node)).not.toContain(gone.name);
    await eventually(`pgsplit's sessions on ${gone.name} closed`, async () => {
      const s = await pgsplitSessionsOn(gone);
      return s.monitor === 0 && s.pooled === 0 ? true : undefined;
    });
    rewrite(r, { extra: BASE });
    expect(await sighup(r)).toMatchObject({ msg: 'config reloaded', applied: [`nodes[${gone.name}]`] });
    await eventually(`reads on ${gone.name} again`, async () => ((await freshReadPorts(r, 4)).includes(gone.port) ? true : undefined), 20_000);
  });

  it('routing.max_replica_lag: a lagging replica is banned from reads once the bound drops under its lag, and serves again when it is raised', async () => {
    const lagging = replicas[0]!;
    await using(directClient(lagging, info), (c) => c.query('SELECT pg_wal_replay_pause()'));
    try {
      await using(asApp(primary), (c) => c.query(`INSERT INTO ${lagTable} SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g`));
      const lagged = await eventually(`${lagging.name} lagging in /status`, async () => {
        const n = (await status(r)).nodes.find((x) => x.name === lagging.name);
        return n && (n.lag_bytes ?? 0) > 256 * 1024 ? n : undefined;
      });
      expect(lagged.banned).toBe(false);
      rewrite(r, { extra: BASE.replace('bytes: 1GB', 'bytes: 64kB') });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['routing.max_replica_lag.bytes'] });
      const banned = await eventually(`${lagging.name} banned`, async () => (await status(r)).nodes.find((x) => x.name === lagging.name && x.banned));
      expect(banned.ban_reason).toBe('lag-bytes');
      expect((await freshReadPorts(r, 6)).filter((p) => p === lagging.port)).toEqual([]);
      rewrite(r, { extra: BASE });
      expect(await sighup(r)).toMatchObject({ applied: ['routing.max_replica_lag.bytes'] });
      await eventually(`${lagging.name} serving reads again`, async () => ((await status(r)).nodes.find((x) => x.name === lagging.name && !x.banned) ? true : undefined));
    } finally {
      await using(directClient(lagging, info), (c) => c.query('SELECT pg_wal_replay_resume()'));
    }
  });

  it('pool.size: a client waiting for the only server connection gets one when the size is raised; lowered, the pool shrinks', async () => {
    const small = BASE.replace('size: 4', 'size: 1');
    rewrite(r, { extra: small });
    expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['pool.size'] });
    const a = await proxyClient(r.target, info);
    const b = await proxyClient(r.target, info);
    const primaryPool = async () => (await status(r)).pools.find((p) => p.node === primary.name && p.user === info.app.user);
    try {
      await a.query('BEGIN');
      await a.query('SELECT txid_current()');
      const waiting = b.query('SELECT txid_current() AS x');
      await eventually('b waiting for a server connection', async () => ((await primaryPool())?.waiting === 1 ? true : undefined));
      rewrite(r, { extra: BASE.replace('size: 4', 'size: 2') });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['pool.size'] });
      // a still holds its connection: b's comes from the raised size.
      expect((await waiting).rows).toHaveLength(1);
      expect((await primaryPool())?.max).toBe(2);
      await a.query('COMMIT');
      rewrite(r, { extra: small });
      expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['pool.size'] });
      await eventually('the primary pool down to 1 connection', async () => {
        const p = await primaryPool();
        return p && p.active + p.idle + p.opening <= 1 && p.max === 1 ? true : undefined;
      });
    } finally {
      await Promise.all([a, b].map(endQuietly));
    }
  });

  it('routing.write_functions: calls of a listed function move to the primary, and back when it is unlisted', async () => {
    const call = () => using(proxyClient(r.target, info), async (c) => (await c.query(`SELECT ${stableFn}() AS port`)).rows[0].port as number);
    expect(replicas.map((n) => n.port)).toContain(await call());
    rewrite(r, { extra: BASE.replace('routing: {', `routing: { write_functions: [${stableFn}],`) });
    expect(await sighup(r)).toMatchObject({ applied: ['routing.write_functions'] });
    expect(await call()).toBe(primary.port);
    rewrite(r, { extra: BASE });
    expect((await postReload(r)).body).toMatchObject({ applied: ['routing.write_functions'] });
    expect(replicas.map((n) => n.port)).toContain(await call());
  });

  it('log.level: lines below the new level stop at once, and come back when it is lowered again', async () => {
    const seen = r.lines.length;
    rewrite(r, { extra: BASE, logLevel: 'error' });
    expect((await postReload(r, { logged: false })).body).toMatchObject({ result: 'applied', applied: ['log.level'] });
    // A rejected reload logs an error: it comes out, and after it, nothing of the info line of the reload before.
    fs.writeFileSync(r.proc.configFile, 'nodes: not-a-list\n');
    expect((await postReload(r)).status).toBe(422);
    await eventually('the rejection logged', () => (r.lines.slice(seen).some((l) => l.msg === 'config reload rejected; the running config is kept') ? true : undefined));
    rewrite(r, { extra: BASE, logLevel: 'info' });
    expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['log.level'] });
    const infoLines = await eventually('the info line of the last reload', () => {
      const l = r.lines.slice(seen).filter((x) => x.msg === 'config reloaded');
      return l.length > 0 ? l : undefined;
    });
    // Only the reload that set info again was logged at info: the one under "error" was not.
    expect(infoLines.map((l) => l.applied)).toEqual([['log.level']]);
  });

  it('keeps restart-only keys by name with the reason, applies the rest, and serves on the old ports', async () => {
    const newPort = await freePort();
    const newAdmin = await freePort();
    rewrite(r, { extra: `${BASE.replace('max_parse_length: 64kB', 'max_parse_length: 64kB, parse_cache_size: 50')}\nworkers: 2\ncoordination: { etcd: { lease_ttl: 9s } }`, port: newPort, adminPort: newAdmin });
    const line = await sighup(r);
    expect(line.msg).toBe('config reloaded; some keys keep their running value until pgsplit restarts');
    expect(line.applied).toEqual(['routing.parse_cache_size']);
    const kept = line.kept as { key: string; reason: string }[];
    expect(kept.map((k) => k.key).sort()).toEqual(['admin.port', 'coordination.etcd.lease_ttl', 'listen.port', 'workers']);
    expect(kept.find((k) => k.key === 'listen.port')?.reason).toBe('the client socket is bound once, at start');
    expect(kept.find((k) => k.key === 'workers')?.reason).toBe('worker processes are forked once, at start');
    // POST /reload of the same file says the same (the kept keys still differ from the file).
    const posted = await postReload(r);
    expect(posted.status).toBe(200);
    expect(posted.body.result).toBe('partial');
    expect(posted.body.applied).toEqual([]);
    expect(posted.body.kept.map((k) => k.key).sort()).toEqual(['admin.port', 'coordination.etcd.lease_ttl', 'listen.port', 'workers']);
    // Still one process on the old ports; nothing listens on the new ones.
    expect(await using(proxyClient(r.target, info), async (c) => (await c.query('SELECT 7 AS n')).rows[0].n)).toBe(7);
    expect((await rejection(proxyClient({ listenPort: newPort } as RunningProxy, info))).message).toMatch(/ECONNREFUSED/);
    expect((await rejection(fetch(`http://127.0.0.1:${newAdmin}/health`))).message).toMatch(/fetch failed/);
    expect((await status(r)) as unknown as { workers?: unknown }).not.toHaveProperty('workers');
    rewrite(r, { extra: BASE });
    expect((await postReload(r)).body).toMatchObject({ result: 'applied', applied: ['routing.parse_cache_size'], kept: [] });
  });

  it('rejects an invalid file whole, naming the key and why, and serves on with the running config', async () => {
    const c = await proxyClient(r.target, info);
    try {
      // A valid live change beside an invalid key: neither is applied.
      fs.writeFileSync(r.proc.configFile, configYamlFor(info, { port: r.proc.port, adminPort: r.proc.adminPort, logLevel: 'info', extra: `${BASE.replace('max_parse_length: 64kB', 'max_parse_length: 1kB')}\nlimits: { max_pipeline: lots }` }));
      const line = await sighup(r);
      expect(line).toMatchObject({ msg: 'config reload rejected; the running config is kept', error: expect.stringMatching(/^limits\.max_pipeline: expected a size/) });
      const posted = await postReload(r);
      expect(posted).toEqual({ status: 422, body: { result: 'rejected', applied: [], kept: [], error: line.error } });
      expect((await c.query(LONG_READ)).rows[0].on_replica).toBe(true);
      fs.writeFileSync(r.proc.configFile, 'listen: [unclosed\n');
      expect((await postReload(r)).body).toMatchObject({ result: 'rejected', error: expect.stringMatching(/invalid YAML/) });
      // Taking the current primary out of the file is refused while it is the primary.
      rewrite(r, { extra: BASE, nodes: info.nodes.filter((n) => n !== primary) });
      expect((await postReload(r)).body).toMatchObject({ result: 'rejected', error: `nodes: "${primary.name}" is the current primary and cannot be removed while it is (switch over to another node first)` });
      expect((await c.query('SELECT txid_current() IS NOT NULL AS ok')).rows[0].ok).toBe(true);
      expect((await status(r)).nodes.map((n) => n.name).sort()).toEqual(info.nodes.map((n) => n.name).sort());
    } finally {
      await endQuietly(c);
    }
  });

  it('counts each result in pgsplit_config_reloads_total', async () => {
    const counts = async () => {
      const m = await metrics(r);
      return ['applied', 'partial', 'rejected'].map((result) => metricValue(m, 'pgsplit_config_reloads_total', { result })!);
    };
    const before = await counts();
    rewrite(r, { extra: BASE.replace('max_parse_length: 64kB', 'max_parse_length: 32kB') });
    expect((await postReload(r)).body.result).toBe('applied');
    rewrite(r, { extra: BASE, port: await freePort() });
    expect((await sighup(r)).msg).toMatch(/some keys keep/);
    fs.writeFileSync(r.proc.configFile, 'pool: { size: -1 }\n');
    expect((await postReload(r)).body.result).toBe('rejected');
    const after = await counts();
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1]);
  });

  it('POST /reload needs the admin credentials, like every POST', async () => {
    const res = await fetch(`http://127.0.0.1:${r.proc.adminPort}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect((await postReload(r, { headers: adminAuthHeaders('wrong') })).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${r.proc.adminPort}/reload`)).status).toBe(405);
  });
});

describe('config reload, workers: 2', () => {
  let r: Running;
  const EXTRA = `${ROUTING}\nworkers: 2\npool: { size: 4 }`;

  beforeAll(async () => {
    r = await spawn({ extra: EXTRA });
  });

  afterAll(async () => {
    await r?.proc.stop();
  });

  it('applies a live change in every worker, and answers once both confirmed it', async () => {
    const cs: pg.Client[] = [];
    try {
      for (let i = 0; i < 4; i++) cs.push(await proxyClient(r.target, info));
      const workerOf = (c: pg.Client) => pidOwner((c as unknown as { processID: number }).processID);
      expect(new Set(cs.map(workerOf))).toEqual(new Set([0, 1]));
      for (const c of cs) expect((await c.query(LONG_READ)).rows[0].on_replica).toBe(true);
      rewrite(r, { extra: EXTRA.replace('max_parse_length: 64kB', 'max_parse_length: 1kB') });
      expect(await sighup(r)).toMatchObject({ msg: 'config reloaded', applied: ['routing.max_parse_length'], workers: { confirmed: 2, serving: 2 } });
      for (const c of cs) expect((await c.query(LONG_READ)).rows[0].on_replica).toBe(false);
      // pool.size is split between the workers; /status adds their shares up.
      rewrite(r, { extra: EXTRA.replace('size: 4', 'size: 6') });
      expect(await postReload(r)).toEqual({ status: 200, body: { result: 'applied', applied: ['pool.size', 'routing.max_parse_length'], kept: [], workers: { confirmed: 2, serving: 2 } } });
      // Under the 1kB bound LONG_READ was too long to parse, so it ran on the primary as a possible write: the
      // session's next read waits for that write's LSN (read-your-writes), which with workers comes over IPC and
      // can take a few milliseconds (a CI run saw it). Reads go back to replicas once it is known.
      for (const c of cs) await eventually('reads to go to a replica again', async () => ((await c.query(LONG_READ)).rows[0].on_replica ? true : undefined), 5_000, 20);
      const pools = (await status(r)).pools;
      expect(pools.length).toBeGreaterThan(0);
      for (const p of pools) expect(p.max).toBe(6);
      // Fewer connections than workers would leave one with none: refused, naming the key.
      rewrite(r, { extra: EXTRA.replace('size: 4', 'size: 1') });
      expect((await postReload(r)).body).toMatchObject({ result: 'rejected', error: expect.stringMatching(/^pool\.size: 1 is less than the 2 worker processes/) });
    } finally {
      await Promise.all(cs.map(endQuietly));
    }
  });
});
