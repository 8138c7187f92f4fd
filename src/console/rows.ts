// The admin console's result sets, built from plain data (the /status document, pool and session listings, counters); pure.
import type { Cell, ConsoleReply } from './reply.js';
import { COMMANDS } from './parse-command.js';
import type { StatementRow } from '../stats/statement-stats.js';
import type { PoolStatus } from '../backend/pool.js';
import type { ClientInfo } from '../frontend/client-session.js';

/** A node as GET /status describes it (compose/status.ts); SHOW NODES shows the same facts. */
export interface NodeStatus {
  name: string;
  host: string;
  port: number;
  role: string;
  up: boolean;
  lag_bytes: number | null;
  lag_seconds: number | null;
  banned: boolean;
  ban_reason: string | null;
  banned_since: string | null;
  fenced: boolean;
  streams_from: string | null;
  weight: number;
  tags: readonly string[];
  delayed: boolean;
  server_version: string | null;
  last_error: string | null;
}

/** A pool as the pools report it (SHOW POOLS leaves out draining). */
export type PoolRow = Omit<PoolStatus, 'draining'>;

/** A client as its session describes itself, with the worker serving it (null: one process). */
export type ClientRow = Omit<ClientInfo, 'servers'> & { worker: number | null };

export interface ServerRow {
  worker: number | null;
  node: string;
  user: string;
  database: string;
  state: string;
  client: number | null;
  backendPid: number;
  connectedAt: number;
  since: number;
}

/** node, target, units, bytes to server, bytes to client, ms (see workers/frontend-snapshot.ts). */
export type TrafficRow = readonly [string, 'primary' | 'replica', number, number, number, number];

const num = (v: number | null | undefined): Cell => (v === null || v === undefined ? null : String(v));
const bool = (v: boolean): Cell => (v ? 'true' : 'false');
const time = (ms: number): Cell => new Date(ms).toISOString();
/** Seconds with millisecond precision: lag is measured per probe, finer digits are noise. */
const seconds = (s: number | null): Cell => (s === null ? null : String(Math.round(s * 1000) / 1000));

const rows = (columns: readonly string[], data: Cell[][], notice?: string): ConsoleReply => ({ kind: 'rows', columns, rows: data, tag: 'SHOW', ...(notice ? { notice } : {}) });

export const NODE_COLUMNS = ['name', 'host', 'port', 'role', 'up', 'lag_bytes', 'lag_seconds', 'banned', 'ban_reason', 'banned_since', 'fenced', 'streams_from', 'weight', 'tags', 'delayed', 'server_version', 'last_error'] as const;

export function nodeRows(nodes: readonly NodeStatus[]): ConsoleReply {
  return rows(NODE_COLUMNS, nodes.map((n) => [
    n.name, n.host, num(n.port), n.role, bool(n.up), num(n.lag_bytes), seconds(n.lag_seconds), bool(n.banned), n.ban_reason, n.banned_since,
    bool(n.fenced), n.streams_from, num(n.weight), n.tags.join(','), bool(n.delayed), n.server_version, n.last_error,
  ]));
}

export const POOL_COLUMNS = ['node', 'user', 'database', 'active', 'idle', 'opening', 'waiting', 'max'] as const;

export function poolRows(pools: readonly PoolRow[]): ConsoleReply {
  const sorted = [...pools].sort((a, b) => a.node.localeCompare(b.node) || a.user.localeCompare(b.user) || a.database.localeCompare(b.database));
  return rows(POOL_COLUMNS, sorted.map((p) => [p.node, p.user, p.database, num(p.active), num(p.idle), num(p.opening), num(p.waiting), num(p.max)]));
}

const omitted = (n: number, what: string): string | undefined => (n > 0 ? `${n} more ${what} not listed (at most 10000 are)` : undefined);

export const CLIENT_COLUMNS = ['worker', 'pid', 'user', 'database', 'application_name', 'address', 'state', 'connected_at', 'pinned', 'pinned_by', 'target', 'replica'] as const;

