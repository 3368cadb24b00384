/**
 * The lab builder: turns a topology file into network namespaces joined through
 * tapnet node processes, and takes it all down again.
 *
 * Layout of a lab named L:
 *   - every node and every host is a network namespace `tn.L.NAME` (lab and node names
 *     never hold a dot, so two different (lab, name) pairs never share a namespace);
 *   - a node runs one tapnet process inside its namespace; for each TAP host the
 *     process creates a TAP named after the host, which the builder then moves into
 *     the host's namespace and renames eth0 (the process keeps its file descriptor,
 *     so the host's eth0 IS the node's port);
 *   - a veth host gets a veth pair: eth0 in the host, the other end (named after
 *     the host) in the node, opened by the node through libpcap;
 *   - a link between two nodes is a veth pair whose ends are named after the peer.
 *   - state lives in /run/tapnet/L/ (state.json, node configs, logs, the root-only
 *     control sockets), written before each step so `lab down` can always undo it.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "../control/client.js";
import { RUN_DIR } from "../control/protocol.js";
import type { NodeConfig, NodePortConfig } from "../node/config.js";
import { nodeEnvironment, nodeLauncher, type SandboxReport } from "../node/sandbox.js";
import { ifaceMac, ifAddresses, isKernelNode, loadTopology, offloadCapable, overlayNotes, UNDERLAY_PORT, usesUnderlayPort, type Topology } from "./topology.js";
import { cmdline, ipBatch, isAlive, netnsList, run, sleep } from "./sys.js";

export interface LabState {
  lab: string;
  file: string;
  createdAt: string;
  namespaces: string[];
  nodes: Record<string, { namespace: string; pid: number | null; socket: string; config: string; log: string }>;
  hosts: Record<string, { namespace: string; node: string; ip: string; gateway?: string; vlan: number; link: string; run?: { pid: number; command: string; log: string } }>;
}

export const nsName = (lab: string, name: string): string => `tn.${lab}.${name}`;
export const labDir = (lab: string): string => path.join(RUN_DIR, lab);
const statePath = (lab: string): string => path.join(labDir(lab), "state.json");

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cli/main.js");
/** The repository (dist/lab/ -> ../..). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export type Log = (msg: string) => void;

export function readState(lab: string): LabState | null {
  try {
    return JSON.parse(fs.readFileSync(statePath(lab), "utf8")) as LabState;
  } catch {
    return null;
  }
}

function writeState(s: LabState): void {
  fs.mkdirSync(labDir(s.lab), { recursive: true, mode: 0o700 });
  const tmp = statePath(s.lab) + ".tmp";
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2));
  fs.renameSync(tmp, statePath(s.lab));
}

export function listLabs(): LabState[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(RUN_DIR);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") {
      throw new Error(`${RUN_DIR}: permission denied (labs and their control sockets are root-only: run with sudo)`);
    }
    return [];
  }
  return names.map(readState).filter((s): s is LabState => s !== null);
}

/** What a lab can't be built without; says what to do about each. */
export function preflight(): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error("tapnet lab needs root (it creates network namespaces and TAP devices): run it with sudo");
  }
  if (!fs.existsSync("/dev/net/tun")) throw new Error("/dev/net/tun does not exist: load the tun module (sudo modprobe tun)");
  try {
    run(["ip", "-V"]);
  } catch {
    throw new Error("the 'ip' command (iproute2) is missing: run sudo npm run setup");
  }
  try {
    run(["setpriv", "--version"]);
  } catch {
    throw new Error("the 'setpriv' command (util-linux) is missing: nodes are started through it to drop their capabilities (run sudo npm run setup)");
  }
}

