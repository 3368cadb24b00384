/**
 * flannel's data in etcd, as flanneld reads and writes it:
 *
 *   <prefix>/config              {"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin": …,
 *                                 "SubnetMax": …, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
 *   <prefix>/subnets/A.B.C.D-LEN  {"PublicIP": "192.168.0.1", "BackendType": "vxlan",
 *                                 "BackendData": {"VNI": 1, "VtepMAC": "02:…"}}   (under an etcd lease)
 *
 * Defaults are flanneld's: SubnetLen 24 (or the Network's length + 1 when it is /24 or
 * longer), SubnetMin the second subnet of Network (the first is left out, as flanneld
 * does), SubnetMax the last. Every problem is reported with the field it is in.
 */
import { ipToString, parseIp } from "../wire/ipv4addr.js";

export type BackendType = "vxlan" | "host-gw";

export interface FlannelConfig {
  network: { addr: number; len: number };
  subnetLen: number;
  subnetMin: number;
  subnetMax: number;
  backend: { type: BackendType; vni: number; port: number; directRouting: boolean };
}

export interface Subnet {
  addr: number;
  len: number;
}

export interface LeaseValue {
  PublicIP: string;
  BackendType: string;
  BackendData?: { VNI?: number; VtepMAC?: string };
}

const mask = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

export const subnetText = (s: Subnet): string => `${ipToString(s.addr)}/${s.len}`;
/** The lease key's last part: 10.244.1.0-24. */
export const subnetKey = (s: Subnet): string => `${ipToString(s.addr)}-${s.len}`;

export function parseSubnetKey(k: string): Subnet | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$/.exec(k);
  if (!m) return null;
  try {
    const addr = parseIp(m[1]);
    const len = Number(m[2]);
    if (len > 32 || (addr & mask(len)) >>> 0 !== addr) return null;
    return { addr, len };
  } catch {
    return null;
  }
}

function cidrField(v: unknown, field: string): { addr: number; len: number } {
  if (typeof v !== "string") throw new Error(`${field}: missing or not a string (expected a CIDR like 10.244.0.0/16)`);
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(v);
  let addr: number;
  try {
    if (!m) throw new Error();
    addr = parseIp(m[1]);
  } catch {
    throw new Error(`${field}: '${v}' is not an IPv4 CIDR like 10.244.0.0/16`);
  }
  const len = Number(m[2]);
  if (len > 32) throw new Error(`${field}: '${v}': a prefix length is 0-32`);
  if ((addr & mask(len)) >>> 0 !== addr) throw new Error(`${field}: '${v}' has host bits set (the network is ${ipToString((addr & mask(len)) >>> 0)}/${len})`);
  return { addr, len };
}

/** Parses `<prefix>/config`; throws naming the field and what is wrong with it. */
export function parseFlannelConfig(text: string, where: string): FlannelConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${where}: expected a JSON object`);
  const at = (f: string): string => `${where}: ${f}`;
  try {
    const network = cidrField(raw.Network, "Network");
    let subnetLen: number;
    if (raw.SubnetLen === undefined) {
      if (network.len < 24) subnetLen = 24;
      else if (network.len < 30) subnetLen = network.len + 1;
      else throw new Error(`Network: ${subnetText(network)} is too small (flannel needs at least a /29 to hand out subnets)`);
    } else {
      const v = raw.SubnetLen;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 30) throw new Error(`SubnetLen: ${JSON.stringify(v)} is not a prefix length 1-30`);
      subnetLen = v;
    }
    if (subnetLen <= network.len) throw new Error(`SubnetLen: /${subnetLen} is not longer than Network ${subnetText(network)}`);
    const size = 2 ** (32 - subnetLen);
    const netSize = 2 ** (32 - network.len);
    const inside = (v: unknown, f: string, dflt: number): number => {
      if (v === undefined) return dflt;
      let a: number;
      try {
        if (typeof v !== "string") throw new Error();
        a = parseIp(v);
      } catch {
        throw new Error(`${f}: ${JSON.stringify(v)} is not an IPv4 address`);
      }
      if (a < network.addr || a >= network.addr + netSize) throw new Error(`${f}: ${v} is outside Network ${subnetText(network)}`);
      if ((a & mask(subnetLen)) >>> 0 !== a) throw new Error(`${f}: ${v} is not the start of a /${subnetLen}`);
      return a;
    };
    const subnetMin = inside(raw.SubnetMin, "SubnetMin", network.addr + size);
    const subnetMax = inside(raw.SubnetMax, "SubnetMax", network.addr + netSize - size);
    if (subnetMin > subnetMax) throw new Error(`SubnetMin ${ipToString(subnetMin)} is above SubnetMax ${ipToString(subnetMax)}: no subnet to hand out`);
    const b = (raw.Backend ?? { Type: "udp" }) as Record<string, unknown>;
    if (b === null || typeof b !== "object") throw new Error('Backend: expected an object like {"Type": "vxlan"}');
    const type = b.Type ?? "udp";
    if (type !== "vxlan" && type !== "host-gw") throw new Error(`Backend.Type: '${String(type)}' is not a backend tapnet's agent speaks (vxlan, host-gw)`);
    const int = (v: unknown, f: string, dflt: number, lo: number, hi: number): number => {
      if (v === undefined) return dflt;
      if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw new Error(`${f}: ${JSON.stringify(v)} is not an integer ${lo}-${hi}`);
      return v;
    };
    const directRouting = b.DirectRouting ?? false;
    if (typeof directRouting !== "boolean") throw new Error("Backend.DirectRouting: expected true or false");
    return {
      network,
      subnetLen,
      subnetMin,
      subnetMax,
      backend: {
        type,
        vni: int(b.VNI, "Backend.VNI", 1, 1, 16777215),
        port: int(b.Port, "Backend.Port", 8472, 1, 65535),
        directRouting,
      },
    };
  } catch (e) {
    throw new Error(at(e instanceof Error ? e.message : String(e)));
  }
}

