// Per normalized statement: calls, where they ran and why, time (total, mean, p99), rows and errors — one bounded table per process, merged across workers for display.
import { LatencyHistogram, type LatencySnapshot } from './latency-histogram.js';

export type RouteTarget = 'primary' | 'replica';

/** What a normalized statement is known by: its fingerprint, and the text shown for it (constants blanked, clipped). */
export interface StatementKey {
  readonly id: string;
  readonly text: string;
}

/** One statement as GET /statements and the admin console show it (times in milliseconds). */
export interface StatementRow {
  fingerprint: string;
  /** The first text seen with this fingerprint, constants shown as ?, at most STATEMENT_TEXT_BYTES bytes. */
  query: string;
  calls: number;
  /** Calls that ended in an ErrorResponse (they count in calls and time too). */
  errors: number;
  /** From CommandComplete tags: rows returned (SELECT, FETCH) or changed (INSERT, UPDATE, DELETE, MERGE, COPY). */
  rows: number;
  total_ms: number;
  mean_ms: number;
  min_ms: number;
  max_ms: number;
  /** From the latency buckets: at most 19% above the true p99. */
  p99_ms: number;
  primary_calls: number;
  replica_calls: number;
  /** Calls by where they ran and the routing reason, most first. */
  routes: { target: RouteTarget; reason: string; calls: number }[];
}

/** A table as a worker sends it to its coordinator. */
export interface StatementsSnapshot {
  entries: {
    id: string;
    text: string;
    calls: number;
    errors: number;
    rows: number;
    usage: number;
    latency: LatencySnapshot;
    routes: [RouteTarget, string, number][];
  }[];
  evictions: number;
}

/** Text kept per statement, in UTF-8 bytes. */
export const STATEMENT_TEXT_BYTES = 1024;
export const DEFAULT_MAX_STATEMENTS = 1000;
/** When the table is full this share of it (at least one entry) is dropped at once, the least used first, so that eviction is rare. */
const EVICT_SHARE = 0.05;
/** At each eviction, past use counts for a little less, so a statement busy long ago does not stay for ever. */
const USAGE_DECAY = 0.99;

/** `text` cut to at most `bytes` UTF-8 bytes, never inside a character. */
export function clipText(text: string, bytes = STATEMENT_TEXT_BYTES): string {
  if (text.length * 3 <= bytes || Buffer.byteLength(text, 'utf8') <= bytes) return text;
  let s = Buffer.from(text, 'utf8').subarray(0, bytes).toString('utf8');
  // A character cut in half decodes as U+FFFD at the end.
  if (s.endsWith('\ufffd')) s = s.slice(0, -1);
  return s;
}

class Entry {
  calls = 0;
  errors = 0;
  rows = 0;
  /** Calls, decayed at each eviction: what "least used" means. */
  usage = 0;
  readonly latency = new LatencyHistogram();
  readonly primary = new Map<string, number>();
  readonly replica = new Map<string, number>();

  constructor(
    readonly id: string,
    readonly text: string,
  ) {}
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

function rowOf(e: Entry): StatementRow {
  const routes: StatementRow['routes'] = [];
  let primary = 0;
  let replica = 0;
  for (const [reason, calls] of e.primary) {
    routes.push({ target: 'primary', reason, calls });
    primary += calls;
  }
  for (const [reason, calls] of e.replica) {
    routes.push({ target: 'replica', reason, calls });
    replica += calls;
  }
  routes.sort((a, b) => b.calls - a.calls);
  const h = e.latency;
  return {
    fingerprint: e.id,
    query: e.text,
    calls: e.calls,
    errors: e.errors,
    rows: e.rows,
    total_ms: round3(h.sumMs),
    mean_ms: round3(h.count > 0 ? h.sumMs / h.count : 0),
    min_ms: round3(h.count > 0 ? h.minMs : 0),
    max_ms: round3(h.maxMs),
    p99_ms: round3(h.quantile(0.99)),
    primary_calls: primary,
    replica_calls: replica,
    routes,
  };
}

export class StatementStats {
  private readonly entries = new Map<string, Entry>();
  /** Statements dropped to make room since the last reset. */
  evictions = 0;

