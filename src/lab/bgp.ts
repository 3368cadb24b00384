/**
 * Calico's BGP modes in a lab: `overlay: { backend: bgp | bgp-ipip, … }`.
 *
 * ```yaml
 * overlay:
 *   backend: bgp              # or bgp-ipip (routes into tunl0, as Calico's IPIP mode)
 *   ipipMode: Always          # bgp-ipip: Always, or CrossSubnet (direct within a subnet)
 *   asNumber: 64512           # one AS for every node (Calico's default)
 *   holdTime: 9               # seconds (default 90)
 *   routeReflectors: [rr]     # BIRD routers that reflect: no node-to-node mesh then
 *   bird:                     # underlay routers that run BIRD 2 and peer with the nodes
 *     rr: { routes: [10.250.0.0/24] }   # prefixes BIRD originates (lo holds each one's .1)
 * ```
 *
 * Each node runs a BGP speaker (src/bgp) in its process, on a kernel TCP socket bound
 * to port 179 of its underlay address in its namespace. That address is shared: in BGP
 * mode the node's router forwards pod traffic natively over the underlay (its interface
 * ul0 on the underlay port, as host-gw), so the kernel and the router sit on the same
 * veth with the same address and MAC — the arrangement of a userspace dataplane with a
 * kernel control plane (VPP's linux-cp does it with a mirror TAP). The split:
 *   - the kernel owns every IP packet to the address (BGP's TCP, IPIP): the underlay
 *     port's BPF filter leaves them out of the router (`not ip dst host ADDR`);
 *   - the router owns ARP for the address (arp_ignore=8 keeps the kernel quiet) and
 *     everything it forwards; frames to the shared MAC reach both, and the kernel
 *     (forwarding off) drops what is not for it without a word.
 *
 * Blackhole: Calico blackholes the unused rest of a node's block. Here the whole block
 * is the connected subnet of cni0 (the router's one-route-per-prefix FIB cannot hold a
 * blackhole beside it), and an address of the block that no pod has goes nowhere
 * else either: ARP for it fails and the sender gets host unreachable. So no blackhole
 * route is added.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { NodeBgpConfig } from "../bgp/node-fib.js";
import type { NodeConfig } from "../node/config.js";
import { ipToString, maskFromPrefix } from "../wire/ipv4addr.js";
import { ensurePackages } from "./packages.js";
import { labDir, type LabState, type Log, nsName, writeState } from "./state.js";
import { ipBatch, isAlive, run, sleep, stopGroup } from "./sys.js";
import type { Problem } from "./topology-checks.js";
import { ifaceMac, isKernelNode, type NodeSpec, splitCidr, type Topology, UNDERLAY_PORT } from "./topology-schema.js";

export const isBgp = (t: Topology): boolean => t.overlay?.backend === "bgp" || t.overlay?.backend === "bgp-ipip";

/** Whether the node's router sits on the underlay (and shares ul0 with its kernel). */
export function sharesUnderlay(t: Topology, spec: NodeSpec): boolean {
  if (isKernelNode(spec) || !spec.underlay) return false;
  // flannel's vxlan with DirectRouting: VXLAN through the kernel, direct routes through the router.
  if (t.overlay?.backend === "vxlan" && t.overlay.directRouting && spec.podCidr) return true;
  if (!isBgp(t)) return false;
  return t.overlay?.backend === "bgp" || t.overlay?.ipipMode === "CrossSubnet";
}

/** The MAC of ul0, the kernel's and the router's alike. */
export const underlayMac = (t: Topology, node: string): string => ifaceMac(t.name, node, 101);

const u32 = (cidr: string): { addr: number; len: number } => {
  const c = splitCidr(cidr) as { addr: number; prefixLen: number };
  return { addr: c.addr, len: c.prefixLen };
};
const sameSubnet = (a: string, b: string): boolean => {
  const x = u32(a);
  const y = u32(b);
  return x.len === y.len && (x.addr & maskFromPrefix(x.len)) >>> 0 === (y.addr & maskFromPrefix(y.len)) >>> 0;
};

/** Checks of the BGP fields (problems with their paths). */
export function bgpChecks(t: Topology): Problem[] {
  const o = t.overlay;
  if (!o || !isBgp(t)) return [];
  const problems: Problem[] = [];
  const routers = t.underlay?.routers ?? {};
  for (const b of Object.keys(o.bird)) {
    if (!routers[b]) problems.push({ path: ["overlay", "bird", b], message: `'${b}' is not an underlay router (BIRD runs in an underlay router's namespace)` });
  }
  for (const [i, r] of o.routeReflectors.entries()) {
    if (!o.bird[r]) problems.push({ path: ["overlay", "routeReflectors", i], message: `'${r}' is not in overlay.bird (reflectors are BIRD routers)` });
  }
  return problems;
}

