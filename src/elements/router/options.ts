/**
 * IPv4 options on a router's way in and out (RFC 791 §3.1, RFC 1812 §5.2.4; Linux's
 * ip_options_compile on input and ip_forward_options when forwarding):
 *
 *   ipv4OptionsInput()   checks every option of a received header and does what the
 *                        router owes each: End of Option List zeroes what follows it;
 *                        Record Route gets `specDst` at its pointer (the pointer moves
 *                        on 4); Timestamp gets the time (flag 0), `specDst` and the time
 *                        (flag 1), or the time where its next prespecified address is
 *                        one of the router's (flag 3; another address is left alone), or,
 *                        full, its overflow count raised. A malformed option — a length
 *                        below 2 or past the header, a pointer below its minimum, a
 *                        second Record Route or source route, a Timestamp overflow of 15,
 *                        Router Alert shorter than 4 — returns the offset of the byte at
 *                        fault, for Parameter Problem 12/0 with that pointer (the packet
 *                        is dropped). Options the router does not know pass unchanged;
 *                        `srr` says a Loose or Strict Source Route is present (the caller
 *                        drops it, as Linux does with accept_source_route 0, or follows it).
 *   ipv4SourceRoute()    a source route on an interface that accepts them: the next hop
 *                        it names, past the router's own addresses (ip_options_rcv_srr).
 *   ipv4OptionsForward() when the packet leaves: the Record Route entry made on input
 *                        becomes the address the packet leaves from (`outAddr`), as Linux
 *                        records the outgoing interface; a followed source route records
 *                        it too and the next hop becomes the destination; the checksum is
 *                        recomputed.
 *   ipv4OptionsEcho(), ipv4OptionsEchoSourceRoute(), ipv4OptionsErrorWrite()
 *                        the options of replies and errors (ip_options_echo).
 *
 * Nothing here allocates: the result of input is in `OptionsResult`, reused.
 */
import { ipv4FillChecksum } from "../../wire/ipv4.js";

const IPOPT_END = 0;
const IPOPT_NOOP = 1;
const IPOPT_RR = 7;
const IPOPT_TS = 68;
const IPOPT_LSRR = 131;
const IPOPT_SSRR = 137;
const IPOPT_RA = 148;
const TS_ONLY = 0;
const TS_AND_ADDR = 1;
const TS_PRESPEC = 3;

/** What ipv4OptionsInput() found, for the forwarding step. */
export class OptionsResult {
  /** Offset (from the IPv4 header) of the Record Route option, else 0; it took an entry. */
  rr = 0;
  rrAddr = false;
  /** Offset of the Timestamp option, else 0; what the entry it took had. */
  ts = 0;
  tsAddr = false;
  tsTime = false;
  /** A Loose or Strict Source Route option is present; its offset (from the IPv4 header); it is strict. */
  srr = false;
  srrOff = 0;
  strict = false;
  /**
   * The source route is being followed (ipv4SourceRoute): the packet leaves for
   * `nexthop`, the route's next address, which becomes its destination when forwarded.
   */
  srrHit = false;
  nexthop = 0;
  /** Bytes were changed: the header checksum must be recomputed. */
  changed = false;

  clear(): void {
    this.rr = 0;
    this.rrAddr = false;
    this.ts = 0;
    this.tsAddr = false;
    this.tsTime = false;
    this.srr = false;
    this.srrOff = 0;
    this.strict = false;
    this.srrHit = false;
    this.nexthop = 0;
    this.changed = false;
  }
}

/**
 * Milliseconds since midnight UT (RFC 791's timestamp), as Linux's
 * inet_current_timestamp writes it.
 */
export function timestampNow(): number {
  return Date.now() % 86_400_000;
}

/**
 * Checks and processes the options of the IPv4 header at `buf[ip]` (IHL > 5), recording
 * `specDst` where Record Route or Timestamp ask for the router's address; `isLocal(addr)`
 * tells the router's own addresses (prespecified Timestamp). `ms`: the timestamp to write.
 * Returns -1 when the options are acceptable (results in `res`), or the offset from the
 * header of the byte at fault (the Parameter Problem pointer).
 */
