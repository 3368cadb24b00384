/**
 * The tapnet CNI plugin: what a container runtime runs as `CNI_PATH/tapnet` (installed by
 * `tapnet cni install`). One call, one operation (CNI SPEC.md, "Section 2"):
 *
 *   ADD     asks the lab's running node for a new TAP port (the `port.add` runtime change,
 *           on the config's `vlan`), moves the TAP into CNI_NETNS as CNI_IFNAME (up), runs
 *           the IPAM plugin named by `ipam.type` from CNI_PATH, puts its addresses and routes on
 *           the interface and prints the result (the interface with its `sandbox`, the IPs
 *           pointing at it, routes, DNS from the config or else from IPAM).
 *   DEL     removes the port (the TAP vanishes from the container with it) and has the
 *           IPAM plugin release the address. Idempotent: a port or lab already gone is
 *           success, so a second DEL or a DEL after the node restarted succeeds; a TAP
 *           left in the container by a node that is gone is removed there.
 *   CHECK   the IPAM plugin's CHECK, then the node still has the port on its VLAN and the
 *           container's interface has prevResult's MAC, addresses and routes.
 *   VERSION the versions this plugin speaks.
 *
 * The port's name is derived from CNI_CONTAINERID and CNI_IFNAME, so DEL and CHECK find it
 * without any state of the plugin's own. Config fields besides the spec's: `lab`, `node`
 * (which running tapnet node), `vlan` (access VLAN of the port, default 1), `mtu`,
 * `isDefaultGateway` (a default route via the IPAM gateway, as the bridge plugin's) and
 * `isGateway` (the IPAM gateway must be an address of one of the node's router interfaces).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ControlError, request } from "../control/client.js";
import { labDir, readState } from "../lab/state.js";
import { run } from "../lab/sys.js";
import { delegate } from "./ipam.js";
import { CniError, ERR, formatResult, isCidr4, isIp4, type NetConf, parseConfig, type Result, type Route, SUPPORTED_VERSIONS, versionLess } from "./spec.js";

export interface Outcome {
  /** What goes to stdout: a result, a version object, an error object, or nothing. */
  stdout: string;
  code: number;
}

/** The node port (and TAP) name for a container's interface: stable, 15 characters at most. */
export function portName(containerId: string, ifname: string): string {
  return `cni${createHash("sha256").update(`${containerId}/${ifname}`).digest("hex").slice(0, 12)}`;
}

function need(env: NodeJS.ProcessEnv, names: string[]): void {
  const missing = names.filter((n) => !env[n]);
  if (missing.length) throw new CniError(ERR.invalidEnv, `required environment variables [${missing.join(" ")}] missing`);
}

function checkIfname(ifname: string): void {
  if (ifname.length > 15 || !/^[^\s/:]+$/.test(ifname) || ifname === "." || ifname === "..")
    throw new CniError(ERR.invalidEnv, `CNI_IFNAME '${ifname}' is not an interface name (at most 15 characters, no '/', ':' or spaces)`);
}

interface NodeRef {
  socket: string;
  namespace: string;
}

/** The running node the config names; CniError 7 when the lab is not up or has no such node. */
function findNode(conf: NetConf): NodeRef {
  const s = readState(conf.lab);
  if (!s) throw new CniError(ERR.invalidConfig, `network configuration: lab: no lab named '${conf.lab}' is up (tapnet lab status lists them)`);
  const n = s.nodes[conf.node];
  if (!n)
    throw new CniError(
      ERR.invalidConfig,
      `network configuration: node: lab ${conf.lab} has no node '${conf.node}' (nodes: ${Object.keys(s.nodes).join(", ")})`,
    );
  return { socket: n.socket, namespace: n.namespace };
}

/**
 * A pod's port as its node's supervisor needs it after a crash: the TAP lives in the
 * container's namespace, where the restarted node (no CAP_SYS_ADMIN) cannot reach it, so
 * the supervisor attaches to it there and hands the fd to the node, whose journal replays
 * the `port.add` that adopts it (src/lab/supervisor.ts). One file per port: runtimes run
 * ADDs in parallel, and the lab's state.json is written by the lab commands.
 */
export interface PodPort {
  node: string;
  netns: string;
  ifname: string;
}

export const podPortsDir = (lab: string): string => path.join(labDir(lab), "cni");

