/**
 * `tapnet trace NODE --in PORT --packet SPEC`: a what-if trace. The node builds the frame
 * SPEC describes, arms a dry trace (src/core/trace.ts) on its elements, and runs one pass
 * with the frame as if PORT had received it (Engine.whatIf): every decision the elements
 * take is a step, and what would leave a port is shown and discarded.
 *
 * SPEC: `PROTO SRC[:SPORT] > DST[:DPORT] [ttl N] [len N] [vlan N] [df 0|1] [from MAC] [to MAC]`,
 * PROTO one of icmp (an echo request), udp, tcp (a SYN); or `hex HEX…` (a whole
 * Ethernet frame). `from` defaults to the MAC the router's neighbour cache has for SRC
 * (else 02:00:00:74:72:63), `to` to the MAC of the router's interface in the VLAN the
 * packet enters by (else on SRC's subnet, else broadcast).
 */
import type { Engine } from "../core/engine.js";
import type { Element } from "../core/element.js";
import { TraceRecorder, type TraceStep } from "../core/trace.js";
import type { Ipv4Router } from "../elements/router/ipv4-router.js";
import type { LearningSwitch } from "../elements/learning-switch.js";
import { internetChecksum } from "../wire/checksum.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { macToString, parseMac, readMac, writeMac } from "../wire/mac.js";

export interface PacketSpec {
  proto: "icmp" | "udp" | "tcp";
  src: number;
  dst: number;
  sport: number;
  dport: number;
  ttl: number;
  len: number;
  vlan: number;
  from: number | null;
  to: number | null;
  /** Don't Fragment (RFC 791 §3.1): set unless `df 0`, as ping and TCP send. */
  df: boolean;
}

const SYNTHETIC_MAC = 0x020000747263;

/** Parses a packet SPEC (see the file's comment); throws naming the word it cannot read. */
export function parsePacketSpec(text: string): PacketSpec {
  const w = text.trim().split(/\s+/);
  const bad = (what: string): never => {
    throw new Error(
      `--packet '${text}': ${what} (expected 'icmp|udp|tcp SRC[:PORT] > DST[:PORT] [ttl N] [len N] [vlan N] [df 0|1] [from MAC] [to MAC]' or 'hex HEX')`,
    );
  };
  const proto = w[0];
  if (proto !== "icmp" && proto !== "udp" && proto !== "tcp") return bad(`'${w[0] ?? ""}' is not icmp, udp or tcp`);
  if (w.length < 4 || w[2] !== ">") return bad("no 'SRC > DST'");
  const addr = (s: string, what: string): [number, number] => {
    const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(s);
    if (m === null) return bad(`${what} '${s}' is not an IPv4 address[:port]`);
    let ip: number;
    try {
      ip = parseIp(m[1]) >>> 0;
    } catch {
      return bad(`${what} '${s}' is not an IPv4 address`);
    }
    const port = m[2] === undefined ? 0 : Number(m[2]);
    if (port > 65535) return bad(`${what} port ${port} is above 65535`);
    if (port !== 0 && proto === "icmp") return bad("icmp has no ports");
    return [ip, port];
  };
  const [src, sport] = addr(w[1], "source");
  const [dst, dport] = addr(w[3], "destination");
  const spec: PacketSpec = {
    proto,
    src,
    dst,
    sport: sport || 40000,
    dport: dport || (proto === "icmp" ? 0 : 80),
    ttl: 64,
    len: 0,
    vlan: 0,
    from: null,
    to: null,
    df: true,
  };
  for (let i = 4; i < w.length; i += 2) {
    const k = w[i];
    const v = w[i + 1];
    if (v === undefined) return bad(`'${k}' without a value`);
    const num = (lo: number, hi: number): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < lo || n > hi) return bad(`${k} '${v}' is not a whole number in ${lo}..${hi}`);
      return n;
    };
    const mac = (): number => {
      try {
        return parseMac(v);
      } catch {
        return bad(`${k} '${v}' is not a MAC address`);
      }
    };
    if (k === "ttl") spec.ttl = num(0, 255);
    else if (k === "len") spec.len = num(0, 1472);
    else if (k === "vlan") spec.vlan = num(1, 4094);
    else if (k === "df") spec.df = num(0, 1) === 1;
    else if (k === "from") spec.from = mac();
    else if (k === "to") spec.to = mac();
    else return bad(`unknown word '${k}'`);
  }
  return spec;
}

