/**
 * The filter of a live trace, a small tcpdump-like language:
 *
 *   host A | src A | dst A      IPv4 source or destination (ARP: sender or target)
 *   net A/N                     either address in the prefix
 *   icmp | tcp | udp | arp      protocol;  proto N  IPv4 protocol number
 *   port N                      TCP or UDP source or destination port
 *   vlan N                      802.1Q tag N
 *   and | or | not | ( … )      `not` binds tightest, then `and`, then `or`;
 *                               two terms side by side mean `and`
 *
 * Compiled once into a tree of predicates over a frame's bytes; matching allocates nothing.
 */
import { parseCidr, parseIp } from "../wire/ipv4addr.js";

export type FramePredicate = (buf: Buffer, off: number, len: number) => boolean;

interface Fields {
  vlan: number;
  et: number;
  l3: number;
  end: number;
}

// One scratch record: matching runs on the node's one thread, a frame at a time.
const F: Fields = { vlan: -1, et: 0, l3: 0, end: 0 };

function parseL2(buf: Buffer, off: number, len: number): boolean {
  if (len < 14) return false;
  F.end = off + len;
  let p = off + 12;
  F.vlan = -1;
  let et = (buf[p] << 8) | buf[p + 1];
  if (et === 0x8100 && len >= 18) {
    F.vlan = ((buf[p + 2] << 8) | buf[p + 3]) & 0xfff;
    p += 4;
    et = (buf[p] << 8) | buf[p + 1];
  }
  F.et = et;
  F.l3 = p + 2;
  return true;
}

const isIp = (_buf: Buffer): boolean => F.et === 0x0800 && F.l3 + 20 <= F.end;
const ipSrc = (buf: Buffer): number => buf.readUInt32BE(F.l3 + 12);
const ipDst = (buf: Buffer): number => buf.readUInt32BE(F.l3 + 16);
const isArp = (): boolean => F.et === 0x0806 && F.l3 + 28 <= F.end;

function addrMatch(buf: Buffer, which: "src" | "dst" | "any", test: (a: number) => boolean): boolean {
  if (isIp(buf)) {
    if (which !== "dst" && test(ipSrc(buf))) return true;
    return which !== "src" && test(ipDst(buf));
  }
  if (isArp()) {
    if (which !== "dst" && test(buf.readUInt32BE(F.l3 + 14))) return true;
    return which !== "src" && test(buf.readUInt32BE(F.l3 + 24));
  }
  return false;
}

/** Compiles `text` (words, already split or not); throws naming the word it cannot read. */
export function compileFilter(text: string): FramePredicate {
  const toks = text.replace(/\(/g, " ( ").replace(/\)/g, " ) ").trim().split(/\s+/).filter(Boolean);
  if (toks.length === 0) return (buf, off, len) => parseL2(buf, off, len);
  let i = 0;
  const bad = (what: string): never => {
    throw new Error(`filter '${text}': ${what}`);
  };
  const word = (what: string): string => toks[i++] ?? bad(`${what} expected at the end`);
  const num = (what: string, hi: number): number => {
    const w = word(what);
    const n = Number(w);
    if (!/^\d+$/.test(w) || n > hi) return bad(`'${w}' is not a ${what} (0..${hi})`);
    return n;
  };
  const ip = (): number => {
    const w = word("an IPv4 address");
    try {
      return parseIp(w) >>> 0;
    } catch {
      return bad(`'${w}' is not an IPv4 address`);
    }
  };
  const primary = (): FramePredicate => {
    const w = word("a term");
    switch (w) {
      case "(": {
        const e = orExpr();
        if (word("')'") !== ")") bad("')' expected");
        return e;
      }
      case "not": {
        const e = primary();
        return (b, o, l) => !e(b, o, l);
      }
      case "host":
      case "src":
      case "dst": {
        const which = w === "host" ? "any" : w;
        if (toks[i] === "host") i++;
        const a = ip();
        return (b) => addrMatch(b, which, (x) => x === a);
      }
      case "net": {
        const w2 = word("a prefix");
        let net: number;
        let mask: number;
        try {
          const c = parseCidr(w2);
          net = c.network >>> 0;
          mask = c.mask >>> 0;
        } catch {
          return bad(`'${w2}' is not a prefix A.B.C.D/N`);
        }
        return (b) => addrMatch(b, "any", (x) => (x & mask) >>> 0 === net);
      }
      case "icmp":
        return (b) => isIp(b) && b[F.l3 + 9] === 1;
      case "tcp":
        return (b) => isIp(b) && b[F.l3 + 9] === 6;
      case "udp":
        return (b) => isIp(b) && b[F.l3 + 9] === 17;
      case "arp":
        return () => F.et === 0x0806;
      case "ip":
        return () => F.et === 0x0800;
      case "proto": {
        const p = num("protocol number", 255);
        return (b) => isIp(b) && b[F.l3 + 9] === p;
      }
      case "port": {
        const p = num("port", 65535);
        return (b) => {
          if (!isIp(b)) return false;
          const pr = b[F.l3 + 9];
          if (pr !== 6 && pr !== 17) return false;
          const l4 = F.l3 + (b[F.l3] & 15) * 4;
          if (l4 + 4 > F.end) return false;
          return b.readUInt16BE(l4) === p || b.readUInt16BE(l4 + 2) === p;
        };
      }
      case "vlan": {
        const v = num("VLAN", 4094);
        return () => F.vlan === v;
      }
      default:
        return bad(`unknown word '${w}' (host, src, dst, net, icmp, tcp, udp, arp, ip, proto, port, vlan, and, or, not, parentheses)`);
    }
  };
  const andExpr = (): FramePredicate => {
    let e = primary();
    while (i < toks.length && toks[i] !== "or" && toks[i] !== ")") {
      if (toks[i] === "and") i++;
      const l = e;
      const r = primary();
      e = (b, o, n) => l(b, o, n) && r(b, o, n);
    }
    return e;
  };
  const orExpr = (): FramePredicate => {
    let e = andExpr();
    while (toks[i] === "or") {
      i++;
      const l = e;
      const r = andExpr();
      e = (b, o, n) => l(b, o, n) || r(b, o, n);
    }
    return e;
  };
  const e = orExpr();
  if (i < toks.length) bad(`'${toks[i]}' unexpected`);
  return (buf, off, len) => parseL2(buf, off, len) && e(buf, off, len);
}
