/** The router's Linux knobs in a topology: sendRedirects per interface, the per-destination ICMP limit. */
import { describe, expect, it } from "vitest";
import { nodeConfig } from "../../src/lab/node-config.js";
import { parseTopology, TopologyError } from "../../src/lab/topology.js";

const LAB = (iface: string, node = ""): string =>
  `name: tfid\nnodes:\n  r1:\n${node}    interfaces:\n      eth1: { vlan: 10, address: 10.0.1.1/24${iface} }\n      eth2: { vlan: 20, address: 10.0.2.1/24 }\nhosts:\n  h1: { node: r1, ip: 10.0.1.2/24, vlan: 10 }\n`;

function problems(yaml: string): string[] {
  try {
    parseTopology(yaml, "lab.yaml");
  } catch (e) {
    if (e instanceof TopologyError)
      return e.message
        .split("\n")
        .slice(1)
        .map((l) => l.trim());
    throw e;
  }
  return [];
}

describe("router knobs in a topology", () => {
  it("sendRedirects off on one interface and the ICMP limit reach the node's config; absent, redirects stay on", () => {
    const t = parseTopology(LAB(", sendRedirects: false", "    icmp: { ratelimit: 250, ratemask: 2048 }\n"), "lab.yaml");
    const r = nodeConfig(t, "r1").router;
    expect(r?.interfaces.map((i) => [i.name, i.sendRedirects])).toEqual([
      ["eth1", false],
      ["eth2", undefined],
    ]);
    expect(r?.icmp).toEqual({ ratelimit: 250, ratemask: 2048 });
    expect(nodeConfig(parseTopology(LAB(""), "lab.yaml"), "r1").router?.icmp).toBeUndefined();
  });

  it("bad values are named by their path", () => {
    expect(problems(LAB(", sendRedirects: maybe"))).toEqual([expect.stringMatching(/^lab\.yaml:5:\d+: nodes\.r1\.interfaces\.eth1\.sendRedirects: /)]);
    expect(problems(LAB("", "    icmp: { ratemask: 1048576 }\n"))).toEqual([
      expect.stringMatching(/^lab\.yaml:4:\d+: nodes\.r1\.icmp\.ratemask: ratemask has one bit per ICMP type 0-18$/),
    ]);
    expect(problems(LAB("", "    icmp: { ratelimit: 1.5 }\n"))).toEqual([
      expect.stringMatching(/nodes\.r1\.icmp\.ratelimit: ratelimit is whole milliseconds$/),
    ]);
    expect(problems(LAB("", "    icmp: { burst: 3 }\n"))).toEqual([expect.stringMatching(/nodes\.r1\.icmp: unknown field 'burst'$/)]);
  });
});
