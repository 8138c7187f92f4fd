// Fixed-bucket counts of observed durations, cheap enough for the per-statement path; metrics render them as a Prometheus histogram.

export class BucketCounts {
  /** Observations per bucket (not cumulative): counts[i] holds values in (bounds[i-1], bounds[i]]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
  }

  /** Cumulative counts per upper bound, as Prometheus wants them (`le`), ending with +Inf. */
  cumulative(): { le: string; count: number }[] {
    const out: { le: string; count: number }[] = [];
    let running = 0;
    for (let i = 0; i < this.counts.length; i++) {
      running += this.counts[i];
      out.push({ le: i < this.bounds.length ? String(this.bounds[i]) : '+Inf', count: running });
    }
    return out;
  }
}