function recordPodPort(lab: string, port: string, p: PodPort): void {
  const dir = podPortsDir(lab);
  fs.mkdirSync(dir, { recursive: true });
  const f = path.join(dir, `${port}.json`);
  fs.writeFileSync(`${f}.tmp`, JSON.stringify(p));
  fs.renameSync(`${f}.tmp`, f);
}

function forgetPodPort(lab: string, port: string): void {
  fs.rmSync(path.join(podPortsDir(lab), `${port}.json`), { force: true });
}

async function nodeRequest<T>(node: NodeRef, req: Record<string, unknown>): Promise<T> {
  try {
    return await request<T>(node.socket, req as never, 10_000);
  } catch (e) {
    throw new CniError(ERR.node, `tapnet node: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Runs `ip` inside the container's network namespace (a path, so through nsenter). */
function ipIn(netns: string, args: string[], input?: string): string {
  return run(["nsenter", `--net=${netns}`, "ip", ...args], input);
}

function ipJson<T>(netns: string, args: string[]): T {
  return JSON.parse(ipIn(netns, ["-j", ...args]) || "[]") as T;
}

/** The container's routes: each IPAM route (no `gw`: via the IP's gateway, as the reference plugins do). */
function routeLines(routes: Route[], gateway: string | undefined, ifname: string): string[] {
  return routes.map((r) => {
    const gw = r.gw ?? gateway;
    return `route add ${r.dst === "0.0.0.0/0" ? "default" : r.dst}${gw ? ` via ${gw}` : ""} dev ${ifname}`;
  });
}

async function add(env: NodeJS.ProcessEnv, conf: NetConf, stdin: string): Promise<Result> {
  need(env, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]);
  const netns = env.CNI_NETNS as string;
  const ifname = env.CNI_IFNAME as string;
  checkIfname(ifname);
  if (!fs.existsSync(netns)) throw new CniError(ERR.unknownContainer, `CNI_NETNS ${netns}: no such network namespace`);
  const node = findNode(conf);
  const name = portName(env.CNI_CONTAINERID as string, ifname);
  await nodeRequest(node, { cmd: "change", op: "port.add", args: { name, kind: "tap", vlan: conf.vlan } });
  let ipamDone = false;
  try {
    // The interface is in the container, named and up, before IPAM runs: the dhcp plugin
    // asks for a lease on it from inside the container (as the bridge plugin's veth is).
    run(["ip", "-n", node.namespace, "link", "set", name, "netns", netns]);
    recordPodPort(conf.lab, name, { node: conf.node, netns, ifname });
    const setup = [`link set dev ${name} name ${ifname}`];
    if (conf.mtu) setup.push(`link set dev ${ifname} mtu ${conf.mtu}`);
    setup.push(`link set dev ${ifname} up`);
    ipIn(netns, ["-batch", "-"], `${setup.join("\n")}\n`);
    const ipam = delegate("ADD", conf.ipam.type, stdin, env) as Result;
    ipamDone = true;
    const ips = ipam.ips ?? [];
    for (const ip of ips) {
      if (!isCidr4(ip.address)) throw new CniError(ERR.unsupportedField, `IPAM gave ${ip.address}: tapnet routes IPv4 only`);
      if (ip.gateway !== undefined && !isIp4(ip.gateway)) throw new CniError(ERR.unsupportedField, `IPAM gave gateway ${ip.gateway}: tapnet routes IPv4 only`);
    }
    const gateway = ips.find((i) => i.gateway)?.gateway;
    if (conf.isGateway) {
      if (!gateway) throw new CniError(ERR.invalidConfig, "network configuration: isGateway: the IPAM result has no gateway");
      const ifs = await nodeRequest<Array<{ name: string; addresses: string[] }>>(node, { cmd: "interfaces" });
      if (!ifs.some((i) => i.addresses.some((a) => a.split("/")[0] === gateway)))
        throw new CniError(
          ERR.invalidConfig,
          `network configuration: isGateway: gateway ${gateway} is not an address of node ${conf.node}'s router interfaces (${ifs.flatMap((i) => i.addresses).join(", ") || "none"})`,
        );
    }
    const routes: Route[] = [...(ipam.routes ?? [])];
    if (conf.isDefaultGateway && gateway && !routes.some((r) => r.dst === "0.0.0.0/0")) routes.push({ dst: "0.0.0.0/0", gw: gateway });
    const lines = ips.map((ip) => `address add ${ip.address} dev ${ifname}`);
    lines.push(...routeLines(routes, gateway, ifname));
    if (lines.length > 0) ipIn(netns, ["-batch", "-"], `${lines.join("\n")}\n`);
    // Not /sys/class/net: nsenter changes the network namespace, not the sysfs mount.
    const mac = ipJson<Array<{ address: string }>>(netns, ["link", "show", "dev", ifname])[0]?.address ?? "";
    const result: Result = {
      cniVersion: conf.cniVersion,
      interfaces: [{ name: ifname, mac, sandbox: netns }],
      ips: ips.map((ip) => ({ interface: 0, address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}) })),
      routes,
      dns: conf.dns && Object.keys(conf.dns).length > 0 ? conf.dns : ipam.dns,
    };
    return result;
  } catch (e) {
    // Undo: the port (its TAP goes wherever it was moved) and the address.
    forgetPodPort(conf.lab, name);
    await request(node.socket, { cmd: "change", op: "port.del", args: { name } } as never, 10_000).catch(() => undefined);
    if (ipamDone) {
      try {
        delegate("DEL", conf.ipam.type, stdin, env);
      } catch {
        // the ADD's error is what the runtime must see
      }
    }
    if (e instanceof CniError) throw e;
    throw new CniError(ERR.io, e instanceof Error ? e.message : String(e));
  }
}