/** The Ethernet frame of `spec`, with `from`/`to` resolved by the caller. */
export function buildFrame(spec: PacketSpec, from: number, to: number): Buffer {
  const l4Len = spec.proto === "tcp" ? 20 : 8;
  const ipLen = 20 + l4Len + spec.len;
  const eth = spec.vlan > 0 ? 18 : 14;
  const f = Buffer.alloc(Math.max(eth + ipLen, 60));
  writeMac(f, 0, to);
  writeMac(f, 6, from);
  if (spec.vlan > 0) {
    f.writeUInt16BE(0x8100, 12);
    f.writeUInt16BE(spec.vlan, 14);
  }
  f.writeUInt16BE(0x0800, eth - 2);
  const ip = eth;
  f[ip] = 0x45;
  f.writeUInt16BE(ipLen, ip + 2);
  f.writeUInt16BE(0x7472, ip + 4);
  f.writeUInt16BE(spec.df ? 0x4000 : 0, ip + 6); // DF unless `df 0`, as ping and TCP send
  f[ip + 8] = spec.ttl;
  f[ip + 9] = spec.proto === "icmp" ? 1 : spec.proto === "udp" ? 17 : 6;
  f.writeUInt32BE(spec.src >>> 0, ip + 12);
  f.writeUInt32BE(spec.dst >>> 0, ip + 16);
  f.writeUInt16BE(internetChecksum(f, ip, 20), ip + 10);
  const l4 = ip + 20;
  const pseudo = (proto: number): number => {
    const p = Buffer.alloc(12);
    p.writeUInt32BE(spec.src >>> 0, 0);
    p.writeUInt32BE(spec.dst >>> 0, 4);
    p[9] = proto;
    p.writeUInt16BE(ipLen - 20, 10);
    let s = 0;
    for (let i = 0; i < 12; i += 2) s += p.readUInt16BE(i);
    return s;
  };
  if (spec.proto === "icmp") {
    f[l4] = 8; // echo request (RFC 792)
    f.writeUInt16BE(0x7472, l4 + 4);
    f.writeUInt16BE(1, l4 + 6);
    f.writeUInt16BE(internetChecksum(f, l4, ipLen - 20), l4 + 2);
  } else if (spec.proto === "udp") {
    f.writeUInt16BE(spec.sport, l4);
    f.writeUInt16BE(spec.dport, l4 + 2);
    f.writeUInt16BE(ipLen - 20, l4 + 4);
    f.writeUInt16BE(internetChecksum(f, l4, ipLen - 20, pseudo(17)) || 0xffff, l4 + 6);
  } else {
    f.writeUInt16BE(spec.sport, l4);
    f.writeUInt16BE(spec.dport, l4 + 2);
    f.writeUInt32BE(1, l4 + 4);
    f[l4 + 12] = 0x50;
    f[l4 + 13] = 0x02; // SYN
    f.writeUInt16BE(64240, l4 + 14);
    f.writeUInt16BE(internetChecksum(f, l4, ipLen - 20, pseudo(6)), l4 + 16);
  }
  return f;
}

/**
 * One line about a frame: MACs, VLAN, and the IPv4/ICMP/UDP/TCP or ARP header. Never
 * throws (it describes what peers sent): a frame it cannot read says so.
 */
export function describeFrame(buf: Buffer, off: number, len: number): string {
  try {
    return describe(buf, off, Math.min(len, buf.length - off));
  } catch {
    return `${len} bytes (not decoded)`;
  }
}

function describe(buf: Buffer, off: number, len: number): string {
  if (len < 14) return `${len} bytes (runt)`;
  let p = off + 12;
  let vlan = "";
  let et = buf.readUInt16BE(p);
  if (et === 0x8100 && len >= 18) {
    vlan = ` vlan ${buf.readUInt16BE(p + 2) & 0xfff}`;
    p += 4;
    et = buf.readUInt16BE(p);
  }
  const l2 = `${macToString(readMac(buf, off + 6))} > ${macToString(readMac(buf, off))}${vlan}`;
  const l3 = p + 2;
  const end = off + len;
  if (et === 0x0806 && l3 + 28 <= end) {
    const op = buf.readUInt16BE(l3 + 6);
    const spa = ipToString(buf.readUInt32BE(l3 + 14));
    const tpa = ipToString(buf.readUInt32BE(l3 + 24));
    return `${l2}, ARP ${op === 1 ? `who-has ${tpa} tell ${spa}` : op === 2 ? `reply ${spa} is-at ${macToString(readMac(buf, l3 + 8))}` : `op ${op}`}`;
  }
  if (et !== 0x0800 || l3 + 20 > end) return `${l2}, ethertype 0x${et.toString(16).padStart(4, "0")}, ${len} bytes`;
  const ihl = (buf[l3] & 15) * 4;
  const proto = buf[l3 + 9];
  const ttl = buf[l3 + 8];
  const src = ipToString(buf.readUInt32BE(l3 + 12));
  const dst = ipToString(buf.readUInt32BE(l3 + 16));
  const l4 = l3 + ihl;
  let what = `proto ${proto}`;
  const frag = buf.readUInt16BE(l3 + 6);
  // A later fragment carries no transport header (RFC 791 §3.2): say where it sits instead.
  if ((frag & 0x1fff) !== 0) {
    const name = proto === 1 ? "ICMP" : proto === 6 ? "TCP" : proto === 17 ? "UDP" : `proto ${proto}`;
    return `${l2}, IPv4 ${src} > ${dst} ttl ${ttl}, ${name} fragment at offset ${(frag & 0x1fff) * 8}${frag & 0x2000 ? ", more fragments" : ""}`;
  }
  const first = frag & 0x2000 ? " (first fragment)" : "";
  if (proto === 1 && l4 + 2 <= end) {
    const t = buf[l4];
    const c = buf[l4 + 1];
    const names: Record<number, string> = {
      0: "echo reply",
      3: "destination unreachable",
      8: "echo request",
      11: "time exceeded",
      5: "redirect",
      12: "parameter problem",
    };
    what = `ICMP ${names[t] ?? `type ${t}`}${t === 3 || t === 11 || t === 5 ? ` code ${c}` : ""}`;
  } else if ((proto === 6 || proto === 17) && l4 + 4 <= end) {
    what = `${proto === 6 ? "TCP" : "UDP"} ${buf.readUInt16BE(l4)} > ${buf.readUInt16BE(l4 + 2)}`;
    if (proto === 17 && buf.readUInt16BE(l4 + 2) === 4789 && l4 + 16 + 14 <= end)
      what += ` VXLAN vni ${buf.readUIntBE(l4 + 12, 3)} [${describe(buf, l4 + 16, end - l4 - 16)}]`;
    if (proto === 17 && buf.readUInt16BE(l4 + 2) === 8472 && l4 + 16 + 14 <= end)
      what += ` VXLAN vni ${buf.readUIntBE(l4 + 12, 3)} [${describe(buf, l4 + 16, end - l4 - 16)}]`;
  } else if (proto === 4 && l4 + 20 <= end) what = `IPIP [${ipToString(buf.readUInt32BE(l4 + 12))} > ${ipToString(buf.readUInt32BE(l4 + 16))}]`;
  return `${l2}, IPv4 ${src} > ${dst} ttl ${ttl}, ${what}${first}`;
}

