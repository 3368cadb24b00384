/**
 * Growing the typed arrays that tables keep per slot or per port (struct of arrays):
 * a new array, the old values first, the new entries set to a fill value. Tables grow
 * between passes or on a configuration change, never per packet.
 */
type Typed = Uint8Array | Uint16Array | Int32Array | Uint32Array | Float64Array;

/** A copy of `a` with `n` entries (n >= a.length): a's values, then `fill`. */
export function grown<T extends Typed>(a: T, n: number, fill = 0): T {
  const b = new (a.constructor as new (length: number) => T)(n);
  b.set(a);
  if (fill !== 0) b.fill(fill, a.length);
  return b;
}

/** grown() to hold index `i`: at least twice a's length, so that growing one index at a time stays amortised O(1). */
export function grownFor<T extends Typed>(a: T, i: number, fill = 0): T {
  return grown(a, Math.max(i + 1, a.length * 2), fill);
}
