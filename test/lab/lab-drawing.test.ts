/**
 * `tapnet lab graph`: every lab in scripts/labs/ drawn to SVG by Graphviz (WebAssembly),
 * checked with a real SVG renderer (rsvg-convert), naming every node and host in its
 * text; DOT and PNG output through the CLI; bad input fails with a clear message.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderTopology } from "../../src/lab/graph.js";
import { loadTopology } from "../../src/lab/topology.js";
import { ROOT, tapnet } from "../integration/harness.js";

const LABS = path.join(ROOT, "scripts/labs");
const files = fs.readdirSync(LABS).filter((f) => f.endsWith(".yaml"));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-drawing-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The text of every <text> element of an SVG, entities decoded. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) =>
    m[1].replace(/&#45;/g, "-").replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"),
  );
}

describe("lab graph", () => {
  it("finds the labs", () => expect(files.length).toBeGreaterThan(10));

  it.each(files)("%s: an SVG rsvg-convert renders, naming every node and host", async (f) => {
    const t = loadTopology(path.join(LABS, f));
    const svg = (await renderTopology(t, "svg")) as string;
    const out = path.join(dir, f.replace(/\.yaml$/, ".svg"));
    fs.writeFileSync(out, svg);
    // A real renderer: rsvg-convert parses and draws it, and says so by exit status.
    const r = spawnSync("rsvg-convert", ["--format", "png", "-o", path.join(dir, "out.png"), out], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(fs.statSync(path.join(dir, "out.png")).size).toBeGreaterThan(1000);
    const words = texts(svg);
    for (const n of [...Object.keys(t.nodes), ...Object.keys(t.hosts), ...Object.keys(t.etcd?.members ?? {}), ...Object.keys(t.underlay?.routers ?? {})]) {
      expect(words, `${f}: ${n} drawn`).toContain(n);
    }
    // A mesh pod without an address in the file takes one from the ring when the lab is up.
    for (const h of Object.values(t.hosts)) expect(words).toContain(h.ip ?? "address from the ring");
  });

  it("draws VLANs, trunks, tunnels and BGP sessions as edge labels", async () => {
    const vlan = (await renderTopology(loadTopology(path.join(LABS, "vlan.yaml")), "dot")) as string;
    expect(vlan).toMatch(/label="trunk [0-9,]+/);
    expect(vlan).toMatch(/label="vlan \d+/);
    const vx = (await renderTopology(loadTopology(path.join(LABS, "flannel-vxlan.yaml")), "dot")) as string;
    expect(vx).toMatch(/"node:node1" -- "node:node2" \[constraint=false, style=dashed.*vxlan vni 1 udp 8472/);
    const rr = (await renderTopology(loadTopology(path.join(LABS, "calico-bgp-rr.yaml")), "dot")) as string;
    // Reflector: each node peers with rr1 alone.
    expect(rr.match(/BGP AS 64512/g)).toHaveLength(3);
    expect(rr).toMatch(/"node:node1" -- "router:rr1"/);
  });

  it("writes DOT and PNG through the CLI", () => {
    const dot = path.join(dir, "chain.dot");
    const png = path.join(dir, "chain.png");
    const a = tapnet(["lab", "graph", path.join(LABS, "routers-chain.yaml"), "-o", dot]);
    expect(a.stderr).toBe("");
    expect(a.status).toBe(0);
    expect(fs.readFileSync(dot, "utf8")).toMatch(/^graph "chain" \{/);
    const b = tapnet(["lab", "graph", path.join(LABS, "routers-chain.yaml"), "-o", png]);
    expect(b.status).toBe(0);
    expect(fs.readFileSync(png).subarray(0, 8).toString("hex")).toBe("89504e470d0a1a0a");
    const c = tapnet(["lab", "graph", path.join(LABS, "switch.yaml")]);
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);
  });

  it("fails clearly on a missing file, an unknown output type and a bad topology", () => {
    const missing = tapnet(["lab", "graph", path.join(dir, "nope.yaml"), "-o", path.join(dir, "x.svg")]);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/nope\.yaml: cannot read the topology file \(ENOENT\)/);
    const ext = tapnet(["lab", "graph", path.join(LABS, "switch.yaml"), "-o", path.join(dir, "x.jpg")]);
    expect(ext.status).not.toBe(0);
    expect(ext.stderr).toMatch(/x\.jpg: unknown output type '\.jpg'.*\.svg, \.dot .*\.png/);
    expect(fs.existsSync(path.join(dir, "x.jpg"))).toBe(false);
    const badFile = path.join(dir, "bad.yaml");
    fs.writeFileSync(badFile, "name: bad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw9, ip: 10.0.0.1/24 }\n");
    const bad = tapnet(["lab", "graph", badFile, "-o", path.join(dir, "bad.svg")]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/hosts\.h1\.node: unknown node 'sw9'/);
  });
});
