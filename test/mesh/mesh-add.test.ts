/**
 * A mesh peer added to a running node (src/mesh/mesh-add.ts): the `mesh.add` change's
 * checks (each refusal names the argument and changes nothing), the port it adds, and
 * the mesh-MTU watch a lab node's supervisor reads.
 */
import { EventEmitter } from "node:events";
import type net from "node:net";
import { describe, expect, it } from "vitest";
import { MemoryPort } from "../../src/io/memory-port.js";
import type { MeshAgent } from "../../src/mesh/agent.js";
import { MeshMtuWatch } from "../../src/mesh/mesh-add.js";
import { SleevePort } from "../../src/mesh/sleeve-port.js";
import { applyChange } from "../../src/node/changes.js";
import type { NodeConfig } from "../../src/node/config.js";
import { buildGraph } from "../../src/node/graph.js";
import { SimSocket } from "../fuzz/harness.js";

function graph() {
  const cfg: NodeConfig = {
    lab: "t",
    node: "n1",
    controlSocket: "/nonexistent",
    ports: [{ name: "pod", kind: "tap", ifname: "pod", vlan: { mode: "access", vlan: 1 } }],
    switch: { ageingTime: 300, maxEntries: 1024, static: [] },
  };
  return buildGraph(cfg, {
    makePort: (pc) =>
      pc.kind === "mesh" ? new SleevePort(pc.name, { port: pc.mesh?.port ?? 0, openSocket: (o) => new SimSocket(o, null) }) : new MemoryPort(pc.name),
  });
}

const GOOD = { name: "n1", peers: ["192.168.1.2"], password: "pw", ipam: { range: "10.32.0.0/12", seed: ["n1"] } };

describe("mesh.add", () => {
  it("refuses what is wrong, naming the argument, and adds nothing", () => {
    const g = graph();
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...GOOD, name: "Node 1" }, /name: 'Node 1' is no peer name/],
      [{ ...GOOD, peers: ["192.168.1.300"] }, /peers: '192\.168\.1\.300' is not an IPv4 address/],
      [{ ...GOOD, peers: "192.168.1.2" }, /peers: expected a list of IPv4 addresses/],
      [{ ...GOOD, addresses: ["x"] }, /addresses: 'x' is not an IPv4 address/],
      [{ ...GOOD, port: 70000 }, /port: 70000 is not an integer 1-65535/],
      [{ ...GOOD, underlayMtu: 100 }, /underlayMtu: 100 is not an integer 576-9000/],
      [{ ...GOOD, password: "" }, /password: expected a non-empty string/],
      [{ ...GOOD, ipam: { range: "10.32.0.0/40", seed: ["n1"] } }, /ipam\.range: '10\.32\.0\.0\/40' is no range/],
      [{ ...GOOD, ipam: { range: "10.32.0.0/12", seed: [] } }, /ipam\.seed: expected a list of peer names/],
    ];
    for (const [args, re] of bad) expect(() => applyChange(g, "mesh.add", args), JSON.stringify(args)).toThrow(re);
    expect(g.config.ports.map((p) => p.name)).toEqual(["pod"]);
    expect(g.engine.port("weave")).toBeUndefined();
  });

  it("adds the sleeve port with the peer's settings; a node is one peer at most, and its mesh port is not deleted", () => {
    const g = graph();
    expect(applyChange(g, "mesh.add", GOOD, true)).toBeNull(); // a dry run changes nothing
    expect(g.engine.port("weave")).toBeUndefined();
    expect(applyChange(g, "mesh.add", GOOD)).toEqual({ port: "weave", peer: "n1" });
    expect(g.engine.port("weave")).toBeInstanceOf(SleevePort);
    expect(g.config.ports.find((p) => p.name === "weave")).toMatchObject({
      kind: "mesh",
      vlan: { mode: "access", vlan: 1 },
      mesh: { name: "n1", port: 6783, password: "pw", peers: ["192.168.1.2"], addresses: [], underlayMtu: 1500, ipam: GOOD.ipam },
    });
    expect(() => applyChange(g, "mesh.add", { ...GOOD, name: "n2" })).toThrow(/node n1 is a mesh peer already \(port weave, peer n1\)/);
    expect(() => applyChange(g, "port.del", { name: "weave" })).toThrow(/port weave is the node's mesh peer/);
  });
});

/** A control connection as the node's handler sees it: what is written, and its close. */
class FakeSock extends EventEmitter {
  lines: string[] = [];
  destroyed = false;
  write(s: string): boolean {
    this.lines.push(...s.trim().split("\n"));
    return true;
  }
}

describe("the mesh MTU watch", () => {
  it("answers at once, then a line at each change and none for the same MTU; a closed watcher hears nothing more", () => {
    const w = new MeshMtuWatch();
    const agent = { port: { mtu: 1440, pathMtu: 1500 }, onMtu: null as ((m: number) => void) | null };
    const a = agent as unknown as MeshAgent;
    expect(w.request(null, {}, new FakeSock() as unknown as net.Socket)).toBeNull();
    // Watching before the node has a mesh: nothing until one is attached.
    const early = new FakeSock();
    expect(w.request(null, { watch: true }, early as unknown as net.Socket)).toBe("stream");
    expect(early.lines).toEqual(['{"ok":true,"data":null}']);
    w.attach(a);
    expect(early.lines.slice(1)).toEqual(['{"mtu":1440}']);
    expect(w.request(a, {}, new FakeSock() as unknown as net.Socket)).toEqual({ mtu: 1440, pathMtu: 1500 });
    const late = new FakeSock();
    w.request(a, { watch: true }, late as unknown as net.Socket);
    expect(late.lines).toEqual(['{"ok":true,"data":null}', '{"mtu":1440}']);
    agent.onMtu?.(1240);
    agent.onMtu?.(1240);
    early.emit("close");
    agent.onMtu?.(1440);
    expect(late.lines.slice(2)).toEqual(['{"mtu":1240}', '{"mtu":1440}']);
    expect(early.lines.slice(1)).toEqual(['{"mtu":1440}', '{"mtu":1240}']);
  });
});