export function ipv4OptionsInput(buf: Buffer, ip: number, specDst: number, isLocal: (addr: number) => boolean, ms: number, res: OptionsResult): number {
  res.clear();
  const end = ip + ((buf[ip] & 0x0f) << 2);
  let ts = false;
  let p = ip + 20;
  while (p < end) {
    const t = buf[p];
    if (t === IPOPT_END) {
      // RFC 791: what follows End of Option List is padding, which Linux zeroes.
      for (let q = p + 1; q < end; q++) {
        if (buf[q] !== IPOPT_END) {
          buf[q] = IPOPT_END;
          res.changed = true;
        }
      }
      return -1;
    }
    if (t === IPOPT_NOOP) {
      p++;
      continue;
    }
    const l = end - p;
    if (l < 2) return p - ip;
    const len = buf[p + 1];
    if (len < 2 || len > l) return p - ip;
    if (t === IPOPT_LSRR || t === IPOPT_SSRR) {
      if (len < 3) return p + 1 - ip;
      if (buf[p + 2] < 4) return p + 2 - ip;
      if (res.srr) return p - ip;
      res.srr = true;
      res.srrOff = p - ip;
      res.strict = t === IPOPT_SSRR;
    } else if (t === IPOPT_RR) {
      if (res.rr !== 0) return p - ip;
      if (len < 3) return p + 1 - ip;
      const ptr = buf[p + 2];
      if (ptr < 4) return p + 2 - ip;
      res.rr = p - ip;
      if (ptr <= len) {
        if (ptr + 3 > len) return p + 2 - ip;
        buf.writeUInt32BE(specDst >>> 0, p + ptr - 1);
        buf[p + 2] = ptr + 4;
        res.rrAddr = true;
        res.changed = true;
      }
    } else if (t === IPOPT_TS) {
      if (ts) return p - ip;
      ts = true;
      if (len < 4) return p + 1 - ip;
      const ptr = buf[p + 2];
      if (ptr < 5) return p + 2 - ip;
      res.ts = p - ip;
      if (ptr <= len) {
        if (ptr + 3 > len) return p + 2 - ip;
        const flag = buf[p + 3] & 0x0f;
        if (flag === TS_ONLY) {
          buf.writeUInt32BE(ms, p + ptr - 1);
          buf[p + 2] = ptr + 4;
          res.changed = true;
          res.tsTime = true;
        } else if (flag === TS_AND_ADDR || flag === TS_PRESPEC) {
          if (ptr + 7 > len) return p + 2 - ip;
          if (flag === TS_AND_ADDR) {
            buf.writeUInt32BE(specDst >>> 0, p + ptr - 1);
            buf.writeUInt32BE(ms, p + ptr + 3);
            buf[p + 2] = ptr + 8;
            res.changed = true;
            res.tsAddr = true;
            res.tsTime = true;
          } else if (isLocal(buf.readUInt32BE(p + ptr - 1))) {
            buf.writeUInt32BE(ms, p + ptr + 3);
            buf[p + 2] = ptr + 8;
            res.changed = true;
            res.tsTime = true;
          }
        }
        // Other flags: not defined (RFC 791); passed on as they are.
      } else if ((buf[p + 3] & 0x0f) !== TS_PRESPEC) {
        // Full: the overflow count goes up (RFC 791), except for prespecified addresses,
        // whose list simply ends (as Linux).
        const overflow = buf[p + 3] >>> 4;
        if (overflow === 15) return p + 3 - ip;
        buf[p + 3] = (buf[p + 3] & 0x0f) | ((overflow + 1) << 4);
        res.changed = true;
      }
    } else if (t === IPOPT_RA) {
      if (len < 4) return p + 1 - ip;
    }
    p += len;
  }
  return -1;
}

/**
 * The Record Route entry input made becomes `outAddr`, the address the packet leaves
 * from; a source route being followed (`srrHit`) has the slot naming the next hop
 * replaced by `outAddr`, its pointer moved past it and the destination set to the next
 * hop (RFC 791 §3.1, Linux's ip_forward_options); the checksum follows.
 */
export function ipv4OptionsForward(buf: Buffer, ip: number, outAddr: number, res: OptionsResult): void {
  if (res.rrAddr) {
    const o = ip + res.rr;
    buf.writeUInt32BE(outAddr >>> 0, o + buf[o + 2] - 5);
  }
  if (res.srrHit) {
    const o = ip + res.srrOff;
    const len = buf[o + 1];
    // The slot is the first from the pointer naming the next hop: the router's own
    // addresses before it were passed over by ipv4SourceRoute without moving the pointer.
    let ptr = buf[o + 2];
    while (ptr + 3 <= len && buf.readUInt32BE(o + ptr - 1) !== res.nexthop >>> 0) ptr += 4;
    if (ptr + 3 <= len) {
      buf.writeUInt32BE(outAddr >>> 0, o + ptr - 1);
      buf[o + 2] = ptr + 4;
      buf.writeUInt32BE(res.nexthop >>> 0, ip + 16);
    }
  }
  ipv4FillChecksum(buf, ip);
}

