// Replica selection on the shared cluster: weighted round-robin, weight 0, read tags (config, SET, startup option), delayed replicas, and the max_lag hint on healthy replicas.
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import type { NodeState } from '../../src/topology/topology.js';
import { adminGet, endQuietly, eventually, proxyClient } from './helpers.js';

type LagNode = NodeState & { lagSeconds: number | null; banned: boolean };
interface StatusNode { name: string; weight: number; tags: string[]; delayed: boolean }

const info = inject('cluster');
const cluster = attachCluster(info);
const portOf = (name: string): number => cluster.nodes.find((n) => n.name === name)!.port;
const nameOf = (port: number): string => cluster.nodes.find((n) => n.port === port)?.name ?? String(port);

let proxy: RunningProxy | null = null;
let clients: pg.Client[] = [];

async function start(o: { routing?: string; nodeExtra?: Record<string, string> }): Promise<RunningProxy> {
  proxy = await startProxy(info, { extra: `routing: { enabled: true${o.routing ? `, ${o.routing}` : ''} }`, nodeExtra: o.nodeExtra });
  return proxy;
}

async function session(o: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = await proxyClient(proxy!, info, o);
  clients.push(c);
  return c;
}

const readOn = async (c: pg.Client, prefix = ''): Promise<string> => nameOf((await c.query(`${prefix}SELECT inet_server_port() AS port`)).rows[0].port);

/** Opens n fresh sessions one after the other (kept open) and returns the node each one's first read ran on. */
async function freshReads(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await readOn(await session()));
  return out;
}

const countBy = (names: string[]) => Object.fromEntries([...names.reduce((m, p) => m.set(p, (m.get(p) ?? 0) + 1), new Map<string, number>())].sort());

/** The value of a SHOW through the proxy, whatever its column is called. */
async function show(c: pg.Client, name: string): Promise<string> {
  const r = await c.query(`SHOW ${name}`);
  expect(r.fields).toHaveLength(1);
  return r.rows[0][r.fields[0]!.name];
}

async function statusNodes(): Promise<Record<string, StatusNode>> {
  const r = await adminGet(proxy!, '/status');
  expect(r.status).toBe(200);
  return Object.fromEntries((JSON.parse(r.body) as { nodes: StatusNode[] }).nodes.map((n) => [n.name, n]));
}

describe('choosing a replica: weights, tags, delayed replicas', () => {
  afterEach(async () => {
    await Promise.all(clients.map((c) => endQuietly(c)));
    clients = [];
    await proxy?.close(1_000);
    proxy = null;
  });

  it('weighted round-robin: weight 3 and 1 split 40 fresh sessions 30/10', async () => {
    await start({ nodeExtra: { pg2: 'weight: 3', pg3: 'weight: 1' } });
    const reads = await freshReads(40);
    const counts = countBy(reads);
    console.log(`[balance-tags] weights 3/1 over 40 sessions: ${JSON.stringify(counts)}`);
    expect(counts).toEqual({ pg2: 30, pg3: 10 });
    // Each session keeps its replica.
    for (const [i, c] of clients.slice(0, 8).entries()) expect(await readOn(c)).toBe(reads[i]);
    const st = await statusNodes();
    expect(st.pg2).toMatchObject({ weight: 3, tags: [], delayed: false });
    expect(st.pg3).toMatchObject({ weight: 1, tags: [], delayed: false });
  });

  it('weight 0 takes no ordinary reads', async () => {
    await start({ nodeExtra: { pg3: 'weight: 0' } });
    const reads = await freshReads(10);
    console.log(`[balance-tags] pg3 weight 0 over 10 sessions: ${JSON.stringify(countBy(reads))}`);
    expect(reads).toEqual(Array(10).fill('pg2'));
  });

  it('routing.read_tags limits plain sessions; SET pgsplit.read_tags and the startup option pick other replicas', async () => {
    await start({ routing: 'read_tags: [app]', nodeExtra: { pg2: 'tags: [app]', pg3: 'tags: [analytics]' } });
    expect(await freshReads(6)).toEqual(Array(6).fill('pg2'));

    const c = await session();
    expect(await readOn(c)).toBe('pg2');
    await c.query("SET pgsplit.read_tags = 'analytics'");
    expect(await show(c, 'pgsplit.read_tags')).toBe('analytics');
    for (let i = 0; i < 3; i++) expect(await readOn(c)).toBe('pg3');
    expect(nameOf((await c.query({ text: 'SELECT inet_server_port() AS port, $1::int AS k', values: [1] })).rows[0].port)).toBe('pg3');
    // Answered by the proxy: PostgreSQL never got the setting.
    expect((await c.query("SELECT current_setting('pgsplit.read_tags', true) AS v")).rows[0].v).toBeNull();
    await c.query('RESET pgsplit.read_tags');
    expect(await readOn(c)).toBe('pg2');

    const o = await session({ options: '-c pgsplit.read_tags=analytics' });
    expect(await show(o, 'pgsplit.read_tags')).toBe('analytics');
    for (let i = 0; i < 3; i++) expect(await readOn(o)).toBe('pg3');

    const st = await statusNodes();
    expect(st.pg2!.tags).toEqual(['app']);
    expect(st.pg3!.tags).toEqual(['analytics']);
  });

  it('a delayed replica serves only the sessions that ask for one of its tags', async () => {
    await start({ nodeExtra: { pg3: 'delayed: true, tags: [backup]' } });
    expect(await freshReads(8)).toEqual(Array(8).fill('pg2'));
    const c = await session();
    await c.query("SET pgsplit.read_tags = 'backup'");
    for (let i = 0; i < 3; i++) expect(await readOn(c)).toBe('pg3');
    const o = await session({ options: '-c pgsplit.read_tags=backup' });
    expect(await readOn(o)).toBe('pg3');
    expect((await statusNodes()).pg3).toMatchObject({ delayed: true, tags: ['backup'] });
  });

  it('a pgsplit:max_lag hint or SET pgsplit.max_lag still reads from a replica that is not lagging', async () => {
    await start({});
    const replicas = ['pg2', 'pg3'];
    await eventually('both replicas to be probed with lag time 0', () =>
      replicas.every((n) => {
        const s = proxy!.topology.node(n) as LagNode | undefined;
        return s && !s.banned && s.lagSeconds !== null && s.lagSeconds < 0.5;
      }) || undefined,
    );
    const reasons = (proxy!.stats as unknown as { readsOnPrimaryBy: Map<string, number> }).readsOnPrimaryBy;
    const before = reasons.get('max-lag') ?? 0;
    const reads: string[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await session();
      reads.push(await readOn(c, '/* pgsplit:max_lag=500ms */ '));
      await c.query("SET pgsplit.max_lag = '500ms'");
      reads.push(await readOn(c));
    }
    console.log(`[balance-tags] max_lag=500ms reads on an idle cluster: ${JSON.stringify(countBy(reads))}`);
    for (const r of reads) expect(replicas).toContain(r);
    expect(reasons.get('max-lag') ?? 0).toBe(before);
  });
});
