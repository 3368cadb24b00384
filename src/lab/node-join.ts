/**
 * Nodes that join or leave a running lab with an etcd cluster (`tapnet lab node add|del`),
 * the way a Kubernetes node joins a flannel cluster: the node comes up with no routes to
 * the others, its agent leases a subnet in etcd, and the other agents, watching, program
 * their routes to it.
 *
 *   add: the node's namespace, its ul0 on the segment, the node process (with its
 *        supervisor, as lab up starts one) and its agent; each recorded in the lab's state
 *        before it is made, everything undone when a step fails.
 *   del: its agent and node stopped by PID, its lease key deleted from etcd (so the other
 *        nodes withdraw their routes now rather than when the lease expires), its
 *        namespace removed.
 * The node is added to the lab's state, not to its topology file.
 */
import fs from "node:fs";
import { parseDocument } from "yaml";
import { subnetFromEnv, subnetKey } from "../agent/flannel-config.js";
import { request } from "../control/client.js";
import { sharedUnderlayCommands, sharedUnderlaySysctls, sharesUnderlay } from "./bgp.js";
import { addNamespace, startSupervisor, waitReady } from "./build.js";
import { type AgentStatus, endpoints, type EtcdState, startAgent, stopProc, waitAgents } from "./etcd.js";
import { stopNode } from "./lab.js";
import { type LabState, type Log, nsName, readState, writeState } from "./state.js";
import { ipBatch, netnsList, run } from "./sys.js";
import { parseTopology } from "./topology.js";
import type { Topology } from "./topology-schema.js";

export interface NodeAdd {
  /** Its underlay address (PublicIP), on the etcd segment unless `segment` says otherwise. */
  address: string;
  podCidr: string;
  segment?: string;
}

type EtcdLab = LabState & EtcdState;

function labState(lab: string): EtcdLab {
  const s = readState(lab) as EtcdLab | null;
  if (!s) throw new Error(`no lab named '${lab}' is up (tapnet lab status lists them)`);
  return s;
}

/** The lab's topology with the new node in it, checked as lab up checks a file. */
function withNode(s: EtcdLab, node: string, a: NodeAdd): Topology {
  const doc = parseDocument(fs.readFileSync(s.file, "utf8"));
  const t0 = parseTopology(fs.readFileSync(s.file, "utf8"), s.file);
  if (!t0.etcd) throw new Error(`lab ${s.lab} has no etcd cluster (etcd: in ${s.file}): nodes join a lab through its etcd`);
  if (s.nodes[node] || s.hosts[node] || t0.nodes[node] || t0.etcd.members[node])
    throw new Error(`lab ${s.lab} already has a node, host or member named '${node}'`);
  doc.setIn(["nodes", node], { underlay: { segment: a.segment ?? t0.etcd.segment, address: a.address }, podCidr: a.podCidr, agent: "flannel" });
  return parseTopology(String(doc), `${s.file} + node ${node}`);
}

export async function nodeAdd(lab: string, node: string, a: NodeAdd, log: Log = () => undefined): Promise<void> {
  const s = labState(lab);
  const t = withNode(s, node, a);
  if (t.overlay?.backend !== "vxlan")
    throw new Error(`lab ${lab}'s overlay is ${t.overlay?.backend}: nodes join vxlan labs (a host-gw agent also needs a control address)`);
  const ns = nsName(lab, node);
  if (netnsList().includes(ns)) throw new Error(`network namespace ${ns} exists already`);
  const spec = t.nodes[node];
  const ul = spec.underlay as NonNullable<typeof spec.underlay>;
  try {
    addNamespace(s, ns);
    run(["ip", "link", "add", "ul0", "netns", ns, "type", "veth", "peer", "name", node, "netns", nsName(lab, "ul")]);
    ipBatch([`link set ${node} master br-${ul.segment}`, `link set ${node} mtu ${ul.mtu}`, `link set ${node} up`], nsName(lab, "ul"));
    const cmds = [`link set ul0 mtu ${ul.mtu}`, "link set ul0 up"];
    // DirectRouting: the router shares ul0 with the kernel, as lab up makes it (src/lab/bgp.ts).
    const shared = sharesUnderlay(t, spec);
    if (shared) cmds.unshift(...sharedUnderlayCommands(t, node));
    cmds.push(`address add ${ul.address} dev ul0`);
    if (ul.gateway) cmds.push(`route add default via ${ul.gateway} dev ul0`);
    ipBatch(cmds, ns);
    if (shared) sharedUnderlaySysctls(ns);
    startSupervisor(s, t, node, ns);
    s.nodes[node].pid = await waitReady(lab, node, s.nodes[node]);
    writeState(s);
    await request(s.nodes[node].socket, { cmd: "announce" });
    startAgent(t, s, node);
    await waitAgents(s, [node], () => 0);
    const rec = s.agents?.[node];
    if (!rec) throw new Error(`the agent of node ${node} is not in the lab's state`);
    const st = await request<AgentStatus>(rec.statusSocket, { cmd: "status" });
    log(`node ${node} joined lab ${lab}: underlay ${ul.address}, lease ${st.lease?.subnet}`);
  } catch (e) {
    await removeNode(s, node).catch(() => undefined);
    throw new Error(`node ${node} did not join lab ${lab}: ${e instanceof Error ? e.message : String(e)} (what was made is removed)`);
  }
}

async function removeNode(s: EtcdLab, node: string): Promise<string | null> {
  const a = s.agents?.[node];
  if (a) await stopProc(a);
  const n = s.nodes[node];
  if (n) await stopNode(s.lab, node, n);
  const ns = nsName(s.lab, node);
  if (netnsList().includes(ns)) run(["ip", "netns", "del", ns]);
  let subnetFile: string | null = null;
  if (a) {
    subnetFile = a.subnetFile;
    delete s.agents?.[node];
  }
  delete s.nodes[node];
  s.namespaces = s.namespaces.filter((x) => x !== ns);
  writeState(s);
  return subnetFile;
}

export async function nodeDel(lab: string, node: string, log: Log = () => undefined): Promise<void> {
  const s = labState(lab);
  if (!s.nodes[node]) throw new Error(`lab ${lab} has no node '${node}' (nodes: ${Object.keys(s.nodes).join(", ")})`);
  const pods = Object.entries(s.hosts).filter(([, h]) => h.node === node);
  if (pods.length) throw new Error(`node ${node} still has hosts (${pods.map(([h]) => h).join(", ")}): tapnet lab host del them first`);
  const t = parseTopology(fs.readFileSync(s.file, "utf8"), s.file);
  const subnetFile = await removeNode(s, node);
  // Its lease: deleted now, so the others withdraw their routes without waiting for the TTL.
  const sub = subnetFromEnv(subnetFile && fs.existsSync(subnetFile) ? fs.readFileSync(subnetFile, "utf8") : "");
  if (sub && t.etcd) {
    const key = `${t.etcd.prefix}/subnets/${subnetKey(sub)}`;
    const first = nsName(lab, Object.keys(t.etcd.members)[0]);
    run(["ip", "netns", "exec", first, "etcdctl", "--endpoints", endpoints(t).join(","), "del", key]);
    log(`node ${node} left lab ${lab}; ${key} deleted from etcd`);
  } else log(`node ${node} left lab ${lab}`);
  if (subnetFile) fs.rmSync(subnetFile, { force: true });
}