export interface WhatIfResult {
  packet: string;
  in: string;
  steps: TraceStep[];
  /** What would have left a device port (and was discarded). */
  out: Array<{ port: string; frame: string; encap?: string }>;
}

/** Runs a what-if trace of `packet` (a SPEC or `hex …`) received on port `inName`. */
export function whatIfTrace(
  engine: Engine,
  elements: Array<Element | null | undefined>,
  router: Ipv4Router | null,
  sw: LearningSwitch | null,
  node: string,
  inName: string,
  packet: string,
): WhatIfResult {
  const port = engine.requirePort(inName, node);
  let frame: Buffer;
  const text = packet.trim();
  if (text.startsWith("hex ")) {
    const hex = text.slice(4).replace(/[\s:]/g, "");
    if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new Error(`--packet: '${text.slice(4, 40)}…' is not hex bytes`);
    frame = Buffer.from(hex, "hex");
    if (frame.length < 14) throw new Error(`--packet: a frame of ${frame.length} bytes is shorter than an Ethernet header`);
  } else {
    const spec = parsePacketSpec(text);
    let from = spec.from;
    let to = spec.to;
    if (router !== null) {
      const i = router.connectedIf(spec.src);
      if (i >= 0 && from === null) {
        const n = router.neigh.get(i, spec.src);
        if (n !== undefined && n.mac !== 0) from = n.mac;
      }
      if (to === null && sw !== null) {
        // The router's interface in the VLAN the packet enters (an SVI or a routed port).
        const vlan = spec.vlan > 0 ? spec.vlan : sw.portVlans(port.index).pvid;
        const ifc = router.ifaces.find((f) => sw.portVlans(f.port.index).pvid === vlan);
        if (ifc !== undefined) to = ifc.mac;
      }
      if (to === null && i >= 0) to = router.ifaces[i].mac;
    }
    frame = buildFrame(spec, from ?? SYNTHETIC_MAC, to ?? 0xffffffffffff);
  }
  const tr = new TraceRecorder(true);
  const els = elements.filter((e): e is Element => e !== null && e !== undefined);
  const out: WhatIfResult["out"] = [];
  for (const e of els) e.setTrace(tr);
  try {
    engine.whatIf(port, frame, (p, pool, off, len) => {
      const encap = p.traceTx(pool, off, len);
      out.push({ port: p.name, frame: describeFrame(pool, off, len), ...(encap === null ? {} : { encap }) });
    });
  } finally {
    for (const e of els) e.setTrace(null);
  }
  return { packet: describeFrame(frame, 0, frame.length), in: port.name, steps: tr.steps, out };
}

/** The text of a what-if trace. */
export function renderWhatIf(r: WhatIfResult): string {
  const lines = [`packet in ${r.in}: ${r.packet}`];
  for (const s of r.steps) lines.push(`  ${s.element.padEnd(8)} ${s.what}`);
  if (r.out.length === 0) lines.push("  (nothing would leave the node)");
  for (const o of r.out) lines.push(`  out ${o.port}: ${o.frame}${o.encap ? `, in ${o.encap}` : ""} (not sent)`);
  return lines.join("\n");
}
