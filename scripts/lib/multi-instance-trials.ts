// Multi-instance failover trials for `npm run bench:failover` (issue 11, "Fault tests: what must be shown").
//
// Run with `FAILOVER_BENCH_INSTANCES=3 npm run bench:failover` (or `npm run bench:failover -- --instances 3`);
// without it the bench runs the single-instance trials only, as before. Every trial gets a fresh PostgreSQL
// cluster (pg1 primary, pg2 and pg3 replicas), a fresh 3-member etcd and 3 pgsplit instances p1..p3
// (coordination.etcd.lease_ttl 2s, monitor interval 500ms as the harness sets it, failover.failure_threshold 2,
// failover.hold_timeout 5s); p1 starts first, so it leads. One client per instance loops
// `INSERT ... RETURNING id, inet_server_port()` and records every acknowledged id with the server port and time.
//
//   leader-kill   kill -9 the leader instance, then kill the primary: another instance leads, one promotion
//   primary-kill  kill the primary: exactly one promotion (failover events over every instance's /status), the
//                 other replica still in recovery, writes resume through every instance
//   leader-pause  SIGSTOP the leader for 2 x lease_ttl, kill the primary meanwhile, restart the old primary,
//                 SIGCONT: the woken instance sends no write to the old primary (its rows counted before/after)
//   etcd-cut      p3 reaches etcd only through a TCP fault proxy, broken ('blackhole'): time until its writes
//                 stop (57P03) and until they resume after heal; reads through it go on, p1/p2 write on
//   etcd-down     every etcd member killed, failsafe off: time until every instance stops writing (and until
//                 they write again once etcd is back)
//   etcd-down-fs  the same with coordination.failsafe on (a fresh set): writes go on; "recover" is the longest
//                 pause in writes through any instance while etcd was down
//
// leader-kill, primary-kill and leader-pause run in semi-sync, sync and async (commits lost must be 0 in the
// first two); the etcd trials do not promote, so they run in semi-sync only. FAILOVER_TRIALS repeats each
// (default 1 here: one full run is 12 sets, about 3 minutes on 2 cores, 5 when they are busy). For development:
// FAILOVER_BENCH_CASES=leader-pause,etcd-cut and FAILOVER_BENCH_MODES=sync pick a subset;
// FAILOVER_BENCH_LOG=warn shows pgsplit's own log (default fatal).
//
// Clean-up: every trial's processes and directories are stopped and removed when it ends, failed or not, and on
// SIGINT/SIGTERM (failover-bench.ts calls cleanupMultiInstance); should tsx SIGKILL the script before that runs,
// a watchdog process (orphan-reaper.ts) removes them.
//
// Per trial: recover ms (see above; for the promotion trials: from the kill of the primary to the first write
// acknowledged by the new primary through every live instance), acknowledged commits, commits lost (acknowledged
// ids missing on the final primary), and writes on a demoted node (acknowledged rows whose server was not the
// primary when it wrote them, by the row's clock_timestamp(): the old primary after the new one was published or
// took a write, or any other node; an acknowledgement held in a paused instance reaches the client late, but the
// commit is older). leader-pause also counts the old primary's rows before and after SIGCONT.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../../test/harness/cluster.js';
import { startEtcd, type EtcdCluster } from '../../test/harness/etcd.js';
import { startFaultProxy, type FaultProxy } from '../../test/harness/fault-proxy.js';
import { adminAuthHeaders, REPO_ROOT, spawnProxy, type ProxyProcess } from '../../test/harness/proxy.js';
import { guardDir } from './orphan-reaper.js';
import { sleep } from './proc.js';
import { formatTable } from './table.js';

export const CASES = ['leader-kill', 'primary-kill', 'leader-pause', 'etcd-cut', 'etcd-down', 'etcd-down-fs'] as const;
export type CaseName = (typeof CASES)[number];
const MODES = ['semi-sync', 'sync', 'async'] as const;
type Mode = (typeof MODES)[number];
const PROMOTING: readonly CaseName[] = ['leader-kill', 'primary-kill', 'leader-pause'];

const LEASE_TTL_MS = 2_000;
const HOLD_MS = 5_000;
const FAILURE_THRESHOLD = 2;
/** Writes before a fault, and after recovery. */
const LOAD_MS = 1_000;
const PREFIX = '/pgsplit/bench';

