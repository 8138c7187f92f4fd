// The admin console (database "pgsplit" on the listen port) through a real proxy and cluster, with psql and node-postgres: every SHOW, BAN/UNBAN, PAUSE/RESUME, RELOAD, SWITCHOVER, who may log in, and the same answers with workers: 2.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo } from '../harness/cluster.js';
import { configYamlFor, REPO_ROOT, spawnProxy, startProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { adminGet, endQuietly, eventually, metricValue, rawExchange, rejection, run, startupMessage } from './helpers.js';
import { CLIENT_COLUMNS, NODE_COLUMNS, POOL_COLUMNS, SERVER_COLUMNS, STATEMENT_COLUMNS, STATS_COLUMNS } from '../../src/console/rows.js';

const info = inject('cluster');

const OPS = { user: 'ops', password: 'ops-secret-1' };
const ADMIN = `users: [{ name: ${OPS.user}, password: "${OPS.password}" }], pause_timeout: 30s`;
const version = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

type Row = Record<string, string | null>;

/** A node-postgres client logged in to the console (ops unless told otherwise). */
async function consoleClient(port: number, o: { user?: string; password?: string; application_name?: string } = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'pgsplit', user: o.user ?? OPS.user, password: o.password ?? OPS.password, application_name: o.application_name, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function appClient(port: number, application_name = 'console-test-app'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: info.app.database, user: info.app.user, password: info.app.password, application_name, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** A SHOW through node-postgres: its column names and rows (every value is text or NULL). */
async function show(c: pg.Client, what: string): Promise<{ columns: string[]; rows: Row[]; command: string }> {
  const r = await c.query(`SHOW ${what}`);
  for (const f of r.fields) expect(f.dataTypeID, `${what}.${f.name} is text`).toBe(25);
  return { columns: r.fields.map((f) => f.name), rows: r.rows as Row[], command: r.command };
}

const nodeRow = async (c: pg.Client, name: string) => (await show(c, 'NODES')).rows.find((r) => r.name === name)!;

/** psql against the console with a password; --csv output. */
function consolePsql(port: number, sql: string, o: { user?: string; password?: string } = {}) {
  return run(path.join(info.binDir, 'psql'), ['-X', '--csv', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${port} dbname=pgsplit user=${o.user ?? OPS.user} sslmode=disable connect_timeout=10`, '-c', sql], {
    env: { PGPASSWORD: o.password ?? OPS.password },
    timeoutMs: 30_000,
  });
}

function parseCsv(text: string): Row[] {
  const [head, ...lines] = text.trim().split('\n');
  const cols = head!.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v])));
}

/** The server port a read runs on, from `n` fresh app sessions (each picks its replica anew). */
async function readPorts(port: number, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = await appClient(port, 'console-test-reads');
    try {
      out.push((await c.query('SELECT inet_server_port() AS port')).rows[0].port as number);
    } finally {
      await endQuietly(c);
    }
  }
  return out;
}

const portOf = (name: string, i: ClusterInfo = info) => i.nodes.find((n) => n.name === name)!.port;

/** The documented columns and real values of every SHOW, asked through `port` (single process or workers). */
async function checkEveryShow(port: number, workers: boolean): Promise<void> {
  const app = await appClient(port);
  const ops = await consoleClient(port, { application_name: 'console-test-ops' });
  try {
    await app.query('SELECT 1');
    await app.query("/* pgsplit:primary */ SELECT 'on the primary'");
    await app.query('BEGIN');
    await app.query('SELECT txid_current()');
    const appPid = (app as unknown as { processID: number }).processID;

    const nodes = await show(ops, 'NODES');
    expect(nodes.command).toBe('SHOW');
    expect(nodes.columns).toEqual([...NODE_COLUMNS]);
    const byName = Object.fromEntries(nodes.rows.map((r) => [r.name, r]));
    expect(Object.keys(byName).sort()).toEqual(['pg1', 'pg2', 'pg3']);
    expect(byName.pg1).toMatchObject({ role: 'primary', up: 'true', host: '127.0.0.1', port: String(portOf('pg1')), banned: 'false', fenced: 'false', streams_from: null, weight: '1' });
    for (const r of ['pg2', 'pg3']) {
      expect(byName[r]).toMatchObject({ role: 'replica', up: 'true', banned: 'false', fenced: 'false', streams_from: `127.0.0.1:${portOf('pg1')}`, delayed: 'false' });
      expect(Number(byName[r]!.lag_bytes)).toBeGreaterThanOrEqual(0);
      expect(byName[r]!.server_version).toMatch(/^\d+/);
    }

    const pools = await show(ops, 'POOLS');
    expect(pools.columns).toEqual([...POOL_COLUMNS]);
    const primaryPool = pools.rows.find((r) => r.node === 'pg1' && r.user === info.app.user && r.database === info.app.database);
    expect(primaryPool).toBeDefined();
    expect(Number(primaryPool!.active)).toBeGreaterThanOrEqual(1); // the open transaction holds one
    // pool.size is the instance's: with workers each has its share, and the row adds up the workers that have the pool.
    if (workers) expect(['10', '20']).toContain(primaryPool!.max);
    else expect(primaryPool!.max).toBe('20');
    // The console itself never opens a server connection (its users are no PostgreSQL roles).
    expect(pools.rows.filter((r) => r.user === OPS.user || r.database === 'pgsplit')).toEqual([]);

    const clients = await show(ops, 'CLIENTS');
    expect(clients.columns).toEqual([...CLIENT_COLUMNS]);
    const mine = clients.rows.find((r) => r.pid === String(appPid));
    expect(mine).toMatchObject({ user: info.app.user, database: info.app.database, application_name: 'console-test-app', state: 'in transaction', pinned: 'false', target: 'pg1' });
    expect(mine!.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Date.parse(mine!.connected_at!)).toBeLessThanOrEqual(Date.now());
    if (workers) expect(mine!.worker).toMatch(/^[01]$/);
    else expect(mine!.worker).toBeNull();
    expect(clients.rows.find((r) => r.application_name === 'console-test-ops')).toMatchObject({ user: OPS.user, database: 'pgsplit', state: 'active' });

    const servers = await show(ops, 'SERVERS');
    expect(servers.columns).toEqual([...SERVER_COLUMNS]);
    const serving = servers.rows.find((r) => r.client === String(appPid));
    expect(serving).toMatchObject({ node: 'pg1', user: info.app.user, database: info.app.database, state: 'active' });
    // The backend pid is the server's own: pg_stat_activity on pg1 knows it.
    expect((await app.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(Number(serving!.backend_pid));
    await app.query('COMMIT');

    const stats = await show(ops, 'STATS');
    expect(stats.columns).toEqual([...STATS_COLUMNS]);
    const onPrimary = stats.rows.find((r) => r.node === 'pg1' && r.target === 'primary');
    expect(Number(onPrimary!.units)).toBeGreaterThanOrEqual(3);
    expect(Number(onPrimary!.bytes_to_server)).toBeGreaterThan(0);
    expect(Number(onPrimary!.bytes_to_client)).toBeGreaterThan(0);
    expect(Number(onPrimary!.total_ms)).toBeGreaterThan(0);
    expect(stats.rows.some((r) => r.target === 'replica' && ['pg2', 'pg3'].includes(r.node!) && Number(r.units) >= 1)).toBe(true);

    const config = Object.fromEntries((await show(ops, 'CONFIG')).rows.map((r) => [r.key, r.value]));
    expect(config['admin.users[0].name']).toBe(OPS.user);
    expect(config['admin.users[0].password']).toBe('***');
    expect(config['users[0].password']).toBe('***');
    expect(config['admin.auth.token']).toBe('***');
    expect(config['nodes[0].name']).toBe('pg1');
    const allConfig = JSON.stringify(config);
    for (const secret of [OPS.password, info.app.password, 'md5secret', 'test-admin-token']) expect(allConfig).not.toContain(secret);

    expect((await show(ops, 'VERSION')).rows).toEqual([{ version: `pgsplit ${version}` }]);
    const statements = await show(ops, 'STATEMENTS');
    expect(statements.columns).toEqual([...STATEMENT_COLUMNS]);
    const tx = statements.rows.find((r) => r.query === 'SELECT txid_current()');
    expect(tx).toMatchObject({ primary_calls: '1', replica_calls: '0', errors: '0', rows: '1' });
    expect(tx!.routes).toMatch(/^primary\//);
    expect(tx!.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect((await ops.query('RESET STATS')).command).toBe('RESET');
    expect((await show(ops, 'STATEMENTS')).rows.find((r) => r.query === 'SELECT txid_current()')).toBeUndefined();
  } finally {
    await endQuietly(app);
    await endQuietly(ops);
  }
}

describe('admin console', () => {
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy(info, { adminExtra: ADMIN });
    await eventually('every node up and both replicas streaming', async () => {
      const s = JSON.parse((await adminGet(proxy, '/status')).body) as { nodes: { up: boolean; streams_from: string | null; role: string }[] };
      return s.nodes.every((n) => n.up) && s.nodes.filter((n) => n.role === 'replica' && n.streams_from).length === 2 ? true : undefined;
    });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('psql: SHOW NODES lists pg1 as primary and the replicas streaming from it', async () => {
    const r = await consolePsql(proxy.listenPort, 'SHOW NODES');
    expect(r.code, r.stderr).toBe(0);
    const rows = parseCsv(r.stdout);
    expect(Object.keys(rows[0]!)).toEqual([...NODE_COLUMNS]);
    expect(rows.find((x) => x.name === 'pg1')).toMatchObject({ role: 'primary', up: 'true' });
    expect(rows.filter((x) => x.role === 'replica').map((x) => x.name).sort()).toEqual(['pg2', 'pg3']);
    // Several commands in one psql call, each its own result set.
    const two = await consolePsql(proxy.listenPort, 'SHOW VERSION; SHOW HELP');
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toContain(`pgsplit ${version}`);
    expect(two.stdout).toContain('SWITCHOVER node');
  });

  it('node-postgres: every SHOW answers its documented columns with real values', async () => {
    await checkEveryShow(proxy.listenPort, false);
  });

  it('BAN takes a replica out of reads (they go to the other one) until UNBAN, and /status shows it', async () => {
    const ops = await consoleClient(proxy.listenPort);
    try {
      const banned = await ops.query('BAN pg2');
      expect(banned.command).toBe('BAN');
      expect(await nodeRow(ops, 'pg2')).toMatchObject({ banned: 'true', ban_reason: 'operator' });
      const s = JSON.parse((await adminGet(proxy, '/status')).body) as { nodes: { name: string; banned: boolean; ban_reason: string | null }[] };
      expect(s.nodes.find((n) => n.name === 'pg2')).toMatchObject({ banned: true, ban_reason: 'operator' });
      expect(metricValue((await adminGet(proxy, '/metrics')).body, 'pgsplit_node_banned', { node: 'pg2' })).toBe(1);
      expect(new Set(await readPorts(proxy.listenPort, 6))).toEqual(new Set([portOf('pg3')]));
      // Probe rounds (every 500 ms) go on; the monitor's own unban never lifts an operator's ban.
      const seen = (await nodeRow(ops, 'pg2')).banned_since;
      await eventually('two more probe rounds', async () => {
        const st = JSON.parse((await adminGet(proxy, '/status')).body) as { nodes: { name: string; last_probe_at: string }[] };
        return Date.parse(st.nodes.find((n) => n.name === 'pg2')!.last_probe_at) > Date.parse(seen!) + 1_000 ? true : undefined;
      });
      expect(await nodeRow(ops, 'pg2')).toMatchObject({ banned: 'true', ban_reason: 'operator', banned_since: seen });
      expect(new Set(await readPorts(proxy.listenPort, 4))).toEqual(new Set([portOf('pg3')]));

      expect((await ops.query('UNBAN pg2')).command).toBe('UNBAN');
      expect(await nodeRow(ops, 'pg2')).toMatchObject({ banned: 'false', ban_reason: null });
      expect(metricValue((await adminGet(proxy, '/metrics')).body, 'pgsplit_node_banned', { node: 'pg2' })).toBe(0);
      await eventually('reads on pg2 again', async () => ((await readPorts(proxy.listenPort, 4)).includes(portOf('pg2')) ? true : undefined), 15_000);
      // The primary takes no reads to be banned from; an unknown node is named as such.
      expect((await rejection(ops.query('BAN pg1'))).code).toBe('55000');
      const unknown = await rejection(ops.query('BAN pg9'));
      expect(unknown.code).toBe('42704');
      expect((unknown as Error & { hint?: string }).hint).toBe('Nodes: pg1, pg2, pg3.');
    } finally {
      await ops.query('UNBAN pg2').catch(() => {});
      await endQuietly(ops);
    }
  });

  it('PAUSE holds new statements, reads too, until RESUME; a transaction already open finishes', async () => {
    const ops = await consoleClient(proxy.listenPort);
    const reader = await appClient(proxy.listenPort, 'console-test-held');
    const inTx = await appClient(proxy.listenPort, 'console-test-tx');
    try {
      await reader.query('SELECT 1');
      await inTx.query('BEGIN');
      await inTx.query('SELECT 1');
      const paused = await ops.query('PAUSE');
      expect(paused.command).toBe('PAUSE');
      const held = (async () => {
        const r = await reader.query('SELECT inet_server_port() AS port');
        return r.rows[0].port as number;
      })();
      let done = false;
      void held.then(() => (done = true), () => (done = true));
      // The transaction open before the pause runs on to its end.
      expect((await inTx.query('SELECT 2 AS two')).rows[0].two).toBe(2);
      await inTx.query('COMMIT');
      const readerPid = String((reader as unknown as { processID: number }).processID);
      await eventually('the held read listed as waiting', async () => ((await show(ops, 'CLIENTS')).rows.find((r) => r.pid === readerPid)?.state === 'waiting' ? true : undefined));
      expect(done, 'the read waits for RESUME').toBe(false);
      // The transaction's client, idle now, is held at its next statement too.
      const next = inTx.query('SELECT 3 AS three');
      const txPid = String((inTx as unknown as { processID: number }).processID);
      await eventually('the next statement after COMMIT held', async () => ((await show(ops, 'CLIENTS')).rows.find((r) => r.pid === txPid)?.state === 'waiting' ? true : undefined));
      const status = JSON.parse((await adminGet(proxy, '/status')).body) as { paused: { until: string } | null };
      expect(status.paused).not.toBeNull();

      expect((await ops.query('RESUME')).command).toBe('RESUME');
      expect([portOf('pg2'), portOf('pg3')]).toContain(await held);
      expect((await next).rows[0].three).toBe(3);
      expect(JSON.parse((await adminGet(proxy, '/status')).body).paused).toBeNull();
    } finally {
      await ops.query('RESUME').catch(() => {});
      await endQuietly(reader);
      await endQuietly(inTx);
      await endQuietly(ops);
    }
  });

  it('RELOAD without a config file to re-read answers F0000 and changes nothing', async () => {
    const ops = await consoleClient(proxy.listenPort);
    try {
      const e = await rejection(ops.query('RELOAD'));
      expect(e.code).toBe('F0000');
      expect(e.message).toMatch(/not started from a config file/);
    } finally {
      await endQuietly(ops);
    }
  });

  it('refuses a wrong password and an unknown user with 28P01, an application user with 42501', async () => {
    const wrong = await rejection(consoleClient(proxy.listenPort, { password: 'nope' }));
    expect(wrong.code).toBe('28P01');
    const unknown = await rejection(consoleClient(proxy.listenPort, { user: 'nobody', password: 'nope' }));
    expect(unknown.code).toBe('28P01');
    expect(unknown.message).toBe(wrong.message.replace(OPS.user, 'nobody'));
    const appWrong = await rejection(consoleClient(proxy.listenPort, { user: info.app.user, password: 'nope' }));
    expect(appWrong.code).toBe('28P01');
    const app = await rejection(consoleClient(proxy.listenPort, { user: info.app.user, password: info.app.password }));
    expect(app.code).toBe('42501');
    expect(app.message).toMatch(/must be listed in admin\.users/);
    const viaPsql = await consolePsql(proxy.listenPort, 'SHOW NODES', { password: 'nope' });
    expect(viaPsql.code).not.toBe(0);
    expect(viaPsql.stderr).toMatch(/password authentication failed for user "ops"/);
    // An admin user is no application user: its password does not open an application database.
    const asApp = new pg.Client({ host: '127.0.0.1', port: proxy.listenPort, database: info.app.database, user: OPS.user, password: OPS.password });
    asApp.on('error', () => {});
    expect((await rejection(asApp.connect())).code).toBe('28P01');
  });

  it('answers an unknown command with 42601 and the list of commands; the session goes on', async () => {
    const ops = await consoleClient(proxy.listenPort);
    try {
      const e = await rejection(ops.query('SELECT 1'));
      expect(e.code).toBe('42601');
      expect((e as Error & { hint?: string }).hint).toMatch(/SHOW NODES.*SWITCHOVER node/);
      expect((await ops.query('SHOW VERSION')).rows).toHaveLength(1);
    } finally {
      await endQuietly(ops);
    }
  });

  it('refuses the extended protocol with 0A000 and goes on; closes a message over 64 kB with 54000', async () => {
    const ops = await consoleClient(proxy.listenPort);
    try {
      const e = await rejection(ops.query({ text: 'SHOW NODES', values: [1] }));
      expect(e.code).toBe('0A000');
      expect(e.message).toMatch(/simple query protocol only/);
      expect((await ops.query('SHOW VERSION')).rows).toEqual([{ version: `pgsplit ${version}` }]);
      const big = await rejection(ops.query(`SHOW VERSION /* ${'x'.repeat(70 * 1024)} */`));
      expect(big.code).toBe('54000');
    } finally {
      await endQuietly(ops);
    }
  });

  it('offers SCRAM-SHA-256 to the console even where applications log in with md5', async () => {
    const md5 = await startProxy(info, { auth: 'md5', adminExtra: ADMIN });
    try {
      const toConsole = await rawExchange(md5.listenPort, startupMessage({ user: OPS.user, database: 'pgsplit' }), 1_000);
      expect(toConsole.data[0]).toBe(0x52);
      expect(toConsole.data.readInt32BE(5)).toBe(10); // AuthenticationSASL
      expect(toConsole.data.toString()).toContain('SCRAM-SHA-256');
      const toApp = await rawExchange(md5.listenPort, startupMessage({ user: 'md5user', database: info.app.database }), 1_000);
      expect(toApp.data.readInt32BE(5)).toBe(5); // AuthenticationMD5Password
      const ops = await consoleClient(md5.listenPort);
      expect((await ops.query('SHOW VERSION')).rows).toHaveLength(1);
      await endQuietly(ops);
    } finally {
      await md5.close(1_000);
    }
  });
});

describe('admin console with workers: 2', () => {
  let proxy: ProxyProcess;

  beforeAll(async () => {
    proxy = await spawnProxy(info, { adminExtra: ADMIN, extra: 'workers: 2', logLevel: 'warn' });
    await eventually('both replicas streaming', async () => {
      const s = JSON.parse((await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).text())) as { nodes: { role: string; streams_from: string | null }[] };
      return s.nodes.filter((n) => n.role === 'replica' && n.streams_from).length === 2 ? true : undefined;
    });
  });

  afterAll(async () => {
    await proxy?.stop();
  });

  it('every SHOW answers as in a single process, with each client\'s worker', async () => {
    await checkEveryShow(proxy.port, true);
  });

  it('lists clients of both workers', async () => {
    const apps = await Promise.all([0, 1, 2, 3].map(() => appClient(proxy.port, 'console-test-spread')));
    const ops = await consoleClient(proxy.port);
    try {
      const rows = (await show(ops, 'CLIENTS')).rows.filter((r) => r.application_name === 'console-test-spread');
      expect(rows).toHaveLength(4);
      expect(new Set(rows.map((r) => r.worker))).toEqual(new Set(['0', '1']));
    } finally {
      for (const c of apps) await endQuietly(c);
      await endQuietly(ops);
    }
  });

  it('BAN through one worker takes the replica out of every worker\'s reads; UNBAN brings it back', async () => {
    const ops = await consoleClient(proxy.port);
    try {
      await ops.query('BAN pg3');
      expect(await nodeRow(ops, 'pg3')).toMatchObject({ banned: 'true', ban_reason: 'operator' });
      expect(new Set(await readPorts(proxy.port, 6))).toEqual(new Set([portOf('pg2')]));
      await ops.query('UNBAN pg3');
      await eventually('reads on pg3 again', async () => ((await readPorts(proxy.port, 4)).includes(portOf('pg3')) ? true : undefined), 15_000);
    } finally {
      await ops.query('UNBAN pg3').catch(() => {});
      await endQuietly(ops);
    }
  });

  it('PAUSE from one worker holds statements in both until RESUME', async () => {
    const ops = await consoleClient(proxy.port);
    const apps = await Promise.all([0, 1, 2, 3].map(() => appClient(proxy.port, 'console-test-wheld')));
    try {
      for (const a of apps) await a.query('SELECT 1');
      await ops.query('PAUSE');
      const held = apps.map((a) => a.query('SELECT 2 AS two'));
      await eventually('all four held', async () => {
        const rows = (await show(ops, 'CLIENTS')).rows.filter((r) => r.application_name === 'console-test-wheld');
        return rows.length === 4 && rows.every((r) => r.state === 'waiting') && new Set(rows.map((r) => r.worker)).size === 2 ? true : undefined;
      });
      await ops.query('RESUME');
      for (const h of held) expect((await h).rows[0].two).toBe(2);
    } finally {
      await ops.query('RESUME').catch(() => {});
      for (const a of apps) await endQuietly(a);
      await endQuietly(ops);
    }
  });

  it('RELOAD re-reads the config file: a new admin user may log in, and a rejected file is F0000', async () => {
    const original = fs.readFileSync(proxy.configFile, 'utf8');
    const ops = await consoleClient(proxy.port);
    try {
      const more = `users: [{ name: ${OPS.user}, password: "${OPS.password}" }, { name: ops2, password: "second-admin" }], pause_timeout: 30s`;
      fs.writeFileSync(proxy.configFile, configYamlFor(info, { port: proxy.port, adminPort: proxy.adminPort, adminExtra: more, extra: 'workers: 2', logLevel: 'warn' }));
      const notices: string[] = [];
      ops.on('notice', (n) => notices.push(n.message ?? ''));
      const r = await ops.query('RELOAD');
      expect(r.command).toBe('RELOAD');
      expect(notices.join(' ')).toMatch(/applied: .*admin\.users/);
      const second = await consoleClient(proxy.port, { user: 'ops2', password: 'second-admin' });
      expect((await second.query('SHOW VERSION')).rows).toHaveLength(1);
      await endQuietly(second);

      fs.writeFileSync(proxy.configFile, 'nodes: 5\n');
      const bad = await rejection(ops.query('RELOAD'));
      expect(bad.code).toBe('F0000');
      expect(bad.message).toMatch(/nodes/);
    } finally {
      fs.writeFileSync(proxy.configFile, original);
      await ops.query('RELOAD').catch(() => {});
      await endQuietly(ops);
    }
  });
});

describe('admin console SWITCHOVER', () => {
  let cluster: Cluster;
  let own: ClusterInfo;
  let proxy: RunningProxy | null = null;
  let dir = '';

  beforeAll(async () => {
    cluster = await startCluster({ signalHandlers: false });
    own = clusterInfo(cluster);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-console-demote-'));
    fs.chmodSync(dir, 0o777);
    // Demotes the old primary into a standby of the new one: a clean stop (its last WAL reaches the standbys), then
    // standby.signal and primary_conninfo, then a start; so a second switchover can bring the role back.
    const as = own.serverUser ? `runuser -u ${own.serverUser} -- ` : '';
    const pgCtl = path.join(own.binDir, 'pg_ctl');
    fs.writeFileSync(path.join(dir, 'demote.sh'), [
      '#!/bin/sh',
      'set -e',
      `case "$PGSPLIT_NODE" in ${cluster.nodes.map((n) => `${n.name}) DATA=${n.dataDir} ;;`).join(' ')} *) exit 3 ;; esac`,
      'cd /',
      `${as}${pgCtl} stop -D "$DATA" -m fast -w -t 60`,
      `${as}touch "$DATA/standby.signal"`,
      `${as}sh -c "echo \\"primary_conninfo = 'host=$PGSPLIT_NEW_PRIMARY_HOST port=$PGSPLIT_NEW_PRIMARY_PORT user=postgres application_name=$PGSPLIT_NODE'\\" >> $DATA/postgresql.auto.conf"`,
      `${as}${pgCtl} start -D "$DATA" -l ${dir}/$PGSPLIT_NODE.log -w -t 60`,
      '',
    ].join('\n'));
    proxy = await startProxy(own, { adminExtra: ADMIN, extra: `failover: { demote_command: "sh ${dir}/demote.sh" }` });
    await eventually('both replicas streaming', async () => {
      const s = JSON.parse((await adminGet(proxy!, '/status')).body) as { nodes: { role: string; streams_from: string | null }[] };
      return s.nodes.filter((n) => n.role === 'replica' && n.streams_from).length === 2 ? true : undefined;
    }, 20_000);
  });

  afterAll(async () => {
    await proxy?.close(1_000).catch(() => {});
    await cluster?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('SWITCHOVER pg2 makes it the primary, and SWITCHOVER pg1 brings the role back', async () => {
    const ops = await consoleClient(proxy!.listenPort);
    const notices: string[] = [];
    ops.on('notice', (n) => notices.push(n.message ?? ''));
    const writer = new pg.Client({ host: '127.0.0.1', port: proxy!.listenPort, database: own.app.database, user: own.app.user, password: own.app.password });
    writer.on('error', () => {});
    await writer.connect();
    try {
      const to2 = await ops.query('SWITCHOVER pg2');
      expect(to2.command).toBe('SWITCHOVER');
      expect(notices.pop()).toMatch(/^pg1 -> pg2 in \d+ ms$/);
      expect(await nodeRow(ops, 'pg2')).toMatchObject({ role: 'primary', up: 'true' });
      expect((await writer.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS r FROM (SELECT txid_current()) x')).rows[0]).toEqual({ port: portOf('pg2', own), r: false });
      await eventually('pg1 back as a replica of pg2', async () => {
        const r = await nodeRow(ops, 'pg1');
        return r.role === 'replica' && r.up === 'true' && r.streams_from === `127.0.0.1:${portOf('pg2', own)}` ? true : undefined;
      }, 30_000);
      // A refusal is an error the session survives.
      expect((await rejection(ops.query('SWITCHOVER pg2'))).code).toBe('55000');

      expect((await ops.query('SWITCHOVER pg1')).command).toBe('SWITCHOVER');
      expect(notices.pop()).toMatch(/^pg2 -> pg1 in \d+ ms$/);
      expect(await nodeRow(ops, 'pg1')).toMatchObject({ role: 'primary', up: 'true' });
      expect((await writer.query('SELECT inet_server_port() AS port FROM (SELECT txid_current()) x')).rows[0].port).toBe(portOf('pg1', own));
      await eventually('pg2 and pg3 replicas of pg1', async () => {
        const rows = (await show(ops, 'NODES')).rows.filter((r) => r.name !== 'pg1');
        return rows.every((r) => r.role === 'replica' && r.up === 'true' && r.streams_from === `127.0.0.1:${portOf('pg1', own)}`) ? true : undefined;
      }, 30_000);
    } finally {
      await endQuietly(writer);
      await endQuietly(ops);
    }
  });
});
