/**
 * Hosts that join or leave a running lab (`tapnet lab host add|del`): what `lab up` does
 * for a TAP host, one host at a time. The node is asked for a new TAP port (a runtime
 * change, checked first with a dry run), the host's namespace is made, the TAP moved into
 * it as eth0 and addressed. Each step is recorded in the lab's state before it is taken,
 * and a failure undoes what was done, so a refused or failed `host add` leaves nothing.
 */
import { request } from "../control/client.js";
import { meshAddress, meshMtuOf } from "../mesh/lab.js";
import { parseCidr, parseIp } from "../wire/ipv4addr.js";
import { addNamespace } from "./build.js";
import { type LabState, type Log, nsName, readState, writeState } from "./state.js";
import { ipBatch, netnsList, run } from "./sys.js";
import { IFNAME_MAX, isKernelNode, loadTopology, NAME } from "./topology.js";

export interface HostAdd {
  node: string;
  /** Left out on a mesh node: the node's share of the address ring gives one. */
  ip?: string;
  gateway?: string;
  vlan?: number;
  mtu?: number;
}

function labState(lab: string): LabState {
  const s = readState(lab);
  if (!s) throw new Error(`no lab named '${lab}' is up (tapnet lab status lists them)`);
  return s;
}

/** Every check that needs no change: names, addresses, the node. */
function check(s: LabState, host: string, h: HostAdd & { ip: string }): void {
  if (!NAME.test(host) || host.length > IFNAME_MAX)
    throw new Error(`host name '${host}': start with a letter, use a-z, 0-9 and '-', at most ${IFNAME_MAX} characters`);
  if (s.hosts[host] || s.nodes[host]) throw new Error(`lab ${s.lab} already has a host or node named '${host}'`);
  if (!s.nodes[h.node]) {
    let kernel = false;
    try {
      const t = loadTopology(s.file);
      kernel = t.nodes[h.node] !== undefined && isKernelNode(t.nodes[h.node]);
    } catch {
      // the file may have changed since; the node list below is what counts
    }
    throw new Error(
      kernel
        ? `node ${h.node} is a kernel bridge: hosts join tapnet nodes`
        : `lab ${s.lab} has no node '${h.node}' (nodes: ${Object.keys(s.nodes).join(", ")})`,
    );
  }
  const c = parseCidr(h.ip);
  if (c.prefixLen < 31 && (c.addr === c.network || (c.addr | ~c.mask) >>> 0 === c.addr))
    throw new Error(`--ip ${h.ip} is the network or broadcast address of its subnet`);
  for (const [other, o] of Object.entries(s.hosts)) {
    if (parseCidr(o.ip).addr === c.addr) throw new Error(`--ip ${h.ip.split("/")[0]} is already host ${other}'s address`);
  }
  if (h.gateway !== undefined) {
    const g = parseIp(h.gateway);
    if ((g & c.mask) >>> 0 !== c.network) throw new Error(`--gateway ${h.gateway} is not inside ${h.ip}`);
    if (g === c.addr) throw new Error(`--gateway ${h.gateway} is the host's own address`);
  }
  if (h.vlan !== undefined && (!Number.isInteger(h.vlan) || h.vlan < 1 || h.vlan > 4094)) throw new Error(`--vlan ${h.vlan} is not a VLAN id (1-4094)`);
  if (h.mtu !== undefined && (!Number.isInteger(h.mtu) || h.mtu < 68 || h.mtu > 1500)) throw new Error(`--mtu ${h.mtu} is not 68-1500`);
}

