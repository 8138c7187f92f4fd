// What a worker reports to the coordinator (its counters, pools and sessions) and how the coordinator adds them up for /metrics and /status.
import { ProxyStats } from '../frontend/stats.js';
import type { PoolStatus } from '../backend/pool.js';
import type { ClassifierStats, ClassificationSource } from '../router/classifier.js';
import { BucketCounts } from '../util/bucket-counts.js';
import type { ServerInfo } from '../backend/pool.js';
import type { ClientInfo } from '../frontend/client-session.js';

/** Rows SHOW CLIENTS and SHOW SERVERS list per process (and, with workers, in all): a bound on what one answer carries. */
export const MAX_LISTED = 10_000;

/** Client and server connections of one process (worker: null) or of all, as the admin console lists them. */
export interface SessionListing {
  clients: (Omit<ClientInfo, 'servers'> & { worker: number | null })[];
  servers: (ServerInfo & { worker: number | null })[];
  /** Rows left out beyond MAX_LISTED. */
  omittedClients: number;
  omittedServers: number;
}

/** Several processes' listings in one, each row marked with its worker, within MAX_LISTED. */
export function mergeListings(parts: readonly { worker: number | null; listing: SessionListing }[]): SessionListing {
  const out: SessionListing = { clients: [], servers: [], omittedClients: 0, omittedServers: 0 };
  for (const { worker, listing } of parts) {
    const room = (n: number) => Math.max(0, MAX_LISTED - n);
    const c = listing.clients.slice(0, room(out.clients.length));
    const v = listing.servers.slice(0, room(out.servers.length));
    out.clients.push(...c.map((x) => ({ ...x, worker })));
    out.servers.push(...v.map((x) => ({ ...x, worker })));
    out.omittedClients += listing.omittedClients + listing.clients.length - c.length;
    out.omittedServers += listing.omittedServers + listing.servers.length - v.length;
  }
  return out;
}

export interface FrontendSnapshot {
  stats: {
    counters: Record<CounterKey, number>;
    readsOnPrimaryBy: [string, number][];
    routes: { primary: [string, number][]; replica: [string, number][] };
    backendConnections: [string, number][];
    backendConnectFailures: [string, number][];
    /** node, target, units, bytes to server, bytes to client, ms. */
    traffic: TrafficEntry[];
  };
  classifier: { stats: ClassifierStats; timings: Record<string, { bounds: number[]; counts: number[]; sum: number; count: number }> };
  pools: PoolStatus[];
  waitTimeouts: number;
  pinnedClients: number;
  /** Only when asked for (the admin console's SHOW CLIENTS / SERVERS): /metrics scrapes do not carry every session. */
  listing?: SessionListing;
}

export type TrafficEntry = [node: string, target: 'primary' | 'replica', units: number, bytesToServer: number, bytesToClient: number, ms: number];

export function trafficEntries(stats: ProxyStats): TrafficEntry[] {
  const out: TrafficEntry[] = [];
  for (const [node, t] of stats.traffic) {
    for (const target of ['primary', 'replica'] as const) {
      const x = t[target];
      if (x.units > 0) out.push([node, target, x.units, x.bytesToServer, x.bytesToClient, x.ms]);
    }
  }
  return out;
}

const COUNTERS = [
  'clientConnections', 'clientSockets', 'clientConnectionsTotal', 'clientConnectionsRefused', 'authFailures',
  'bytesFromClients', 'bytesFromServers', 'messagesFromClients', 'messagesFromServers', 'cancelRequests', 'cancelsForwarded',
  'readOnlyRetries', 'readsOnPrimary', 'readsRefused',
] as const;
type CounterKey = (typeof COUNTERS)[number];
/** Gauges describe the present: a worker that is gone contributes none of them (its counters stay in the totals). */
const GAUGES: ReadonlySet<CounterKey> = new Set(['clientConnections', 'clientSockets']);

export interface ClassifierCounters {
  readonly stats: ClassifierStats;
  readonly timings: Record<ClassificationSource, BucketCounts>;
}

