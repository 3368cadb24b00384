import { describe, expect, it } from "vitest";
import { type CounterGroups, counters } from "../../src/core/element.js";
import { REASM_COUNTERS } from "../../src/elements/ipv4-reassembly.js";
import { REASM_FIRST, ROUTER_COUNTERS } from "../../src/elements/router/counters.js";

describe("counters()", () => {
  const S = counters({
    forward: { forwarded: "sent on", flooded: "sent to all" },
    drop: { runt: "too short" },
    event: { learned: "new entries" },
  });

  it("names the counters in the order declared, group by group, with ids to match", () => {
    expect(S.names).toEqual(["forwarded", "flooded", "runt", "learned"]);
    expect(S.id).toEqual({ forwarded: 0, flooded: 1, runt: 2, learned: 3 });
    expect(Object.isFrozen(S.id)).toBe(true);
  });

  it("gives each counter the kind of its group and its line of help", () => {
    expect(S.decls.flooded).toEqual({ kind: "forward", help: "sent to all" });
    expect(S.decls.runt).toEqual({ kind: "drop", help: "too short" });
    expect(S.ofKind("forward")).toEqual(["forwarded", "flooded"]);
    expect(S.ofKind("deliver")).toEqual([]);
  });

  it("reads values in declaration order", () => {
    const c = S.create();
    c[S.id.runt] = 3;
    c[S.id.learned] = 1;
    const read = S.read(c);
    expect(read).toEqual({ forwarded: 0, flooded: 0, runt: 3, learned: 1 });
    expect(Object.keys(read)).toEqual([...S.names]);
  });

  it("refuses a name declared in two groups and a group that is not a kind", () => {
    expect(() => counters({ drop: { runt: "a" }, event: { runt: "b" } })).toThrow(/counter runt declared twice/);
    expect(() => counters({ dorp: { runt: "a" } } as unknown as CounterGroups)).toThrow(/counter group dorp is not a kind/);
  });

  it("concat() puts another list after its own, in a row, and refuses a name in both", () => {
    const T = S.concat(counters({ deliver: { taken: "to us" }, event: { timeout: "expired" } }));
    expect(T.names).toEqual(["forwarded", "flooded", "runt", "learned", "taken", "timeout"]);
    expect(T.decls.taken.kind).toBe("deliver");
    expect(() => S.concat(counters({ event: { learned: "again" } }))).toThrow(/counter learned declared twice/);
  });

  it("the router holds the reassembler's counters in a row from REASM_FIRST", () => {
    expect(ROUTER_COUNTERS.names.slice(REASM_FIRST, REASM_FIRST + REASM_COUNTERS.names.length)).toEqual([...REASM_COUNTERS.names]);
    for (const n of REASM_COUNTERS.names) expect(ROUTER_COUNTERS.decls[n]).toEqual(REASM_COUNTERS.decls[n]);
  });
});