function nodeConfig(t: Topology, node: string): NodeConfig {
  const spec = t.nodes[node];
  const ports: NodePortConfig[] = [];
  const mtuOf: Record<string, number> = {};
  const used = new Set<number>();
  for (const [h, hs] of Object.entries(t.hosts)) {
    if (hs.node !== node) continue;
    ports.push({ name: h, kind: hs.link === "tap" ? "tap" : "pcap", ifname: h, vlan: { mode: "access", vlan: hs.vlan ?? 1 } });
    mtuOf[h] = hs.mtu;
    used.add(hs.vlan ?? 1);
  }
  for (const l of t.links) {
    const i = l.between.indexOf(node);
    if (i < 0) continue;
    const peer = l.between[1 - i];
    ports.push({
      name: peer,
      kind: "pcap",
      ifname: peer,
      vlan: l.trunk
        ? { mode: "trunk", allowed: l.trunk.vlans, native: l.trunk.native }
        : { mode: "access", vlan: l.vlan ?? 1 },
    });
    mtuOf[peer] = l.mtu;
    for (const v of l.trunk?.vlans ?? [l.vlan ?? 1]) used.add(v);
    if (l.trunk?.native) used.add(l.trunk.native);
  }
  const ul = spec.underlay;
  const localAddr = ul ? ul.address.split("/")[0] : "";
  for (const [name, v] of Object.entries(spec.vxlan)) {
    ports.push({
      name,
      kind: "vxlan",
      ifname: name,
      vlan: { mode: "access", vlan: v.vlan ?? 1 },
      vxlan: {
        vni: v.vni,
        dstPort: v.port,
        localAddr,
        remotes: v.remotes,
        fdb: v.fdb,
        arpSuppress: v.arpSuppress,
        learning: v.learning,
        udpChecksum: v.udpChecksum,
        underlayMtu: ul?.mtu ?? 1500,
      },
    });
    mtuOf[name] = (ul?.mtu ?? 1500) - 50;
    used.add(v.vlan ?? 1);
  }
  for (const [name, v] of Object.entries(spec.ipip)) {
    ports.push({ name, kind: "ipip", ifname: name, vlan: { mode: "access", vlan: 1 }, ipip: { localAddr, peers: v.peers, underlayMtu: ul?.mtu ?? 1500 } });
    mtuOf[name] = (ul?.mtu ?? 1500) - 20;
  }
  if (usesUnderlayPort(spec)) {
    ports.push({ name: UNDERLAY_PORT, kind: "pcap", ifname: "ul0", vlan: { mode: "access", vlan: 1 } });
    mtuOf[UNDERLAY_PORT] = ul?.mtu ?? 1500;
  }
  const ifaces = Object.entries(spec.interfaces);
  for (const [, i] of ifaces) if (i.vlan !== undefined) used.add(i.vlan);
  // A routed port is a VLAN of its own inside the switch, taken from the top down.
  let internalVlan = 4094;
  const router = ifaces.length
    ? {
        interfaces: ifaces.map(([name, i], n) => {
          let vlan = i.vlan;
          if (vlan === undefined) {
            while (used.has(internalVlan)) internalVlan--;
            vlan = internalVlan--;
            const p = ports.find((x) => x.name === i.port) as NodePortConfig;
            p.vlan = { mode: "access", vlan };
            p.routed = name;
          }
          return {
            name,
            vlan,
            mac: i.mac ?? ifaceMac(t.name, node, n + 1),
            mtu: i.mtu ?? (i.port !== undefined ? mtuOf[i.port] : 1500),
            addresses: ifAddresses(i),
            proxyArp: i.proxyArp,
          };
        }),
        routes: spec.routes.map((r) => ({ to: r.to === "default" ? "0.0.0.0/0" : r.to, via: r.via, dev: r.dev, onlink: r.onlink })),
        neighbors: spec.neighbors,
        nat: spec.nat,
        services: Object.entries(spec.services).map(([name, sv]) => ({ name, ...sv })),
      }
    : undefined;
  return {
    lab: t.name,
    node,
    controlSocket: path.join(labDir(t.name), `${node}.sock`),
    ports,
    offload: spec.offload ?? offloadCapable(t, node),
    switch: { ageingTime: spec.ageingTime, maxEntries: spec.maxEntries, static: spec.static },
    router,
  };
}

async function waitReady(lab: string, node: string, socket: string, pid: number, log: string, abort?: AbortSignal): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (abort?.aborted) throw new Error("interrupted");
    if (!isAlive(pid) || cmdline(pid) === null) {
      const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").slice(-8).join("\n") : "";
      throw new Error(`node ${node} exited during start-up. Its log (${log}):\n${tail}`);
    }
    try {
      await request(socket, { cmd: "status" }, 1000);
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`node ${node} of lab ${lab} did not answer on ${socket} within 15 s (log: ${log})`);
    await sleep(50);
  }
}

/**
 * Brings a lab up; on any failure — or when `abort` fires (Ctrl-C) — removes everything
 * it made and rethrows. The state file is written before every step, so what was made
 * is always known, also to a `lab down` run after a crash of this process.
 */
