/**
 * A lab's etcd cluster and the agents that use it.
 *
 *   etcd:                              # in the topology file
 *     segment: net                     # the underlay segment the members join
 *     members: { etcd1: 192.168.0.11/24, etcd2: 192.168.0.12/24, etcd3: 192.168.0.13/24 }
 *     network: 10.244.0.0/16           # flannel's Network (SubnetLen, prefix, leaseTtl optional)
 *   nodes:
 *     node1: { underlay: {...}, podCidr: 10.244.1.0/24, agent: flannel }
 *
 * Each member is Debian's etcd (3.4) in a namespace tn.LAB.MEMBER with eth0 on the
 * segment's bridge, listening on its lab address only (client 2379, peer 2380), its data
 * in /run/tapnet/LAB/MEMBER.etcd. Once the cluster is healthy the lab writes
 * `<prefix>/config` with etcdctl. Each `agent: flannel` node gets a `tapnet agent`
 * process in its namespace (so it reaches etcd over the underlay from the node's kernel
 * address — or, for host-gw, whose underlay address is the router's, from `control`,
 * a second veth `ctl0` on the etcd segment). etcd and agents run with no capabilities
 * (setpriv) and are stopped by PID at `lab down`, before the namespaces go.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "../control/client.js";
import { ensurePackages } from "./packages.js";
import { labDir, type LabState, type Log, nsName, writeState } from "./state.js";
import { cmdline, ipBatch, isAlive, run, sleep } from "./sys.js";
import type { Problem } from "./topology-checks.js";
import { maskFromPrefix as maskOf } from "../wire/ipv4addr.js";
import { splitCidr, type Topology } from "./topology-schema.js";

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cli/main.js");

/** What `lab down` needs to stop an etcd member or an agent: its PID and a word of its command line. */
export interface Proc {
  namespace: string;
  pid: number;
  /** A string its /proc cmdline holds (so a reused PID is never signalled). */
  marker: string;
  log: string;
}

export interface EtcdState {
  etcd?: Record<string, Proc & { endpoint: string; dataDir: string }>;
  agents?: Record<string, Proc & { statusSocket: string; subnetFile: string }>;
}

/** No capabilities at all, no way to gain any: etcd and the agents need none. */
const UNPRIVILEGED = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"];

export const etcdMembers = (t: Topology): string[] => Object.keys(t.etcd?.members ?? {});

export const endpoints = (t: Topology): string[] => Object.values(t.etcd?.members ?? {}).map((a) => `http://${a.split("/")[0]}:2379`);

export const agentNodes = (t: Topology): string[] => Object.keys(t.nodes).filter((n) => t.nodes[n].agent !== undefined);

