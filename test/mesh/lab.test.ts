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
    expect(port("n1")?.mesh).toEqual({
      name: "n1",
      port: 6783,
      password: "pw",
      peers: ["192.168.1.2"],
      addresses: ["192.168.1.1"],
      underlayMtu: 1500,
      // Weave's range, owned at first by the lowest node name.
      ipam: { range: "10.32.0.0/12", seed: ["n1"] },
    });
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

  it("the address ring: a range and seeds of the file's choosing; pods without an address only on mesh nodes; no static address inside the ring", () => {
    const t = parseTopology(MESH.replace("password: pw }", "password: pw, ipam: { range: 10.96.0.0/16, seed: [n2, n3] } }"), "lab.yaml");
    expect(nodeConfig(t, "n1").ports.find((p) => p.kind === "mesh")?.mesh?.ipam).toEqual({ range: "10.96.0.0/16", seed: ["n2", "n3"] });
    expect(problems(`${MESH}\nhosts:\n  p1: { node: n1, mtu: 1376 }\n  p2: { node: n2, ip: 192.168.50.2/24 }`)).toEqual([]);
    expect(problems(`${MESH}\nhosts:\n  p1: { node: n1, ip: 10.40.0.9/12 }`)).toEqual([
      expect.stringMatching(/hosts\.p1\.ip.*10\.40\.0\.9\/12 is inside the mesh's address ring 10\.32\.0\.0\/12/),
    ]);
    expect(problems(MESH.replace("password: pw }", "password: pw, ipam: { seed: [n9] } }"))).toEqual([
      expect.stringMatching(/overlay\.ipam.*seed 'n9' is no tapnet node/),
    ]);
    expect(problems(MESH.replace("password: pw }", "password: pw, ipam: 10.0.0.0/31 }"))).toEqual([
      expect.stringMatching(/overlay\.ipam.*no range for the ring/),
    ]);
    const noMesh = ["name: s", "nodes: { sw: {} }", "hosts:", "  h1: { node: sw }"].join("\n");
    expect(problems(noMesh)).toEqual([expect.stringMatching(/hosts\.h1\.ip.*only hosts of a mesh overlay's nodes/)]);
  });
});
