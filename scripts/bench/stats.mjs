// Small statistics for scripts/bench.mjs: medians of repetitions, percentiles of RTTs.
// Pure functions, no I/O (test/bench.test.ts checks them).

const finite = (xs) => xs.filter((x) => typeof x === "number" && Number.isFinite(x));

/** Median of the finite numbers in `xs` (mean of the middle two for an even count); null if none. */
export function median(xs) {
  const v = finite(xs).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * The p-th percentile (0 < p <= 100) by nearest rank: the smallest sample with at least
 * p% of the samples at or below it (so p99 of 1000 samples is the 990th smallest, and
 * is always a measured value). null if there are no samples.
 */
export function percentile(xs, p) {
  const v = finite(xs).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * v.length));
  return v[Math.min(rank, v.length) - 1];
}

/** a / b when both are positive numbers, else null. */
export function ratio(a, b) {
  return typeof a === "number" && typeof b === "number" && a > 0 && b > 0 ? a / b : null;
}
