/**
 * The lab builder: turns a topology file into network namespaces joined through
 * tapnet node processes, and takes it all down again.
 *
 * Layout of a lab named L:
 *   - every node and every host is a network namespace `tn.L.NAME` (lab and node names
 *     never hold a dot, so two different (lab, name) pairs never share a namespace);
 *   - a node runs one tapnet process inside its namespace, started (and restarted
 *     after a crash) by a supervisor process of its own; each TAP host's eth0 is a
 *     persistent TAP the builder makes in the host's namespace, which the supervisor
 *     attaches to and hands to the node at every start, the first included (the process
 *     holds its file descriptor, so the host's eth0 IS the node's port);
 *   - a veth host gets a veth pair: eth0 in the host, the other end (named after
 *     the host) in the node, opened by the node through libpcap;
 *   - a link between two nodes is a veth pair whose ends are named after the peer.
 *   - state lives in /run/tapnet/L/ (state.json, node configs, logs, the root-only
 *     control sockets), written before each step so `lab down` can always undo it.
 */
import { meshStateFile } from "../mesh/ipam.js";
import { meshAddress, podMeshMtus } from "../mesh/lab.js";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "../control/client.js";
import { sysctlIn, tapAttachIn } from "../io/native.js";
import { isBgp, sharedUnderlayCommands, sharedUnderlaySysctls, sharesUnderlay, startBirds } from "./bgp.js";
import { type EtcdState, startAgents, startEtcd } from "./etcd.js";
import { IpPlan } from "./ip-plan.js";
import { nodeConfig } from "./node-config.js";
import { labDir, type LabState, type Log, nsName, readSupervisorStatus, writeState } from "./state.js";
import { cmdline, ipBatch, isAlive, run, sleep } from "./sys.js";
import { isKernelNode, overlayNotes, type StpSpec, type Topology, usesUnderlayPort } from "./topology.js";

/** `node supervise` and `node run` without the rest of the CLI (src/cli/node-main.ts). */
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cli/node-main.js");
/** The repository (dist/lab/ -> ../..). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const NETNS_DIR = "/run/netns";
/** IPv6 off in a namespace: for its devices now (all) and those made later (default). */
const NO_IPV6 = ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"];

/** The last lines of a log file, for a message. */
function logTail(log: string): string {
  return fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").slice(-8).join("\n") : "";
}

/**
 * Makes a lab namespace, recorded in the lab's state first so that lab down removes it
 * even when what follows fails. IPv6 is switched off in it: tapnet is an IPv4 dataplane,
 * and router solicitations and MLD reports would only add noise to every capture.
 */
export function addNamespace(state: LabState, ns: string): void {
  state.namespaces.push(ns);
  writeState(state);
  run(["ip", "netns", "add", ns]);
  sysctlIn({ netns: path.join(NETNS_DIR, ns), names: NO_IPV6, value: "1" });
  ipBatch(["link set lo up"], ns);
}

/**
 * Writes node `node`'s configuration to the lab's directory and empties its journal (a new
 * node starts from its topology alone: the journal is for restarts of this one), then
 * starts its supervisor, recorded in the lab's state (the node's pid follows from waitReady).
 *
 * The supervisor runs here (root, every capability: it enters the hosts' namespaces to
 * hand their TAPs to a restarted node) and starts the node through `ip netns exec NS
 * setpriv …` (nodeLauncher in src/node/sandbox.ts), passing on TAPNET_NODE_ARGS: extra
 * Node.js options for the node processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to
 * profile the dataplane (written at lab down, which the seccomp filter refuses unless
 * TAPNET_NO_SECCOMP=1 is set as well).
 */
