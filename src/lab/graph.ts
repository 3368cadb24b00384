/**
 * `tapnet lab graph`: a drawing of a topology file. The topology (after the overlay is
 * expanded, so what flanneld or Calico would configure shows too) becomes a Graphviz
 * DOT graph; Graphviz itself, compiled to WebAssembly (@viz-js/viz), lays it out into
 * SVG; rsvg-convert turns the SVG into PNG.
 *
 *   tapnet node      box: name, kind, interfaces and addresses, pod subnet
 *   host             ellipse: name, address, gateway; its edge says its VLAN
 *   link             solid edge between nodes: access VLAN or trunk (VLANs, native), MTU
 *   underlay         segments (dashed boxes) with the nodes, kernel routers, etcd
 *                    members and BIRD routers on them, edges labelled with addresses
 *   tunnels          dashed edges node to node: VXLAN (VNI, UDP port), IPIP, mesh peers
 *   BGP              dotted edges: a node's BGP sessions (the full mesh or its reflectors)
 *
 * Live counters: given each node's port counters (a running lab), a port's edge also
 * says how many frames went each way.
 */
import { spawnSync } from "node:child_process";
import { nodePeers, isBgp } from "./bgp.js";
import { ensurePackages } from "./packages.js";
import { ifAddresses, isKernelNode, MESH_PORT_NAME, type Topology } from "./topology-schema.js";

/** Port counters of a running lab: node -> port -> counters (from `stats`). */
export type LiveCounters = Record<string, Record<string, { rxFrames: number; txFrames: number }>>;