export function takeSnapshot(stats: ProxyStats, classifier: ClassifierCounters, pools: PoolStatus[], waitTimeouts: number, pinnedClients: number): FrontendSnapshot {
  const counters = {} as Record<CounterKey, number>;
  for (const k of COUNTERS) counters[k] = stats[k];
  const timings: FrontendSnapshot['classifier']['timings'] = {};
  for (const [source, b] of Object.entries(classifier.timings)) timings[source] = { bounds: [...b.bounds], counts: [...b.counts], sum: b.sum, count: b.count };
  return {
    stats: {
      counters,
      readsOnPrimaryBy: [...stats.readsOnPrimaryBy],
      routes: { primary: [...stats.routes.primary], replica: [...stats.routes.replica] },
      backendConnections: [...stats.backendConnections],
      backendConnectFailures: [...stats.backendConnectFailures],
      traffic: trafficEntries(stats),
    },
    classifier: { stats: classifier.stats, timings },
    pools,
    waitTimeouts,
    pinnedClients,
  };
}

/** A snapshot with only its counters kept: what a worker that exited still adds to the totals. */
export function retiredPart(s: FrontendSnapshot): FrontendSnapshot {
  const counters = { ...s.stats.counters };
  for (const k of GAUGES) counters[k] = 0;
  return { ...s, stats: { ...s.stats, counters, backendConnections: [] }, pools: [], pinnedClients: 0 };
}

export interface FrontendTotals {
  stats: ProxyStats;
  classifier: ClassifierCounters;
  pools: PoolStatus[];
  waitTimeouts: number;
  pinnedClients: number;
}

const addTo = (m: Map<string, number>, entries: [string, number][]) => {
  for (const [k, v] of entries) m.set(k, (m.get(k) ?? 0) + v);
};

/** The sum of every worker's snapshot; pools of the same node, user and database add up. */
export function sumSnapshots(list: readonly FrontendSnapshot[]): FrontendTotals {
  const stats = new ProxyStats();
  const cstats: ClassifierStats = { lexical: 0, cacheHits: 0, cacheMisses: 0, parsed: 0, parseErrors: 0, tooLong: 0, seconds: 0 };
  const timings = new Map<string, BucketCounts>();
  const pools = new Map<string, PoolStatus>();
  let waitTimeouts = 0;
  let pinnedClients = 0;
  for (const s of list) {
    for (const k of COUNTERS) stats[k] += s.stats.counters[k] ?? 0;
    addTo(stats.readsOnPrimaryBy, s.stats.readsOnPrimaryBy);
    addTo(stats.routes.primary, s.stats.routes.primary);
    addTo(stats.routes.replica, s.stats.routes.replica);
    addTo(stats.backendConnections, s.stats.backendConnections);
    addTo(stats.backendConnectFailures, s.stats.backendConnectFailures);
    for (const [node, target, units, toServer, toClient, ms] of s.stats.traffic ?? []) {
      const t = stats.trafficTo(node)[target];
      t.units += units;
      t.bytesToServer += toServer;
      t.bytesToClient += toClient;
      t.ms += ms;
    }
    for (const k of Object.keys(cstats) as (keyof ClassifierStats)[]) cstats[k] += s.classifier.stats[k] ?? 0;
    for (const [source, t] of Object.entries(s.classifier.timings)) {
      let b = timings.get(source);
      if (!b) timings.set(source, (b = new BucketCounts(t.bounds)));
      for (let i = 0; i < t.counts.length && i < b.counts.length; i++) b.counts[i] += t.counts[i];
      b.sum += t.sum;
      b.count += t.count;
    }
    for (const p of s.pools) {
      const key = `${p.node}\0${p.user}\0${p.database}`;
      const q = pools.get(key);
      if (!q) pools.set(key, { ...p });
      else {
        q.active += p.active;
        q.idle += p.idle;
        q.opening += p.opening;
        q.waiting += p.waiting;
        q.max += p.max;
        q.draining ||= p.draining;
      }
    }
    waitTimeouts += s.waitTimeouts;
    pinnedClients += s.pinnedClients;
  }
  return {
    stats,
    classifier: { stats: cstats, timings: Object.fromEntries(timings) as Record<ClassificationSource, BucketCounts> },
    pools: [...pools.values()],
    waitTimeouts,
    pinnedClients,
  };
}

/** Several snapshots of exited workers folded into one (their counters summed), so a crash loop keeps the list short. */
export function foldSnapshots(list: readonly FrontendSnapshot[]): FrontendSnapshot {
  const t = sumSnapshots(list);
  return retiredPart(takeSnapshot(t.stats, t.classifier, [], t.waitTimeouts, 0));
}
