/**
 * Calico's BGP mode with BIRD as route reflector (calico-bgp-rr lab): the nodes peer only
 * with rr1, which reflects each node's pod block to the others (RFC 4456) with the
 * originating node kept as next hop, so pod traffic goes node to node without a mesh.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor } from "./harness.js";

const LAB = "calico-bgp-rr";
const FILE = path.join(ROOT, "scripts/labs/calico-bgp-rr.yaml");
const CTL = `/run/tapnet/${LAB}/rr1.bird.ctl`;
const ns = (n: string): string => `tn.${LAB}.${n}`;
const NODES = ["node1", "node2", "node3"];

function birdc(...args: string[]): string {
  const r = inNs(ns("rr1"), ["birdc", "-s", CTL, ...args]);
  if (r.status !== 0) throw new Error(`birdc ${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}
const birdState = (name: string): string | undefined =>
  birdc("show", "protocols")
    .split("\n")
    .find((l) => l.startsWith(`${name} `))
    ?.trim()
    .split(/\s+/)[5];
const peers = (node: string): Array<{ name: string; state: string }> =>
  (JSON.parse(tapnetOk(["show", "bgp", "--node", node, "--lab", LAB, "--json"])) as { peers: Array<{ name: string; state: string }> }).peers;
const route = (node: string, prefix: string): { via: string | null; kind: string } | undefined =>
  (JSON.parse(tapnetOk(["show", "route", "--node", node, "--lab", LAB, "--json"])) as Array<{ prefix: string; via: string | null; kind: string }>).find(
    (r) => r.prefix === prefix,
  );

describe.skipIf(!canRunLabs())("calico-bgp-rr lab: BIRD reflects the nodes' routes, no node-to-node mesh", () => {
  beforeAll(() => {
    tapnet(["lab", "down", FILE]);
    tapnetOk(["lab", "up", FILE, "-q"]);
  }, 180_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", FILE]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("each node has one session, with the reflector, Established on both sides", async () => {
    for (const n of NODES) {
      await waitFor(`BIRD's session with ${n} Established`, () => birdState(n) === "Established", 60_000, 200);
      const ps = await waitFor(
        `${n}'s session Established`,
        () => {
          const p = peers(n);
          return p.every((x) => x.state === "Established") ? p : undefined;
        },
        60_000,
        200,
      );
      expect(ps.map((p) => p.name)).toEqual(["rr1"]);
    }
  }, 150_000);

  it("every node learns the others' pod blocks through rr1 with the originating node as next hop, and pods ping across", async () => {
    for (const [i, n] of NODES.entries()) {
      for (const [j] of NODES.entries()) {
        if (i === j) continue;
        const r = await waitFor(`${n}: 10.244.${j + 1}.0/24`, () => route(n, `10.244.${j + 1}.0/24`), 30_000, 200);
        expect(r).toMatchObject({ via: `192.168.0.${j + 1}`, kind: "bgp" });
      }
    }
    // The reflector's own view: one route per node, learned from that node.
    const out = birdc("show", "route");
    for (const [i, n] of NODES.entries())
      expect(out).toMatch(new RegExp(`10\\.244\\.${i + 1}\\.0/24\\s+unicast \\[${n} [^\\n]*\\n\\s+via 192\\.168\\.0\\.${i + 1} `));
    for (const [from, to] of [
      ["pod1a", "10.244.2.2"],
      ["pod2a", "10.244.3.2"],
      ["pod3a", "10.244.1.2"],
    ]) {
      const r = ping(ns(from), to, 2, ["-W", "3"]);
      expect(r.status, `${from} -> ${to}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 120_000);
});
