// A trial set for the multi-instance failover trials: its types, starting and stopping it (cluster, etcd, pgsplit instances), its clients.
import path from 'node:path';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../../../test/harness/cluster.js';
import { startEtcd, type EtcdCluster } from '../../../test/harness/etcd.js';
import { startFaultProxy, type FaultProxy } from '../../../test/harness/fault-proxy.js';
import { adminAuthHeaders, spawnProxy, type ProxyProcess } from '../../../test/harness/proxy.js';
import { guardDir } from '../orphan-reaper.js';
import { waitFor as poll, within } from '../proc.js';

export const CASES = ['leader-kill', 'primary-kill', 'leader-pause', 'etcd-cut', 'etcd-down', 'etcd-down-fs'] as const;
export type CaseName = (typeof CASES)[number];
export const MODES = ['semi-sync', 'sync', 'async'] as const;
export type Mode = (typeof MODES)[number];

export const LEASE_TTL_MS = 2_000;
export const HOLD_MS = 5_000;
export const FAILURE_THRESHOLD = 2;
/** Writes before a fault, and after recovery. */
export const LOAD_MS = 1_000;
const PREFIX = '/pgsplit/bench';

export interface Instance {
  name: string;
  proc: ProxyProcess;
  state: 'running' | 'paused' | 'killed';
  /** Reaches etcd through the fault proxy only. */
  cut: boolean;
}
/** at: when the client got the acknowledgement; serverAt: the row's clock_timestamp() on the node that wrote it (same machine). */
export interface Ack { id: number; port: number; via: string; at: number; serverAt: number }
export interface ClientError { via: string; at: number; code: string; text: string }
interface Coordination { instance: string; role: string; leader: string | null; epoch: number | null; published_primary: string | null; writes_allowed: boolean }
export interface FailoverEvent { kind: string; at: string; old_primary: string | null; new_primary: string; duration_ms: number; error?: string }
export interface Status {
  primary: string | null;
  coordination: Coordination;
  failover: { events: FailoverEvent[] };
  replication: { synchronous_standby_names: string; degraded: boolean; synchronous_standbys: string[] };
}
export interface Sample { at: number; via: string; role: string; leader: string | null; epoch: number | null; published: string | null; writes: boolean }

/** One trial's PostgreSQL cluster, etcd, fault proxy, pgsplit instances and clients. */
export interface TrialSet {
  mode: Mode;
  cluster: Cluster | null;
  info: ClusterInfo | null;
  etcd: EtcdCluster | null;
  fault: FaultProxy | null;
  instances: Instance[];
  clients: Set<pg.Client>;
  acks: Ack[];
  errors: ClientError[];
  samples: Sample[];
  stopped: boolean;
  loops: Promise<void>[];
}

export interface MultiResult {
  case: CaseName;
  mode: Mode;
  trial: number;
  ok: boolean;
  /** Why the trial failed to run, or which expectation it broke. */
  error: string | null;
  problems: string[];
  recover_ms: number | null;
  acked: number;
  lost: number | null;
  demoted_writes: number | null;
  detail: string;
  facts: Record<string, unknown>;
  client_errors: Record<string, number>;
  seconds: number;
}

let current: TrialSet | null = null;

/** Stops whatever the running trial has started (also for Ctrl-C); never throws. */
export async function stopCurrentSet(): Promise<void> {
  const set = current;
  current = null;
  if (!set) return;
  set.stopped = true;
  for (const i of set.instances) if (i.state === 'paused') signal(i, 'SIGCONT');
  await Promise.all([...set.clients].map((c) => within(c.end().catch(() => {}), 2_000)));
  await Promise.all(set.instances.map((i) => i.proc.stop().catch(() => {})));
  await set.fault?.stop().catch(() => {});
  await set.etcd?.stop().catch(() => {});
  await set.cluster?.stop();
}

let interrupted: () => boolean = () => false;

/** Set by runMultiInstanceTrials: every waitFor gives up once the bench is interrupted. */
export function setInterrupted(fn: () => boolean): void {
  interrupted = fn;
}

/** proc.ts's waitFor, given up on Ctrl-C. */
export const waitFor = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> =>
  poll(what, fn, timeoutMs, everyMs, interrupted);

export function signal(i: Instance, sig: NodeJS.Signals): void {
  try {
    i.proc.child.kill(sig);
  } catch {
    /* gone */
  }
}

export async function status(i: Instance, timeoutMs = 2_000): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${i.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(timeoutMs) });
  return (await r.json()) as Status;
}

export const running = (set: TrialSet): Instance[] => set.instances.filter((i) => i.state === 'running');
export const live = (set: TrialSet): Instance[] => set.instances.filter((i) => i.state !== 'killed');
export const node = (set: TrialSet, name: string): ClusterNode => set.cluster!.nodes.find((n) => n.name === name)!;
export const nodeByPort = (set: TrialSet, port: number): string => set.cluster!.nodes.find((n) => n.port === port)?.name ?? String(port);