export async function labUp(file: string, log: Log = () => undefined, abort?: AbortSignal): Promise<LabState> {
  const t = loadTopology(file);
  preflight();
  const lab = t.name;
  const existing = readState(lab);
  if (existing) {
    throw new Error(`lab '${lab}' is already up (from ${existing.file}): run 'tapnet lab down ${existing.file}' first`);
  }
  const names = labNamespaces(t);
  const clash = netnsList().filter((n) => names.includes(n));
  if (clash.length) {
    const owner = ownerOf(clash);
    throw new Error(
      owner
        ? `network namespace ${clash[0]} belongs to lab '${owner}', which is up: tapnet lab down ${owner}`
        : `network namespace${clash.length > 1 ? "s" : ""} ${clash.join(", ")} already exist${clash.length > 1 ? "" : "s"} and no lab records ${clash.length > 1 ? "them" : "it"} (left over from a crash?): 'tapnet lab down ${file}' removes ${clash.length > 1 ? "them" : "it"}`,
    );
  }
  const state: LabState = {
    lab,
    file: path.resolve(file),
    createdAt: new Date().toISOString(),
    namespaces: [],
    nodes: {},
    hosts: {},
  };
  fs.mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  writeState(state);
  try {
    await build(t, state, log, abort);
    return state;
  } catch (e) {
    log(abort?.aborted ? "interrupted: removing what was made" : "lab up failed; removing what was made");
    await teardown(state, () => undefined);
    if (abort?.aborted) throw new Error(`lab ${lab}: interrupted; everything it had created was removed`);
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`lab ${lab} did not come up: ${msg}\n(everything it had created was removed)`);
  }
}

/** The lab (other than `except`) whose state records one of `namespaces`, if any. */
function ownerOf(namespaces: string[], except?: string): string | null {
  for (const s of listLabs()) {
    if (s.lab === except) continue;
    if (s.namespaces.some((n) => namespaces.includes(n))) return s.lab;
  }
  return null;
}

/** Every namespace a lab has: nodes, hosts, the underlay's bridges and kernel routers. */
export function labNamespaces(t: Topology): string[] {
  const names = [...Object.keys(t.nodes), ...Object.keys(t.hosts)];
  if (Object.keys(t.underlay?.segments ?? {}).length) names.push("ul");
  names.push(...Object.keys(t.underlay?.routers ?? {}));
  return names.map((n) => nsName(t.name, n));
}

