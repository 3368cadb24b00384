/** Topology files with an etcd cluster and flannel agents: what is accepted, what is refused and where. */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { flannelConfigJson } from "../../src/lab/etcd.js";
import { parseTopology, TopologyError } from "../../src/lab/topology.js";

const labs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../scripts/labs");

function problems(yaml: string): string {
  try {
    parseTopology(yaml, "lab.yaml");
  } catch (e) {
    if (e instanceof TopologyError) return e.message;
    throw e;
  }
  return "";
}

const base = (etcd: string, node1: string, backend = "vxlan"): string =>
  [
    "name: t",
    "underlay: { segments: { net: {} } }",
    `overlay: { backend: ${backend} }`,
    etcd,
    "nodes:",
    `  node1: { underlay: { segment: net, address: 192.168.0.1/24 }, podCidr: 10.244.1.0/24, ${node1} }`,
    "  node2: { underlay: { segment: net, address: 192.168.0.2/24 }, podCidr: 10.244.2.0/24, agent: flannel }",
    "",
  ].join("\n");
const ETCD = "etcd: { segment: net, members: { etcd1: 192.168.0.11/24 }, network: 10.244.0.0/16 }";

describe("etcd and agents in topology files", () => {
  it("scripts/labs/flannel-etcd.yaml: agent nodes get their VXLAN port and interfaces but no peers from the file", () => {
    const t = parseTopology(fs.readFileSync(path.join(labs, "flannel-etcd.yaml"), "utf8"), "flannel-etcd.yaml");
    for (const n of ["node1", "node2", "node3"]) {
      const s = t.nodes[n];
      expect(s.agent).toBe("flannel");
      expect(s.vxlan.vxlan0.fdb).toEqual([]);
      expect(s.routes).toEqual([]);
      expect(s.neighbors).toEqual([]);
      expect(Object.keys(s.interfaces).sort()).toEqual(["cni0", "flannel.1"]);
    }
    expect(t.etcd?.leaseTtl).toBe(15);
    expect(JSON.parse(flannelConfigJson(t))).toEqual({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 1, Port: 8472 } });
  });

  it("directRouting: the config says DirectRouting; the router shares ul0; static peers on the subnet get a direct route, the rest VXLAN", () => {
    const t = parseTopology(fs.readFileSync(path.join(labs, "flannel-etcd-routed.yaml"), "utf8"), "flannel-etcd-routed.yaml");
    expect(JSON.parse(flannelConfigJson(t))).toEqual({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 1, Port: 8472, DirectRouting: true } });
    expect(t.nodes.node1.interfaces.ul0).toMatchObject({ port: "underlay", address: "192.168.1.2/24" });
    expect(t.nodes.node1.routes).toEqual([]); // agent nodes: peers come from etcd
    const yaml = [
      "name: t",
      "underlay: { segments: { a: {}, b: {} }, routers: { r: { a: 192.168.1.1/24, b: 192.168.2.1/24 } } }",
      "overlay: { backend: vxlan, directRouting: true }",
      "nodes:",
      "  n1: { underlay: { segment: a, address: 192.168.1.2/24, gateway: 192.168.1.1 }, podCidr: 10.244.1.0/24 }",
      "  n2: { underlay: { segment: b, address: 192.168.2.2/24, gateway: 192.168.2.1 }, podCidr: 10.244.2.0/24 }",
      "  n3: { underlay: { segment: a, address: 192.168.1.3/24, gateway: 192.168.1.1 }, podCidr: 10.244.3.0/24 }",
      "",
    ].join("\n");
    const s = parseTopology(yaml, "lab.yaml").nodes.n1;
    expect(s.routes.map((r) => `${r.to} via ${r.via}${r.dev ? ` dev ${r.dev}` : ""}`).sort()).toEqual([
      "10.244.2.0/24 via 10.244.2.0 dev flannel.1",
      "10.244.3.0/24 via 192.168.1.3",
    ]);
    expect(s.vxlan.vxlan0.fdb.map((f) => f.remote)).toEqual(["192.168.2.2"]);
    expect(s.neighbors.map((n) => n.ip)).toEqual(["10.244.2.0"]);
    expect(problems(yaml.replace("backend: vxlan", "backend: host-gw"))).toMatch(
      /overlay\.directRouting: flannel's DirectRouting is a vxlan option; backend host-gw has none/,
    );
  });

  it("scripts/labs/host-gw-etcd.yaml parses; its config says host-gw", () => {
    const t = parseTopology(fs.readFileSync(path.join(labs, "host-gw-etcd.yaml"), "utf8"), "host-gw-etcd.yaml");
    expect(JSON.parse(flannelConfigJson(t))).toEqual({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
    expect(t.nodes.node1.routes).toEqual([]);
  });

  it.each([
    ["an agent without etcd", base("", "agent: flannel"), /nodes\.node1\.agent: an agent needs the lab's etcd/],
    [
      "two members",
      base("etcd: { segment: net, members: { e1: 192.168.0.11/24, e2: 192.168.0.12/24 }, network: 10.244.0.0/16 }", "agent: flannel"),
      /etcd\.members: an etcd cluster has 1, 3 or 5 members/,
    ],
    [
      "an unknown segment",
      base("etcd: { segment: nope, members: { etcd1: 192.168.0.11/24 }, network: 10.244.0.0/16 }", "agent: flannel"),
      /etcd\.segment: unknown segment 'nope' \(underlay\.segments: net\)/,
    ],
    [
      "a member named like a node",
      base("etcd: { segment: net, members: { node2: 192.168.0.11/24 }, network: 10.244.0.0/16 }", "agent: flannel"),
      /etcd\.members\.node2: 'node2' is already a node/,
    ],
    [
      "a bad prefix",
      base("etcd: { segment: net, members: { etcd1: 192.168.0.11/24 }, network: 10.244.0.0/16, prefix: nope/ }", "agent: flannel"),
      /etcd\.prefix: a key prefix like \/coreos\.com\/network/,
    ],
    [
      "a host-gw agent without control",
      base(ETCD, "agent: flannel, control: 192.168.0.101/24", "host-gw"),
      /nodes\.node2\.agent: host-gw: node node2's underlay address is its router's/,
    ],
    [
      "control off the members' subnet",
      base(ETCD, "agent: flannel, control: 10.1.0.1/24", "host-gw"),
      /nodes\.node1\.control: 10\.1\.0\.1\/24 is not on the etcd members' subnet/,
    ],
    [
      "a member on a node's address",
      base("etcd: { segment: net, members: { etcd1: 192.168.0.2/24 }, network: 10.244.0.0/16 }", "agent: flannel"),
      /etcd\.members\.etcd1: 192\.168\.0\.2 is already node node2's underlay address/,
    ],
    [
      "two members on one address",
      base("etcd: { segment: net, members: { e1: 192.168.0.11/24, e2: 192.168.0.11/24, e3: 192.168.0.13/24 }, network: 10.244.0.0/16 }", "agent: flannel"),
      /etcd\.members\.e2: 192\.168\.0\.11 is already etcd member e1's address/,
    ],
    [
      "a podCidr outside the network",
      base("etcd: { segment: net, members: { etcd1: 192.168.0.11/24 }, network: 10.96.0.0/16 }", "agent: flannel"),
      /nodes\.node1\.podCidr: 10\.244\.1\.0\/24 is not a \/24 of etcd\.network 10\.96\.0\.0\/16/,
    ],
    [
      "a podCidr of another length than subnetLen",
      base("etcd: { segment: net, members: { etcd1: 192.168.0.11/24 }, network: 10.244.0.0/16, subnetLen: 25 }", "agent: flannel"),
      /nodes\.node2\.podCidr: 10\.244\.2\.0\/24 is not a \/25 of etcd\.network/,
    ],
    ["an ipip overlay", base(ETCD, "agent: flannel", "ipip"), /nodes\.node1\.agent: the flannel agent drives overlay backend vxlan or host-gw/],
  ])("refuses %s, saying where", (_what, yaml, re) => {
    expect(problems(yaml)).toMatch(re);
  });
});