/** Checks of `etcd:` and of the nodes' `agent:` (paths point at the field). */
export function etcdChecks(t: Topology): Problem[] {
  const problems: Problem[] = [];
  const e = t.etcd;
  const segments = Object.keys(t.underlay?.segments ?? {});
  const agents = agentNodes(t);
  if (e) {
    if (!segments.includes(e.segment))
      problems.push({ path: ["etcd", "segment"], message: `unknown segment '${e.segment}' (underlay.segments: ${segments.join(", ") || "none"})` });
    const taken = new Set([...Object.keys(t.nodes), ...Object.keys(t.hosts), ...Object.keys(t.underlay?.routers ?? {}), "ul"]);
    // Underlay addresses already in use (nodes, their control addresses, routers), by address.
    const used = new Map<string, string>();
    for (const [n, s] of Object.entries(t.nodes)) {
      if (s.underlay) used.set(s.underlay.address.split("/")[0], `node ${n}'s underlay address`);
      if (s.control) used.set(s.control.split("/")[0], `node ${n}'s control address`);
    }
    for (const [r, attach] of Object.entries(t.underlay?.routers ?? {}))
      for (const a of Object.values(attach)) used.set(a.split("/")[0], `router ${r}'s address`);
    for (const [m, a] of Object.entries(e.members)) {
      if (taken.has(m)) problems.push({ path: ["etcd", "members", m], message: `'${m}' is already a node, host, router or reserved name` });
      const c = splitCidr(a);
      if (!c) problems.push({ path: ["etcd", "members", m], message: `'${a}' is not a valid IPv4 address with prefix` });
      const ip = a.split("/")[0];
      const other = used.get(ip);
      if (other) problems.push({ path: ["etcd", "members", m], message: `${ip} is already ${other}` });
      used.set(ip, `etcd member ${m}'s address`);
    }
    if (!splitCidr(e.network)) problems.push({ path: ["etcd", "network"], message: `'${e.network}' is not a valid IPv4 CIDR` });
  }
  for (const n of agents) {
    const spec = t.nodes[n];
    const at = ["nodes", n, "agent"];
    if (!e) problems.push({ path: at, message: "an agent needs the lab's etcd (etcd: { segment, members, network })" });
    if (!t.overlay || (t.overlay.backend !== "vxlan" && t.overlay.backend !== "host-gw"))
      problems.push({ path: at, message: "the flannel agent drives overlay backend vxlan or host-gw: say overlay: { backend: vxlan }" });
    if (!spec.underlay) problems.push({ path: at, message: `node ${n} needs an underlay (its PublicIP) for its agent` });
    if (!spec.podCidr) problems.push({ path: at, message: `node ${n} needs podCidr (the subnet it asks etcd for first, and its pods' subnet)` });
    if (t.overlay?.backend === "host-gw" && !spec.control)
      problems.push({
        path: at,
        message: `host-gw: node ${n}'s underlay address is its router's, so its agent reaches etcd from a second address: control: ADDRESS/LEN on the etcd segment`,
      });
    // The subnet the agent asks for must be one flannel's config hands out (else it gets another
    // and the pods' addresses, written in the file, do not fit).
    const pod = spec.podCidr ? splitCidr(spec.podCidr) : null;
    const net = e ? splitCidr(e.network) : null;
    if (e && pod && net) {
      const len = e.subnetLen ?? (net.prefixLen < 24 ? 24 : net.prefixLen + 1);
      const inside = pod.prefixLen >= net.prefixLen && (pod.addr & maskOf(net.prefixLen)) >>> 0 === (net.addr & maskOf(net.prefixLen)) >>> 0;
      if (!inside || pod.prefixLen !== len)
        problems.push({
          path: ["nodes", n, "podCidr"],
          message: `${spec.podCidr} is not a /${len} of etcd.network ${e.network} (the subnets flannel hands out)`,
        });
    }
    if (spec.control && e) {
      const c = splitCidr(spec.control);
      const m0 = splitCidr(Object.values(e.members)[0] ?? "");
      if (c && m0 && (c.addr & maskOf(m0.prefixLen)) >>> 0 !== (m0.addr & maskOf(m0.prefixLen)) >>> 0)
        problems.push({ path: ["nodes", n, "control"], message: `${spec.control} is not on the etcd members' subnet` });
    }
  }
  return problems;
}

/** flannel's `<prefix>/config` for the lab. */
export function flannelConfigJson(t: Topology): string {
  const e = t.etcd as NonNullable<Topology["etcd"]>;
  const o = t.overlay as NonNullable<Topology["overlay"]>;
  return JSON.stringify({
    Network: e.network,
    ...(e.subnetLen !== undefined ? { SubnetLen: e.subnetLen } : {}),
    Backend:
      o.backend === "vxlan" ? { Type: "vxlan", VNI: o.vni, Port: o.port ?? 8472, ...(o.directRouting ? { DirectRouting: true } : {}) } : { Type: "host-gw" },
  });
}

export async function stopProc(p: Proc): Promise<void> {
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    const cl = cmdline(p.pid);
    if (cl === null || !cl.includes(p.marker)) return;
    try {
      process.kill(p.pid, sig);
    } catch {
      return;
    }
    for (let i = 0; i < 60; i++) {
      if (!isAlive(p.pid) || cmdline(p.pid) === null) return;
      await sleep(50);
    }
  }
}

/** Stops the lab's agents, then its etcd members (lab down, and a failed lab up). */
export async function stopEtcdAndAgents(state: LabState & EtcdState): Promise<void> {
  // Side by side: each stop is mostly waiting for the process to go.
  await Promise.all(Object.values(state.agents ?? {}).map(stopProc));
  await Promise.all(Object.values(state.etcd ?? {}).map(stopProc));
}