export function startSupervisor(state: LabState, t: Topology, node: string, namespace: string): void {
  const dir = labDir(state.lab);
  const cfg = nodeConfig(t, node);
  const cfgPath = path.join(dir, `${node}.json`);
  const logPath = path.join(dir, `${node}.log`);
  fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  if (cfg.journal) for (const f of [cfg.journal, meshStateFile(cfg.journal)]) fs.rmSync(f, { force: true });
  const out = fs.openSync(logPath, "a");
  const child = spawn(process.execPath, [CLI, "node", "supervise", cfgPath], { detached: true, stdio: ["ignore", out, out], env: process.env });
  fs.closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start the supervisor of node ${node}`);
  state.nodes[node] = { namespace, pid: null, supervisor: child.pid, socket: cfg.controlSocket, config: cfgPath, log: logPath };
  writeState(state);
}

/**
 * Waits until a node answers on its control socket; fails when its supervisor is gone
 * or the node exited during start-up (the supervisor would only start it again).
 * Returns the node's PID.
 */
export async function waitReady(lab: string, node: string, n: LabState["nodes"][string], abort?: AbortSignal): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (abort?.aborted) throw new Error("interrupted");
    const st = readSupervisorStatus(lab, node);
    if (st?.lastExit) {
      const how = st.lastExit.signal ? `was killed by ${st.lastExit.signal}` : `exited with status ${st.lastExit.code}`;
      throw new Error(`node ${node} ${how} during start-up. Its log (${n.log}):\n${logTail(n.log)}`);
    }
    if (n.supervisor === undefined || !isAlive(n.supervisor) || cmdline(n.supervisor) === null) {
      throw new Error(`the supervisor of node ${node} exited during start-up. Its log (${n.log}):\n${logTail(n.log)}`);
    }
    if (st?.pid) {
      try {
        await request(n.socket, { cmd: "status" }, 1000);
        return st.pid;
      } catch {
        // not listening yet
      }
    }
    if (Date.now() > deadline) throw new Error(`node ${node} of lab ${lab} did not answer on ${n.socket} within 15 s (log: ${n.log})`);
    await sleep(10);
  }
}

/** `type bridge` options of a kernel node's spanning tree (iproute2 takes times in centiseconds). */
function kernelStp(stp: StpSpec | undefined): string {
  if (!stp) return "";
  const cs = (s: number): number => Math.round(s * 100);
  return ` stp_state ${stp.enabled ? 1 : 0} priority ${stp.priority} hello_time ${cs(stp.helloTime)} forward_delay ${cs(stp.forwardDelay)} max_age ${cs(stp.maxAge)}`;
}

/**
 * A kernel bridge port's cost and priority. The Linux bridge's port priority is 6 bits
 * above a 10-bit port number (0-63); tapnet's is 802.1D-2004's 4 bits above 12 (0-240
 * in steps of 16): the same port id order when the kernel's is a quarter of it.
 */
function kernelPortStp(dev: string, stp: { cost?: number; priority?: number } | undefined): string[] {
  if (!stp || (stp.cost === undefined && stp.priority === undefined)) return [];
  return [
    `link set dev ${dev} type bridge_slave${stp.cost !== undefined ? ` cost ${stp.cost}` : ""}${stp.priority !== undefined ? ` priority ${stp.priority / 4}` : ""}`,
  ];
}

/**
 * Each node was handed the eth0 of its TAP hosts by its supervisor; a node that was not
 * (the supervisor could not attach: its log says why) made a TAP of the host's name in
 * its own namespace instead, which no host would ever see.
 */
function checkTapsHanded(t: Topology, state: LabState, tapHostNs: Set<string>): void {
  for (const node of Object.keys(state.nodes)) {
    const mine = Object.entries(t.hosts).filter(([h, hs]) => hs.node === node && tapHostNs.has(nsName(t.name, h)));
    if (!mine.length) continue;
    const there = new Set(
      run(["ip", "-n", nsName(t.name, node), "-o", "link", "show"])
        .split("\n")
        .map((l) => l.split(": ")[1]?.split("@")[0]),
    );
    const lost = mine.filter(([h]) => there.has(h)).map(([h]) => h);
    if (lost.length) throw new Error(`node ${node} was not handed the eth0 of host(s) ${lost.join(", ")} by its supervisor (log: ${state.nodes[node].log})`);
  }
}

/** Every namespace a lab has: nodes, hosts, the underlay's bridges and kernel routers. */
export function labNamespaces(t: Topology): string[] {
  const names = [...Object.keys(t.nodes), ...Object.keys(t.hosts)];
  if (Object.keys(t.underlay?.segments ?? {}).length) names.push("ul");
  names.push(...Object.keys(t.underlay?.routers ?? {}));
  names.push(...Object.keys(t.etcd?.members ?? {}));
  return names.map((n) => nsName(t.name, n));
}

/**
 * ARP inspection's bindings from the lab: the address it gave host `h` and the MAC its
 * eth0 has, told to every tapnet node that inspects the host's VLAN.
 */
async function tellArpBinding(t: Topology, state: LabState, h: string): Promise<void> {
  const hs = t.hosts[h];
  const vlan = hs.vlan ?? 1;
  const nodes = Object.entries(t.nodes).filter(([n, s]) => !isKernelNode(s) && s.arpInspection?.vlans.includes(vlan) && state.nodes[n]);
  if (nodes.length === 0) return;
  const mac = run(["ip", "netns", "exec", state.hosts[h].namespace, "cat", "/sys/class/net/eth0/address"]).trim();
  for (const [n] of nodes) await request(state.nodes[n].socket, { cmd: "arp-binding", vlan, ip: state.hosts[h].ip.split("/")[0], mac, source: "lab" });
}

export async function build(t: Topology, state: LabState, log: Log, abort?: AbortSignal): Promise<void> {
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
  //    Made in one `ip -batch` (src/lab/ip-plan.ts), recorded first: lab down removes
  //    those that exist; the sysctls are written from here (sysctlIn: no process per
  //    namespace). A TAP host's namespace gets its eth0 at once, a persistent TAP made in
  //    place (tapAttachIn with create), which the supervisor hands to the node at its
  //    first start as it does at a restart; moving a TAP the node made into the host's
  //    namespace cost each host some 18 ms of the kernel's (serialized) namespace change.
  //    The rest of a TAP host's set-up is step 6a, while the nodes start.
  await step();
  const dir = labDir(lab);
  const plan = new IpPlan(dir);
  const tapHostNs = new Set(
    Object.entries(t.hosts)
      .filter(([, hs]) => hs.link === "tap" && !kernel(hs.node))
      .map(([h]) => ns(h)),
  );
  state.namespaces.push(...labNamespaces(t));
  writeState(state);
  for (const n of state.namespaces) plan.ip(undefined, `netns add ${n}`);
  plan.run();
  for (const n of state.namespaces) {
    sysctlIn({ netns: path.join(NETNS_DIR, n), names: NO_IPV6, value: "1" });
    // `lo` of a TAP host comes up with its eth0 (6a).
    if (!tapHostNs.has(n)) plan.ip(n, "link set lo up");
  }
  plan.run();
  for (const [h, hs] of Object.entries(t.hosts)) {
    if (!tapHostNs.has(ns(h))) continue;
    fs.closeSync(tapAttachIn({ netns: path.join(NETNS_DIR, ns(h)), name: "eth0", create: true }).fd);
    // What the supervisor reads to attach it (the whole entry is written in step 6b).
    state.hosts[h] = { namespace: ns(h), node: hs.node, ip: hs.ip ?? "", gateway: hs.gateway, vlan: hs.vlan ?? 1, link: "tap" };
  }
  writeState(state);
  // 2. The underlay: one kernel bridge per segment in the lab's "ul" namespace, kernel
  //    routers (forwarding namespaces) between segments, and each node's ul0 on its
  //    segment — an address of the node's kernel (tunnel sockets use it), or a tapnet
  //    port with no kernel address (host-gw: the node's router owns the address).
  const segs = Object.keys(t.underlay?.segments ?? {});
  if (segs.length)
    ipBatch(
      segs.flatMap((g) => [`link add br-${g} type bridge`, `link set br-${g} up`]),
      ns("ul"),
    );
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
    // BGP: the kernel holds the address beside the router (src/lab/bgp.ts says why).
    const shared = sharesUnderlay(t, spec);
    if (shared) cmds.unshift(...sharedUnderlayCommands(t, node));
    if (!usesUnderlayPort(spec) || shared) {
      cmds.push(`address add ${ul.address} dev ul0`);
      if (ul.gateway) cmds.push(`route add default via ${ul.gateway} dev ul0`);
    }
    ipBatch(cmds, ns(node));
    if (shared) sharedUnderlaySysctls(ns(node));
    // More segments (a node on two networks): ul1, ul2, … with their addresses.
    ul.also.forEach((a, k) => {
      const peer = `${node}-${k + 1}`;
      run(["ip", "link", "add", `ul${k + 1}`, "netns", ns(node), "type", "veth", "peer", "name", peer, "netns", ns("ul")]);
      ipBatch([`link set ${peer} master br-${a.segment}`, `link set ${peer} mtu ${ul.mtu}`, `link set ${peer} up`], ns("ul"));
      ipBatch([`link set ul${k + 1} mtu ${ul.mtu}`, `link set ul${k + 1} up`, `address add ${a.address} dev ul${k + 1}`], ns(node));
    });
  }
  // The lab's etcd members on their segment (src/lab/etcd.ts), healthy before any agent starts.
  await startEtcd(t, state as LabState & EtcdState, log, abort);
  // 3. Kernel nodes: a Linux bridge, and a kernel VXLAN device on it when asked.
  for (const [node, spec] of Object.entries(t.nodes)) {
    if (!isKernelNode(spec)) continue;
    ipBatch([`link add br0 type bridge${kernelStp(spec.stp)}`, "link set br0 up"], ns(node));
    state.kernel = { ...state.kernel, [node]: { namespace: ns(node) } };
    writeState(state);
    const kv = spec.kernelVxlan;
    if (kv && spec.underlay) {
      const local = spec.underlay.address.split("/")[0];
      run([
        "ip",
        "-n",
        ns(node),
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        String(kv.vni),
        "dstport",
        String(kv.port),
        "local",
        local,
        "remote",
        kv.remote,
        "dev",
        "ul0",
        ...(kv.learning ? [] : ["nolearning"]),
      ]);
      ipBatch(["link set vx0 master br0", "link set vx0 up"], ns(node));
    }
  }
  // 4. veth hosts, hosts of kernel nodes, and node-to-node links.
  await step();
  const vethHosts = Object.entries(t.hosts).filter(([, hs]) => hs.link !== "tap" || kernel(hs.node));
  for (const [h, hs] of vethHosts) plan.ip(undefined, `link add ${h} netns ${ns(hs.node)} type veth peer name eth0 netns ${ns(h)}`);
  for (const [h, hs] of vethHosts) {
    for (const line of [
      `link set ${h} mtu ${hs.mtu ?? 1500}`,
      ...(kernel(hs.node) ? [`link set ${h} master br0`, ...kernelPortStp(h, hs.stp)] : []),
      `link set ${h} up`,
    ]) {
      plan.ip(ns(hs.node), line);
    }
  }
  // A packet socket sees the host's TCP super-frames before segmentation (up to
  // 64 KiB); the switch forwards real frames, so the host must segment itself.
  // AF_XDP carries no checksum metadata either: a veth-xdp host also finishes its checksums.
  for (const [h, hs] of vethHosts) {
    if (!kernel(hs.node)) plan.exec(ns(h), ["ethtool", "-K", "eth0", ...(hs.link === "veth-xdp" ? ["tx", "off"] : []), "tso", "off", "gso", "off"]);
  }
  plan.run();
  for (const l of t.links) {
    const [a, b] = l.between;
    run(["ip", "link", "add", b, "netns", ns(a), "type", "veth", "peer", "name", a, "netns", ns(b)]);
    ipBatch([`link set ${b} mtu ${l.mtu}`, ...(kernel(a) ? [`link set ${b} master br0`, ...kernelPortStp(b, l.stp)] : []), `link set ${b} up`], ns(a));
    ipBatch([`link set ${a} mtu ${l.mtu}`, ...(kernel(b) ? [`link set ${a} master br0`, ...kernelPortStp(a, l.stp)] : []), `link set ${a} up`], ns(b));
  }
  // 5. Node processes, each in its namespace, each run by a supervisor of its own
  //    (src/lab/supervisor.ts) that starts it again when it dies.
  if (/prof|report|heapsnapshot/.test(process.env.TAPNET_NODE_ARGS ?? "") && process.env.TAPNET_NO_SECCOMP !== "1") {
    log("note: TAPNET_NODE_ARGS asks the nodes to write files (profiles, reports), which their seccomp filter refuses: set TAPNET_NO_SECCOMP=1 as well");
  }
  for (const node of Object.keys(t.nodes)) {
    if (kernel(node)) continue;
    await step();
    startSupervisor(state, t, node, ns(node));
  }
  // 6a. While the nodes start: the hosts whose settings do not depend on a running node
  //     (all but a mesh node's pods without an address or an MTU of their own).
  await step();
  const hosts = Object.entries(t.hosts);
  type HostSpec = (typeof hosts)[number][1];
  const early = (hs: HostSpec): boolean => hs.ip !== undefined && (hs.mtu !== undefined || !t.nodes[hs.node]?.mesh);
  // A mesh node's pod without an MTU of its own takes the mesh MTU, and follows it (src/mesh/pod-mtu.ts).
  const meshMtus = new Map<string, number>();
  const mtuOf = (hs: HostSpec): number => hs.mtu ?? meshMtus.get(hs.node) ?? 1500;
  const follows = (hs: HostSpec): boolean => hs.mtu === undefined && meshMtus.has(hs.node);
  const ips = new Map<string, string>();
  const planHost = (h: string, hs: HostSpec): void => {
    if (tapHostNs.has(ns(h))) plan.ip(ns(h), "link set lo up");
    plan.ip(ns(h), `link set eth0 mtu ${mtuOf(hs)}`);
    if (follows(hs) && hs.link !== "tap") plan.ip(ns(hs.node), `link set ${h} mtu ${mtuOf(hs)}`);
    if (hs.mac) plan.ip(ns(h), `link set eth0 address ${hs.mac}`);
    plan.ip(ns(h), `address add ${ips.get(h)} dev eth0`).ip(ns(h), "link set eth0 up");
    if (hs.gateway) plan.ip(ns(h), `route add default via ${hs.gateway} dev eth0`);
  };
  for (const [h, hs] of hosts) {
    if (!early(hs)) continue;
    ips.set(h, hs.ip as string);
    planHost(h, hs);
  }
  plan.run();
  log(`namespaces: ${state.namespaces.join(" ")}`);
  for (const [node, n] of Object.entries(state.nodes)) {
    n.pid = await waitReady(lab, node, n, abort);
    writeState(state);
  }
  log(`nodes up: ${Object.keys(state.nodes).join(" ")}`);
  // Each `agent:` node's agent leases its pod subnet and programs its peers from etcd.
  await startAgents(t, state as LabState & EtcdState, log, abort);
  // 6b. The other hosts, now that their nodes answer: a mesh node's pod without an
  //     address gets one from the node's share of the ring.
  await step();
  checkTapsHanded(t, state, tapHostNs);
  for (const [node, mtu] of await podMeshMtus(t, state)) meshMtus.set(node, mtu);
  for (const [h, hs] of hosts) {
    if (early(hs)) continue;
    ips.set(h, hs.ip ?? (await meshAddress(state.nodes[hs.node].socket, h)));
    planHost(h, hs);
  }
  plan.run();
  for (const [h, hs] of hosts) {
    state.hosts[h] = {
      namespace: ns(h),
      node: hs.node,
      ip: ips.get(h) as string,
      gateway: hs.gateway,
      vlan: hs.vlan ?? 1,
      link: kernel(hs.node) ? "veth" : hs.link,
      ...(follows(hs) ? { mtuFromMesh: true } : {}),
    };
  }
  writeState(state);
  for (const [h] of hosts) {
    await step();
    await tellArpBinding(t, state, h);
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
  if (isBgp(t)) await startBirds(t, state, log);
  // 7. Routers announce their addresses (gratuitous ARP) now that the links are up.
  for (const [node, spec] of Object.entries(t.nodes)) {
    if (!kernel(node) && Object.keys(spec.interfaces).length) await request(state.nodes[node].socket, { cmd: "announce" });
  }
}