async function del(env: NodeJS.ProcessEnv, conf: NetConf, stdin: string): Promise<void> {
  need(env, ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]);
  const name = portName(env.CNI_CONTAINERID as string, env.CNI_IFNAME as string);
  // The address first, while the interface is still there (the dhcp plugin releases its
  // lease through it, RFC 2131 §4.4.6); the port goes even when that fails.
  let ipamError: unknown = null;
  try {
    delegate("DEL", conf.ipam.type, stdin, env);
  } catch (e) {
    ipamError = e;
  }
  const s = readState(conf.lab);
  const n = s?.nodes[conf.node];
  // No lab, no node: its ports went with it. A node that does not answer is gone too
  // (a TAP disappears when the process holding it exits).
  if (n) {
    try {
      await request(n.socket, { cmd: "change", op: "port.del", args: { name } } as never, 10_000);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const gone = /has no port|no control socket|connection refused|closed the connection/.test(msg);
      if (!gone) throw new CniError(ERR.node, `tapnet node ${conf.node}: ${msg}`);
    }
  }
  if (s) forgetPodPort(conf.lab, name);
  removeOrphanTap(env);
  if (ipamError !== null) throw ipamError;
}

/**
 * The container's interface after its node is gone (the lab went down, the node did not
 * answer): the TAP is persistent, so it outlived the node in the container's namespace.
 * DEL removes it there when it is a TAP (info_kind "tun"); anything else of that name is
 * not this plugin's and stays.
 */
