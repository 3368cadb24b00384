/** The topology checker: every problem of a file in one run, each with its place. */
import { describe, expect, it } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { nodeConfig } from "../../src/lab/node-config.js";
import { parseTopology } from "../../src/lab/topology.js";
import { tapIoFromEnv } from "../../src/node/ports.js";
import { problems } from "./problems.js";

const loopYaml = (): string => fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../scripts/labs/loop.yaml"), "utf8");

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

  it("layer-2 safety fields: spanning tree, storm control, port security, ARP inspection", () => {
    const p = problems(
      [
        "name: tl2",
        "nodes:",
        "  sw1: { stp: { priority: 4096, forwardDelay: 1 }, arpInspection: { vlans: [1], bindings: [{ ip: 10.0.0.9, mac: '03:00:00:00:00:01' }] } }",
        "  sw2: {}",
        "  k1: { kind: kernel, stp: {}, stormControl: { broadcast: 10 } }",
        "hosts:",
        "  h1: { node: sw1, ip: 10.0.0.1/24, stp: { priority: 100 }, portSecurity: { maxMacs: 1, macs: ['02:00:00:00:00:01', '02:00:00:00:00:02'] } }",
        "  h2: { node: sw2, ip: 10.0.0.2/24, stp: { cost: 4 } }",
        "  h3: { node: k1, ip: 10.0.0.3/24, portSecurity: { maxMacs: 2 } }",
        "links:",
        "  - { between: [sw2, k1], stp: { cost: 10 }, stormControl: { unknownUnicast: -1 } }",
        "",
      ].join("\n"),
    );
    expect(p).toEqual([
      "lab.yaml:3:33: nodes.sw1.stp.forwardDelay: forwardDelay is at least 2 s (the Linux bridge's minimum)",
      "lab.yaml:5:32: nodes.k1.stormControl: a kernel node is a Linux bridge: stormControl is a tapnet switch's (stp is both's)",
      "lab.yaml:7:44: hosts.h1.stp.priority: a port priority is 0-240 in steps of 16",
      "lab.yaml:8:37: hosts.h2.stp: node sw2 runs no spanning tree (nodes.sw2.stp)",
      "lab.yaml:9:36: hosts.h3.portSecurity: host h3 is on kernel node k1, a Linux bridge: portSecurity is a tapnet switch's",
      "lab.yaml:11:62: links.0.stormControl.unknownUnicast: a rate is frames/s, 0 or more",
    ]);
    expect(problems("name: t\nnodes:\n  sw1: { arpInspection: { bindings: [{ ip: 10.0.0.9, mac: '03:00:00:00:00:01' }] } }\n")).toEqual([
      "lab.yaml:3:54: nodes.sw1.arpInspection.bindings.0.mac: 03:00:00:00:00:01 is a group address; a binding names a station",
    ]);
    // Static secure MACs beyond the limit; STP settings on a link neither end of which runs STP.
    expect(
      problems(
        "name: t\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24, portSecurity: { maxMacs: 1, macs: ['02:00:00:00:00:01', '02:00:00:00:00:02'] } }\n",
      ),
    ).toEqual(["lab.yaml:5:65: hosts.h1.portSecurity.macs: 2 static MACs, but maxMacs is 1"]);
    expect(problems("name: t\nnodes:\n  sw1: {}\n  sw2: {}\nlinks:\n  - { between: [sw1, sw2], stp: { cost: 4 } }\n")).toEqual([
      "lab.yaml:6:28: links.0.stp: neither sw1 nor sw2 runs spanning tree (nodes.NAME.stp)",
    ]);
    expect(() => parseTopology(loopYaml(), "loop.yaml")).not.toThrow();
  });

  it("impairments: tc's words checked with their place; none on a kernel node's host or a link between kernel nodes", () => {
    const lab = (impair: string): string => `name: t\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24, impair: ${impair} }\n`;
    expect(problems(lab("{ out: { delay: 20ms, jitter: 2ms, loss: 1%, rate: 10mbit }, in: { duplicate: 0.5% } }"))).toEqual([]);
    expect(problems(lab("{ out: { delay: 20 parsecs } }"))).toEqual([
      expect.stringMatching(/^lab\.yaml:5:\d+: hosts\.h1\.impair\.out: delay: '20 parsecs' is not a time/),
    ]);
    expect(problems(lab("{ out: { reorder: 25% } }"))[0]).toMatch(/hosts\.h1\.impair\.out: reorder needs a delay/);
    expect(problems(lab("{ up: { loss: 1% } }"))[0]).toMatch(/hosts\.h1\.impair/);
    expect(
      problems("name: t\nnodes:\n  k1: { kind: kernel }\n  k2: { kind: kernel }\nlinks:\n  - { between: [k1, k2], impair: { out: { loss: 1% } } }\n"),
    ).toEqual([expect.stringMatching(/links\.0\.impair: impairments are a tapnet port's; both ends of this link are kernel nodes/)]);
  });

  it("a valid file gives no problems", () => {
    expect(problems("name: ok\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24 }\n")).toEqual([]);
  });
});

describe("a router interface's DHCP server", () => {
  it("takes a range inside the interface's subnet, and names the problem of one that is not", () => {
    const lab = (dhcp: string): string =>
      ["name: tdhcp", "nodes:", "  n1:", "    interfaces:", `      cni0: { vlan: 1, address: 10.90.0.1/24, dhcp: ${dhcp} }`, ""].join("\n");
    expect(problems(lab("{ range: 10.90.0.100-10.90.0.150, dns: [10.96.0.10] }"))).toEqual([]);
    expect(problems(lab("{ range: 10.91.0.1-10.91.0.5 }"))).toEqual([
      "lab.yaml:5:55: nodes.n1.interfaces.cni0.dhcp.range: interface cni0: dhcp.range 10.91.0.1-10.91.0.5 is not inside 10.90.0.1/24 (network and broadcast excluded)",
    ]);
    expect(problems(lab("{ range: 10.90.0.100 }"))[0]).toMatch(/dhcp\.range: FIRST-LAST, e\.g\. 10\.0\.0\.100-10\.0\.0\.150/);
    expect(problems(lab("{ range: 10.90.0.100-10.90.0.110, leaseTime: 5 }"))[0]).toMatch(/dhcp\.leaseTime/);
  });
});

describe("impairments in a node's config", () => {
  it("a host's go on the node's port to it; a link's on each tapnet end's port", () => {
    const t = parseTopology(
      "name: t\nnodes:\n  sw1: {}\n  sw2: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24, impair: { in: { loss: 2% } } }\nlinks:\n  - { between: [sw1, sw2], impair: { out: { delay: 5ms, rate: 1gbit } } }\n",
      "lab.yaml",
    );
    const sw1 = nodeConfig(t, "sw1").ports;
    expect(sw1.find((p) => p.name === "h1")?.impair).toEqual({ in: expect.objectContaining({ loss: 2, delay: 0 }) });
    expect(sw1.find((p) => p.name === "sw2")?.impair?.out).toMatchObject({ delay: 5, rate: 1e9, limit: 1000 });
    expect(nodeConfig(t, "sw2").ports.find((p) => p.name === "sw1")?.impair?.out).toMatchObject({ delay: 5, rate: 1e9 });
  });

  it("a link's impairAt sets one end's port in place of impair; a node that is not an end, or a kernel node, is refused", () => {
    const t = parseTopology(
      "name: t\nnodes:\n  sw1: {}\n  sw2: {}\nlinks:\n  - { between: [sw1, sw2], impair: { out: { delay: 5ms } }, impairAt: { sw2: { in: { loss: 3% } } } }\n",
      "lab.yaml",
    );
    expect(nodeConfig(t, "sw1").ports.find((p) => p.name === "sw2")?.impair).toEqual({ out: expect.objectContaining({ delay: 5, loss: 0 }) });
    expect(nodeConfig(t, "sw2").ports.find((p) => p.name === "sw1")?.impair).toEqual({ in: expect.objectContaining({ loss: 3, delay: 0 }) });
    expect(
      problems("name: t\nnodes:\n  sw1: {}\n  sw2: {}\n  sw3: {}\nlinks:\n  - { between: [sw1, sw2], impairAt: { sw3: { out: { loss: 1% } } } }\n"),
    ).toEqual([expect.stringMatching(/links\.0\.impairAt\.sw3: sw3 is not an end of this link \(sw1, sw2\)/)]);
    expect(
      problems("name: t\nnodes:\n  sw1: {}\n  k1: { kind: kernel }\nlinks:\n  - { between: [sw1, k1], impairAt: { k1: { out: { loss: 1% } } } }\n"),
    ).toEqual([expect.stringMatching(/links\.0\.impairAt\.k1: impairments are a tapnet port's; k1 is a kernel node/)]);
  });
});

describe("node io (TAP I/O method)", () => {
  it("io: uring reaches the node's configuration; absent stays absent (TAPNET_IO, else rw); bad values and kernel nodes are refused", () => {
    const t = parseTopology(
      "name: tio\nnodes:\n  a: { io: uring }\n  b: {}\nhosts:\n  h1: { node: a, ip: 10.0.0.1/24 }\n  h2: { node: b, ip: 10.0.0.2/24 }\n",
      "lab.yaml",
    );
    expect(nodeConfig(t, "a").io).toBe("uring");
    expect(nodeConfig(t, "b").io).toBeUndefined();
    expect(problems("name: tio\nnodes:\n  a: { io: fast }\n").join("\n")).toMatch(/nodes\.a\.io: /);
    expect(problems("name: tio\nnodes:\n  k: { kind: kernel, io: uring }\n")).toEqual([
      expect.stringMatching(/nodes\.k\.io: a kind: kernel node .* no TAP ports/),
    ]);
    expect(tapIoFromEnv({})).toBe("rw");
    expect(tapIoFromEnv({ TAPNET_IO: "uring" })).toBe("uring");
    expect(() => tapIoFromEnv({ TAPNET_IO: "xdp" })).toThrow(/TAPNET_IO must be "rw" or "uring", got "xdp"/);
  });
});

describe("node busyPoll (busy polling after a batch)", () => {
  it("busyPoll reaches the node's configuration; absent stays absent (off); bad values and kernel nodes are refused", () => {
    const t = parseTopology(
      "name: tbp\nnodes:\n  a: { busyPoll: 200 }\n  b: {}\nhosts:\n  h1: { node: a, ip: 10.0.0.1/24 }\n  h2: { node: b, ip: 10.0.0.2/24 }\n",
      "lab.yaml",
    );
    expect(nodeConfig(t, "a").busyPoll).toBe(200);
    expect(nodeConfig(t, "b").busyPoll).toBeUndefined();
    for (const bad of ["-1", "1.5", "2000000", "fast"]) {
      expect(problems(`name: tbp\nnodes:\n  a: { busyPoll: ${bad} }\n`).join("\n"), bad).toMatch(/nodes\.a\.busyPoll: /);
    }
    expect(problems("name: tbp\nnodes:\n  k: { kind: kernel, busyPoll: 50 }\n")).toEqual([
      expect.stringMatching(/nodes\.k\.busyPoll: a kind: kernel node .* no tapnet event loop/),
    ]);
  });
});
