// Unit tests for the admin console's replies: rows built from a fake /status document, listings and counters; commands run against a fake instance; the wire encoding.
import { describe, expect, it } from 'vitest';
import { parseConfig, redactConfig } from '../../src/config/load.js';
import { Topology } from '../../src/topology/topology.js';
import { silentLogger } from '../../src/util/logger.js';
import { clientRows, configRows, nodeRows, NODE_COLUMNS, poolRows, serverRows, statsRows, CLIENT_COLUMNS, SERVER_COLUMNS, STATS_COLUMNS, STATEMENT_COLUMNS, type NodeStatus } from '../../src/console/rows.js';
import type { StatementRow } from '../../src/stats/statement-stats.js';
import { runCommand, type ConsoleDeps } from '../../src/console/commands.js';
import { encodeReply } from '../../src/console/result-set.js';
import type { ConsoleReply } from '../../src/console/reply.js';
import { mergeListings, type SessionListing } from '../../src/workers/frontend-snapshot.js';
import { SwitchoverRefused } from '../../src/errors.js';

const node = (o: Partial<NodeStatus> & { name: string }): NodeStatus => ({
  host: '10.0.0.1', port: 5432, role: 'replica', up: true, lag_bytes: 0, lag_seconds: 0, banned: false, ban_reason: null, banned_since: null,
  fenced: false, streams_from: '10.0.0.1:5432', weight: 1, tags: [], delayed: false, server_version: '16.4', last_error: null, ...o,
});

const rowsOf = (r: ConsoleReply) => {
  if (r.kind !== 'rows') throw new Error(`expected rows, got ${JSON.stringify(r)}`);
  return r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));
};

describe('SHOW NODES rows', () => {
  it('show each node as /status does: booleans as true/false, absent values as NULL, lists joined', () => {
    const r = nodeRows([
      node({ name: 'pg1', role: 'primary', lag_bytes: null, lag_seconds: null, streams_from: null }),
      node({ name: 'pg2', lag_bytes: 5_242_880, lag_seconds: 1.23456, banned: true, ban_reason: 'operator', banned_since: '2024-01-01T00:00:00.000Z', weight: 2, tags: ['analytics', 'eu'] }),
      node({ name: 'pg3', up: false, fenced: true, last_error: 'connection refused', server_version: null }),
    ]);
    expect(r).toMatchObject({ kind: 'rows', tag: 'SHOW', columns: NODE_COLUMNS });
    const [pg1, pg2, pg3] = rowsOf(r);
    expect(pg1).toMatchObject({ name: 'pg1', role: 'primary', up: 'true', port: '5432', lag_bytes: null, lag_seconds: null, streams_from: null, banned: 'false', ban_reason: null });
    expect(pg2).toMatchObject({ lag_bytes: '5242880', lag_seconds: '1.235', banned: 'true', ban_reason: 'operator', banned_since: '2024-01-01T00:00:00.000Z', weight: '2', tags: 'analytics,eu', streams_from: '10.0.0.1:5432' });
    expect(pg3).toMatchObject({ up: 'false', fenced: 'true', last_error: 'connection refused', server_version: null });
  });
});

