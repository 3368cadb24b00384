/**
 * Source NAT: what the NAT (nat.ts) decides at POSTROUTING for a new connection —
 * the source its packets leave with, written into the reply tuple of its pending
 * conntrack entry before the entry is confirmed (Linux nf_nat's SNAT/MASQUERADE and
 * get_unique_tuple).
 *
 *   rules     masquerade / SNAT rules: connections whose original source is in one
 *             of `sources`, leaving by `outIf` (-1: any), not toward one of
 *             `exceptDestinations` (flannel's `! -d cluster-cidr`), take `toAddr`
 *             (MASQUERADE: the out interface's address). First match wins. Rules can
 *             be added and deleted while traffic flows; existing connections keep
 *             their translation.
 *   hairpin   a service that sent a client to itself (DNAT back to the client's own
 *             address) is masqueraded to the router's address on the way out, or the
 *             backend would answer itself directly and the reply never be un-DNATed.
 *   ports     the original source port / ICMP identifier is kept when the reply tuple
 *             is free, else one is searched like nf_nat_l4proto_unique_tuple (below).
 *   clash     without a rule, a reply tuple already in use (a direct connection
 *             meeting a DNATed one) still gets its port remapped: netfilter's null
 *             binding keeps every reply tuple unique.
 */
import { IP_PROTO_ICMP } from "../wire/ipv4.js";
import { CT_DNAT, CT_SNAT, MATCH_ANY, MATCH_REPLY, type ConnTrack } from "./conntrack.js";
import { checkAddr, checkPort } from "./nat-services.js";

export interface Prefix {
  addr: number;
  prefixLen: number;
}

export interface SnatRule {
  /** Connections whose original source is in one of these prefixes. */
  sources: Prefix[];
  /** Leaving by this router interface index (-1: any). */
  outIf: number;
  /** Address to translate to; MASQUERADE: the out interface's address. */
  toAddr: number;
  /** Not when the (post-DNAT) destination is in one of these (flannel's `! -d cluster-cidr`). */
  exceptDestinations?: Prefix[];
}

/** bind() results, as bits. */
export const BIND_SNAT = 1; // a new source address (rule or hairpin)
export const BIND_HAIRPIN = 2;
export const BIND_CLASH = 4; // port remapped without a rule
export const BIND_EXHAUSTED = 8; // no free port: refuse the connection

/** Linux nf_nat: attempts in the first round of a port search, then halved (NF_NAT_MAX_ATTEMPTS). */
const PORT_ATTEMPTS = 128;

function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

function checkPrefix(what: string, p: Prefix): void {
  if (!Number.isInteger(p.prefixLen) || p.prefixLen < 0 || p.prefixLen > 32) {
    throw new Error(`${what}: prefix length must be an integer 0-32, got ${String(p.prefixLen)}`);
  }
  checkAddr(what, p.addr);
}

function checkRule(r: SnatRule, what: string): void {
  if (!Number.isInteger(r.outIf) || r.outIf < -1) throw new Error(`${what}: outIf must be an interface index or -1`);
  if (!Number.isInteger(r.toAddr) || r.toAddr <= 0 || r.toAddr > 0xffffffff) throw new Error(`${what}: toAddr must be a non-zero IPv4 address`);
  if (r.sources.length === 0) throw new Error(`${what}: no sources`);
  for (const s of r.sources) checkPrefix(`${what} source`, s);
  for (const x of r.exceptDestinations ?? []) checkPrefix(`${what} exceptDestinations`, x);
}

function copyRule(r: SnatRule): SnatRule {
  const c: SnatRule = { sources: r.sources.map((p) => ({ ...p })), outIf: r.outIf, toAddr: r.toAddr };
  if (r.exceptDestinations !== undefined) c.exceptDestinations = r.exceptDestinations.map((p) => ({ ...p }));
  return c;
}