async function build(t: Topology, state: LabState, log: Log, abort?: AbortSignal): Promise<void> {
  const lab = t.name;
  // Signals are seen between event-loop turns: yield at every step so Ctrl-C stops the
  // build there (and the caller removes what was made) instead of after the whole lab.
  const step = async (): Promise<void> => {
    await new Promise<void>((r) => setImmediate(r));
    if (abort?.aborted) throw new Error("interrupted");
  };
  const ns = (n: string): string => nsName(lab, n);
  const kernel = (node: string): boolean => isKernelNode(t.nodes[node]);
  // 1. Namespaces. IPv6 is switched off in them: tapnet is an IPv4 dataplane, and
  //    router solicitations and MLD reports would only add noise to every capture.
  for (const n of labNamespaces(t)) {
    await step();
    state.namespaces.push(n);
    writeState(state);
    run(["ip", "netns", "add", n]);
    run(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    ipBatch(["link set lo up"], n);
  }
  log(`namespaces: ${state.namespaces.join(" ")}`);
  // 2. The underlay: one kernel bridge per segment in the lab's "ul" namespace, kernel
  //    routers (forwarding namespaces) between segments, and each node's ul0 on its
  //    segment — an address of the node's kernel (tunnel sockets use it), or a tapnet
  //    port with no kernel address (host-gw: the node's router owns the address).
  const segs = Object.keys(t.underlay?.segments ?? {});
  if (segs.length) ipBatch(segs.flatMap((g) => [`link add br-${g} type bridge`, `link set br-${g} up`]), ns("ul"));
  for (const [r, attach] of Object.entries(t.underlay?.routers ?? {})) {
    run(["ip", "netns", "exec", ns(r), "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (const [g, addr] of Object.entries(attach)) {
      run(["ip", "link", "add", g, "netns", ns(r), "type", "veth", "peer", "name", `${r}-${g}`, "netns", ns("ul")]);
      ipBatch([`link set ${r}-${g} master br-${g}`, `link set ${r}-${g} up`], ns("ul"));
      ipBatch([`address add ${addr} dev ${g}`, `link set ${g} up`], ns(r));
    }
  }
  for (const [node, spec] of Object.entries(t.nodes)) {
    const ul = spec.underlay;
    if (!ul) continue;
    run(["ip", "link", "add", "ul0", "netns", ns(node), "type", "veth", "peer", "name", node, "netns", ns("ul")]);
    ipBatch([`link set ${node} master br-${ul.segment}`, `link set ${node} mtu ${ul.mtu}`, `link set ${node} up`], ns("ul"));
    const cmds = [`link set ul0 mtu ${ul.mtu}`, "link set ul0 up"];
    if (!usesUnderlayPort(spec)) {
      cmds.push(`address add ${ul.address} dev ul0`);
      if (ul.gateway) cmds.push(`route add default via ${ul.gateway} dev ul0`);
    }
    ipBatch(cmds, ns(node));
  }
  // 3. Kernel nodes: a Linux bridge, and a kernel VXLAN device on it when asked.
  for (const [node, spec] of Object.entries(t.nodes)) {
    if (!isKernelNode(spec)) continue;
    ipBatch(["link add br0 type bridge", "link set br0 up"], ns(node));
    const kv = spec.kernelVxlan;
    if (kv && spec.underlay) {
      const local = spec.underlay.address.split("/")[0];
      run(["ip", "-n", ns(node), "link", "add", "vx0", "type", "vxlan", "id", String(kv.vni), "dstport", String(kv.port), "local", local, "remote", kv.remote, "dev", "ul0", ...(kv.learning ? [] : ["nolearning"])]);
      ipBatch(["link set vx0 master br0", "link set vx0 up"], ns(node));
    }
  }
  // 4. veth hosts, hosts of kernel nodes, and node-to-node links.
  await step();
  for (const [h, hs] of Object.entries(t.hosts)) {
    if (hs.link !== "veth" && !kernel(hs.node)) continue;
    await step();
    run(["ip", "link", "add", h, "netns", ns(hs.node), "type", "veth", "peer", "name", "eth0", "netns", ns(h)]);
    ipBatch([`link set ${h} mtu ${hs.mtu}`, ...(kernel(hs.node) ? [`link set ${h} master br0`] : []), `link set ${h} up`], ns(hs.node));
    // A packet socket sees the host's TCP super-frames before segmentation (up to
    // 64 KiB); the switch forwards real frames, so the host must segment itself.
    if (!kernel(hs.node)) run(["ip", "netns", "exec", ns(h), "ethtool", "-K", "eth0", "tso", "off", "gso", "off"]);
  }
  for (const l of t.links) {
    const [a, b] = l.between;
    run(["ip", "link", "add", b, "netns", ns(a), "type", "veth", "peer", "name", a, "netns", ns(b)]);
    ipBatch([`link set ${b} mtu ${l.mtu}`, ...(kernel(a) ? [`link set ${b} master br0`] : []), `link set ${b} up`], ns(a));
    ipBatch([`link set ${a} mtu ${l.mtu}`, ...(kernel(b) ? [`link set ${a} master br0`] : []), `link set ${a} up`], ns(b));
  }
  // 5. Node processes, each in its namespace.
  const dir = labDir(lab);
  if (/prof|report|heapsnapshot/.test(process.env.TAPNET_NODE_ARGS ?? "") && process.env.TAPNET_NO_SECCOMP !== "1") {
    log("note: TAPNET_NODE_ARGS asks the nodes to write files (profiles, reports), which their seccomp filter refuses: set TAPNET_NO_SECCOMP=1 as well");
  }
  for (const node of Object.keys(t.nodes)) {
    if (kernel(node)) continue;
    await step();
    const cfg = nodeConfig(t, node);
    const cfgPath = path.join(dir, `${node}.json`);
    const logPath = path.join(dir, `${node}.log`);
    fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    const out = fs.openSync(logPath, "a");
    // TAPNET_NODE_ARGS: extra Node.js options for the node processes, e.g.
    // "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the dataplane (written at lab down,
    // which the seccomp filter refuses unless TAPNET_NO_SECCOMP=1 is set as well).
    const nodeArgs = (process.env.TAPNET_NODE_ARGS ?? "").split(/\s+/).filter((a) => a !== "");
    // Through setpriv: the node runs with NODE_CAPABILITIES and no_new_privs from its
    // exec on, on every thread (src/node/sandbox.ts). `ip netns exec` and setpriv both
    // exec, so child.pid is the node's PID.
    const child = spawn("ip", ["netns", "exec", ns(node), ...nodeLauncher(), process.execPath, ...nodeArgs, CLI, "node", "run", cfgPath], {
      detached: true,
      stdio: ["ignore", out, out],
      env: nodeEnvironment(),
    });
    fs.closeSync(out);
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start the process of node ${node}`);
    state.nodes[node] = { namespace: ns(node), pid: child.pid, socket: cfg.controlSocket, config: cfgPath, log: logPath };
    writeState(state);
  }
  for (const [node, n] of Object.entries(state.nodes)) {
    await waitReady(lab, node, n.socket, n.pid as number, n.log, abort);
  }
  log(`nodes up: ${Object.keys(state.nodes).join(" ")}`);
  // 6. Hosts: hand each TAP host its port as eth0, then addresses and routes.
  for (const [h, hs] of Object.entries(t.hosts)) {
    await step();
    if (hs.link === "tap" && !kernel(hs.node)) {
      ipBatch([`link set ${h} netns ${ns(h)}`], ns(hs.node));
      ipBatch([`link set ${h} name eth0`], ns(h));
    }
    const cmds = [`link set eth0 mtu ${hs.mtu}`];
    if (hs.mac) cmds.push(`link set eth0 address ${hs.mac}`);
    cmds.push(`address add ${hs.ip} dev eth0`, "link set eth0 up");
    if (hs.gateway) cmds.push(`route add default via ${hs.gateway} dev eth0`);
    ipBatch(cmds, ns(h));
    state.hosts[h] = { namespace: ns(h), node: hs.node, ip: hs.ip, gateway: hs.gateway, vlan: hs.vlan ?? 1, link: kernel(hs.node) ? "veth" : hs.link };
    writeState(state);
  }
  log(`hosts up: ${Object.keys(state.hosts).join(" ")}`);
  // Commands the hosts run (servers): each in its own process group, so lab down
  // stops it and its children by PID.
  for (const [h, hs] of Object.entries(t.hosts)) {
    if (!hs.run) continue;
    const logPath = path.join(dir, `${h}.log`);
    const out = fs.openSync(logPath, "a");
    // Run from the topology file's folder, with TAPNET_ROOT naming the repository
    // (so a lab can start scripts/http-name.py wherever the user stands).
    const child = spawn("ip", ["netns", "exec", ns(h), "sh", "-c", hs.run], {
      detached: true,
      stdio: ["ignore", out, out],
      cwd: path.dirname(state.file),
      env: { ...process.env, TAPNET_ROOT: ROOT },
    });
    fs.closeSync(out);
    child.unref();
    if (child.pid === undefined) throw new Error(`host ${h}: could not start '${hs.run}'`);
    state.hosts[h].run = { pid: child.pid, command: hs.run, log: logPath };
    writeState(state);
  }
  for (const note of overlayNotes.get(t) ?? []) log(`note: ${note}`);
  // 7. Routers announce their addresses (gratuitous ARP) now that the links are up.
  for (const [node, spec] of Object.entries(t.nodes)) {
    if (!kernel(node) && Object.keys(spec.interfaces).length) await request(state.nodes[node].socket, { cmd: "announce" });
  }
}

/** Stops a node process we started: only if /proc says it is still our node. */
async function stopNode(n: LabState["nodes"][string]): Promise<void> {
  if (n.pid === null) return;
  const cl = cmdline(n.pid);
  if (cl === null || !cl.includes(n.config)) return; // gone, or the PID was reused
  try {
    process.kill(n.pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 40; i++) {
    if (cmdline(n.pid) === null || !isAlive(n.pid)) return;
    await sleep(50);
  }
  try {
    process.kill(n.pid, "SIGKILL");
  } catch {
    // exited meanwhile
  }
  for (let i = 0; i < 40 && cmdline(n.pid) !== null; i++) await sleep(25);
}

/** Stops a host's command (its whole process group) if /proc still shows it. */
async function stopRun(r: { pid: number; command: string }): Promise<void> {
  const cl = cmdline(r.pid);
  if (cl === null || !cl.includes(r.command)) return;
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    try {
      process.kill(-r.pid, sig);
    } catch {
      return;
    }
    for (let i = 0; i < 20; i++) {
      if (!isAlive(r.pid) || !cmdline(r.pid)) return;
      await sleep(50);
    }
  }
}

async function teardown(state: LabState, log: Log, extraNamespaces: string[] = []): Promise<string[]> {
  for (const h of Object.values(state.hosts)) if (h.run) await stopRun(h.run);
  for (const n of Object.values(state.nodes)) await stopNode(n);
  const present = new Set(netnsList());
  const removed: string[] = [];
  const failures: string[] = [];
  for (const ns of new Set([...state.namespaces, ...extraNamespaces])) {
    if (!present.has(ns)) continue;
    try {
      run(["ip", "netns", "del", ns]);
      removed.push(ns);
    } catch (e) {
      failures.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (failures.length) throw new Error(`could not remove everything:\n${failures.join("\n")}`);
  fs.rmSync(labDir(state.lab), { recursive: true, force: true });
  log(`removed ${removed.length} namespaces`);
  return removed;
}

/**
 * Takes a lab down: stops its node processes (by the PIDs it recorded), deletes every
 * namespace its state recorded (which removes the veths in them; TAPs go with their
 * process). Works after a node was killed with -9 and after a half-finished `lab up`.
 * Given the topology file of a lab whose state is gone, it also removes the namespaces
 * that file names — never one that another lab's state records.
 */
export async function labDown(fileOrName: string, log: Log = () => undefined): Promise<{ lab: string; removed: string[] }> {
  let lab: string;
  let derived: string[] = [];
  if (fs.existsSync(fileOrName)) {
    const t = loadTopology(fileOrName);
    lab = t.name;
    derived = labNamespaces(t);
  } else {
    lab = fileOrName;
  }
  preflight();
  const recorded = readState(lab);
  const state: LabState = recorded ?? {
    lab,
    file: fileOrName,
    createdAt: "",
    namespaces: [],
    nodes: {},
    hosts: {},
  };
  const others = new Set(listLabs().filter((s) => s.lab !== lab).flatMap((s) => s.namespaces));
  const foreign = state.namespaces.filter((n) => others.has(n));
  if (foreign.length) throw new Error(`lab ${lab}: its state names ${foreign.join(", ")}, which another lab's state records too; removing nothing`);
  const removed = await teardown(state, log, recorded ? [] : derived.filter((n) => !others.has(n)));
  return { lab, removed };
}

export async function labStatus(): Promise<
  Array<{
    lab: string;
    file: string;
    nodes: Array<{ name: string; pid: number | null; running: boolean; ports?: string[]; sandbox?: SandboxReport }>;
    hosts: LabState["hosts"];
  }>
> {
  const out = [];
  for (const s of listLabs()) {
    const nodes = [];
    for (const [name, n] of Object.entries(s.nodes)) {
      let ports: string[] | undefined;
      let sandbox: SandboxReport | undefined;
      let running = false;
      try {
        const st = await request<{ ports: string[]; sandbox: SandboxReport }>(n.socket, { cmd: "status" }, 2000);
        ports = st.ports;
        sandbox = st.sandbox;
        running = true;
      } catch {
        running = false;
      }
      nodes.push({ name, pid: n.pid, running, ports, sandbox });
    }
    out.push({ lab: s.lab, file: s.file, nodes, hosts: s.hosts });
  }
  return out;
}

/** Finds the lab that has `name` as a host (what = "host") or node (what = "node"). */
export function findLab(name: string | undefined, what: "host" | "node", lab?: string): LabState {
  const labs = listLabs();
  if (lab) {
    const s = labs.find((l) => l.lab === lab);
    if (!s) throw new Error(`no lab named '${lab}' is up (tapnet lab status lists them)`);
    return s;
  }
  if (labs.length === 0) throw new Error("no lab is up (start one with: tapnet lab up FILE)");
  if (name === undefined) {
    if (labs.length > 1) throw new Error(`several labs are up (${labs.map((l) => l.lab).join(", ")}): say which with --lab`);
    return labs[0];
  }
  const has = labs.filter((l) => (what === "host" ? l.hosts[name] : l.nodes[name]));
  if (has.length === 0) {
    const known = labs.flatMap((l) => Object.keys(what === "host" ? l.hosts : l.nodes));
    throw new Error(`no ${what} named '${name}' in the labs that are up (${what}s: ${known.join(", ") || "none"})`);
  }
  if (has.length > 1) throw new Error(`${what} '${name}' exists in labs ${has.map((l) => l.lab).join(", ")}: say which with --lab`);
  return has[0];
}