describe('SHOW POOLS, CLIENTS, SERVERS, STATS rows', () => {
  it('pools sorted by node, user, database with every count', () => {
    const r = poolRows([
      { node: 'pg2', user: 'app', database: 'appdb', active: 1, idle: 2, opening: 0, waiting: 3, max: 20 },
      { node: 'pg1', user: 'app', database: 'appdb', active: 0, idle: 5, opening: 1, waiting: 0, max: 20 },
    ]);
    expect(rowsOf(r)).toEqual([
      { node: 'pg1', user: 'app', database: 'appdb', active: '0', idle: '5', opening: '1', waiting: '0', max: '20' },
      { node: 'pg2', user: 'app', database: 'appdb', active: '1', idle: '2', opening: '0', waiting: '3', max: '20' },
    ]);
  });

  it('clients oldest first, with pins, target and the times as ISO text; a notice when some were left out', () => {
    const base = { user: 'app', database: 'appdb', applicationName: 'psql', address: '127.0.0.1:5000', state: 'idle', pins: [] as string[], target: null, replica: null };
    const r = clientRows([
      { ...base, worker: 1, pid: 7, connectedAt: Date.UTC(2024, 0, 1, 0, 0, 2), state: 'in transaction', pins: ['temp-table', 'listen'], target: 'pg1' },
      { ...base, worker: 0, pid: 9, connectedAt: Date.UTC(2024, 0, 1, 0, 0, 1), replica: 'pg2' },
    ], 3);
    expect(r).toMatchObject({ columns: CLIENT_COLUMNS, notice: '3 more clients not listed (at most 10000 are)' });
    expect(rowsOf(r)).toEqual([
      { worker: '0', pid: '9', user: 'app', database: 'appdb', application_name: 'psql', address: '127.0.0.1:5000', state: 'idle', connected_at: '2024-01-01T00:00:01.000Z', pinned: 'false', pinned_by: '', target: null, replica: 'pg2' },
      { worker: '1', pid: '7', user: 'app', database: 'appdb', application_name: 'psql', address: '127.0.0.1:5000', state: 'in transaction', connected_at: '2024-01-01T00:00:02.000Z', pinned: 'true', pinned_by: 'temp-table,listen', target: 'pg1', replica: null },
    ]);
    expect(clientRows([], 0)).not.toHaveProperty('notice');
  });

  it('servers by node, active with the client they serve, idle with none', () => {
    const r = serverRows([
      { worker: null, node: 'pg2', user: 'app', database: 'appdb', state: 'idle', client: null, backendPid: 300, connectedAt: 1000, since: 2000 },
      { worker: null, node: 'pg1', user: 'app', database: 'appdb', state: 'active', client: 42, backendPid: 200, connectedAt: 1000, since: 3000 },
    ]);
    expect(r).toMatchObject({ columns: SERVER_COLUMNS });
    expect(rowsOf(r)).toEqual([
      { worker: null, node: 'pg1', user: 'app', database: 'appdb', state: 'active', client: '42', backend_pid: '200', connected_at: new Date(1000).toISOString(), state_since: new Date(3000).toISOString() },
      { worker: null, node: 'pg2', user: 'app', database: 'appdb', state: 'idle', client: null, backend_pid: '300', connected_at: new Date(1000).toISOString(), state_since: new Date(2000).toISOString() },
    ]);
  });

  it('stats per node in config order, then target, with the average time per unit', () => {
    const r = statsRows([
      ['pg2', 'replica', 4, 400, 4000, 10],
      ['old', 'primary', 1, 1, 1, 1],
      ['pg1', 'replica', 1, 10, 100, 0.5],
      ['pg1', 'primary', 3, 300, 30, 1.5],
    ], ['pg1', 'pg2']);
    expect(r).toMatchObject({ columns: STATS_COLUMNS });
    expect(rowsOf(r).map((x) => [x.node, x.target, x.units, x.bytes_to_server, x.bytes_to_client, x.total_ms, x.avg_ms])).toEqual([
      ['pg1', 'primary', '3', '300', '30', '1.5', '0.5'],
      ['pg1', 'replica', '1', '10', '100', '0.5', '0.5'],
      ['pg2', 'replica', '4', '400', '4000', '10', '2.5'],
      ['old', 'primary', '1', '1', '1', '1', '1'],
    ]);
  });
});

describe('SHOW CONFIG rows', () => {
  const config = parseConfig(`
users: [{ name: app, password: "\${APP_PW}" }]
nodes: [{ name: pg1, host: db1, tags: [a, b] }]
admin: { auth: { token: t0ken }, users: [{ name: ops, password: "\${OPS_PW}" }] }
failover: { hook_command: "notify --key sekret" }
monitor: { password: "" }
`, { APP_PW: 'app-secret', OPS_PW: 'ops-secret' });

  it('flattens the config /status shows, secrets masked by the same redactConfig', () => {
    const rows = Object.fromEntries(rowsOf(configRows(redactConfig(config))).map((r) => [r.key, r.value]));
    expect(rows['admin.users[0].name']).toBe('ops');
    expect(rows['admin.users[0].password']).toBe('***');
    expect(rows['admin.auth.token']).toBe('***');
    expect(rows['users[0].password']).toBe('***');
    expect(rows['failover.hook_command']).toBe('***');
    expect(rows['monitor.password']).toBe('');
    expect(rows['nodes[0].tags']).toBe('["a","b"]');
    expect(rows['listen.port']).toBe('6432');
    expect(rows['admin.metrics_port']).toBeNull();
    expect(rows['admin.pause_timeout']).toBe('60000');
    const all = JSON.stringify(rowsOf(configRows(redactConfig(config))));
    for (const secret of ['app-secret', 'ops-secret', 't0ken', 'sekret']) expect(all).not.toContain(secret);
  });
});

