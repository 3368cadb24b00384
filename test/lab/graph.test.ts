/**
 * The graph builder on every lab in scripts/labs/: each node's config (as `lab up` writes
 * it) builds a graph on memory ports, and its description (`tapnet show graph`) names
 * every port, the elements the config asks for, and edges that join only what exists.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryPort } from "../../src/io/memory-port.js";
import { nodeConfig } from "../../src/lab/node-config.js";
import { loadTopology } from "../../src/lab/topology.js";
import { buildGraph } from "../../src/node/graph.js";

const LABS = path.resolve(__dirname, "../../scripts/labs");
const files = fs
  .readdirSync(LABS)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("show graph of every lab", () => {
  it("finds the labs", () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  for (const file of files) {
    it(file, () => {
      const t = loadTopology(path.join(LABS, file));
      const nodes = Object.keys(t.nodes);
      expect(nodes.length).toBeGreaterThan(0);
      for (const node of nodes) {
        const config = nodeConfig(t, node);
        const g = buildGraph(config, { makePort: (pc) => new MemoryPort(pc.name) });
        const d = g.describe();
        expect(d.node).toBe(node);
        const portNames = new Set(d.ports.map((p) => p.name));
        for (const pc of config.ports) expect(portNames, `${file} ${node} port ${pc.name}`).toContain(pc.name);
        const elements = new Set(d.elements.map((e) => e.name));
        expect(d.elements[0].kind).toBe("LearningSwitch");
        expect(elements.has(g.router?.name ?? ""), `${file} ${node} router`).toBe(config.router !== undefined);
        const wantsNat = (config.router?.services.length ?? 0) > 0 || (config.router?.nat?.masquerade?.length ?? 0) > 0;
        expect(
          d.elements.some((e) => e.kind === "Nat"),
          `${file} ${node} nat`,
        ).toBe(wantsNat);
        for (const e of d.elements) expect(e.counters.length, `${file} ${node} ${e.name} counters`).toBeGreaterThan(0);
        // Every edge joins a port or an element that exists (hooks name element.hook).
        const known = (end: string): boolean => (end.startsWith("port:") ? portNames.has(end.slice(5)) : elements.has(end.split(".")[0]));
        for (const e of d.edges) {
          expect(known(e.from), `${file} ${node} edge from ${e.from}`).toBe(true);
          expect(known(e.to), `${file} ${node} edge to ${e.to}`).toBe(true);
        }
        // Every device port is wired both ways to the switch.
        for (const p of d.ports.filter((p) => p.kind !== "internal")) {
          expect(d.edges.some((e) => e.from === `port:${p.name}` && e.to === d.elements[0].name)).toBe(true);
        }
      }
    });
  }
});