/** Whether `s` is a subnet the config hands out. */
export function inRange(c: FlannelConfig, s: Subnet): boolean {
  return s.len === c.subnetLen && s.addr >= c.subnetMin && s.addr <= c.subnetMax && (s.addr & mask(s.len)) >>> 0 === s.addr;
}

/**
 * A free subnet of the range, not in `taken` (subnet addresses), chosen at random among
 * the free ones as flanneld does (so two agents starting together rarely collide); null
 * when the range is exhausted.
 */
export function freeSubnet(c: FlannelConfig, taken: Set<number>, random: () => number = Math.random): Subnet | null {
  const size = 2 ** (32 - c.subnetLen);
  const count = (c.subnetMax - c.subnetMin) / size + 1;
  const free: number[] = [];
  for (let i = 0; i < count && free.length < 100; i++) {
    const a = c.subnetMin + i * size;
    if (!taken.has(a)) free.push(a);
  }
  if (free.length === 0) return null;
  return { addr: free[Math.floor(random() * free.length)], len: c.subnetLen };
}

/** The lease value flanneld writes (read by every other node). */
export function leaseValue(publicIp: string, c: FlannelConfig, vtepMac: string | null): string {
  const v: LeaseValue = { PublicIP: publicIp, BackendType: c.backend.type };
  if (c.backend.type === "vxlan") v.BackendData = { VNI: c.backend.vni, VtepMAC: vtepMac ?? "" };
  return JSON.stringify(v);
}

/** A peer's lease value, or null (with why) when it is not one this agent can use. */
export function parseLeaseValue(text: string): { value: LeaseValue } | { error: string } {
  let v: LeaseValue;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: "not JSON" };
  }
  if (v === null || typeof v !== "object") return { error: "not an object" };
  try {
    parseIp(String(v.PublicIP));
  } catch {
    return { error: `PublicIP ${JSON.stringify(v.PublicIP)} is not an IPv4 address` };
  }
  if (v.BackendType === "vxlan" && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(String(v.BackendData?.VtepMAC))) {
    return { error: `BackendData.VtepMAC ${JSON.stringify(v.BackendData?.VtepMAC)} is not a MAC address` };
  }
  return { value: v };
}

/** flannel's subnet.env: what CNI (and `lab host add`) give pods on this node. */
export function subnetEnv(c: FlannelConfig, s: Subnet, mtu: number): string {
  return [
    `FLANNEL_NETWORK=${subnetText(c.network)}`,
    `FLANNEL_SUBNET=${ipToString(s.addr + 1)}/${s.len}`,
    `FLANNEL_MTU=${mtu}`,
    "FLANNEL_IPMASQ=false",
    "",
  ].join("\n");
}

/** The subnet a subnet.env names (FLANNEL_SUBNET=10.244.1.1/24 -> 10.244.1.0/24), or null. */
export function subnetFromEnv(text: string): Subnet | null {
  const m = /^FLANNEL_SUBNET=(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/m.exec(text);
  if (!m) return null;
  try {
    const len = Number(m[2]);
    return { addr: (parseIp(m[1]) & mask(len)) >>> 0, len };
  } catch {
    return null;
  }
}