describe('admin.users in the config', () => {
  it('takes ${ENV} passwords and refuses an empty one or a duplicate name', () => {
    const c = parseConfig('nodes: [{ name: pg1, host: db1 }]\nauth: { method: trust }\nadmin: { users: [{ name: ops, password: "${P}" }] }', { P: 'x' });
    expect(c.admin.users).toEqual([{ name: 'ops', password: 'x' }]);
    expect(() => parseConfig('nodes: [{ name: pg1, host: db1 }]\nauth: { method: trust }\nadmin: { users: [{ name: ops, password: "" }] }', {})).toThrow(/admin\.users\[0\]\.password: expected a non-empty string/);
    expect(() => parseConfig('nodes: [{ name: pg1, host: db1 }]\nauth: { method: trust }\nadmin: { users: [{ name: ops, password: a }, { name: ops, password: b }] }', {})).toThrow(/duplicate admin user name "ops"/);
  });
});

function fakeDeps(topology: Topology, o: Partial<ConsoleDeps> = {}): ConsoleDeps & { log: typeof silentLogger } {
  return {
    topology,
    log: silentLogger,
    version: '9.9.9',
    facts: async () => ({ nodes: [], pools: [], traffic: [], config: {} }),
    listing: async () => ({ clients: [], servers: [], omittedClients: 0, omittedServers: 0 }),
    reload: async () => ({ result: 'applied', applied: ['log.level'], kept: [] }),
    pause: async () => false,
    resume: () => true,
    pausedUntil: () => null,
    switchover: async (to) => ({ old_primary: 'pg1', new_primary: to, duration_ms: 12 }),
    statements: { enabled: false, rows: async () => [], reset: async () => {} },
    ...o,
  };
}

function cluster(): Topology {
  const t = new Topology([{ name: 'pg1', host: 'h', port: 1 }, { name: 'pg2', host: 'h', port: 2 }, { name: 'pg3', host: 'h', port: 3 }]);
  t.update('pg1', { up: true, role: 'primary' });
  t.update('pg2', { up: true, role: 'replica' });
  t.update('pg3', { up: true, role: 'replica' });
  t.setPrimary('pg1');
  return t;
}

