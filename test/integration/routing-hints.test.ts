// Routing on the real cluster: /* pgsplit:… */ comment hints, SET/SHOW pgsplit.route answered by the proxy, and the startup option -c pgsplit.route=primary.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { backendsRunning, directClient, proxyClient, rejection, using, usingAllNodes } from './helpers.js';

// These tests pin down where each kind of statement runs, so a read straight after a write must be free to go to a
// replica: read-your-writes (which sends such a read to the primary until a replica has the write) is tested on its own.
const ROUTING = 'routing: { enabled: true, consistency: eventual }';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);

let proxy: RunningProxy;

const withClient = <T>(fn: (c: pg.Client) => Promise<T>, o: Partial<pg.ClientConfig> = {}) => using(proxyClient(proxy, info, o), fn);
const port = async (c: pg.Client, prefix = ''): Promise<number> => (await c.query(`${prefix}SELECT inet_server_port() AS port`)).rows[0].port as number;
/** node-postgres's queryMode: 'extended' (Parse/Bind/Describe/Execute/Sync even without parameters; missing from @types/pg). */
const extended = (text: string): pg.QueryConfig => ({ text, queryMode: 'extended' }) as pg.QueryConfig;
const showQuery = (c: pg.Client, mode: 'simple' | 'extended') => c.query(mode === 'extended' ? extended('SHOW pgsplit.route') : 'SHOW pgsplit.route');
/** The value SHOW pgsplit.route returns (simple protocol), whatever its column is called (a separate test checks the name). */
const showRoute = async (c: pg.Client): Promise<string> => {
  const r = await showQuery(c, 'simple');
  expect(r.fields).toHaveLength(1);
  return r.rows[0][r.fields[0]!.name];
};

