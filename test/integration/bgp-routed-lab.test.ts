/**
 * Calico's BGP mode across a routed underlay (calico-bgp-routed lab: node1 and node3 on
 * 192.168.1.0/24, node2 on 192.168.2.0/24, behind the kernel router ur). Plain BGP mode
 * fails between the subnets; both of Calico's cures work: ur running BIRD and peering
 * with the nodes, or IPIP CrossSubnet. The cures are the lab file with its `overlay:`
 * line changed (lab names changed too, so each runs on its own). IPIP Always, for contrast
 * with CrossSubnet, puts the route within the subnet into tunl0 too.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const BASE = fs.readFileSync(path.join(ROOT, "scripts/labs/calico-bgp-routed.yaml"), "utf8");
const OVERLAY = "overlay: { backend: bgp, holdTime: 9, connectRetryTime: 2 }";
if (!BASE.includes(OVERLAY)) throw new Error("calico-bgp-routed.yaml's overlay line changed: update this test");

function variant(lab: string, overlay: string): string {
  return writeLabFile(lab, BASE.replace("name: calico-bgp-routed", `name: ${lab}`).replace(OVERLAY, `overlay: ${overlay}`));
}

interface Peer {
  name: string;
  state: string;
  received: number;
  accepted: number;
}
const peers = (lab: string, node: string): Peer[] => (JSON.parse(tapnetOk(["show", "bgp", "--node", node, "--lab", lab, "--json"])) as { peers: Peer[] }).peers;
const routes = (lab: string, node: string): Array<{ prefix: string; via: string | null; dev: string; kind: string }> =>
  JSON.parse(tapnetOk(["show", "route", "--node", node, "--lab", lab, "--json"]));
const route = (lab: string, node: string, prefix: string) => routes(lab, node).find((r) => r.prefix === prefix);
const NODES = ["node1", "node2", "node3"];

/** Brings `file` up for the describe block, and down (checked) after it. */
function useLab(file: string, lab: string): void {
  beforeAll(async () => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
    for (const n of NODES) {
      await waitFor(
        `${lab}: ${n}'s sessions Established`,
        () => {
          const ps = peers(lab, n);
          return ps.length > 0 && ps.every((p) => p.state === "Established");
        },
        60_000,
        200,
      );
    }
  }, 180_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${lab}.`))).toEqual([]);
  });
}

describe.skipIf(!canRunLabs())("calico-bgp-routed: plain BGP mode across subnets fails", () => {
  const lab = "calico-bgp-routed";
  useLab(path.join(ROOT, "scripts/labs/calico-bgp-routed.yaml"), lab);

  it("the mesh is up, but a next hop on another subnet does not resolve: no route, and ur has none either", async () => {
    // node3 (same subnet as node1) has node1's block installed: updates flowed.
    await waitFor("node3: 10.244.1.0/24", () => route(lab, "node3", "10.244.1.0/24"), 30_000, 200);
    const fromNode2 = await waitFor("node1 has node2's UPDATE", () => peers(lab, "node1").find((p) => p.name === "node2" && p.received === 1), 30_000, 200);
    expect(fromNode2.accepted).toBe(0);
    expect(route(lab, "node1", "10.244.2.0/24")).toBeUndefined();
    expect(inNs(`tn.${lab}.ur`, ["ip", "route", "show", "10.244.2.0/24"]).stdout.trim()).toBe("");
    expect(ping(`tn.${lab}.pod1a`, "10.244.3.2", 2, ["-W", "3"]).status).toBe(0);
    // Into the default route, to ur, which has no route for pods.
    expect(ping(`tn.${lab}.pod1a`, "10.244.2.2", 2, ["-W", "2"]).status).not.toBe(0);
  }, 90_000);
});

describe.skipIf(!canRunLabs())("calico-bgp-routed, cure 1: the underlay router runs BIRD and peers with the nodes", () => {
  const lab = "cbgp-routed-bird";
  const ctl = `/run/tapnet/${lab}/ur.bird.ctl`;
  useLab(variant(lab, "{ backend: bgp, holdTime: 9, connectRetryTime: 2, bird: { ur: {} } }"), lab);

  it("BIRD learns every pod block, puts it in ur's kernel, and pods ping across the subnets", async () => {
    const birdRoutes = await waitFor(
      "BIRD on ur: the three pod blocks",
      () => {
        const r = inNs(`tn.${lab}.ur`, ["birdc", "-s", ctl, "show", "route"]);
        return [1, 2, 3].every((i) => r.stdout.includes(`10.244.${i}.0/24`)) ? r.stdout : undefined;
      },
      30_000,
      200,
    );
    expect(birdRoutes).toMatch(/10\.244\.2\.0\/24\s+unicast \[node2 [^\n]*\n\s+via 192\.168\.2\.2 on net2/);
    await waitFor(
      "ur's kernel: 10.244.2.0/24 via 192.168.2.2",
      () => inNs(`tn.${lab}.ur`, ["ip", "route", "show", "10.244.2.0/24"]).stdout.includes("via 192.168.2.2"),
      30_000,
      200,
    );
    for (const [from, to] of [
      ["pod1a", "10.244.2.2"],
      ["pod2a", "10.244.3.2"],
    ]) {
      const r = ping(`tn.${lab}.${from}`, to, 2, ["-W", "3"]);
      expect(r.status, `${from} -> ${to}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 90_000);
});