function removeOrphanTap(env: NodeJS.ProcessEnv): void {
  const netns = env.CNI_NETNS;
  const ifname = env.CNI_IFNAME as string;
  if (!netns || !fs.existsSync(netns)) return;
  let links: Array<{ linkinfo?: { info_kind?: string } }>;
  try {
    links = ipJson(netns, ["-d", "link", "show", "dev", ifname]);
  } catch {
    return; // no such interface: nothing left
  }
  if (links[0]?.linkinfo?.info_kind !== "tun") return;
  try {
    ipIn(netns, ["link", "del", "dev", ifname]);
  } catch (e) {
    throw new CniError(ERR.io, `removing ${ifname} from ${netns}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function check(env: NodeJS.ProcessEnv, conf: NetConf, stdin: string): Promise<void> {
  need(env, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]);
  if (versionLess(conf.cniVersion, "0.4.0"))
    throw new CniError(ERR.incompatibleVersion, `CHECK needs cniVersion 0.4.0 or later (config is ${conf.cniVersion})`);
  const prev = conf.prevResult;
  if (!prev) throw new CniError(ERR.invalidConfig, "network configuration: prevResult: missing (CHECK compares against the ADD result)");
  const netns = env.CNI_NETNS as string;
  const ifname = env.CNI_IFNAME as string;
  checkIfname(ifname);
  delegate("CHECK", conf.ipam.type, stdin, env);
  const node = findNode(conf);
  const name = portName(env.CNI_CONTAINERID as string, ifname);
  const ports = await nodeRequest<Array<{ name: string; pvid: number | null }>>(node, { cmd: "ports" });
  const p = ports.find((x) => x.name === name);
  if (!p) throw new CniError(ERR.check, `node ${conf.node} has no port ${name} for container ${env.CNI_CONTAINERID} ${ifname}`);
  if (p.pvid !== conf.vlan) throw new CniError(ERR.check, `port ${name} is on VLAN ${p.pvid}, not ${conf.vlan}`);
  if (!fs.existsSync(netns)) throw new CniError(ERR.unknownContainer, `CNI_NETNS ${netns}: no such network namespace`);
  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && i.sandbox !== undefined);
  if (idx < 0) throw new CniError(ERR.check, `prevResult has no interface ${ifname} in a sandbox`);
  const want = (prev.interfaces ?? [])[idx];
  let links: Array<{ ifname: string; address: string; flags: string[]; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>;
  try {
    links = ipJson(netns, ["address", "show", "dev", ifname]);
  } catch {
    throw new CniError(ERR.check, `container has no interface ${ifname}`);
  }
  const link = links[0];
  if (!link) throw new CniError(ERR.check, `container has no interface ${ifname}`);
  if (want.mac && link.address !== want.mac) throw new CniError(ERR.check, `${ifname} has MAC ${link.address}, not ${want.mac}`);
  if (!link.flags.includes("UP")) throw new CniError(ERR.check, `${ifname} is down`);
  const have = new Set((link.addr_info ?? []).filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`));
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && ip.interface !== idx) continue;
    if (!have.has(ip.address)) throw new CniError(ERR.check, `${ifname} lacks address ${ip.address} (has ${[...have].join(", ") || "none"})`);
  }
  const gateway = (prev.ips ?? []).find((i) => i.gateway)?.gateway;
  const routes = ipJson<Array<{ dst: string; gateway?: string }>>(netns, ["route", "show", "dev", ifname]);
  for (const r of prev.routes ?? []) {
    const dst = r.dst === "0.0.0.0/0" ? "default" : r.dst;
    const gw = r.gw ?? gateway;
    if (!routes.some((x) => x.dst === dst && (gw === undefined || x.gateway === gw)))
      throw new CniError(ERR.check, `${ifname} lacks route ${r.dst}${gw ? ` via ${gw}` : ""}`);
  }
}

/** Runs one plugin call: the environment and stdin a runtime gives, the stdout and exit code it reads. */
export async function runPlugin(env: NodeJS.ProcessEnv, stdin: string): Promise<Outcome> {
  let version = "1.0.0";
  try {
    const command = env.CNI_COMMAND;
    if (command === "VERSION") {
      // The config (if any) names the version to answer in; VERSION needs nothing else.
      try {
        const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
        if (typeof v === "string" && SUPPORTED_VERSIONS.includes(v)) version = v;
      } catch {
        // no config: answer in the newest
      }
      return { stdout: `${JSON.stringify({ cniVersion: version, supportedVersions: SUPPORTED_VERSIONS })}\n`, code: 0 };
    }
    if (!command) throw new CniError(ERR.invalidEnv, "required environment variables [CNI_COMMAND] missing");
    if (!["ADD", "DEL", "CHECK"].includes(command)) throw new CniError(ERR.invalidEnv, `CNI_COMMAND '${command}' is not ADD, DEL, CHECK or VERSION`);
    const conf = parseConfig(stdin);
    version = conf.cniVersion;
    if (command === "ADD") {
      const r = await add(env, conf, stdin);
      return { stdout: `${JSON.stringify(formatResult(r, version), null, 2)}\n`, code: 0 };
    }
    if (command === "DEL") await del(env, conf, stdin);
    else await check(env, conf, stdin);
    return { stdout: "", code: 0 };
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(e instanceof ControlError ? ERR.node : ERR.io, e instanceof Error ? e.message : String(e));
    return { stdout: `${JSON.stringify(err.toJSON(version), null, 2)}\n`, code: 1 };
  }
}
