/**
 * The node's device ports, made from their config: TAPs, libpcap ports, tunnels.
 *
 * A lab node restarted by its supervisor (src/lab/supervisor.ts) inherits its hosts'
 * TAPs: they live in the hosts' namespaces as eth0, where the node cannot open them
 * by name, so the supervisor attaches to each and passes the fds in stdio slots 3…,
 * named in TAPNET_TAP_FDS ("h1=3/1500,h2=4/1500": port = fd / MTU). A TAP port of
 * that name, made at start-up or by a journal replay of `port.add`, adopts its fd
 * instead of creating a TAP.
 */
import fs from "node:fs";
import type { Port } from "../core/port.js";
import { IpipPort } from "../io/ipip-port.js";
import { PcapPort } from "../io/pcap-port.js";
import { XdpPort } from "../io/xdp-port.js";
import { type TapIo, TapPort } from "../io/tap-port.js";
import { VxlanPort } from "../io/vxlan-port.js";
import { SleevePort } from "../mesh/sleeve-port.js";
import { parseMac } from "../wire/mac.js";
import type { NodeConfig, NodePortConfig } from "./config.js";
import { TAP_FDS_ENV } from "./sandbox.js";

/** Parses TAPNET_TAP_FDS: "NAME=FD/MTU,…" (MTU optional). Throws on a malformed entry. */
export function parseTapFds(text: string): Map<string, { fd: number; mtu: number }> {
  const out = new Map<string, { fd: number; mtu: number }>();
  for (const item of text.split(",")) {
    if (item === "") continue;
    const m = /^([a-z][a-z0-9-]{0,14})=(\d{1,9})(?:\/(\d{1,5}))?$/.exec(item);
    if (!m || Number(m[2]) < 3) throw new Error(`${TAP_FDS_ENV}: '${item}' is not NAME=FD[/MTU] with FD >= 3`);
    if (out.has(m[1])) throw new Error(`${TAP_FDS_ENV}: port ${m[1]} is named twice`);
    out.set(m[1], { fd: Number(m[2]), mtu: m[3] === undefined ? 0 : Number(m[3]) });
  }
  return out;
}

let inherited: Map<string, { fd: number; mtu: number }> | null = null;
/** Inherited fds held back for a later `port.add` of the journal (holdInheritedTaps). */
const held = new Map<string, { fd: number; mtu: number }>();

/** The inherited TAP fds not adopted yet (read from the environment once, then removed from it). */
function inheritedTaps(): Map<string, { fd: number; mtu: number }> {
  if (inherited === null) {
    inherited = parseTapFds(process.env[TAP_FDS_ENV] ?? "");
    delete process.env[TAP_FDS_ENV];
  }
  return inherited;
}

/**
 * Holds back the inherited fds of these ports: the journal removes and adds them again,
 * and only the port its last `port.add` makes is the host's (adopting it earlier would
 * let the replayed `port.del` destroy the host's TAP).
 */
export function holdInheritedTaps(names: Iterable<string>): void {
  const taps = inheritedTaps();
  for (const n of names) {
    const t = taps.get(n);
    if (t === undefined) continue;
    held.set(n, t);
    taps.delete(n);
  }
}

/** Makes a held-back fd adoptable again (before the `port.add` that is to adopt it). */
export function releaseInheritedTap(name: string): void {
  const t = held.get(name);
  if (t === undefined) return;
  inheritedTaps().set(name, t);
  held.delete(name);
}

/**
 * Closes the inherited TAP fds no port adopted (a host whose port the journal no longer
 * has); returns their names. Called once the node's ports are made.
 */
export function closeUnadoptedTaps(): string[] {
  const names: string[] = [];
  for (const left of [inheritedTaps(), held]) {
    for (const [name, { fd }] of left) {
      names.push(name);
      try {
        fs.closeSync(fd);
      } catch {
        // not open after all
      }
    }
    left.clear();
  }
  return names;
}

/** TAPNET_IO: the TAP I/O method of nodes whose configuration names none. */
export function tapIoFromEnv(env: NodeJS.ProcessEnv = process.env): TapIo {
  const v = env.TAPNET_IO;
  if (v === undefined || v === "") return "rw";
  if (v === "rw" || v === "uring") return v;
  throw new Error(`TAPNET_IO must be "rw" or "uring", got "${v}"`);
}

export function makeDevicePort(pc: NodePortConfig, config: NodeConfig): Port {
  switch (pc.kind) {
    case "tap": {
      const taps = inheritedTaps();
      const given = taps.get(pc.name);
      taps.delete(pc.name);
      return new TapPort(pc.name, pc.ifname, {
        offload: config.offload === true,
        persist: config.persistentTaps === true,
        fd: given?.fd,
        mtu: given?.mtu,
        io: config.io ?? tapIoFromEnv(),
      });
    }
    case "pcap":
      return new PcapPort(pc.name, pc.ifname, pc.filter === undefined ? {} : { filter: pc.filter });
    case "xdp":
      return new XdpPort(pc.name, pc.ifname);
    case "vxlan": {
      const v = pc.vxlan;
      if (!v) throw new Error(`port ${pc.name}: vxlan settings missing`);
      return new VxlanPort(pc.name, {
        vni: v.vni,
        dstPort: v.dstPort,
        localAddr: v.localAddr,
        remotes: v.remotes,
        fdb: v.fdb,
        arpSuppress: v.arpSuppress,
        learning: v.learning,
        udpChecksum: v.udpChecksum,
        underlayMtu: v.underlayMtu,
      });
    }
    case "mesh": {
      const m = pc.mesh;
      if (!m) throw new Error(`port ${pc.name}: mesh settings missing`);
      return new SleevePort(pc.name, { port: m.port, underlayMtu: m.underlayMtu });
    }
    case "ipip": {
      const v = pc.ipip;
      if (!v) throw new Error(`port ${pc.name}: ipip settings missing`);
      const owner = config.router?.interfaces.find((i) => i.name === pc.routed);
      return new IpipPort(pc.name, { localAddr: v.localAddr, peers: v.peers, mac: owner ? parseMac(owner.mac) : 0, mtu: v.underlayMtu });
    }
  }
}