describe('routing hints', () => {
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: ROUTING });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('sends /* pgsplit:primary */ reads to the primary and /* pgsplit:replica */ reads to a replica', async () => {
    await withClient(async (c) => {
      expect(replicaPorts).toContain(await port(c));
      expect(await port(c, '/* pgsplit:primary */ ')).toBe(primary.port);
      expect(replicaPorts).toContain(await port(c, '/* pgsplit:replica */ '));
      // Extended protocol too.
      const r = await c.query({ text: '/* pgsplit:primary */ SELECT inet_server_port() AS port, $1::int AS n', values: [1] });
      expect(r.rows[0].port).toBe(primary.port);
      // A hint lasts for its statement only.
      expect(replicaPorts).toContain(await port(c));
    });
  });

  it('never sends a write to a replica because of a /* pgsplit:replica */ hint', async () => {
    await withClient(async (c) => {
      const retries = proxy.stats.readOnlyRetries;
      const r = await c.query('/* pgsplit:replica */ CREATE TEMP TABLE routing_hint_tmp AS SELECT inet_server_port() AS port');
      expect(r.command).toBe('SELECT');
      expect((await c.query('SELECT port FROM routing_hint_tmp')).rows[0].port).toBe(primary.port);
      expect(proxy.stats.readOnlyRetries).toBe(retries);
    });
  });

  it('routes reads to the primary after SET pgsplit.route = primary, and back after SET pgsplit.route = auto', async () => {
    await withClient(async (c) => {
      expect(await showRoute(c)).toBe('auto');
      await c.query('SET pgsplit.route = primary');
      expect(await showRoute(c)).toBe('primary');
      for (let i = 0; i < 3; i++) expect(await port(c)).toBe(primary.port);
      expect((await c.query({ text: 'SELECT inet_server_port() AS port WHERE $1::bool', values: [true] })).rows[0].port).toBe(primary.port);
      await c.query(extended('SET pgsplit.route = auto'));
      expect(await showRoute(c)).toBe('auto');
      expect(replicaPorts).toContain(await port(c));
      await c.query('SET pgsplit.route = replica');
      expect(await showRoute(c)).toBe('replica');
      expect(replicaPorts).toContain(await port(c));
      await c.query('RESET pgsplit.route');
      expect(await showRoute(c)).toBe('auto');
    });
  });

  it('answers SET/SHOW pgsplit.route itself: PostgreSQL never sees them', async () => {
    await withClient(async (c) => {
      // PostgreSQL has no such setting: a fresh server session would refuse SHOW with 42704.
      expect(await showRoute(c)).toBe('auto');
      await c.query('SET pgsplit.route = primary');
      // Had the SET reached PostgreSQL, it would exist there now as a placeholder setting.
      const onPrimary = await c.query("SELECT current_setting('pgsplit.route', true) AS v, inet_server_port() AS port");
      expect(onPrimary.rows).toEqual([{ v: null, port: primary.port }]);
      await c.query('SET pgsplit.route = auto');
      const onReplica = await c.query("SELECT current_setting('pgsplit.route', true) AS v, inet_server_port() AS port");
      expect(onReplica.rows[0].v).toBeNull();
      expect(replicaPorts).toContain(onReplica.rows[0].port);
      // No server session of this proxy has it as its last statement either.
      await c.query('SET pgsplit.route = primary');
      const seen = await usingAllNodes(info, (nodes) => backendsRunning(nodes, 'pgsplit.route ='));
      expect(seen).toEqual([]);
    });
  });

  /** What PostgreSQL itself answers for SHOW of a custom (placeholder) setting of that name, straight from the primary. */
  async function showOnPostgres(mode: 'simple' | 'extended'): Promise<{ fields: string[]; rows: unknown[] }> {
    return using(directClient(primary, info, { database: info.app.database }), async (d) => {
      await d.query("SET pgsplit.route = 'auto'");
      const r = await showQuery(d, mode);
      return { fields: r.fields.map((f) => f.name), rows: r.rows };
    });
  }

  it('names the SHOW pgsplit.route column as PostgreSQL names SHOW of a dotted setting', async () => {
    const truth = await showOnPostgres('simple');
    expect(truth).toEqual({ fields: ['pgsplit.route'], rows: [{ 'pgsplit.route': 'auto' }] });
    await withClient(async (c) => {
      const r = await showQuery(c, 'simple');
      expect({ fields: r.fields.map((f) => f.name), rows: r.rows }).toEqual(truth);
    });
  });

  it('answers SHOW pgsplit.route in the extended protocol (Parse/Bind/Describe/Execute) as PostgreSQL would', async () => {
    const truth = await showOnPostgres('extended');
    await withClient(async (c) => {
      const r = await showQuery(c, 'extended');
      expect({ fields: r.fields.map((f) => f.name), rows: r.rows }).toEqual(truth);
    });
  });

  it('refuses a bad pgsplit.route value with an error and keeps the session usable', async () => {
    await withClient(async (c) => {
      const err = await rejection(c.query('SET pgsplit.route = sideways'));
      expect(err.code).toBe('22023');
      expect(await showRoute(c)).toBe('auto');
      expect(replicaPorts).toContain(await port(c));
    });
  });

  it('takes -c pgsplit.route=primary from the startup options, without forwarding it', async () => {
    await withClient(
      async (c) => {
        expect(await showRoute(c)).toBe('primary');
        expect(await port(c)).toBe(primary.port);
        const r = await c.query({ text: 'SELECT current_setting($1, true) AS route, current_setting($2) AS timeout', values: ['pgsplit.route', 'statement_timeout'] });
        // Taken out of the options; the other option still reaches PostgreSQL.
        expect(r.rows).toEqual([{ route: null, timeout: '4321ms' }]);
        await c.query('SET pgsplit.route = auto');
        const rr = await c.query('SELECT inet_server_port() AS port, current_setting($1) AS timeout', ['statement_timeout']);
        expect(replicaPorts).toContain(rr.rows[0].port);
        expect(rr.rows[0].timeout).toBe('4321ms');
      },
      { options: '-c pgsplit.route=primary -c statement_timeout=4321' },
    );
  });
});
