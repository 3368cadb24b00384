/** The topology checker: every problem of a file in one run, each with its place. */
import { describe, expect, it } from "vitest";
import { parseTopology, TopologyError } from "../../src/lab/topology.js";

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

describe("topology checks", () => {
  it("reports schema and cross-field problems together, in file order", () => {
    const p = problems(
      [
        "name: tbad",
        "nodes:",
        "  sw1: { ageingTime: -1 }",
        "  sw2: {}",
        "hosts:",
        "  h1: { node: sw9, ip: 10.0.0.1/24 }",
        "  h2: { node: sw1, ip: 10.0.0.2/24, vlan: 5000 }",
        "  h3: { node: sw1, ip: 10.0.0.1/24, gateway: 10.0.1.1 }",
        "links:",
        "  - { between: [sw1, sw2], mtu: 20 }",
        "  - { between: [sw2, sw7] }",
        "",
      ].join("\n"),
    );
    expect(p).toEqual([
      "lab.yaml:3:10: nodes.sw1.ageingTime: ageingTime is in seconds and must be > 0",
      "lab.yaml:6:9: hosts.h1.node: unknown node 'sw9' (nodes: sw1, sw2)",
      "lab.yaml:7:37: hosts.h2.vlan: VLAN ids run from 1 to 4094",
      "lab.yaml:8:20: hosts.h3.ip: 10.0.0.1 is already host h1's address",
      "lab.yaml:8:37: hosts.h3.gateway: gateway 10.0.1.1 is not inside 10.0.0.1/24",
      "lab.yaml:10:28: links.0.mtu: Too small: expected number to be >=68",
      "lab.yaml:11:22: links.1.between.1: unknown node 'sw7' (nodes: sw1, sw2)",
    ]);
  });

  it("a host on a node whose own spec is wrong is not called unknown", () => {
    const p = problems("name: tbad\nnodes:\n  sw1: { bogus: 1 }\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24 }\n");
    expect(p).toEqual(["lab.yaml:3:3: nodes.sw1: unknown field 'bogus'"]);
  });

  it("router problems come with schema problems elsewhere", () => {
    const p = problems(
      "name: tbad\nnodes:\n  r1:\n    interfaces:\n      eth1: { vlan: 10, address: 10.0.1.1/24 }\n    routes:\n      - { to: 10.0.2.0/24, via: 10.0.9.1 }\nhosts:\n  h1: { node: r1, ip: 10.0.1.2/24, link: wire }\n",
    );
    expect(p).toHaveLength(2);
    expect(p[0]).toMatch(/^lab\.yaml:7:\d+: nodes\.r1\.routes\.0\.via: next hop 10\.0\.9\.1 is not inside a subnet/);
    expect(p[1]).toMatch(/^lab\.yaml:9:\d+: hosts\.h1\.link: /);
  });

  it("a valid file gives no problems", () => {
    expect(problems("name: ok\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24 }\n")).toEqual([]);
  });
});