export async function hostAdd(lab: string, host: string, h: HostAdd, log: Log = () => undefined): Promise<void> {
  const s = labState(lab);
  // Without --ip: everything else is checked first (with a placeholder address), then the node's ring gives one.
  check(s, host, { ...h, ip: h.ip ?? "0.0.0.1/0" });
  const node = s.nodes[h.node];
  const ns = nsName(lab, host);
  if (netnsList().includes(ns)) throw new Error(`network namespace ${ns} exists already and no lab records it: ip netns del ${ns}`);
  const fromRing = h.ip === undefined;
  if (fromRing) {
    if (h.gateway !== undefined) throw new Error("--gateway needs --ip (a mesh pod's address comes from the ring, on one flat subnet)");
    h.ip = await meshAddress(node.socket, host).catch((e: Error) => {
      throw new Error(`host ${host}: no --ip, and node ${h.node} gives none: ${e.message}`);
    });
  }
  const ip = h.ip as string;
  // Without --mtu, a mesh node's pod takes the mesh MTU and follows it (src/mesh/pod-mtu.ts).
  const meshMtu = h.mtu === undefined ? await meshMtuOf(node.socket) : null;
  const mtu = h.mtu ?? meshMtu ?? 1500;
  const portAdd = { name: host, kind: "tap", vlan: h.vlan ?? 1 };
  await request(node.socket, { cmd: "change", op: "port.add", args: portAdd, dryRun: true });
  let portMade = false;
  try {
    addNamespace(s, ns);
    await request(node.socket, { cmd: "change", op: "port.add", args: portAdd });
    portMade = true;
    ipBatch([`link set ${host} netns ${ns}`], node.namespace);
    const cmds = [`link set dev ${host} name eth0`, `link set eth0 mtu ${mtu}`, `address add ${ip} dev eth0`, "link set eth0 up"];
    if (h.gateway) cmds.push(`route add default via ${h.gateway} dev eth0`);
    ipBatch(cmds, ns);
    s.hosts[host] = {
      namespace: ns,
      node: h.node,
      ip: ip,
      gateway: h.gateway,
      vlan: h.vlan ?? 1,
      link: "tap",
      ...(meshMtu !== null ? { mtuFromMesh: true } : {}),
    };
    writeState(s);
    // ARP inspection's binding of the new host, on every node that inspects ARP.
    const mac = run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address"]).trim();
    for (const n of Object.values(s.nodes)) {
      // A node that is gone (killed, not restarted) inspects nothing: skipped.
      await request(n.socket, { cmd: "arp-binding", vlan: h.vlan ?? 1, ip: ip.split("/")[0], mac, source: "lab", optional: true }).catch((e: Error) => {
        if (n === node || !/the node process is gone/.test(e.message)) throw e;
      });
    }
    log(`host ${host} joined lab ${lab} on node ${h.node} (${ip})`);
  } catch (e) {
    if (portMade) await request(node.socket, { cmd: "change", op: "port.del", args: { name: host } }).catch(() => undefined);
    if (fromRing) await request(node.socket, { cmd: "mesh-ipam", op: "release", owner: host, optional: true }).catch(() => undefined);
    if (netnsList().includes(ns)) run(["ip", "netns", "del", ns]);
    s.namespaces = s.namespaces.filter((n) => n !== ns);
    writeState(s);
    throw new Error(`host ${host} did not join lab ${lab}: ${e instanceof Error ? e.message : String(e)} (what was made is removed)`);
  }
}

export async function hostDel(lab: string, host: string, log: Log = () => undefined): Promise<void> {
  const s = labState(lab);
  const h = s.hosts[host];
  if (!h) throw new Error(`lab ${lab} has no host '${host}' (hosts: ${Object.keys(s.hosts).join(", ") || "none"})`);
  if (h.run) throw new Error(`host ${host} runs '${h.run.command}' from the topology: it leaves with lab down`);
  const node = s.nodes[h.node];
  if (node && h.link === "tap") await request(node.socket, { cmd: "change", op: "port.del", args: { name: host } });
  // Its address from the mesh's ring, if it had one, goes back.
  if (node) await request(node.socket, { cmd: "mesh-ipam", op: "release", owner: host, optional: true }).catch(() => undefined);
  for (const n of Object.values(s.nodes)) {
    await request(n.socket, { cmd: "arp-binding", remove: true, vlan: h.vlan, ip: h.ip.split("/")[0], optional: true }).catch(() => undefined);
  }
  // Deleting the namespace removes its eth0 (the TAP, whose last fd the node closed).
  if (netnsList().includes(h.namespace)) run(["ip", "netns", "del", h.namespace]);
  delete s.hosts[host];
  s.namespaces = s.namespaces.filter((n) => n !== h.namespace);
  writeState(s);
  log(`host ${host} left lab ${lab}`);
}