async function direct(set: TrialSet, n: ClusterNode): Promise<pg.Client> {
  const c = new pg.Client({ host: n.host, port: n.port, user: set.info!.superuser, database: set.info!.app.database, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  set.clients.add(c);
  await c.connect();
  return c;
}

export async function viaProxy(set: TrialSet, i: Instance): Promise<pg.Client> {
  const { user, password, database } = set.info!.app;
  const c = new pg.Client({ host: '127.0.0.1', port: i.proc.port, user, password, database, connectionTimeoutMillis: 10_000, query_timeout: 30_000, application_name: `bench-${i.name}` });
  c.on('error', () => {});
  set.clients.add(c);
  try {
    await c.connect();
  } catch (err) {
    set.clients.delete(c);
    await c.end().catch(() => {});
    throw err;
  }
  return c;
}

export async function endClient(set: TrialSet, c: pg.Client): Promise<void> {
  set.clients.delete(c);
  await within(c.end().catch(() => {}), 2_000);
}

/** fn with a superuser session straight to node n, ended afterwards. */
export async function withDirect<T>(set: TrialSet, n: ClusterNode, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await direct(set, n);
  try {
    return await fn(c);
  } finally {
    await endClient(set, c);
  }
}

/** A fresh set: cluster + 3-member etcd (+ the fault proxy for p3 with cutP3) + p1..p3, p1 leading, pg1 primary in `mode`. */
export async function startSet(mode: Mode, o: { failsafe: boolean; cutP3: boolean; logLevel: string }): Promise<TrialSet> {
  const set: TrialSet = { mode, cluster: null, info: null, etcd: null, fault: null, instances: [], clients: new Set(), acks: [], errors: [], samples: [], stopped: false, loops: [] };
  current = set;
  // Both at once; each lands in the set as soon as it runs, so a failure of the other still cleans it up.
  const [c, e] = await Promise.allSettled([
    startCluster({ signalHandlers: false }).then((x) => { guardDir(x.dir); set.cluster = x; }),
    startEtcd({ members: 3 }).then((x) => { guardDir(x.dir); set.etcd = x; }),
  ]);
  if (c.status === 'rejected') throw c.reason;
  if (e.status === 'rejected') throw e.reason;
  set.info = clusterInfo(set.cluster!);
  if (o.cutP3) set.fault = await startFaultProxy('127.0.0.1', set.etcd!.members[0]!.clientPort);
  const spawnOne = async (name: string): Promise<Instance> => {
    const cut = o.cutP3 && name === 'p3';
    const endpoints = cut ? [`http://127.0.0.1:${set.fault!.port}`] : set.etcd!.endpoints;
    const extra = [
      `coordination: { name: ${name}, failsafe: ${o.failsafe}, etcd: { endpoints: [${endpoints.join(', ')}], prefix: ${PREFIX}, lease_ttl: ${LEASE_TTL_MS}ms } }`,
      `replication: { mode: ${mode} }`,
      `failover: { hold_timeout: ${HOLD_MS}ms, failure_threshold: ${FAILURE_THRESHOLD} }`,
      'shutdown: { drain_timeout: 1s }',
    ].join('\n');
    const proc = await spawnProxy(set.info!, { logLevel: o.logLevel, extra });
    guardDir(path.dirname(proc.configFile));
    const i: Instance = { name, proc, state: 'running', cut };
    set.instances.push(i);
    return i;
  };
  // p1 alone first, so it is the first leader; then the two others.
  const p1 = await spawnOne('p1');
  await waitFor('p1 to lead', async () => ((await status(p1)).coordination.role === 'leader' ? true : undefined), 20_000, 100);
  await Promise.all(['p2', 'p3'].map(spawnOne));
  set.instances.sort((a, b) => a.name.localeCompare(b.name));
  const setup = await viaProxy(set, p1);
  await setup.query('CREATE TABLE w (id serial PRIMARY KEY, via text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  await endClient(set, setup);
  await waitFor('every instance to follow pg1 and allow writes', async () => {
    const ss = await Promise.all(set.instances.map((i) => status(i)));
    return ss.every((s) => s.coordination.published_primary === 'pg1' && s.coordination.writes_allowed) ? true : undefined;
  }, 20_000, 100);
  await waitFor(`the leader to apply ${mode} on the primary`, async () => {
    const s = await status(p1);
    return (mode === 'async' ? s.replication.synchronous_standby_names === '' : s.replication.synchronous_standby_names !== '' && !s.replication.degraded) ? true : undefined;
  }, 30_000, 100);
  return set;
}