/** The same rule: interface, address and prefixes (as networks) alike. */
function sameRule(a: SnatRule, b: SnatRule): boolean {
  const nets = (ps: Prefix[] | undefined): string => (ps ?? []).map((p) => `${(p.addr & maskOf(p.prefixLen)) >>> 0}/${p.prefixLen}`).join(",");
  return (
    a.outIf === b.outIf && a.toAddr >>> 0 === b.toAddr >>> 0 && nets(a.sources) === nets(b.sources) && nets(a.exceptDestinations) === nets(b.exceptDestinations)
  );
}

/**
 * The rules, flattened into arrays built whole by compile() and put in place by one
 * assignment: rule r's sources are prefixes srcStart[r]..srcEnd[r]-1 of net/mask, its
 * exceptions exStart[r]..exEnd[r]-1.
 */
interface Compiled {
  outIf: Int32Array;
  to: Int32Array;
  srcStart: Int32Array;
  srcEnd: Int32Array;
  exStart: Int32Array;
  exEnd: Int32Array;
  net: Int32Array;
  mask: Int32Array;
}

function compile(rules: SnatRule[]): Compiled {
  const n = rules.length;
  const t: Compiled = {
    outIf: Int32Array.from(rules, (r) => r.outIf),
    to: Int32Array.from(rules, (r) => r.toAddr | 0),
    srcStart: new Int32Array(n),
    srcEnd: new Int32Array(n),
    exStart: new Int32Array(n),
    exEnd: new Int32Array(n),
    net: new Int32Array(0),
    mask: new Int32Array(0),
  };
  const nets: number[] = [];
  const masks: number[] = [];
  const push = (p: Prefix): void => {
    const m = maskOf(p.prefixLen);
    nets.push(p.addr & m);
    masks.push(m | 0);
  };
  rules.forEach((r, i) => {
    t.srcStart[i] = nets.length;
    r.sources.forEach(push);
    t.srcEnd[i] = t.exStart[i] = nets.length;
    (r.exceptDestinations ?? []).forEach(push);
    t.exEnd[i] = nets.length;
  });
  t.net = Int32Array.from(nets);
  t.mask = Int32Array.from(masks);
  return t;
}

export class SourceNat {
  private list: SnatRule[] = [];
  private t: Compiled = compile([]);

  constructor(
    rules: SnatRule[],
    private readonly portLo: number,
    private readonly portHi: number,
    private readonly rng: () => number,
  ) {
    checkPort("NAT portRange", portLo);
    checkPort("NAT portRange", portHi);
    if (portLo > portHi) throw new Error(`NAT portRange: ${portLo} > ${portHi}`);
    this.set(rules);
  }

  /** Replaces the rules. */
  set(rules: SnatRule[]): void {
    rules.forEach((r, i) => checkRule(r, `SNAT rule ${i}`));
    this.rebuild(rules.map(copyRule));
  }

  /** Appends a rule (matched after the others). */
  add(rule: SnatRule): void {
    checkRule(rule, `SNAT rule ${this.list.length}`);
    this.rebuild([...this.list, copyRule(rule)]);
  }

  /** Removes the rule equal to `rule`; false when there is none. */
  delete(rule: SnatRule): boolean {
    const i = this.list.findIndex((r) => sameRule(r, rule));
    if (i < 0) return false;
    this.rebuild(this.list.filter((_, k) => k !== i));
    return true;
  }

  rules(): SnatRule[] {
    return this.list.map(copyRule);
  }

  private rebuild(rules: SnatRule[]): void {
    this.t = compile(rules);
    this.list = rules;
  }

  /** Is `a` in one of the prefixes from..to-1? */
  private inAny(a: number, from: number, to: number): boolean {
    const t = this.t;
    for (let k = from; k < to; k++) if ((a & t.mask[k]) === t.net[k]) return true;
    return false;
  }

  /** The rule's address for a connection from `src` to `dst` leaving by `outIf`, or 0. */
  match(src: number, dst: number, outIf: number): number {
    const t = this.t;
    const n = t.outIf.length;
    for (let r = 0; r < n; r++) {
      const oi = t.outIf[r];
      if (oi !== -1 && oi !== outIf) continue;
      if (this.inAny(src, t.srcStart[r], t.srcEnd[r]) && !this.inAny(dst, t.exStart[r], t.exEnd[r])) return t.to[r];
    }
    return 0;
  }

