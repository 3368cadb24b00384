/** src/core/grow.ts: typed arrays grown with their values kept and the new entries filled. */
import { describe, expect, it } from "vitest";
import { grown, grownFor } from "../../src/core/grow.js";

describe("grown", () => {
  it("keeps the values and the array type, fills the new entries", () => {
    const a = Int32Array.from([5, -7, 9]);
    const b = grown(a, 6, -1);
    expect(b).toBeInstanceOf(Int32Array);
    expect([...b]).toEqual([5, -7, 9, -1, -1, -1]);
    expect([...a]).toEqual([5, -7, 9]); // the old one untouched
    const f = grown(Float64Array.from([0.5]), 3);
    expect(f).toBeInstanceOf(Float64Array);
    expect([...f]).toEqual([0.5, 0, 0]);
  });

  it("grownFor holds the index and at least doubles", () => {
    const u = Uint8Array.from([1, 2, 3, 4]);
    expect(grownFor(u, 4).length).toBe(8);
    expect(grownFor(u, 20).length).toBe(21);
    expect([...grownFor(u, 5, 7)]).toEqual([1, 2, 3, 4, 7, 7, 7, 7]);
  });
});
