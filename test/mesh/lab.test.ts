/** The `mesh` overlay of a topology file: checks and what each node's config gets. */
import { describe, expect, it } from "vitest";
import { nodeConfig } from "../../src/lab/node-config.js";
import { parseTopology } from "../../src/lab/topology.js";
import { problems } from "../lab/problems.js";

const MESH = [
  "name: m",
  "underlay: { segments: { a: {}, b: {} } }",
  "overlay: { backend: mesh, password: pw }",
  "nodes:",
  "  n1: { underlay: { segment: a, address: 192.168.1.1/24 } }",
  "  n2: { underlay: { segment: a, address: 192.168.1.2/24, also: [{ segment: b, address: 192.168.2.2/24 }] } }",
  "  n3: { underlay: { segment: b, address: 192.168.2.3/24 } }",
].join("\n");

describe("mesh overlay in a topology", () => {
  it("each node peers with the nodes on its segments, on port 6783, with the password; the mesh port is trusted", () => {
    const t = parseTopology(MESH, "lab.yaml");
    const port = (n: string) => nodeConfig(t, n).ports.find((p) => p.kind === "mesh");
    expect(port("n1")?.mesh).toEqual({ name: "n1", port: 6783, password: "pw", peers: ["192.168.1.2"], addresses: ["192.168.1.1"], underlayMtu: 1500 });
    expect(port("n2")?.mesh?.peers).toEqual(["192.168.1.1", "192.168.2.3"]);
    expect(port("n2")?.mesh?.addresses).toEqual(["192.168.1.2", "192.168.2.2"]);
    expect(port("n3")?.mesh?.peers).toEqual(["192.168.2.2"]);
    expect(port("n1")?.trusted).toBe(true);
  });

  it("an unknown or repeated extra segment and a node off the underlay are reported with their places", () => {
    const p = problems(
      MESH.replace("also: [{ segment: b,", "also: [{ segment: c,").replace(
        "  n3: { underlay: { segment: b, address: 192.168.2.3/24 } }",
        "  n3: {}\n  n4: { underlay: { segment: a, address: 192.168.1.4/24, also: [{ segment: a, address: 192.168.1.5/24 }] } }",
      ),
    );
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/nodes\.n2\.underlay\.also\.0\.segment.*unknown segment 'c'/),
        expect.stringMatching(/nodes\.n4\.underlay\.also\.0\.segment.*already on segment 'a'/),
        expect.stringMatching(/nodes\.n3\.underlay.*overlay mesh needs every node on the underlay/),
      ]),
    );
  });
});
