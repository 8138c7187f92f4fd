// The last minutes of the cluster for the status page (GET /history): a bounded ring of samples — each node's up, banned, lag and role, the primary, reads and writes per second. Pure: the caller brings the time and the numbers.

/** One node as a sample records it (taken from the /status document, so the page's charts agree with its table). */
export interface NodeSample {
  name: string;
  role: string;
  up: boolean;
  banned: boolean;
  lag_bytes: number | null;
  lag_seconds: number | null;
}

/** Counters that only grow while the process runs: statements routed as reads and as writes since start. */
export interface RoutedCounters {
  reads: number;
  writes: number;
}

interface Sample {
  at: number;
  primary: string | null;
  readsPerSecond: number | null;
  writesPerSecond: number | null;
  nodes: NodeSample[];
}

/** What GET /history serves: columns of equal length, oldest first; a node absent from a sample (added or removed by a reload) has null there. */
export interface HistoryView {
  interval_ms: number;
  capacity: number;
  at: number[];
  primary: (string | null)[];
  reads_per_second: (number | null)[];
  writes_per_second: (number | null)[];
  nodes: {
    name: string;
    role: (string | null)[];
    up: (boolean | null)[];
    banned: (boolean | null)[];
    lag_bytes: (number | null)[];
    lag_seconds: (number | null)[];
  }[];
}

/** Rates keep two decimals: the page shows them, nothing computes with them. */
const rate = (delta: number, seconds: number): number => Math.round((delta / seconds) * 100) / 100;

export class History {
  private readonly ring: (Sample | undefined)[];
  /** Where the next sample goes; once the ring is full, also the oldest sample. */
  private next = 0;
  private size = 0;
  private previous: { at: number; counters: RoutedCounters } | null = null;

  /** `capacity` samples taken every `intervalMs` (the interval is only reported, the caller keeps the time). */
  constructor(readonly capacity: number, readonly intervalMs: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`history capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array<Sample | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  /**
   * A sample at `at` (ms since the epoch). The rates are the counters' growth since the previous sample; the first sample, one
   * taken no later than the previous, and one after counters went down (they were reset) have none rather than a wrong one.
   */
  add(at: number, primary: string | null, counters: RoutedCounters, nodes: readonly NodeSample[]): void {
    let readsPerSecond: number | null = null;
    let writesPerSecond: number | null = null;
    const p = this.previous;
    if (p !== null && at > p.at && counters.reads >= p.counters.reads && counters.writes >= p.counters.writes) {
      const seconds = (at - p.at) / 1000;
      readsPerSecond = rate(counters.reads - p.counters.reads, seconds);
      writesPerSecond = rate(counters.writes - p.counters.writes, seconds);
    }
    this.previous = { at, counters: { reads: counters.reads, writes: counters.writes } };
    this.ring[this.next] = { at, primary, readsPerSecond, writesPerSecond, nodes: nodes.map((n) => ({ ...n })) };
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /** The samples, oldest first. */
  private samples(): Sample[] {
    const out: Sample[] = [];
    const start = this.size < this.capacity ? 0 : this.next;
    for (let i = 0; i < this.size; i++) out.push(this.ring[(start + i) % this.capacity]!);
    return out;
  }

  view(): HistoryView {
    const samples = this.samples();
    // Nodes in the order they first appear; a Map, so a node called "__proto__" is just a name.
    const byName = new Map<string, HistoryView['nodes'][number]>();
    const empty = () => samples.map(() => null);
    samples.forEach((s, i) => {
      for (const n of s.nodes) {
        let col = byName.get(n.name);
        if (col === undefined) {
          col = { name: n.name, role: empty(), up: empty(), banned: empty(), lag_bytes: empty(), lag_seconds: empty() };
          byName.set(n.name, col);
        }
        col.role[i] = n.role;
        col.up[i] = n.up;
        col.banned[i] = n.banned;
        col.lag_bytes[i] = n.lag_bytes;
        col.lag_seconds[i] = n.lag_seconds;
      }
    });
    return {
      interval_ms: this.intervalMs,
      capacity: this.capacity,
      at: samples.map((s) => s.at),
      primary: samples.map((s) => s.primary),
      reads_per_second: samples.map((s) => s.readsPerSecond),
      writes_per_second: samples.map((s) => s.writesPerSecond),
      nodes: [...byName.values()],
    };
  }
}

/** Statements routed since start, split as the page shows them: reads (on replicas, plus reads that fell back to the primary) and writes (the rest of what the primary ran). */
export function routedCounters(routes: { primary: ReadonlyMap<string, number>; replica: ReadonlyMap<string, number> }, readsOnPrimary: number): RoutedCounters {
  let primary = 0;
  let replica = 0;
  for (const n of routes.primary.values()) primary += n;
  for (const n of routes.replica.values()) replica += n;
  return { reads: replica + readsOnPrimary, writes: Math.max(0, primary - readsOnPrimary) };
}

/** The nodes of a /status document (an unknown value: the document is built elsewhere and may grow), as samples. */
export function nodeSamples(status: unknown): { primary: string | null; nodes: NodeSample[] } {
  const doc = (status ?? {}) as { primary?: unknown; nodes?: unknown };
  const list = Array.isArray(doc.nodes) ? (doc.nodes as Record<string, unknown>[]) : [];
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    primary: typeof doc.primary === 'string' ? doc.primary : null,
    nodes: list
      .filter((n) => n !== null && typeof n === 'object' && typeof n.name === 'string')
      .map((n) => ({
        name: n.name as string,
        role: typeof n.role === 'string' ? n.role : 'unknown',
        up: n.up === true,
        banned: n.banned === true,
        lag_bytes: num(n.lag_bytes),
        lag_seconds: num(n.lag_seconds),
      })),
  };
}