describe('runCommand', () => {
  it('BAN takes a replica out of reads until UNBAN; the monitor updating the node does not lift it', async () => {
    const t = cluster();
    expect(await runCommand({ kind: 'ban', node: 'pg2' }, fakeDeps(t))).toEqual({ kind: 'done', tag: 'BAN' });
    expect(t.replicas().map((n) => n.name)).toEqual(['pg3']);
    expect(t.bannedReplicas().map((n) => n.name)).toEqual(['pg2']);
    // A probe round rewrites the node's own ban state: the operator's stays.
    t.update('pg2', { banned: false, banReason: null, lagBytes: 0 });
    expect(t.replicas().map((n) => n.name)).toEqual(['pg3']);
    expect(await runCommand({ kind: 'ban', node: 'pg2' }, fakeDeps(t))).toMatchObject({ kind: 'done', tag: 'BAN', notice: 'pg2 was banned already' });
    expect(await runCommand({ kind: 'unban', node: 'pg2' }, fakeDeps(t))).toEqual({ kind: 'done', tag: 'UNBAN' });
    expect(t.replicas().map((n) => n.name)).toEqual(['pg2', 'pg3']);
    expect(await runCommand({ kind: 'unban', node: 'pg2' }, fakeDeps(t))).toMatchObject({ tag: 'UNBAN', notice: 'pg2 was not banned by an operator' });
  });

  it('BAN says so when no replica is left for reads', async () => {
    const t = cluster();
    await runCommand({ kind: 'ban', node: 'pg2' }, fakeDeps(t));
    expect(await runCommand({ kind: 'ban', node: 'pg3' }, fakeDeps(t))).toMatchObject({ tag: 'BAN', notice: expect.stringMatching(/reads go to the primary/) });
  });

  it('BAN refuses the primary (55000) and an unknown node (42704, naming the nodes)', async () => {
    const t = cluster();
    expect(await runCommand({ kind: 'ban', node: 'pg1' }, fakeDeps(t))).toMatchObject({ kind: 'error', sqlstate: '55000' });
    expect(await runCommand({ kind: 'ban', node: 'pg9' }, fakeDeps(t))).toMatchObject({ kind: 'error', sqlstate: '42704', hint: 'Nodes: pg1, pg2, pg3.' });
    expect(t.operatorBans.size).toBe(0);
  });

  it('the operator ban reaches a worker that follows the snapshot', async () => {
    const t = cluster();
    await runCommand({ kind: 'ban', node: 'pg3' }, fakeDeps(t));
    const w = new Topology([]);
    w.follow(JSON.parse(JSON.stringify(t.snapshot())));
    expect(w.replicas().map((n) => n.name)).toEqual(['pg2']);
    expect([...w.operatorBans.keys()]).toEqual(['pg3']);
  });

  it('SHOW STATEMENTS: the rows of the statement statistics; RESET STATS empties them; with stats off both answer 0A000', async () => {
    const table: StatementRow[] = [{
      fingerprint: '0123456789abcdef', query: 'SELECT * FROM t WHERE id = ?', calls: 3, errors: 1, rows: 2, total_ms: 1.5, mean_ms: 0.5, min_ms: 0.25, max_ms: 1, p99_ms: 1,
      primary_calls: 1, replica_calls: 2, routes: [{ target: 'replica', reason: 'select', calls: 2 }, { target: 'primary', reason: 'retry-25006', calls: 1 }],
    }];
    let resets = 0;
    const on = fakeDeps(cluster(), { statements: { enabled: true, rows: async () => table, reset: async () => void resets++ } });
    const r = await runCommand({ kind: 'show', topic: 'statements' }, on);
    expect(r).toMatchObject({ kind: 'rows', tag: 'SHOW', columns: STATEMENT_COLUMNS });
    expect(rowsOf(r)).toEqual([{
      query: 'SELECT * FROM t WHERE id = ?', calls: '3', errors: '1', rows: '2', total_ms: '1.5', mean_ms: '0.5', min_ms: '0.25', max_ms: '1', p99_ms: '1',
      primary_calls: '1', replica_calls: '2', routes: 'replica/select:2,primary/retry-25006:1', fingerprint: '0123456789abcdef',
    }]);
    expect(await runCommand({ kind: 'reset-stats' }, on)).toEqual({ kind: 'done', tag: 'RESET' });
    expect(resets).toBe(1);
    const off = fakeDeps(cluster());
    expect(await runCommand({ kind: 'show', topic: 'statements' }, off)).toMatchObject({ kind: 'error', sqlstate: '0A000', message: 'statement statistics are off (stats.enabled: false)' });
    expect(await runCommand({ kind: 'reset-stats' }, off)).toMatchObject({ kind: 'error', sqlstate: '0A000' });
  });

  it('RELOAD: what applied and what was kept in a notice; a rejected file is F0000', async () => {
    const t = cluster();
    expect(await runCommand({ kind: 'reload' }, fakeDeps(t, { reload: async () => ({ result: 'partial', applied: ['log.level'], kept: [{ key: 'listen.port', reason: 'bound at start' }] }) })))
      .toEqual({ kind: 'done', tag: 'RELOAD', notice: 'applied: log.level; kept until a restart: listen.port (bound at start)' });
    expect(await runCommand({ kind: 'reload' }, fakeDeps(t, { reload: async () => ({ result: 'rejected', applied: [], kept: [], error: 'nodes[0].port: expected an integer' }) })))
      .toMatchObject({ kind: 'error', sqlstate: 'F0000', message: 'config reload rejected: nodes[0].port: expected an integer' });
  });

  it('PAUSE and RESUME say when they change nothing', async () => {
    const t = cluster();
    const until = Date.UTC(2030, 0, 1);
    expect(await runCommand({ kind: 'pause' }, fakeDeps(t, { pause: async () => false, pausedUntil: () => until })))
      .toEqual({ kind: 'done', tag: 'PAUSE', notice: 'new statements are held until RESUME or 2030-01-01T00:00:00.000Z (admin.pause_timeout)' });
    expect(await runCommand({ kind: 'pause' }, fakeDeps(t, { pause: async () => true, pausedUntil: () => until }))).toMatchObject({ notice: expect.stringMatching(/^already paused; /) });
    expect(await runCommand({ kind: 'resume' }, fakeDeps(t, { resume: () => false }))).toEqual({ kind: 'done', tag: 'RESUME', notice: 'pgsplit was not paused' });
  });

  it('SWITCHOVER: the event in a notice; a refusal is 55000, a failure 58000', async () => {
    const t = cluster();
    expect(await runCommand({ kind: 'switchover', node: 'pg2' }, fakeDeps(t))).toEqual({ kind: 'done', tag: 'SWITCHOVER', notice: 'pg1 -> pg2 in 12 ms' });
    expect(await runCommand({ kind: 'switchover', node: 'pg1' }, fakeDeps(t, { switchover: async () => { throw new SwitchoverRefused('pg1 is already the primary'); } })))
      .toEqual({ kind: 'error', sqlstate: '55000', message: 'switchover refused: pg1 is already the primary' });
    expect(await runCommand({ kind: 'switchover', node: 'pg2' }, fakeDeps(t, { switchover: async () => { throw new Error('pg2 did not catch up'); } })))
      .toMatchObject({ kind: 'error', sqlstate: '58000', message: 'switchover failed: pg2 did not catch up' });
  });

  it('SHOW VERSION and SHOW HELP', async () => {
    const t = cluster();
    expect(rowsOf(await runCommand({ kind: 'show', topic: 'version' }, fakeDeps(t)))).toEqual([{ version: 'pgsplit 9.9.9' }]);
    const help = rowsOf(await runCommand({ kind: 'show', topic: 'help' }, fakeDeps(t)));
    expect(help.map((r) => r.command)).toContain('SWITCHOVER node');
  });
});

