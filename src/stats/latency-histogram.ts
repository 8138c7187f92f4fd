// Statement latencies in fixed logarithmic buckets, so that the histograms of several worker processes add up bucket by bucket and a p99 can be read from the sum.
//
// The bounds are the same in every process and never configured: 4 buckets per doubling from 1 µs up to about an
// hour (128 buckets), so a quantile read from them is at most 19% above the true value, and merging is adding.

/** Buckets per histogram; the last one also takes everything above its lower bound. */
export const LATENCY_BUCKETS = 128;
const PER_DOUBLING = 4;
/** Upper bound of bucket 0, in milliseconds (1 µs). */
const BASE_MS = 0.001;

/** The bucket a duration (ms) falls in: bucket i holds (upperBound(i-1), upperBound(i)]. */
export function bucketOf(ms: number): number {
  if (!(ms > BASE_MS)) return 0;
  const i = Math.ceil(Math.log2(ms / BASE_MS) * PER_DOUBLING);
  return i >= LATENCY_BUCKETS ? LATENCY_BUCKETS - 1 : i;
}

/** Upper bound of bucket i in milliseconds (Infinity for the last). */
export function upperBound(i: number): number {
  return i >= LATENCY_BUCKETS - 1 ? Infinity : BASE_MS * 2 ** (i / PER_DOUBLING);
}

/** A histogram as it crosses process boundaries: only the buckets that hold something, as [index, count] pairs. */
export interface LatencySnapshot {
  buckets: [number, number][];
  count: number;
  sumMs: number;
  minMs: number;
  maxMs: number;
}

export class LatencyHistogram {
  // Float64 rather than Uint32: a busy statement passes 2^32 calls within days.
  readonly counts = new Float64Array(LATENCY_BUCKETS);
  count = 0;
  sumMs = 0;
  minMs = Infinity;
  maxMs = 0;

  record(ms: number): void {
    // A clock that stepped back must not make a negative duration.
    if (!(ms >= 0)) ms = 0;
    this.counts[bucketOf(ms)]++;
    this.count++;
    this.sumMs += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /**
   * The q-quantile (0 < q <= 1): the upper bound of the bucket holding the rank-th smallest value, kept within
   * [min, max] — exact for a single value, never below the truth by more than the bucket's width. 0 when empty.
   */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < LATENCY_BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.maxMs, Math.max(this.minMs, upperBound(i)));
    }
    return this.maxMs;
  }

  /** Add another histogram's observations (another worker's, or a snapshot of one). */
  merge(other: LatencyHistogram | LatencySnapshot): void {
    if (other instanceof LatencyHistogram) {
      for (let i = 0; i < LATENCY_BUCKETS; i++) this.counts[i] += other.counts[i];
    } else {
      for (const [i, n] of other.buckets) if (i >= 0 && i < LATENCY_BUCKETS) this.counts[i] += n;
    }
    this.count += other.count;
    this.sumMs += other.sumMs;
    if (other.count > 0) {
      this.minMs = Math.min(this.minMs, other.minMs);
      this.maxMs = Math.max(this.maxMs, other.maxMs);
    }
  }

  snapshot(): LatencySnapshot {
    const buckets: [number, number][] = [];
    for (let i = 0; i < LATENCY_BUCKETS; i++) if (this.counts[i] > 0) buckets.push([i, this.counts[i]]);
    return { buckets, count: this.count, sumMs: this.sumMs, minMs: this.count > 0 ? this.minMs : 0, maxMs: this.maxMs };
  }
}
