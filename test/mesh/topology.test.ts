/**
 * The mesh's gossiped view (src/mesh/topology.ts) without sockets: peers as MeshTopology
 * objects that pass merge() results on to their neighbours until nothing is new.
 */
import { describe, expect, it } from "vitest";
import { checkEntry, MeshTopology, type PeerEntry } from "../../src/mesh/topology.js";

const uid = (i: number): string => i.toString(16).padStart(16, "0");
const addr = (name: string): string => `192.168.0.${Number(name.slice(1))}`;

/** A simulated mesh: each peer's established connections, flooded by gossip. */
class Sim {
  readonly t = new Map<string, MeshTopology>();
  private readonly links = new Set<string>();
  messages = 0;

  constructor(names: string[], start = 1000) {
    for (const [i, n] of names.entries()) this.t.set(n, new MeshTopology(n, uid(i + 1), [addr(n)], start));
  }

  private neigh(n: string): string[] {
    return [...this.t.keys()].filter((m) => this.links.has([n, m].sort().join("|")));
  }

  private announce(n: string): void {
    const conns = this.neigh(n).map((m) => ({ peer: m, addr: addr(m) }));
    this.flood(n, [this.t.get(n)?.setConnections(conns) as PeerEntry]);
  }

  /** Sends entries from n to its neighbours; whatever they take goes on. */
  flood(from: string, entries: PeerEntry[]): void {
    const queue: Array<[string, PeerEntry[]]> = [[from, entries]];
    while (queue.length > 0) {
      const [n, es] = queue.shift() as [string, PeerEntry[]];
      for (const m of this.neigh(n)) {
        this.messages++;
        const taken = this.t.get(m)?.merge(es.map((e) => structuredClone(e))) ?? [];
        if (taken.length > 0) queue.push([m, taken]);
      }
    }
  }

  link(a: string, b: string): void {
    this.links.add([a, b].sort().join("|"));
    // A new neighbour gets the whole view at once (both ways).
    this.flood(a, this.t.get(a)?.all() ?? []);
    this.flood(b, this.t.get(b)?.all() ?? []);
    this.announce(a);
    this.announce(b);
  }

  unlink(a: string, b: string): void {
    this.links.delete([a, b].sort().join("|"));
    this.announce(a);
    this.announce(b);
  }

  /** A peer gone without a word: its links drop, the neighbours announce. */
  kill(n: string): void {
    const ns = this.neigh(n);
    for (const m of ns) this.links.delete([n, m].sort().join("|"));
    this.t.delete(n);
    for (const m of ns) this.announce(m);
  }

  view(n: string): string[] {
    return [...(this.t.get(n)?.peers.keys() ?? [])].sort();
  }

  /** Who receives a broadcast from origin, following each peer's children for origin. */
  broadcast(origin: string): Map<string, number> {
    const got = new Map<string, number>();
    const queue = [origin];
    while (queue.length > 0) {
      const n = queue.shift() as string;
      for (const c of this.t.get(n)?.routes().children.get(origin) ?? []) {
        got.set(c, (got.get(c) ?? 0) + 1);
        if ((got.get(c) ?? 0) > 1) continue;
        queue.push(c);
      }
    }
    return got;
  }

  /** The path a unicast from a to b takes, next hop by next hop. */
  path(a: string, b: string): string[] {
    const out = [a];
    let at = a;
    while (at !== b && out.length < 20) {
      const hop = this.t.get(at)?.routes().nextHop.get(b);
      if (hop === undefined) return [...out, "unreachable"];
      out.push(hop);
      at = hop;
    }
    return out;
  }
}