/** A DOT string literal (quotes and backslashes escaped; lines joined by \n). */
function q(...lines: Array<string | undefined | false>): string {
  const text = lines
    .filter((l): l is string => typeof l === "string" && l !== "")
    .map((l) => l.replace(/\\/g, "\\\\").replace(/"/g, '\\"'))
    .join("\\n");
  return `"${text}"`;
}

const bare = (cidr: string): string => cidr.split("/")[0];

/** The DOT text of a topology (already parsed and expanded: loadTopology). */
export function topologyDot(t: Topology, live?: LiveCounters): string {
  const out: string[] = [];
  const id = {
    node: (n: string) => q(`node:${n}`),
    host: (h: string) => q(`host:${h}`),
    seg: (s: string) => q(`segment:${s}`),
    router: (r: string) => q(`router:${r}`),
    etcd: (m: string) => q(`etcd:${m}`),
  };
  const counters = (node: string, port: string): string | undefined => {
    const c = live?.[node]?.[port];
    return c ? `rx ${c.rxFrames} / tx ${c.txFrames}` : undefined;
  };
  out.push(`graph ${q(t.name)} {`);
  out.push(`  graph [label=${q(`lab ${t.name}`, t.description)}, labelloc=t, fontname="Helvetica", rankdir=LR, nodesep=0.4, ranksep=0.9];`);
  out.push('  node [fontname="Helvetica", fontsize=10];');
  out.push('  edge [fontname="Helvetica", fontsize=9];');

  // Underlay: who has which address, so tunnel and BGP edges can name their far end.
  const owner = new Map<string, string>();
  for (const [n, s] of Object.entries(t.nodes)) {
    if (s.underlay) {
      owner.set(bare(s.underlay.address), id.node(n));
      for (const a of s.underlay.also) owner.set(bare(a.address), id.node(n));
    }
  }
  for (const [r, segs] of Object.entries(t.underlay?.routers ?? {})) for (const a of Object.values(segs)) owner.set(bare(a), id.router(r));

  for (const [n, s] of Object.entries(t.nodes)) {
    const kind = s.kind ?? (Object.keys(s.interfaces).length ? "router" : "switch");
    const lines: Array<string | undefined> = [n, `(${kind})`];
    for (const [ifn, i] of Object.entries(s.interfaces)) lines.push(`${ifn} ${ifAddresses(i).join(", ")}${i.vlan !== undefined ? ` (vlan ${i.vlan})` : ""}`);
    if (s.podCidr) lines.push(`pods ${s.podCidr}`);
    if (s.agent) lines.push(`agent: ${s.agent}`);
    const style = isKernelNode(s) ? 'style="rounded,filled", fillcolor="#eeeeee"' : 'style="rounded,filled", fillcolor="#dde8ff"';
    out.push(`  ${id.node(n)} [shape=box, ${style}, label=${q(...lines)}];`);
  }
  for (const [h, s] of Object.entries(t.hosts)) {
    out.push(
      `  ${id.host(h)} [shape=ellipse, style=filled, fillcolor="#e6f5e6", label=${q(h, s.ip ?? "address from the ring", s.gateway && `gw ${s.gateway}`)}];`,
    );
    const vlan = s.vlan !== undefined ? `vlan ${s.vlan}` : undefined;
    out.push(
      `  ${id.host(h)} -- ${id.node(s.node)} [label=${q(vlan, s.link !== "tap" ? s.link : undefined, s.mtu !== undefined && s.mtu !== 1500 ? `mtu ${s.mtu}` : undefined, counters(s.node, h))}];`,
    );
  }
  for (const l of t.links) {
    const [a, b] = l.between;
    const what = l.trunk
      ? `trunk ${l.trunk.vlans.join(",")}${l.trunk.native !== undefined ? ` native ${l.trunk.native}` : ""}`
      : l.vlan !== undefined
        ? `vlan ${l.vlan}`
        : undefined;
    const ca = counters(a, b);
    const cb = counters(b, a);
    out.push(
      `  ${id.node(a)} -- ${id.node(b)} [penwidth=2, label=${q(what, l.mtu !== 1500 ? `mtu ${l.mtu}` : undefined, ca && `${a}: ${ca}`, cb && `${b}: ${cb}`)}];`,
    );
  }

  // Underlay segments, kernel routers, etcd members.
  const segments = new Set(Object.keys(t.underlay?.segments ?? {}));
  for (const s of Object.values(t.nodes)) if (s.underlay) segments.add(s.underlay.segment);
  for (const seg of segments) out.push(`  ${id.seg(seg)} [shape=box, style=dashed, label=${q(`segment ${seg}`)}];`);
  for (const [n, s] of Object.entries(t.nodes)) {
    if (!s.underlay) continue;
    out.push(`  ${id.node(n)} -- ${id.seg(s.underlay.segment)} [style=dashed, label=${q(`ul0 ${s.underlay.address}`, counters(n, "underlay"))}];`);
    s.underlay.also.forEach((a, i) => {
      out.push(`  ${id.node(n)} -- ${id.seg(a.segment)} [style=dashed, label=${q(`ul${i + 1} ${a.address}`)}];`);
    });
  }
  const birds = t.overlay?.bird ?? {};
  const reflectors = new Set(t.overlay?.routeReflectors ?? []);
  for (const [r, segs] of Object.entries(t.underlay?.routers ?? {})) {
    const role = reflectors.has(r) ? "BIRD route reflector" : birds[r] ? "BIRD" : undefined;
    out.push(`  ${id.router(r)} [shape=diamond, style=filled, fillcolor="#fff2cc", label=${q(r, "(router)", role)}];`);
    for (const [seg, a] of Object.entries(segs)) out.push(`  ${id.router(r)} -- ${id.seg(seg)} [style=dashed, label=${q(a)}];`);
  }
  if (t.etcd) {
    for (const [m, a] of Object.entries(t.etcd.members)) {
      out.push(`  ${id.etcd(m)} [shape=cylinder, style=filled, fillcolor="#fde2e2", label=${q(m, "(etcd)")}];`);
      out.push(`  ${id.etcd(m)} -- ${id.seg(t.etcd.segment)} [style=dashed, label=${q(a)}];`);
    }
  }

  // Tunnels and sessions: one edge per pair and kind.
  const drawn = new Set<string>();
  const pair = (a: string, b: string, attrs: string, key: string): void => {
    const k = `${[a, b].sort().join("\0")}\0${key}`;
    if (a === b || drawn.has(k)) return;
    drawn.add(k);
    out.push(`  ${a} -- ${b} [constraint=false, ${attrs}];`);
  };
  const agents = Object.keys(t.nodes).filter((n) => t.nodes[n].agent !== undefined);
  for (const [n, s] of Object.entries(t.nodes)) {
    for (const [p, v] of Object.entries(s.vxlan)) {
      const label = q(`${p}: vxlan vni ${v.vni} udp ${v.port}`);
      for (const r of new Set([...v.remotes, ...v.fdb.map((f) => f.remote)])) {
        pair(id.node(n), owner.get(r) ?? q(`remote:${r}`), `style=dashed, color="#3366cc", fontcolor="#3366cc", label=${label}`, `vxlan ${v.vni}`);
      }
      // flannel agents learn their peers from etcd leases: every agent node is a peer.
      if (s.agent)
        for (const m of agents)
          pair(id.node(n), id.node(m), `style=dashed, color="#3366cc", fontcolor="#3366cc", label=${q(`vxlan vni ${v.vni} (etcd leases)`)}`, `vxlan ${v.vni}`);
    }
    for (const [p, v] of Object.entries(s.ipip)) {
      for (const r of v.peers)
        pair(id.node(n), owner.get(r) ?? q(`remote:${r}`), `style=dashed, color="#cc6633", fontcolor="#cc6633", label=${q(`${p}: ipip`)}`, "ipip");
    }
    if (s.kernelVxlan) {
      const v = s.kernelVxlan;
      pair(
        id.node(n),
        owner.get(v.remote) ?? q(`remote:${v.remote}`),
        `style=dashed, color="#3366cc", label=${q(`kernel vxlan vni ${v.vni} udp ${v.port}`)}`,
        `vxlan ${v.vni}`,
      );
    }
    if (s.mesh) {
      for (const r of s.mesh.peers)
        pair(id.node(n), owner.get(r) ?? q(`remote:${r}`), `style=dashed, color="#339966", fontcolor="#339966", label=${q(`${MESH_PORT_NAME} mesh`)}`, "mesh");
    }
    if (isBgp(t) && !isKernelNode(s) && s.underlay && s.podCidr) {
      for (const p of nodePeers(t, n)) {
        const far = t.nodes[p.name] ? id.node(p.name) : id.router(p.name);
        pair(id.node(n), far, `style=dotted, color="#993399", fontcolor="#993399", label=${q(`BGP AS ${t.overlay?.asNumber}`)}`, "bgp");
      }
    }
  }
  // A tunnel's far end outside the lab (a kernel VTEP, say): drawn as a plain point.
  const remotes = new Set(out.flatMap((l) => [...l.matchAll(/"remote:([0-9.]+)"/g)].map((m) => m[1])));
  for (const r of remotes) out.push(`  ${q(`remote:${r}`)} [shape=plaintext, label=${q(r)}];`);
  out.push("}");
  return `${out.join("\n")}\n`;
}

/** Lays the DOT text out with Graphviz (WebAssembly) into SVG; throws with Graphviz's errors. */
export async function dotToSvg(dot: string): Promise<string> {
  const { instance } = await import("@viz-js/viz");
  const viz = await instance();
  const r = viz.render(dot, { format: "svg", engine: "dot" });
  if (r.status !== "success") throw new Error(`graphviz: ${r.errors.map((e) => e.message).join("; ")}`);
  return r.output;
}

/** SVG to PNG with rsvg-convert (librsvg2-bin, installed when first needed). */
export function svgToPng(svg: string): Buffer {
  ensurePackages([{ what: "rsvg-convert", pkg: "librsvg2-bin" }], "lab graph -o FILE.png");
  const r = spawnSync("rsvg-convert", ["--format", "png"], { input: svg, maxBuffer: 256 << 20 });
  if (r.error) throw new Error(`rsvg-convert: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`rsvg-convert failed: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

export type GraphFormat = "svg" | "dot" | "png";

/** The output format an output file's name asks for; throws naming the file when it is none. */
export function formatOf(file: string): GraphFormat {
  const m = /\.([A-Za-z]+)$/.exec(file);
  const ext = m?.[1].toLowerCase();
  if (ext === "svg" || ext === "dot" || ext === "png") return ext;
  if (ext === "gv") return "dot";
  throw new Error(`-o ${file}: unknown output type ${m ? `'.${m[1]}'` : "(no extension)"}: name the file .svg, .dot (or .gv) or .png`);
}

/** The drawing in a format: DOT text, SVG text or PNG bytes. */
export async function renderTopology(t: Topology, format: GraphFormat, live?: LiveCounters): Promise<string | Buffer> {
  const dot = topologyDot(t, live);
  if (format === "dot") return dot;
  const svg = await dotToSvg(dot);
  return format === "svg" ? svg : svgToPng(svg);
}