interface BgpPeerSpec {
  name: string;
  /** The peer's address on the node's side. */
  address: string;
}

/** A node's peers: the other nodes (full mesh, unless reflectors), and the BIRD routers on its segments. */
export function nodePeers(t: Topology, node: string): BgpPeerSpec[] {
  const o = t.overlay as NonNullable<Topology["overlay"]>;
  const me = t.nodes[node].underlay as NonNullable<NodeSpec["underlay"]>;
  const out: BgpPeerSpec[] = [];
  if (o.routeReflectors.length === 0) {
    for (const [n, s] of Object.entries(t.nodes)) {
      if (n !== node && !isKernelNode(s) && s.underlay) out.push({ name: n, address: s.underlay.address.split("/")[0] });
    }
  }
  for (const b of Object.keys(o.bird)) {
    const addr = birdAddressFor(t, b, me.address);
    if (addr) out.push({ name: b, address: addr });
  }
  return out;
}

/** The BIRD router's address on the subnet of `cidr`, if it has one. */
function birdAddressFor(t: Topology, bird: string, cidr: string): string | null {
  for (const a of Object.values(t.underlay?.routers?.[bird] ?? {})) if (sameSubnet(a, cidr)) return a.split("/")[0];
  return null;
}

/** The overlay expansion for the BGP backends (called from overlay.ts for each node). */
export function expandBgpNode(t: Topology, node: string, s: NodeSpec, podNet: number, podLen: number, peers: Array<{ ulAddr: string }>): void {
  const o = t.overlay as NonNullable<Topology["overlay"]>;
  const ul = s.underlay as NonNullable<NodeSpec["underlay"]>;
  if (sharesUnderlay(t, s)) {
    s.interfaces.ul0 = { port: UNDERLAY_PORT, address: ul.address, mtu: ul.mtu, mac: underlayMac(t, node), proxyArp: false };
    if (ul.gateway && o.backend === "bgp") s.routes.push({ to: "default", via: ul.gateway, onlink: false });
  }
  if (o.backend === "bgp-ipip") {
    s.ipip.ipip0 = { peers: peers.map((p) => p.ulAddr) };
    s.interfaces.tunl0 = { port: "ipip0", address: `${ipToString(podNet)}/32`, mtu: ul.mtu - 20, proxyArp: false };
  }
  void podLen;
}

/** The speaker's part of a node's config, and the underlay port's filter. */
export function bgpNodeConfig(t: Topology, node: string, cfg: NodeConfig): void {
  const o = t.overlay;
  const spec = t.nodes[node];
  if (!o || !isBgp(t) || isKernelNode(spec) || !spec.underlay || !spec.podCidr) return;
  const addr = spec.underlay.address.split("/")[0];
  const pod = u32(spec.podCidr);
  const bgp: NodeBgpConfig = {
    asn: o.asNumber,
    routerId: addr,
    localAddress: addr,
    holdTime: o.holdTime,
    connectRetryTime: o.connectRetryTime,
    peers: nodePeers(t, node).map((p) => ({ name: p.name, address: p.address, asn: o.asNumber })),
    announce: [`${ipToString((pod.addr & maskFromPrefix(pod.len)) >>> 0)}/${pod.len}`],
    install: o.backend === "bgp" ? { mode: "direct" } : { mode: "ipip", dev: "tunl0", port: "ipip0", crossSubnet: o.ipipMode === "CrossSubnet" },
  };
  cfg.bgp = bgp;
  const port = cfg.ports.find((p) => p.name === UNDERLAY_PORT);
  if (port) port.filter = `not ether src ${underlayMac(t, node)} and not ip dst host ${addr}`;
}

/** The underlay port of a node that shares ul0 with its kernel leaves the kernel's packets (and its own echoes) out. */
export function sharedUnderlayFilter(t: Topology, node: string, cfg: NodeConfig): void {
  const spec = t.nodes[node];
  // The BGP modes set theirs with the speaker's config (bgpNodeConfig).
  if (isBgp(t) || !sharesUnderlay(t, spec)) return;
  const port = cfg.ports.find((p) => p.name === UNDERLAY_PORT);
  const addr = (spec.underlay as NonNullable<NodeSpec["underlay"]>).address.split("/")[0];
  if (port) port.filter = `not ether src ${underlayMac(t, node)} and not ip dst host ${addr}`;
}

/** Kernel side of a shared ul0 (build.ts, step 2): the router's MAC, no ARP answers of its own. */
export function sharedUnderlayCommands(t: Topology, node: string): string[] {
  return [`link set ul0 address ${underlayMac(t, node)}`];
}

export function sharedUnderlaySysctls(ns: string): void {
  run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.ul0.arp_ignore=8"]);
}