/** ipv4SourceRoute(): the source route is followed; `res.srrHit`, `res.nexthop` say where. */
export const SRR_OK = -1;
/** ipv4SourceRoute(): dropped silently (the next address has no unicast route). */
export const SRR_DROP = -2;
/** ipv4SourceRoute(): a strict route passing through without naming the router (Parameter Problem, pointer 16). */
export const SRR_STRICT_PASS = -3;

/**
 * A source-routed packet received on an interface that accepts source routes (Linux's
 * ip_options_rcv_srr, RFC 791 §3.1, RFC 1812 §5.2.4.1). `local`: its destination is one
 * of the router's addresses. Not ours: a loose route passes as it is (SRR_OK, not hit), a
 * strict one is refused (SRR_STRICT_PASS). Ours, with addresses left in the route: each
 * next address that is the router's own becomes the destination (the pointer stays), the
 * first other one is the next hop (`srrHit`, `nexthop`) when `routable(addr)` says it has a
 * unicast route, else SRR_DROP. An entry running past the option: the offset for Parameter
 * Problem (its pointer byte). Route used up: delivered here (SRR_OK, not hit).
 */
export function ipv4SourceRoute(
  buf: Buffer,
  ip: number,
  local: boolean,
  isLocal: (addr: number) => boolean,
  routable: (addr: number) => boolean,
  res: OptionsResult,
): number {
  if (!local) return res.strict ? SRR_STRICT_PASS : SRR_OK;
  const o = ip + res.srrOff;
  const len = buf[o + 1];
  let ptr = buf[o + 2];
  for (; ptr <= len; ptr += 4) {
    if (ptr + 3 > len) return res.srrOff + 2;
    const next = buf.readUInt32BE(o + ptr - 1);
    if (!isLocal(next)) {
      if (!routable(next)) return SRR_DROP;
      res.srrHit = true;
      res.nexthop = next;
      res.changed = true;
      return SRR_OK;
    }
    // "Superfast loopback forward": the router's own address, the destination moves on.
    if (buf.readUInt32BE(ip + 16) !== next) {
      buf.writeUInt32BE(next, ip + 16);
      res.changed = true;
    }
  }
  return SRR_OK;
}

/**
 * The options of an echo reply built in place from a request whose options input took
 * the router's entries (Linux's ip_options_echo, then ip_options_build): Record Route
 * and Timestamp stay and get one more entry, the reply's source `src` (and the time
 * `ms`), when they have room; every other option becomes NOPs. False when a Record Route
 * or Timestamp with room left has not room for a whole entry (Linux sends no reply).
 */
export function ipv4OptionsEcho(buf: Buffer, ip: number, src: number, isLocal: (addr: number) => boolean, ms: number, res: OptionsResult): boolean {
  const end = ip + ((buf[ip] & 0x0f) << 2);
  for (let p = ip + 20; p < end; ) {
    const t = buf[p];
    if (t === IPOPT_END) break;
    if (t === IPOPT_NOOP) {
      p++;
      continue;
    }
    const len = buf[p + 1];
    const o = p - ip;
    if (o !== res.rr && o !== res.ts) buf.fill(IPOPT_NOOP, p, p + len);
    p += len;
  }
  if (!echoEntries(buf, res.rr !== 0 ? ip + res.rr : -1, res.ts !== 0 ? ip + res.ts : -1, src, isLocal, ms, res)) return false;
  ipv4FillChecksum(buf, ip);
  return true;
}

/** Bytes the options echoed into an error about the packet whose options input found `res` take (a multiple of 4). */
export function ipv4OptionsErrorLen(orig: Buffer, origIp: number, res: OptionsResult): number {
  let n = 0;
  if (res.rr !== 0) n += orig[origIp + res.rr + 1];
  if (res.ts !== 0) n += orig[origIp + res.ts + 1];
  return (n + 3) & ~3;
}

/**
 * Writes the options of an error (Linux's icmp_send, through ip_options_echo) at
 * `dst[at, at + len)`: the original's Record Route, then its Timestamp, each with the
 * error's entry (`src`, the time) when they have room, then End of Option List. False
 * when one has room left but not for a whole entry (Linux sends no error).
 */
