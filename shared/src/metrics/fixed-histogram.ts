/**
 * A histogram with fixed bucket bounds for figures observed on the hot path (one per statement):
 * `observe` only adds to numbers allocated at construction, so it never allocates and builds no
 * label string (prom-client's own Histogram.observe does both on every call). It is read at scrape
 * time by `histogramFrom` (prometheus.ts). Pure.
 */
export class FixedHistogram {
  /** upper bounds, ascending (the `le` of each bucket; +Inf is implied) */
  readonly bounds: Float64Array;
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; counts[bounds.length]: above the last bound */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    if (bounds.length === 0) throw new Error("a histogram needs at least one bucket bound");
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]!) || (i > 0 && bounds[i]! <= bounds[i - 1]!)) throw new Error("histogram bounds must be finite and ascending");
    }
    this.bounds = Float64Array.from(bounds);
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    if (v !== v) return; // NaN: nothing to count
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }

  /** cumulative count of observations ≤ bounds[i] (Prometheus `_bucket{le}`) */
  cumulative(i: number): number {
    let n = 0;
    for (let j = 0; j <= i; j++) n += this.counts[j]!;
    return n;
  }
}

/** Bucket bounds in seconds from 50 µs to 10 s: per-statement and per-batch latencies. */
export const LATENCY_SECONDS_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Powers of two up to 4096: sizes such as events per audit batch. */
export const SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