export function clientRows(clients: readonly ClientRow[], omittedCount = 0): ConsoleReply {
  const sorted = [...clients].sort((a, b) => a.connectedAt - b.connectedAt || a.pid - b.pid);
  return rows(CLIENT_COLUMNS, sorted.map((c) => [
    num(c.worker), num(c.pid), c.user, c.database, c.applicationName, c.address, c.state, time(c.connectedAt), bool(c.pins.length > 0), c.pins.join(','), c.target, c.replica,
  ]), omitted(omittedCount, 'clients'));
}

export const SERVER_COLUMNS = ['worker', 'node', 'user', 'database', 'state', 'client', 'backend_pid', 'connected_at', 'state_since'] as const;

export function serverRows(servers: readonly ServerRow[], omittedCount = 0): ConsoleReply {
  const sorted = [...servers].sort((a, b) => a.node.localeCompare(b.node) || a.connectedAt - b.connectedAt || a.backendPid - b.backendPid);
  return rows(SERVER_COLUMNS, sorted.map((v) => [
    num(v.worker), v.node, v.user, v.database, v.state, num(v.client), num(v.backendPid), time(v.connectedAt), time(v.since),
  ]), omitted(omittedCount, 'server connections'));
}

export const STATS_COLUMNS = ['node', 'target', 'units', 'bytes_to_server', 'bytes_to_client', 'total_ms', 'avg_ms'] as const;

/** One row per node and target, in the order of `nodes` (the config's), then nodes no longer configured. */
export function statsRows(traffic: readonly TrafficRow[], nodes: readonly string[]): ConsoleReply {
  const order = (n: string) => {
    const i = nodes.indexOf(n);
    return i < 0 ? nodes.length : i;
  };
  const sorted = [...traffic].sort((a, b) => order(a[0]) - order(b[0]) || a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]));
  const ms = (x: number) => String(Math.round(x * 1000) / 1000);
  return rows(STATS_COLUMNS, sorted.map(([node, target, units, toServer, toClient, total]) => [
    node, target, num(units), num(toServer), num(toClient), ms(total), units > 0 ? ms(total / units) : null,
  ]));
}

/**
 * Every leaf of a (masked) config as key and value: nested keys joined by dots, list items by [i]; lists of plain
 * values as one JSON value, null as NULL.
 */
export function configRows(config: unknown): ConsoleReply {
  const out: Cell[][] = [];
  const walk = (v: unknown, key: string) => {
    if (v === null || v === undefined) out.push([key, null]);
    else if (Array.isArray(v)) {
      if (v.some((x) => x !== null && typeof x === 'object')) v.forEach((x, i) => walk(x, `${key}[${i}]`));
      else out.push([key, JSON.stringify(v)]);
    } else if (typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, key === '' ? k : `${key}.${k}`);
    } else out.push([key, String(v)]);
  };
  walk(config, '');
  return rows(['key', 'value'], out);
}

export const STATEMENT_COLUMNS = ['query', 'calls', 'errors', 'rows', 'total_ms', 'mean_ms', 'min_ms', 'max_ms', 'p99_ms', 'primary_calls', 'replica_calls', 'routes', 'fingerprint'] as const;

/** As GET /statements gives them (the most total time first); routes as "target/reason:calls" joined by commas. */
export function statementRows(statements: readonly StatementRow[]): ConsoleReply {
  return rows(STATEMENT_COLUMNS, statements.map((s) => [
    s.query, num(s.calls), num(s.errors), num(s.rows), num(s.total_ms), num(s.mean_ms), num(s.min_ms), num(s.max_ms), num(s.p99_ms),
    num(s.primary_calls), num(s.replica_calls), s.routes.map((r) => `${r.target}/${r.reason}:${r.calls}`).join(','), s.fingerprint,
  ]));
}

export function versionRows(version: string): ConsoleReply {
  return rows(['version'], [[`pgsplit ${version}`]]);
}

export function helpRows(): ConsoleReply {
  return rows(['command', 'description'], COMMANDS.map(([c, d]) => [c, d]));
}