describe.skipIf(!canRunLabs())("calico-bgp-routed, cure 2: IPIP CrossSubnet", () => {
  const lab = "cbgp-routed-ipip";
  useLab(variant(lab, "{ backend: bgp-ipip, ipipMode: CrossSubnet, holdTime: 9, connectRetryTime: 2 }"), lab);

  it("routes across subnets go into tunl0, within the subnet direct; pods ping both ways", async () => {
    const across = await waitFor("node1: 10.244.2.0/24", () => route(lab, "node1", "10.244.2.0/24"), 30_000, 200);
    expect(across).toMatchObject({ via: "192.168.2.2", dev: "tunl0", kind: "bgp" });
    const within = await waitFor("node1: 10.244.3.0/24", () => route(lab, "node1", "10.244.3.0/24"), 30_000, 200);
    expect(within).toMatchObject({ via: "192.168.1.3", dev: "ul0", kind: "bgp" });
    const tunnel = (node: string): number =>
      (JSON.parse(tapnetOk(["show", "tunnels", "--node", node, "--lab", lab, "--json"])) as Array<{ counters: Record<string, number> }>)[0].counters
        .encapsulated;
    const before = tunnel("node1");
    const r = ping(`tn.${lab}.pod1a`, "10.244.2.2", 2, ["-W", "3"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(tunnel("node1")).toBeGreaterThanOrEqual(before + 2);
    // Within the subnet no tunnel: the count stays.
    const mid = tunnel("node1");
    expect(ping(`tn.${lab}.pod1a`, "10.244.3.2", 2, ["-W", "3"]).status).toBe(0);
    expect(tunnel("node1")).toBe(mid);
  }, 90_000);
});

describe.skipIf(!canRunLabs())("calico-bgp-routed, IPIP Always: every route into tunl0, within the subnet too", () => {
  const lab = "cbgp-routed-always";
  useLab(variant(lab, "{ backend: bgp-ipip, ipipMode: Always, holdTime: 9, connectRetryTime: 2 }"), lab);

  it("routes to nodes on either subnet go into tunl0, and pods ping through it both ways", async () => {
    const across = await waitFor("node1: 10.244.2.0/24", () => route(lab, "node1", "10.244.2.0/24"), 30_000, 200);
    expect(across).toMatchObject({ via: "192.168.2.2", dev: "tunl0", kind: "bgp" });
    const within = await waitFor("node1: 10.244.3.0/24", () => route(lab, "node1", "10.244.3.0/24"), 30_000, 200);
    expect(within).toMatchObject({ via: "192.168.1.3", dev: "tunl0", kind: "bgp" });
    const tunnel = (node: string): number =>
      (JSON.parse(tapnetOk(["show", "tunnels", "--node", node, "--lab", lab, "--json"])) as Array<{ counters: Record<string, number> }>)[0].counters
        .encapsulated;
    for (const [to, node] of [
      ["10.244.2.2", "node2"],
      ["10.244.3.2", "node3"],
    ]) {
      const before = tunnel("node1");
      const back = tunnel(node);
      const r = ping(`tn.${lab}.pod1a`, to, 2, ["-W", "3"]);
      expect(r.status, `pod1a -> ${to}: ${r.stdout}${r.stderr}`).toBe(0);
      // Requests encapsulated by node1, replies by the node of the pod that answered.
      expect(tunnel("node1")).toBeGreaterThanOrEqual(before + 2);
      expect(tunnel(node)).toBeGreaterThanOrEqual(back + 2);
    }
  }, 90_000);
});
