/** The router's Linux knobs in a topology: sendRedirects and acceptSourceRoute per interface, the per-destination ICMP limit. */
import { describe, expect, it } from "vitest";
import { MemoryPort } from "../../src/io/memory-port.js";
import { nodeConfig } from "../../src/lab/node-config.js";
import { parseTopology } from "../../src/lab/topology.js";
import { problems } from "./problems.js";
import { routerSetArgs } from "../../src/cli/verbs.js";
import { applyChange } from "../../src/node/changes.js";
import { buildGraph } from "../../src/node/graph.js";
import { runningConfig } from "../../src/node/running-config.js";

const LAB = (iface: string, node = ""): string =>
  `name: tfid\nnodes:\n  r1:\n${node}    interfaces:\n      eth1: { vlan: 10, address: 10.0.1.1/24${iface} }\n      eth2: { vlan: 20, address: 10.0.2.1/24 }\nhosts:\n  h1: { node: r1, ip: 10.0.1.2/24, vlan: 10 }\n`;

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

  it("router.set changes them at runtime, refuses bad values without changing anything, and the running config shows them", () => {
    const g = buildGraph(nodeConfig(parseTopology(LAB(""), "lab.yaml"), "r1"), { makePort: (pc) => new MemoryPort(pc.name) });
    const r = g.router;
    if (!r) throw new Error("no router");
    expect(r.ifaces.map((i) => i.sendRedirects)).toEqual([true, true]);
    expect(r.icmpLimit).toEqual({ ratelimit: 1000, ratemask: 6168 });
    expect(() => applyChange(g, "router.set", { sendRedirects: false })).toThrow(/say which interface/);
    expect(() => applyChange(g, "router.set", { dev: "eth9", sendRedirects: false })).toThrow(/no router interface 'eth9'/);
    expect(() => applyChange(g, "router.set", { icmpRatelimit: -1 })).toThrow(/icmpRatelimit/);
    expect(() => applyChange(g, "router.set", {})).toThrow(/say sendRedirects/);
    applyChange(g, "router.set", { dev: "eth1", sendRedirects: false, icmpRatelimit: 0 }, true);
    expect(r.ifaces[0].sendRedirects).toBe(true); // a dry run changes nothing
    applyChange(g, "router.set", { dev: "eth1", sendRedirects: false, icmpRatelimit: 0 });
    expect(r.ifaces.map((i) => i.sendRedirects)).toEqual([false, true]);
    expect(r.icmpLimit).toEqual({ ratelimit: 0, ratemask: 6168 });
    const rc = runningConfig(g).router;
    expect(rc?.interfaces.map((i) => i.sendRedirects)).toEqual([false, undefined]);
    expect(rc?.icmp).toEqual({ ratelimit: 0, ratemask: 6168 });
  });

  it("acceptSourceRoute: on for one interface from the topology, off by default, changed by router.set and tapnet router set's words", () => {
    const t = parseTopology(LAB(", acceptSourceRoute: true"), "lab.yaml");
    const cfg = nodeConfig(t, "r1");
    expect(cfg.router?.interfaces.map((i) => i.acceptSourceRoute)).toEqual([true, undefined]);
    expect(problems(LAB(", acceptSourceRoute: 1"))).toEqual([expect.stringMatching(/^lab\.yaml:5:\d+: nodes\.r1\.interfaces\.eth1\.acceptSourceRoute: /)]);
    const g = buildGraph(cfg, { makePort: (pc) => new MemoryPort(pc.name) });
    const r = g.router;
    if (!r) throw new Error("no router");
    expect(r.ifaces.map((i) => i.acceptSourceRoute)).toEqual([true, false]);
    expect(() => applyChange(g, "router.set", { acceptSourceRoute: true })).toThrow(/acceptSourceRoute: say which interface/);
    applyChange(g, "router.set", routerSetArgs(["dev", "eth2", "accept_source_route", "1"]));
    applyChange(g, "router.set", routerSetArgs(["dev", "eth1", "accept_source_route", "0"]));
    expect(r.ifaces.map((i) => i.acceptSourceRoute)).toEqual([false, true]);
    expect(runningConfig(g).router?.interfaces.map((i) => i.acceptSourceRoute)).toEqual([undefined, true]);
    expect(() => routerSetArgs(["dev", "eth1", "accept_source_route", "yes"])).toThrow(/accept_source_route: 'yes' is not 0 or 1/);
    expect(() => routerSetArgs(["dev", "eth1"])).toThrow(/say send_redirects \(with dev\), icmp_ratelimit or icmp_ratemask, or accept_source_route/);
  });
});