/** birdc's control socket of a BIRD router of the lab. */
export const birdSocket = (lab: string, name: string): string => path.join(labDir(lab), `${name}.bird.ctl`);

/** A Calico-like BIRD 2 configuration for one underlay router. */
export function birdConfig(t: Topology, name: string): string {
  const o = t.overlay as NonNullable<Topology["overlay"]>;
  const b = o.bird[name];
  const addrs = Object.values(t.underlay?.routers?.[name] ?? {});
  const id = addrs[0].split("/")[0];
  const reflector = o.routeReflectors.includes(name);
  const sym = (s: string): string => s.replace(/-/g, "_");
  const lines = [
    `# Written by tapnet lab up for ${t.name}/${name}: BIRD ${reflector ? "as route reflector" : "as a peer"} of the tapnet nodes.`,
    `log "${path.join(labDir(t.name), `${name}.bird.log`)}" all;`,
    `router id ${id};`,
    "protocol device { scan time 2; }",
    // BGP routes into this namespace's kernel, so what BIRD learned carries packets.
    "protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }",
  ];
  if (b.routes.length) lines.push(`protocol static originated { ipv4; ${b.routes.map((r) => `route ${r} blackhole;`).join(" ")} }`);
  lines.push(
    "template bgp tapnet {",
    // The nodes share a segment with BIRD: direct (BIRD takes iBGP as multihop otherwise).
    `  local as ${o.asNumber}; direct;`,
    `  hold time ${o.holdTime}; keepalive time ${Math.max(1, Math.floor(o.holdTime / 3))};`,
    // Retry soon after an error (BIRD waits 60-300 s by default).
    `  connect retry time ${o.connectRetryTime}; error wait time 1, ${Math.max(2, o.connectRetryTime)};`,
    ...(reflector ? [`  rr client; rr cluster id ${id};`] : []),
    "  ipv4 { import all; export all; gateway direct; };",
    "}",
  );
  for (const [n, s] of Object.entries(t.nodes)) {
    if (isKernelNode(s) || !s.underlay) continue;
    const local = birdAddressFor(t, name, s.underlay.address);
    if (!local) continue;
    lines.push(`protocol bgp ${sym(n)} from tapnet { local ${local}; neighbor ${s.underlay.address.split("/")[0]} as ${o.asNumber}; }`);
  }
  return `${lines.join("\n")}\n`;
}

/** Starts BIRD in each BIRD router's namespace (foreground, its own process group), waits for birdc. */
export async function startBirds(t: Topology, state: LabState, log: Log): Promise<void> {
  if (!isBgp(t)) return;
  const o = t.overlay as NonNullable<Topology["overlay"]>;
  if (Object.keys(o.bird).length)
    ensurePackages(
      [
        { what: "bird", pkg: "bird2" },
        { what: "birdc", pkg: "bird2" },
      ],
      `lab ${t.name} (BIRD)`,
      log,
    );
  for (const [name, b] of Object.entries(o.bird)) {
    const ns = nsName(t.name, name);
    if (b.routes.length) {
      // The first address of each on lo (a dummy device needs a module a container may lack).
      ipBatch(
        b.routes.map((r) => `address add ${ipToString(((u32(r).addr & maskFromPrefix(u32(r).len)) >>> 0) + 1)}/32 dev lo`),
        ns,
      );
    }
    const dir = labDir(t.name);
    const conf = path.join(dir, `${name}.bird.conf`);
    const ctl = birdSocket(t.name, name);
    fs.writeFileSync(conf, birdConfig(t, name));
    const out = fs.openSync(path.join(dir, `${name}.bird.out`), "a");
    const child = spawn("ip", ["netns", "exec", ns, "bird", "-f", "-c", conf, "-s", ctl], { detached: true, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start BIRD for ${name}`);
    state.daemons ??= {};
    state.daemons[name] = { namespace: ns, pid: child.pid, command: conf, log: path.join(dir, `${name}.bird.log`) };
    writeState(state);
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        run(["birdc", "-s", ctl, "show", "status"]);
        break;
      } catch {
        if (!isAlive(child.pid)) throw new Error(`BIRD for ${name} exited at start: see ${path.join(dir, `${name}.bird.out`)}`);
        if (Date.now() > deadline) throw new Error(`BIRD for ${name} did not answer on ${ctl} within 15 s`);
        await sleep(100);
      }
    }
    log(`bird: ${name} up (birdc -s ${ctl})`);
  }
}

/** Stops the lab's BIRDs by the PIDs recorded (only while /proc still shows them). */
export async function stopDaemons(state: LabState): Promise<void> {
  for (const d of Object.values(state.daemons ?? {})) await stopGroup(d, 2000);
}