describe('mergeListings', () => {
  const listing = (n: number, servers = 0): SessionListing => ({
    clients: Array.from({ length: n }, (_, i) => ({ pid: i, user: 'app', database: 'd', applicationName: '', address: null, state: 'idle', connectedAt: 0, pins: [], target: null, replica: null, worker: null })),
    servers: Array.from({ length: servers }, (_, i) => ({ node: 'pg1', user: 'app', database: 'd', state: 'idle' as const, client: null, backendPid: i, connectedAt: 0, since: 0, worker: null })),
    omittedClients: 0,
    omittedServers: 0,
  });

  it('marks each row with its worker', () => {
    const m = mergeListings([{ worker: 0, listing: listing(1, 1) }, { worker: 1, listing: listing(2) }]);
    expect(m.clients.map((c) => c.worker)).toEqual([0, 1, 1]);
    expect(m.servers.map((c) => c.worker)).toEqual([0]);
  });

  it('keeps at most 10000 rows of each in all and counts the rest', () => {
    const m = mergeListings([{ worker: 0, listing: { ...listing(6000, 1), omittedClients: 5 } }, { worker: 1, listing: listing(6000) }]);
    expect(m.clients).toHaveLength(10_000);
    expect(m.omittedClients).toBe(2005);
  });
});

describe('encodeReply', () => {
  /** [type, body] of each message. */
  const messages = (bufs: Buffer[]) => {
    const all = Buffer.concat(bufs);
    const out: [string, Buffer][] = [];
    for (let off = 0; off < all.length; ) {
      const len = all.readInt32BE(off + 1);
      out.push([String.fromCharCode(all[off]!), all.subarray(off + 5, off + 1 + len)]);
      off += 1 + len;
    }
    return out;
  };

  it('a result set: NoticeResponse, RowDescription of text columns, DataRow with NULL as -1, CommandComplete SHOW', () => {
    const m = messages(encodeReply({ kind: 'rows', columns: ['a', 'b'], rows: [['x', null]], tag: 'SHOW', notice: 'heads up' }));
    expect(m.map(([t]) => t)).toEqual(['N', 'T', 'D', 'C']);
    const desc = m[1]![1];
    expect(desc.readInt16BE(0)).toBe(2);
    expect(desc.subarray(2, 4).toString()).toBe('a\0');
    expect(desc.readInt32BE(4 + 6)).toBe(25); // after name, table oid (4) and column number (2): type text
    const row = m[2]![1];
    expect(row.readInt16BE(0)).toBe(2);
    expect(row.readInt32BE(2)).toBe(1);
    expect(row.subarray(6, 7).toString()).toBe('x');
    expect(row.readInt32BE(7)).toBe(-1);
    expect(m[3]![1].toString()).toBe('SHOW\0');
    expect(m[0]![1].toString()).toContain('heads up');
  });

  it('an error is one ErrorResponse with its SQLSTATE and hint', () => {
    const m = messages(encodeReply({ kind: 'error', sqlstate: '42601', message: 'bad', hint: 'try SHOW HELP' }));
    expect(m.map(([t]) => t)).toEqual(['E']);
    expect(m[0]![1].toString()).toContain('C42601\0');
    expect(m[0]![1].toString()).toContain('Htry SHOW HELP\0');
  });
});