describe("mesh topology", () => {
  it("a line of three converges; the ends route through the middle; broadcasts reach each peer once", () => {
    const s = new Sim(["n1", "n2", "n3"]);
    s.link("n1", "n2");
    s.link("n2", "n3");
    for (const n of ["n1", "n2", "n3"]) expect(s.view(n), n).toEqual(["n1", "n2", "n3"]);
    expect(s.path("n1", "n3")).toEqual(["n1", "n2", "n3"]);
    expect(s.t.get("n2")?.routes().children.get("n1")).toEqual(["n3"]);
    for (const o of ["n1", "n2", "n3"]) {
      const got = s.broadcast(o);
      expect([...got.keys()].sort()).toEqual(["n1", "n2", "n3"].filter((n) => n !== o));
      expect([...got.values()].every((c) => c === 1)).toBe(true);
    }
  });

  it("a connection only one end announces is not used", () => {
    const a = new MeshTopology("n1", uid(1), [], 10);
    a.setConnections([{ peer: "n2", addr: "192.168.0.2" }]);
    a.merge([{ name: "n2", uid: uid(2), version: 10, addresses: [], conns: [] }]);
    expect(a.routes().reachable.has("n2")).toBe(false);
    a.merge([{ name: "n2", uid: uid(2), version: 11, addresses: [], conns: [{ peer: "n1", addr: "192.168.0.1" }] }]);
    expect(a.routes().nextHop.get("n2")).toBe("n2");
  });

  it("50 peers in a ring with chords converge; every broadcast tree reaches every peer exactly once; a broken link is routed around", () => {
    const names = Array.from({ length: 50 }, (_, i) => `n${i + 1}`);
    const s = new Sim(names);
    for (let i = 0; i < 50; i++) s.link(names[i], names[(i + 1) % 50]);
    for (let i = 0; i < 50; i += 7) s.link(names[i], names[(i + 25) % 50]);
    for (const n of names) expect(s.view(n).length, n).toBe(50);
    for (const o of ["n1", "n17", "n50"]) {
      const got = s.broadcast(o);
      expect(got.size, o).toBe(49);
      expect(
        [...got.values()].filter((c) => c !== 1),
        o,
      ).toEqual([]);
    }
    // Every peer agrees on every path (same view, same tie-breaks): n1 -> n30 is loop-free.
    const p = s.path("n1", "n30");
    expect(new Set(p).size).toBe(p.length);
    expect(p.at(-1)).toBe("n30");
    s.unlink("n1", "n2");
    const q = s.path("n1", "n2");
    expect(q.at(-1)).toBe("n2");
    expect(q.length).toBeGreaterThan(2);
  });

  it("a killed peer is collected everywhere at the second collection; its stale entry cannot come back, its new life can", () => {
    const s = new Sim(["n1", "n2", "n3"]);
    s.link("n1", "n2");
    s.link("n2", "n3");
    const stale = structuredClone(s.t.get("n1")?.peers.get("n3") as PeerEntry);
    s.kill("n3");
    const t1 = s.t.get("n1") as MeshTopology;
    expect(t1.collect(5000)).toEqual([]);
    expect(t1.routes().reachable.has("n3")).toBe(false);
    expect(t1.collect(6000)).toEqual(["n3"]);
    expect(s.view("n1")).toEqual(["n1", "n2"]);
    // A neighbour that has not collected yet gossips the old entry back: refused.
    expect(t1.merge([stale])).toEqual([]);
    expect(s.view("n1")).toEqual(["n1", "n2"]);
    // The restarted peer (new UID, version from its later start) is taken.
    const next = { ...stale, uid: uid(99), version: stale.version + 5000, conns: [] };
    expect(t1.merge([next]).map((e) => e.uid)).toEqual([uid(99)]);
    // The tombstone expires after a minute.
    t1.peers.delete("n3");
    t1.collect(6000 + 61_000);
    expect(t1.merge([stale]).length).toBe(1);
  });

  it("an entry about ourselves that is not ours raises our version above it", () => {
    const a = new MeshTopology("n1", uid(1), [], 100);
    const taken = a.merge([{ name: "n1", uid: uid(7), version: 500, addresses: [], conns: [] }]);
    expect(a.me.uid).toBe(uid(1));
    expect(a.me.version).toBe(501);
    expect(taken).toEqual([a.me]);
    // An older life of ours with a lower version changes nothing.
    expect(a.merge([{ name: "n1", uid: uid(7), version: 3, addresses: [], conns: [] }])).toEqual([]);
  });

  it("checkEntry refuses what is not an entry", () => {
    const good = { name: "n1", uid: uid(1), version: 1, addresses: ["10.0.0.1"], conns: [{ peer: "n2", addr: "10.0.0.2" }] };
    expect(checkEntry(good)).toEqual(good);
    for (const bad of [
      null,
      "n1",
      { ...good, name: "Bad Name" },
      { ...good, uid: "zz" },
      { ...good, version: -1 },
      { ...good, version: 1.5 },
      { ...good, addresses: ["10.0.0.256"] },
      { ...good, addresses: "10.0.0.1" },
      { ...good, conns: [{ peer: "n2" }] },
      { ...good, conns: [null] },
    ])
      expect(checkEntry(bad), JSON.stringify(bad)).toBeNull();
  });
});