export function ipv4OptionsErrorWrite(
  dst: Buffer,
  at: number,
  len: number,
  orig: Buffer,
  origIp: number,
  src: number,
  isLocal: (addr: number) => boolean,
  ms: number,
  res: OptionsResult,
): boolean {
  let w = at;
  let rrAt = -1;
  let tsAt = -1;
  if (res.rr !== 0) {
    const o = origIp + res.rr;
    rrAt = w;
    orig.copy(dst, w, o, o + orig[o + 1]);
    w += orig[o + 1];
  }
  if (res.ts !== 0) {
    const o = origIp + res.ts;
    tsAt = w;
    orig.copy(dst, w, o, o + orig[o + 1]);
    w += orig[o + 1];
  }
  dst.fill(IPOPT_END, w, at + len);
  return echoEntries(dst, rrAt, tsAt, src, isLocal, ms, res);
}

/** The echoing router's entries in the Record Route at `rrAt` and the Timestamp at `tsAt` (-1: none). */
function echoEntries(buf: Buffer, rrAt: number, tsAt: number, src: number, isLocal: (addr: number) => boolean, ms: number, res: OptionsResult): boolean {
  if (rrAt >= 0 && res.rrAddr) {
    const len = buf[rrAt + 1];
    const ptr = buf[rrAt + 2];
    if (ptr <= len) {
      if (ptr + 3 > len) return false;
      buf.writeUInt32BE(src >>> 0, rrAt + ptr - 1);
      buf[rrAt + 2] = ptr + 4;
    }
  }
  if (tsAt >= 0 && (res.tsAddr || res.tsTime)) {
    const o = tsAt;
    const len = buf[o + 1];
    let ptr = buf[o + 2];
    if (ptr <= len) {
      if (res.tsAddr) {
        if (ptr + 3 > len) return false;
        buf.writeUInt32BE(src >>> 0, o + ptr - 1);
        ptr += 4;
      }
      if (res.tsTime) {
        if (ptr + 3 > len) return false;
        if ((buf[o + 3] & 0x0f) !== TS_PRESPEC) {
          buf.writeUInt32BE(ms, o + ptr - 1);
          ptr += 4;
        } else if (ptr + 7 <= len && isLocal(buf.readUInt32BE(o + ptr - 1))) {
          buf.writeUInt32BE(ms, o + ptr + 3);
          ptr += 8;
        }
      }
      buf[o + 2] = ptr;
    }
  }
  return true;
}

/** Room for a reversed source route's entries (at most nine fit in 40 bytes of options). */
const reversed = new Uint32Array(10);

/**
 * The options of an echo reply built in place from a request with a source route and no
 * Record Route or Timestamp (Linux's ip_options_echo, then ip_options_build; RFC 1122
 * §3.2.1.8): the route's visited hops, reversed, lead back to the sender. The last hop
 * visited (`faddr`) becomes the reply's destination; the option, first in the header,
 * names the earlier hops in reverse and, last, the sender (`sender`, the reply's
 * destination so far); a first hop that was the sender itself is left out (RFC 1812
 * §5.2.4.1's fix of illegal routes); End of Option List pads the rest. No hop visited:
 * all options become NOPs and the reply goes straight back. The header checksum follows.
 */
export function ipv4OptionsEchoSourceRoute(buf: Buffer, ip: number, sender: number, res: OptionsResult): void {
  const end = ip + ((buf[ip] & 0x0f) << 2);
  const o = ip + res.srrOff;
  const type = buf[o];
  const len = buf[o + 1];
  let soffset = buf[o + 2];
  if (soffset > len) soffset = len + 1;
  soffset -= 4;
  // n: the reversed entries before the sender's slot; -1: no route goes back.
  let n = -1;
  let faddr = 0;
  if (soffset > 3) {
    faddr = buf.readUInt32BE(o + soffset - 1);
    n = 0;
    for (soffset -= 4; soffset > 3; soffset -= 4) reversed[n++] = buf.readUInt32BE(o + soffset - 1);
    if (buf.readUInt32BE(o + soffset + 3) === sender >>> 0) n--;
  }
  if (n < 0) {
    buf.fill(IPOPT_NOOP, ip + 20, end);
  } else {
    let w = ip + 20;
    buf[w] = type;
    buf[w + 1] = 3 + 4 * (n + 1);
    buf[w + 2] = 4;
    w += 3;
    for (let i = 0; i < n; i++, w += 4) buf.writeUInt32BE(reversed[i], w);
    buf.writeUInt32BE(sender >>> 0, w);
    buf.fill(IPOPT_END, w + 4, end);
    buf.writeUInt32BE(faddr >>> 0, ip + 16);
  }
  ipv4FillChecksum(buf, ip);
}