  /**
   * Decides the source side of the reply tuple of pending entry `e` of `ct` (leaving
   * by `outIf`; `hairpinAddr`: the router's address on it, int32 bits): SNAT by rule
   * or hairpin, or a port remap when the plain reply tuple is taken. Returns BIND_*
   * bits (0: nothing to change); with BIND_EXHAUSTED no port was free and nothing
   * changed.
   */
  bind(ct: ConnTrack, e: number, outIf: number, hairpinAddr: number, now: number): number {
    const o = 2 * e;
    const r = o + 1;
    const proto = ct.proto[e];
    const origSrc = ct.tSrc[o];
    const origSport = ct.tSport[o];
    const rSrc = ct.tSrc[r];
    const rSport = ct.tSport[r];
    let natAddr: number;
    let res = 0;
    if ((ct.status[e] & CT_DNAT) !== 0 && rSrc === origSrc && hairpinAddr !== 0) {
      natAddr = hairpinAddr;
      res = BIND_SNAT | BIND_HAIRPIN;
    } else {
      natAddr = this.match(origSrc, rSrc, outIf);
      if (natAddr !== 0 && natAddr !== origSrc) res = BIND_SNAT;
    }
    if (natAddr === 0) {
      if (!portTaken(ct, proto, rSrc, rSport, origSrc, origSport, now)) return 0;
      natAddr = origSrc;
      res = BIND_CLASH;
    }
    const port = this.pickPort(ct, proto, rSrc, rSport, natAddr, origSport, now);
    if (port < 0) return res | BIND_EXHAUSTED;
    ct.setTuple(e, 1, rSrc, proto === IP_PROTO_ICMP ? port : rSport, natAddr, port);
    ct.status[e] |= CT_SNAT;
    return res;
  }

  /**
   * A source port (ICMP identifier) for the reply tuple: `keep` when free, else a
   * search of the range like Linux nf_nat_l4proto_unique_tuple: ports below 512 map
   * into 1..511 and below 1024 into 600..1023 (privileged stays privileged); others
   * into portRange; ICMP identifiers into 0..65535. Rounds of 128, 64, 32, 16 tries
   * from random offsets (the whole range when it is small). -1 when none is free.
   */
  private pickPort(ct: ConnTrack, proto: number, rSrc: number, rSport: number, natAddr: number, keep: number, now: number): number {
    if (!portTaken(ct, proto, rSrc, rSport, natAddr, keep, now)) return keep;
    let lo: number;
    let hi: number;
    if (proto === IP_PROTO_ICMP) {
      lo = 0;
      hi = 65535;
    } else if (keep < 512) {
      lo = 1;
      hi = 511;
    } else if (keep < 1024) {
      lo = 600;
      hi = 1023;
    } else {
      lo = this.portLo;
      hi = this.portHi;
    }
    const size = hi - lo + 1;
    let attempts = Math.min(size, PORT_ATTEMPTS);
    let off = Math.floor(this.rng() * size) | 0;
    for (;;) {
      for (let i = 0; i < attempts; i++) {
        const p = lo + ((off + i) % size);
        if (!portTaken(ct, proto, rSrc, rSport, natAddr, p, now)) return p;
      }
      if (attempts >= size || attempts < 16) return -1;
      attempts >>= 1;
      off = Math.floor(this.rng() * size) | 0;
    }
  }
}

/** Is the reply tuple (rSrc:rSport -> natAddr:port) in use? ICMP: both ids are `port`. */
function portTaken(ct: ConnTrack, proto: number, rSrc: number, rSport: number, natAddr: number, port: number, now: number): boolean {
  if (proto === IP_PROTO_ICMP) return ct.taken(proto, rSrc, port, natAddr, port, MATCH_REPLY, now);
  return ct.taken(proto, rSrc, rSport, natAddr, port, MATCH_ANY, now);
}