  /** `max`: distinct statements kept (stats.max_statements); may change on reload. */
  constructor(public max: number = DEFAULT_MAX_STATEMENTS) {}

  get size(): number {
    return this.entries.size;
  }

  /** One call of `key`: `ms` from sending it to its answer, `rows` from its CommandComplete, `failed` on an ErrorResponse. */
  record(key: StatementKey, target: RouteTarget, reason: string, ms: number, rows: number, failed: boolean): void {
    let e = this.entries.get(key.id);
    if (e === undefined) e = this.insert(key.id, key.text);
    e.calls++;
    e.usage++;
    if (failed) e.errors++;
    e.rows += rows;
    e.latency.record(ms);
    const m = target === 'primary' ? e.primary : e.replica;
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }

  /** Every statement, the most total time first; at most `limit` of them. */
  rows(limit = Infinity): StatementRow[] {
    return topRows(this.entries.values(), limit);
  }

  reset(): void {
    this.entries.clear();
    this.evictions = 0;
  }

  snapshot(): StatementsSnapshot {
    const entries: StatementsSnapshot['entries'] = [];
    for (const e of this.entries.values()) {
      const routes: [RouteTarget, string, number][] = [];
      for (const [reason, n] of e.primary) routes.push(['primary', reason, n]);
      for (const [reason, n] of e.replica) routes.push(['replica', reason, n]);
      entries.push({ id: e.id, text: e.text, calls: e.calls, errors: e.errors, rows: e.rows, usage: e.usage, latency: e.latency.snapshot(), routes });
    }
    return { entries, evictions: this.evictions };
  }

  /** Add a snapshot's counts (another worker's table) into this one, bounded by `max` like any insertion. */
  merge(s: StatementsSnapshot): void {
    for (const x of s.entries) {
      let e = this.entries.get(x.id);
      if (e === undefined) e = this.insert(x.id, x.text);
      e.calls += x.calls;
      e.errors += x.errors;
      e.rows += x.rows;
      e.usage += x.usage;
      e.latency.merge(x.latency);
      for (const [target, reason, n] of x.routes) {
        const m = target === 'primary' ? e.primary : e.replica;
        m.set(reason, (m.get(reason) ?? 0) + n);
      }
    }
    this.evictions += s.evictions;
  }

  private insert(id: string, text: string): Entry {
    if (this.entries.size >= this.max) this.evict();
    const e = new Entry(id, text);
    this.entries.set(id, e);
    return e;
  }

  /** Make room for one more: drop the least used (oldest first among equals), a share of the table at a time. */
  private evict(): void {
    const all = [...this.entries.values()];
    for (const e of all) e.usage *= USAGE_DECAY;
    // Stable sort: among equally used entries the ones inserted first go first.
    all.sort((a, b) => a.usage - b.usage);
    const n = Math.min(all.length, Math.max(1, Math.ceil(this.max * EVICT_SHARE), all.length - this.max + 1));
    for (let i = 0; i < n; i++) this.entries.delete(all[i].id);
    this.evictions += n;
  }
}

function topRows(entries: Iterable<Entry>, limit: number): StatementRow[] {
  const all = [...entries];
  all.sort((a, b) => b.latency.sumMs - a.latency.sumMs || b.calls - a.calls);
  return all.slice(0, Math.max(0, limit)).map(rowOf);
}

/**
 * Several processes' tables as one (workers: N): a statement's counts, times and latency buckets add up across
 * workers. Nothing is dropped while merging (each table is bounded already, and a statement busy in one worker
 * only must not lose to one spread over all): the most total time first, at most `limit`.
 */
export function mergeStatements(snapshots: readonly StatementsSnapshot[], limit = Infinity): StatementRow[] {
  const t = new StatementStats(Infinity);
  for (const s of snapshots) t.merge(s);
  return t.rows(limit);
}