function spawnLogged(ns: string, argv: string[], log: string): number {
  const out = fs.openSync(log, "a");
  const child = spawn("ip", ["netns", "exec", ns, ...UNPRIVILEGED, ...argv], { detached: true, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${argv[0]} in ${ns}`);
  return child.pid;
}

const tail = (file: string): string => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").slice(-8).join("\n") : "");

/** Wires the members (and host-gw agents' ctl0) onto the segment, starts etcd, waits until healthy, writes the config. */
export async function startEtcd(t: Topology, state: LabState & EtcdState, log: Log, abort?: AbortSignal): Promise<void> {
  const e = t.etcd;
  if (!e) return;
  ensurePackages(
    [
      { what: "etcd", pkg: "etcd-server" },
      { what: "etcdctl", pkg: "etcd-client" },
    ],
    `lab ${t.name} (etcd)`,
    log,
  );
  const lab = t.name;
  const ul = nsName(lab, "ul");
  for (const [m, addr] of Object.entries(e.members)) {
    run(["ip", "link", "add", "eth0", "netns", nsName(lab, m), "type", "veth", "peer", "name", `etcd-${m}`.slice(0, 15), "netns", ul]);
    ipBatch([`link set ${`etcd-${m}`.slice(0, 15)} master br-${e.segment}`, `link set ${`etcd-${m}`.slice(0, 15)} up`], ul);
    ipBatch([`address add ${addr} dev eth0`, "link set eth0 up", ...(e.gateway ? [`route add default via ${e.gateway}`] : [])], nsName(lab, m));
  }
  for (const n of agentNodes(t)) {
    const c = t.nodes[n].control;
    if (!c) continue;
    const peer = `ctl-${n}`.slice(0, 15);
    run(["ip", "link", "add", "ctl0", "netns", nsName(lab, n), "type", "veth", "peer", "name", peer, "netns", ul]);
    ipBatch([`link set ${peer} master br-${e.segment}`, `link set ${peer} up`], ul);
    ipBatch([`address add ${c} dev ctl0`, "link set ctl0 up"], nsName(lab, n));
  }
  const dir = labDir(lab);
  const cluster = Object.entries(e.members)
    .map(([m, a]) => `${m}=http://${a.split("/")[0]}:2380`)
    .join(",");
  state.etcd = {};
  for (const [m, addr] of Object.entries(e.members)) {
    const ip = addr.split("/")[0];
    const dataDir = path.join(dir, `${m}.etcd`);
    const logPath = path.join(dir, `${m}.log`);
    // Timeouts above etcd's defaults (100 ms / 1 s): a lab shares a loaded machine, and a
    // member that misses heartbeats would start elections for nothing.
    const pid = spawnLogged(
      nsName(lab, m),
      [
        "etcd",
        "--name",
        m,
        "--data-dir",
        dataDir,
        "--listen-client-urls",
        `http://${ip}:2379`,
        "--advertise-client-urls",
        `http://${ip}:2379`,
        "--listen-peer-urls",
        `http://${ip}:2380`,
        "--initial-advertise-peer-urls",
        `http://${ip}:2380`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        `tapnet-${lab}`,
        "--heartbeat-interval",
        "200",
        "--election-timeout",
        "2000",
      ],
      logPath,
    );
    state.etcd[m] = { namespace: nsName(lab, m), pid, marker: dataDir, log: logPath, endpoint: `http://${ip}:2379`, dataDir };
    writeState(state);
  }
  const first = nsName(lab, etcdMembers(t)[0]);
  const eps = endpoints(t).join(",");
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (abort?.aborted) throw new Error("interrupted");
    for (const [m, p] of Object.entries(state.etcd)) {
      if (!isAlive(p.pid) || cmdline(p.pid) === null) throw new Error(`etcd member ${m} exited during start-up. Its log (${p.log}):\n${tail(p.log)}`);
    }
    const r = (() => {
      try {
        run(["ip", "netns", "exec", first, "etcdctl", "--endpoints", eps, "--dial-timeout", "2s", "--command-timeout", "3s", "endpoint", "health"]);
        return true;
      } catch {
        return false;
      }
    })();
    if (r) break;
    if (Date.now() > deadline)
      throw new Error(
        `etcd of lab ${lab} was not healthy within 60 s (logs: ${Object.values(state.etcd)
          .map((p) => p.log)
          .join(" ")})`,
      );
    await sleep(200);
  }
  run(["ip", "netns", "exec", first, "etcdctl", "--endpoints", eps, "put", `${e.prefix}/config`, flannelConfigJson(t)]);
  log(`etcd up: ${etcdMembers(t).join(" ")} (${eps}); ${e.prefix}/config written`);
}

/** The `tapnet agent` command line for a lab node. */
export function agentArgv(t: Topology, node: string): { argv: string[]; statusSocket: string; subnetFile: string } {
  const dir = labDir(t.name);
  const e = t.etcd as NonNullable<Topology["etcd"]>;
  const statusSocket = path.join(dir, `${node}.agent.sock`);
  const subnetFile = path.join(dir, `${node}.subnet.env`);
  const argv = [
    process.execPath,
    CLI,
    "agent",
    "--node",
    node,
    "--etcd-endpoints",
    endpoints(t).join(","),
    "--etcd-prefix",
    e.prefix,
    "--socket",
    path.join(dir, `${node}.sock`),
    "--public-ip",
    (t.nodes[node].underlay as { address: string }).address.split("/")[0],
    "--ttl",
    String(e.leaseTtl),
    "--subnet-file",
    subnetFile,
    "--status-socket",
    statusSocket,
  ];
  return { argv, statusSocket, subnetFile };
}

/** Starts a node's agent in its namespace and records it. */
export function startAgent(t: Topology, state: LabState & EtcdState, node: string): void {
  const { argv, statusSocket, subnetFile } = agentArgv(t, node);
  const logPath = path.join(labDir(t.name), `${node}.agent.log`);
  const pid = spawnLogged(nsName(t.name, node), argv, logPath);
  state.agents ??= {};
  state.agents[node] = { namespace: nsName(t.name, node), pid, marker: statusSocket, log: logPath, statusSocket, subnetFile };
  writeState(state);
}

export interface AgentStatus {
  lease: { subnet: string } | null;
  peers: Array<{ subnet: string }>;
}

/**
 * Starts every agent and waits until each holds a lease and has programmed every other
 * agent node it can reach (all of them for vxlan; those on its underlay subnet for host-gw).
 */
export async function startAgents(t: Topology, state: LabState & EtcdState, log: Log, abort?: AbortSignal): Promise<void> {
  const nodes = agentNodes(t);
  if (nodes.length === 0) return;
  for (const n of nodes) startAgent(t, state, n);
  const ulOf = (n: string) => splitCidr((t.nodes[n].underlay as { address: string }).address) as { addr: number; prefixLen: number };
  const expected = (n: string): number =>
    nodes.filter((p) => {
      if (p === n) return false;
      if (t.overlay?.backend !== "host-gw") return true;
      const a = ulOf(n);
      const m = maskOf(a.prefixLen);
      return (ulOf(p).addr & m) >>> 0 === (a.addr & m) >>> 0;
    }).length;
  await waitAgents(state, nodes, expected, abort);
  const agents = state.agents ?? {};
  for (const n of nodes) {
    const s = await request<AgentStatus>(agents[n].statusSocket, { cmd: "status" });
    const want = t.nodes[n].podCidr;
    const hasHosts = Object.values(t.hosts).some((h) => h.node === n);
    if (want && hasHosts && s.lease?.subnet !== want)
      throw new Error(`node ${n}'s agent leased ${s.lease?.subnet} instead of its podCidr ${want} (taken in etcd?), so its pods' addresses do not fit`);
  }
  log(`agents up: ${nodes.join(" ")}`);
}

/** Waits (60 s at most) until the agents of `nodes` hold a lease and `expected(node)` peers; an agent that exits fails it. */
export async function waitAgents(state: LabState & EtcdState, nodes: string[], expected: (n: string) => number, abort?: AbortSignal): Promise<void> {
  const deadline = Date.now() + 60_000;
  const pending = new Set(nodes);
  let last = "";
  const agents = state.agents ?? {};
  while (pending.size) {
    if (abort?.aborted) throw new Error("interrupted");
    for (const n of [...pending]) {
      const a = agents[n];
      if (!isAlive(a.pid) || cmdline(a.pid) === null) throw new Error(`the agent of node ${n} exited. Its log (${a.log}):\n${tail(a.log)}`);
      try {
        const s = await request<AgentStatus>(a.statusSocket, { cmd: "status" }, 2000);
        last = `${n}: lease ${s.lease?.subnet ?? "none"}, ${s.peers.length}/${expected(n)} peers`;
        if (s.lease && s.peers.length >= expected(n)) pending.delete(n);
      } catch {
        last = `${n}: not answering on ${a.statusSocket} yet`;
      }
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline) throw new Error(`agents ${[...pending].join(", ")} did not converge within 60 s (${last})`);
    await sleep(100);
  }
}