interface Instance {
  name: string;
  proc: ProxyProcess;
  state: 'running' | 'paused' | 'killed';
  /** Reaches etcd through the fault proxy only. */
  cut: boolean;
}
/** at: when the client got the acknowledgement; serverAt: the row's clock_timestamp() on the node that wrote it (same machine). */
interface Ack { id: number; port: number; via: string; at: number; serverAt: number }
interface ClientError { via: string; at: number; code: string; text: string }
interface Coordination { instance: string; role: string; leader: string | null; epoch: number | null; published_primary: string | null; writes_allowed: boolean }
interface FailoverEvent { kind: string; at: string; old_primary: string | null; new_primary: string; duration_ms: number; error?: string }
interface Status {
  primary: string | null;
  coordination: Coordination;
  failover: { events: FailoverEvent[] };
  replication: { synchronous_standby_names: string; degraded: boolean; synchronous_standbys: string[] };
}
interface Sample { at: number; via: string; role: string; leader: string | null; epoch: number | null; published: string | null; writes: boolean }

/** One trial's PostgreSQL cluster, etcd, fault proxy, pgsplit instances and clients. */
interface TrialSet {
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

export interface MultiOptions {
  trials: number;
  interrupted: () => boolean;
  say: (line?: string) => void;
}

let current: TrialSet | null = null;

/** Stops whatever the running trial has started (also for Ctrl-C); never throws. */
export async function cleanupMultiInstance(): Promise<void> {
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

/** What `FAILOVER_BENCH_INSTANCES` / `--instances` ask for: 1 (default) or 3. */
export function instancesWanted(argv: string[], env: NodeJS.ProcessEnv): number {
  let raw = env.FAILOVER_BENCH_INSTANCES ?? '1';
  const k = argv.findIndex((a) => a === '--instances' || a.startsWith('--instances='));
  if (k >= 0) raw = argv[k]!.includes('=') ? argv[k]!.split('=')[1]! : argv[k + 1] ?? '';
  if (raw !== '1' && raw !== '3') throw new Error(`instances must be 1 or 3, not "${raw}" (FAILOVER_BENCH_INSTANCES or --instances)`);
  return Number(raw);
}

function signal(i: Instance, sig: NodeJS.Signals): void {
  try {
    i.proc.child.kill(sig);
  } catch {
    /* gone */
  }
}

async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

let interruptedFn: () => boolean = () => false;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (interruptedFn()) throw new Error('interrupted');
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function status(i: Instance, timeoutMs = 2_000): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${i.proc.adminPort}/status`, { headers: adminAuthHeaders(), signal: AbortSignal.timeout(timeoutMs) });
  return (await r.json()) as Status;
}

const running = (set: TrialSet): Instance[] => set.instances.filter((i) => i.state === 'running');
const live = (set: TrialSet): Instance[] => set.instances.filter((i) => i.state !== 'killed');
const node = (set: TrialSet, name: string): ClusterNode => set.cluster!.nodes.find((n) => n.name === name)!;
const nodeByPort = (set: TrialSet, port: number): string => set.cluster!.nodes.find((n) => n.port === port)?.name ?? String(port);

async function direct(set: TrialSet, n: ClusterNode): Promise<pg.Client> {
  const c = new pg.Client({ host: n.host, port: n.port, user: set.info!.superuser, database: set.info!.app.database, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  set.clients.add(c);
  await c.connect();
  return c;
}

async function viaProxy(set: TrialSet, i: Instance): Promise<pg.Client> {
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

async function endClient(set: TrialSet, c: pg.Client): Promise<void> {
  set.clients.delete(c);
  await within(c.end().catch(() => {}), 2_000);
}

async function withDirect<T>(set: TrialSet, n: ClusterNode, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await direct(set, n);
  try {
    return await fn(c);
  } finally {
    await endClient(set, c);
  }
}

// ------------------------------------------------------------------------------------------------
// A set: cluster + etcd + 3 instances, writers and a /status sampler.

async function startSet(mode: Mode, o: { failsafe: boolean; cutP3: boolean; logLevel: string }): Promise<TrialSet> {
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

const INSERT = 'INSERT INTO w (via) VALUES ($1) RETURNING id, inet_server_port() AS port, (extract(epoch FROM at) * 1000)::float8 AS ms';

/** One client per instance, writing in a loop until set.stopped; reconnects when its session ends (not to a killed instance). */
function startWriters(set: TrialSet): void {
  set.loops = set.instances.map(async (i) => {
    let c: pg.Client | null = null;
    let dead = false;
    while (!set.stopped && i.state !== 'killed') {
      try {
        if (!c) {
          dead = false;
          c = await viaProxy(set, i);
          const mine = c;
          mine.on('end', () => { if (c === mine) dead = true; });
        }
        const r = await c.query({ text: INSERT, values: [i.name] });
        set.acks.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, via: i.name, at: Date.now(), serverAt: Math.round(r.rows[0].ms as number) });
      } catch (err) {
        const e = err as Error & { code?: string };
        set.errors.push({ via: i.name, at: Date.now(), code: e.code ?? (/timeout/i.test(e.message) ? 'timeout' : '-'), text: e.message });
        // A client-side timeout leaves the session in an unknown state: start a new one.
        if (c && (dead || /timeout|terminated|not queryable|ECONNRE|EPIPE/i.test(e.message))) {
          const old = c;
          c = null;
          void endClient(set, old);
        }
        await sleep(20);
      }
    }
    if (c) await endClient(set, c);
  });
}

/** /status of every running instance every 250 ms: roles, the published primary and writes_allowed over time. */
function startSampler(set: TrialSet): Promise<void> {
  return (async () => {
    while (!set.stopped) {
      await Promise.all(running(set).map(async (i) => {
        try {
          const s = await status(i, 1_000);
          const c = s.coordination;
          set.samples.push({ at: Date.now(), via: i.name, role: c.role, leader: c.leader, epoch: c.epoch, published: c.published_primary, writes: c.writes_allowed });
        } catch {
          /* paused, killed or busy */
        }
      }));
      await sleep(250);
    }
  })();
}

async function stopLoad(set: TrialSet): Promise<void> {
  set.stopped = true;
  await within(Promise.all(set.loops), 35_000);
}

// ------------------------------------------------------------------------------------------------
// Measurements shared by the trials.

/** Kills the primary (pg_ctl stop -m immediate); the kill time is when stop returned or the first client error after it started, whichever is sooner. */
async function killPrimary(set: TrialSet, name = 'pg1'): Promise<number> {
  const called = Date.now();
  await set.cluster!.stopNode(name, 'immediate');
  const returned = Date.now();
  return Math.min(returned, set.errors.find((e) => e.at >= called)?.at ?? returned);
}

/** The published primary every given instance agrees on, other than `old`. */
async function newPrimary(set: TrialSet, among: Instance[], old: string, timeoutMs: number): Promise<string> {
  return waitFor(`every instance (${among.map((i) => i.name).join(', ')}) to follow a new primary`, async () => {
    const ss = await Promise.all(among.map((i) => status(i)));
    const p = ss[0]!.coordination.published_primary;
    return p && p !== old && ss.every((s) => s.coordination.published_primary === p && s.coordination.writes_allowed) ? p : undefined;
  }, timeoutMs, 100);
}

/** First write acknowledged by `port` through each instance after `since`. */
async function firstWrites(set: TrialSet, among: Instance[], port: number, since: number, timeoutMs: number): Promise<Map<string, number>> {
  return waitFor(`writes through ${among.map((i) => i.name).join(', ')} on port ${port}`, () => {
    const m = new Map<string, number>();
    for (const i of among) {
      const a = set.acks.find((x) => x.via === i.name && x.at >= since && x.port === port);
      if (!a) return undefined;
      m.set(i.name, a.at);
    }
    return m;
  }, timeoutMs, 20);
}

/** Successful automatic failovers in the /status of the given instances (each recorded once, by the instance that led it). */
async function promotions(among: Instance[]): Promise<FailoverEvent[]> {
  const ss = await Promise.all(among.map((i) => status(i)));
  return ss.flatMap((s) => s.failover.events.filter((e) => e.kind === 'failover' && !e.error));
}

/** Acknowledged ids missing on `final` (direct). */
async function lostOn(set: TrialSet, final: ClusterNode): Promise<number> {
  const ids = set.acks.map((a) => a.id);
  const have = await withDirect(set, final, async (d) => new Set((await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id)));
  return ids.filter((id) => !have.has(id)).length;
}

/**
 * Acknowledged writes whose server was not the primary when it wrote them (the row's own timestamp: an
 * acknowledgement held up in a paused instance reaches the client late, but the commit happened before):
 * `timeline` lists primaries and the time each took over (the first entry from the start).
 */
function demotedWrites(set: TrialSet, timeline: { port: number; from: number }[]): Ack[] {
  const primaryAt = (t: number): number => [...timeline].reverse().find((p) => p.from <= t)?.port ?? timeline[0]!.port;
  return set.acks.filter((a) => a.port !== primaryAt(a.serverAt));
}

/** When the old primary stopped being primary: the new one first published (sampled) or first took a write, whichever came first. */
function demotedAt(set: TrialSet, newName: string, newPort: number, since: number): number {
  const published = set.samples.find((s) => s.at >= since && s.published === newName)?.at ?? Infinity;
  const wrote = set.acks.find((a) => a.at >= since && a.port === newPort)?.serverAt ?? Infinity;
  return Math.min(published, wrote);
}

const lastAckBefore = (set: TrialSet, via: string, t: number): number | undefined => set.acks.filter((a) => a.via === via && a.at < t).at(-1)?.at;

function countErrors(set: TrialSet): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of set.errors) {
    const k = `${e.via} ${e.code} ${e.text.replace(/\d+/g, 'N').slice(0, 90)}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// The trials. Each fills r (recover_ms, detail, facts, problems) and returns the final primary's name.

type Body = (set: TrialSet, r: MultiResult) => Promise<{ final: string; timeline: { port: number; from: number }[] }>;

/** Kill the primary, wait for one new primary that every live instance writes to; shared by the promotion trials. */
async function primaryFailover(set: TrialSet, r: MultiResult, among: Instance[]): Promise<{ killAt: number; np: ClusterNode; firsts: Map<string, number> }> {
  const killAt = await killPrimary(set);
  const npName = await newPrimary(set, among, 'pg1', 40_000);
  const np = node(set, npName);
  const firsts = await firstWrites(set, among, np.port, killAt, 30_000);
  r.recover_ms = Math.max(...firsts.values()) - killAt;
  return { killAt, np, firsts };
}

/** Exactly one promotion, pg1 → np, and the replica not promoted still in recovery. */
async function checkOnePromotion(set: TrialSet, r: MultiResult, among: Instance[], np: ClusterNode): Promise<number> {
  // The event is recorded once the other replica is re-pointed, a moment after writes resume.
  const events = await waitFor('the promotion recorded', async () => {
    const ev = await promotions(among);
    return ev.length > 0 ? ev : undefined;
  }, 15_000, 200);
  await sleep(500);
  const all = await promotions(among);
  r.facts.promotions = all.map((e) => `${e.old_primary}→${e.new_primary} ${e.duration_ms} ms`);
  if (all.length !== 1 || all[0]!.old_primary !== 'pg1' || all[0]!.new_primary !== np.name) r.problems.push(`expected one promotion pg1→${np.name}, /status shows ${JSON.stringify(r.facts.promotions)}`);
  const other = set.cluster!.nodes.find((n) => n.name !== 'pg1' && n.name !== np.name)!;
  const inRecovery = await withDirect(set, other, async (d) => (await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
  r.facts.other_replica_in_recovery = inRecovery;
  if (!inRecovery) r.problems.push(`${other.name} is not in recovery: a second promotion`);
  const timelines = await Promise.all(set.cluster!.nodes.filter((n) => n.name !== 'pg1').map((n) =>
    withDirect(set, n, async (d) => {
      // A primary's timeline is in its current WAL file name; a replica's is what its WAL receiver gets.
      const q = await d.query("SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)::text ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END AS tli");
      return `${n.name}:${q.rows[0].tli ?? '-'}`;
    }).catch(() => `${n.name}:?`)));
  r.facts.timelines = timelines;
  return events.length;
}

const trials: Record<CaseName, Body> = {
  'leader-kill': async (set, r) => {
    const p1 = set.instances[0]!;
    const killedAt = Date.now();
    signal(p1, 'SIGKILL');
    p1.state = 'killed';
    const rest = live(set);
    const next = await waitFor('another instance to lead', async () => {
      const ss = await Promise.all(rest.map(async (i) => ({ i, s: await status(i) })));
      const l = ss.filter((x) => x.s.coordination.role === 'leader');
      return l.length === 1 ? l[0]! : undefined;
    }, LEASE_TTL_MS * 5, 50);
    const leadMs = Date.now() - killedAt;
    r.facts.new_leader = next.i.name;
    r.facts.new_leader_ms = leadMs;
    // Every instance has written to pg1 since the new leader took over.
    const since = Date.now();
    await firstWrites(set, rest, node(set, 'pg1').port, since, 15_000);
    await sleep(LOAD_MS);
    const { killAt, np } = await primaryFailover(set, r, rest);
    const n = await checkOnePromotion(set, r, rest, np);
    r.detail = `${next.i.name} led ${leadMs} ms after p1's kill -9; then ${np.name} promoted (${n} promotion${n === 1 ? '' : 's'})`;
    await sleep(LOAD_MS);
    return { final: np.name, timeline: [{ port: node(set, 'pg1').port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'primary-kill': async (set, r) => {
    const all = live(set);
    const { killAt, np } = await primaryFailover(set, r, all);
    const n = await checkOnePromotion(set, r, all, np);
    r.detail = `${np.name} promoted (${n} promotion${n === 1 ? '' : 's'}; ${r.facts.other_replica_in_recovery ? 'other replica still in recovery' : 'OTHER REPLICA PROMOTED'})`;
    await sleep(LOAD_MS);
    return { final: np.name, timeline: [{ port: node(set, 'pg1').port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'leader-pause': async (set, r) => {
    const paused = set.instances[0]!;
    const others = set.instances.slice(1);
    const eventsBefore = (await status(paused)).failover.events.length;
    const pausedAt = Date.now();
    signal(paused, 'SIGSTOP');
    paused.state = 'paused';
    const killAt = await killPrimary(set);
    const npName = await newPrimary(set, others, 'pg1', 40_000);
    const np = node(set, npName);
    await firstWrites(set, others, np.port, killAt, 30_000);
    const leader = (await Promise.all(others.map(async (i) => ({ i, s: await status(i) })))).find((x) => x.s.coordination.role === 'leader')?.i.name ?? null;
    // The old primary comes back, a primary on its old timeline.
    await set.cluster!.startNode('pg1');
    const pg1 = node(set, 'pg1');
    const countOld = () => withDirect(set, pg1, async (d) => (await d.query('SELECT count(*)::int AS n FROM w')).rows[0].n as number);
    const wait = pausedAt + 2 * LEASE_TTL_MS - Date.now();
    if (wait > 0) await sleep(wait);
    const before = await countOld();
    const contAt = Date.now();
    signal(paused, 'SIGCONT');
    paused.state = 'running';
    const firsts = await firstWrites(set, set.instances, np.port, killAt, 30_000);
    r.recover_ms = Math.max(...firsts.values()) - killAt;
    const wokeMs = firsts.get(paused.name)! - contAt;
    const woke = await waitFor('the woken instance to follow', async () => {
      const s = await status(paused);
      return s.coordination.role === 'follower' && s.coordination.published_primary === np.name ? s : undefined;
    }, 15_000, 100);
    const acted = woke.failover.events.slice(eventsBefore).filter((e) => !e.error);
    await sleep(LOAD_MS);
    await stopLoad(set);
    const after = await countOld();
    // Sessions of the app user on the old primary: a write the woken instance sent there but that never finished (sync) would show here.
    const appSessions = await withDirect(set, pg1, async (d) => (await d.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app'")).rows[0].n as number);
    const n = await checkOnePromotion(set, r, others, np);
    Object.assign(r.facts, { paused_ms: contAt - pausedAt, leader_while_paused: leader, woken_first_write_ms: wokeMs, old_primary_rows_before: before, old_primary_rows_after: after, old_primary_app_sessions: appSessions, woken_actions: acted.length, woken_leader: woke.coordination.leader });
    if (after !== before) r.problems.push(`${after - before} rows appeared on the restarted old primary after SIGCONT`);
    if (appSessions > 0) r.problems.push(`${appSessions} app sessions on the restarted old primary`);
    if (acted.length > 0) r.problems.push(`the woken instance recorded ${acted.length} failover/switchover events`);
    r.detail = `p1 paused ${contAt - pausedAt} ms, ${leader ?? '?'} led and promoted ${np.name} (${n} promotion${n === 1 ? '' : 's'}); p1 woke and wrote to ${np.name} after ${wokeMs} ms; rows on old pg1 ${before}→${after}`;
    return { final: np.name, timeline: [{ port: pg1.port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'etcd-cut': async (set, r) => {
    const p3 = set.instances.find((i) => i.cut)!;
    const cutAt = Date.now();
    set.fault!.break('blackhole');
    const statusStop = waitFor('p3 /status to say writes_allowed false', async () => ((await status(p3)).coordination.writes_allowed ? undefined : Date.now()), LEASE_TTL_MS * 4, 50).catch(() => null);
    const first57 = await waitFor('a 57P03 through p3', () => set.errors.find((e) => e.via === p3.name && e.at >= cutAt && e.code === '57P03')?.at, LEASE_TTL_MS + HOLD_MS + 10_000, 50);
    const stopMs = Math.max(0, (lastAckBefore(set, p3.name, first57) ?? cutAt) - cutAt);
    const statusStopAt = await statusStop;
    // A read through p3 while it cannot write.
    let read = 'failed';
    const rc = await viaProxy(set, p3).catch(() => null);
    if (rc) {
      const t = Date.now();
      read = await rc.query('SELECT count(*)::int AS n FROM w').then((q) => `ok (${q.rows[0].n} rows, ${Date.now() - t} ms)`, (e: Error & { code?: string }) => `failed: ${e.code ?? ''} ${e.message}`);
      await endClient(set, rc);
    }
    const othersWrote = set.acks.filter((a) => a.via !== p3.name && a.at > cutAt).length;
    const healAt = Date.now();
    set.fault!.heal();
    const back = await firstWrites(set, [p3], node(set, 'pg1').port, healAt, LEASE_TTL_MS * 5 + HOLD_MS);
    r.recover_ms = back.get(p3.name)! - healAt;
    Object.assign(r.facts, { writes_stop_ms: stopMs, status_stop_ms: statusStopAt === null ? null : statusStopAt - cutAt, first_57P03_ms: first57 - cutAt, read_while_cut: read, others_acked_while_cut: othersWrote, cut_ms: healAt - cutAt });
    if (!read.startsWith('ok')) r.problems.push(`a read through the cut-off instance ${read}`);
    if (othersWrote === 0) r.problems.push('p1 and p2 wrote nothing while p3 was cut off');
    r.detail = `p3's writes stopped ${stopMs} ms after the cut (57P03 after ${first57 - cutAt} ms), resumed ${r.recover_ms} ms after heal; read through p3 ${read.startsWith('ok') ? 'ok' : 'FAILED'}; p1+p2 acked ${othersWrote} meanwhile`;
    await sleep(LOAD_MS);
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },

  'etcd-down': async (set, r) => {
    const all = set.instances;
    const downAt = Date.now();
    await set.etcd!.stopAll();
    const first57 = await waitFor('a 57P03 through every instance', () => {
      const m = all.map((i) => set.errors.find((e) => e.via === i.name && e.at >= downAt && e.code === '57P03')?.at);
      return m.every((x) => x !== undefined) ? (m as number[]) : undefined;
    }, LEASE_TTL_MS + HOLD_MS + 10_000, 50);
    const stops = all.map((i, k) => Math.max(0, (lastAckBefore(set, i.name, first57[k]!) ?? downAt) - downAt));
    r.recover_ms = Math.max(...stops);
    const upAt = Date.now();
    await set.etcd!.startAll();
    const back = await firstWrites(set, all, node(set, 'pg1').port, upAt, 30_000);
    const resume = Math.max(...back.values()) - upAt;
    const ev = await promotions(all);
    Object.assign(r.facts, { writes_stop_ms: Object.fromEntries(all.map((i, k) => [i.name, stops[k]])), resume_after_etcd_start_ms: resume, promotions: ev.length });
    if (ev.length > 0) r.problems.push(`${ev.length} promotions while etcd was down`);
    r.detail = `writes stopped on ${all.map((i, k) => `${i.name} ${stops[k]}`).join(', ')} ms; etcd restarted: every instance wrote again after ${resume} ms`;
    await sleep(LOAD_MS);
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },

  'etcd-down-fs': async (set, r) => {
    const all = set.instances;
    const downAt = Date.now();
    await set.etcd!.stopAll();
    const OUTAGE_MS = LEASE_TTL_MS * 4;
    await sleep(OUTAGE_MS);
    const endAt = Date.now();
    const gaps = all.map((i) => {
      const ts = [downAt, ...set.acks.filter((a) => a.via === i.name && a.at >= downAt && a.at <= endAt).map((a) => a.at), endAt];
      return Math.max(...ts.slice(1).map((t, k) => t - ts[k]!));
    });
    r.recover_ms = Math.max(...gaps);
    const during = set.acks.filter((a) => a.at >= downAt && a.at <= endAt).length;
    const refused = set.errors.filter((e) => e.at >= downAt && e.at <= endAt).length;
    const ss = await Promise.all(all.map((i) => status(i)));
    const ev = ss.flatMap((s) => s.failover.events.filter((e) => !e.error));
    Object.assign(r.facts, { outage_ms: endAt - downAt, longest_pause_ms: Object.fromEntries(all.map((i, k) => [i.name, gaps[k]])), acked_during_outage: during, errors_during_outage: refused, writes_allowed_at_end: ss.map((s) => s.coordination.writes_allowed), promotions: ev.length });
    if (refused > 0) r.problems.push(`${refused} writes failed while etcd was down with failsafe on`);
    if (ev.length > 0) r.problems.push(`${ev.length} promotions while etcd was down`);
    r.detail = `etcd down ${((endAt - downAt) / 1000).toFixed(1)} s: ${during} writes acked meanwhile, ${refused} failed, longest pause ${all.map((i, k) => `${i.name} ${gaps[k]}`).join(', ')} ms`;
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },
};

async function runTrial(c: CaseName, mode: Mode, n: number, logLevel: string): Promise<MultiResult> {
  const started = Date.now();
  const r: MultiResult = { case: c, mode, trial: n, ok: false, error: null, problems: [], recover_ms: null, acked: 0, lost: null, demoted_writes: null, detail: '', facts: {}, client_errors: {}, seconds: 0 };
  let set: TrialSet | null = null;
  let sampler: Promise<void> = Promise.resolve();
  try {
    set = await startSet(mode, { failsafe: c === 'etcd-down-fs', cutP3: c === 'etcd-cut', logLevel });
    r.facts.setup_s = Math.round((Date.now() - started) / 100) / 10;
    startWriters(set);
    sampler = startSampler(set);
    await firstWrites(set, set.instances, node(set, 'pg1').port, 0, 15_000);
    await sleep(LOAD_MS);
    const { final, timeline } = await trials[c](set, r);
    await stopLoad(set);
    await within(sampler, 3_000);
    const fp = node(set, final);
    r.acked = set.acks.length;
    r.lost = await lostOn(set, fp);
    const bad = demotedWrites(set, timeline);
    r.demoted_writes = bad.length;
    if (bad.length > 0) {
      r.facts.demoted_writes = bad.slice(0, 20).map((a) => ({ ...a, node: nodeByPort(set!, a.port), at: new Date(a.at).toISOString(), serverAt: new Date(a.serverAt).toISOString() }));
      r.problems.push(`${bad.length} writes acknowledged by a node that was not the primary (${[...new Set(bad.map((a) => `${a.via}→${nodeByPort(set!, a.port)}`))].join(', ')})`);
    }
    if (mode !== 'async' && r.lost > 0) r.problems.push(`${r.lost} acknowledged commits lost in ${mode}`);
    r.ok = true;
  } catch (err) {
    r.error = (err as Error).message.split('\n')[0]!;
    if (set) r.facts.failed_at_s = Math.round((Date.now() - started) / 100) / 10;
  } finally {
    if (set) {
      await stopLoad(set);
      await within(sampler, 3_000);
      r.client_errors = countErrors(set);
      if (!r.acked) r.acked = set.acks.length;
    }
    await cleanupMultiInstance();
    r.seconds = Math.round((Date.now() - started) / 100) / 10;
  }
  return r;
}

function listFromEnv<T extends string>(name: string, all: readonly T[]): T[] {
  const raw = process.env[name];
  if (!raw) return [...all];
  const want = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = want.filter((w) => !all.includes(w as T));
  if (bad.length) throw new Error(`${name}: unknown ${bad.join(', ')} (one of ${all.join(', ')})`);
  return want as T[];
}

export async function runMultiInstanceTrials(o: MultiOptions): Promise<MultiResult[]> {
  interruptedFn = o.interrupted;
  const cases = listFromEnv('FAILOVER_BENCH_CASES', CASES);
  const modes = listFromEnv('FAILOVER_BENCH_MODES', MODES);
  const logLevel = process.env.FAILOVER_BENCH_LOG ?? 'fatal';
  const plan: { c: CaseName; mode: Mode }[] = [];
  for (const c of cases) for (const mode of PROMOTING.includes(c) ? modes : modes.includes('semi-sync') ? ['semi-sync' as const] : modes.slice(0, 1)) plan.push({ c, mode });
  const started = Date.now();
  o.say(`bench:failover: 3 pgsplit instances, 3-member etcd, lease_ttl ${LEASE_TTL_MS} ms, failure_threshold ${FAILURE_THRESHOLD}, hold_timeout ${HOLD_MS} ms, monitor interval 500 ms; ` +
    `${plan.length} trial kinds x ${o.trials}; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}`);
  const results: MultiResult[] = [];
  for (const { c, mode } of plan) {
    for (let n = 1; n <= o.trials && !o.interrupted(); n++) {
      const r = await runTrial(c, mode, n, logLevel);
      if (o.interrupted()) break;
      results.push(r);
      o.say(r.ok
        ? `  ${c} ${mode} #${n}: recover ${r.recover_ms} ms, ${r.acked} acked, ${r.lost} lost, ${r.demoted_writes} on a demoted node; ${r.detail}${r.problems.length ? `; PROBLEMS: ${r.problems.join('; ')}` : ''} (${r.seconds} s)`
        : `  ${c} ${mode} #${n}: FAILED after ${r.seconds} s: ${r.error}`);
    }
  }
  if (o.interrupted()) return results;
  o.say('');
  o.say('recover ms: leader-kill/primary-kill/leader-pause: kill of the primary → first write on the new primary through every live instance;');
  o.say('  etcd-cut: heal → the cut-off instance writes again; etcd-down: etcd killed → the last instance stops writing; etcd-down-fs: longest write pause while etcd is down.');
  o.say('lost: acknowledged ids missing on the final primary; demoted writes: acknowledged rows written by a node that was not the primary then.');
  o.say('');
  const v = (x: number | null): string => (x === null ? '-' : String(x));
  const body = results.map((r) => [
    r.case,
    r.mode,
    r.ok ? v(r.recover_ms) : '-',
    String(r.acked),
    v(r.lost),
    v(r.demoted_writes),
    r.ok ? (r.problems.length ? `PROBLEM: ${r.problems.join('; ')} | ${r.detail}` : r.detail) : `FAILED: ${r.error}`,
  ]);
  for (const l of formatTable(['trial', 'mode', 'recover ms', 'acked', 'lost', 'demoted writes', 'detail'], body, { right: [2, 3, 4, 5] })) o.say(l);
  const out = path.join(REPO_ROOT, '.tmp/failover-bench-instances.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({
    at: new Date().toISOString(),
    settings: { instances: 3, etcd_members: 3, lease_ttl_ms: LEASE_TTL_MS, hold_timeout_ms: HOLD_MS, failure_threshold: FAILURE_THRESHOLD, monitor_interval_ms: 500, trials_per_case: o.trials },
    cpus: os.cpus().length,
    duration_s: Math.round((Date.now() - started) / 1000),
    results,
  }, null, 2) + '\n');
  o.say(`\nbench:failover: details in ${path.relative(process.cwd(), out)} (${Math.round((Date.now() - started) / 1000)} s)`);
  return results;
}
