/**
 * DhcpServer — the router's DHCP server on one interface (RFC 2131; options of RFC 2132),
 * for the hosts on that interface's segment (no relay agents: a request with giaddr set is
 * dropped). Configured per router interface (`dhcp: { range, leaseTime, dns }`).
 *
 *   DISCOVER  -> OFFER of the client's current lease, else the address it asks for (option
 *                50) when free, else the lowest free one; the offer is held OFFER_HOLD_MS
 *                (RFC 2131 §4.3.1: the server reserves what it offered);
 *   REQUEST   SELECTING (server identifier present): ours and the offered address -> ACK
 *                (the lease is bound for leaseTime), another server's -> the offer is
 *                released, no answer; INIT-REBOOT (option 50, no ciaddr): the client's own
 *                lease or a free address of the range -> ACK, else NAK; RENEWING/REBINDING
 *                (ciaddr): the client's lease -> ACK, else NAK (RFC 2131 §4.3.2);
 *   DECLINE   the address is in use by someone else: kept out of the pool for leaseTime;
 *   RELEASE   the lease ends.
 * INFORM is not answered. Replies go as RFC 2131 §4.1 says: a NAK, or a client that set
 * the BROADCAST flag, gets a broadcast; a client with ciaddr gets unicast to it through
 * the neighbour cache; otherwise unicast to chaddr and yiaddr, without ARP (the client
 * cannot answer ARP yet). Options sent: message type, server identifier, lease time,
 * T1 (half the lease) and T2 (7/8), subnet mask, router (this interface's address) and
 * domain name servers (RFC 2132 §9.6, §9.7, §9.11, §9.14, §3.3, §3.5, §3.8).
 *
 * A malformed message (short, not BOOTREQUEST/Ethernet, bad magic cookie, options running
 * past the end, no message type) is counted in `malformed` and dropped. Leases are keyed
 * by chaddr; what a peer sends can make at most one lease per address of the range.
 */
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ethSetDstAddr, ethSetEtherType, ethSetSrcAddr } from "../../wire/ethernet.js";
import { ipv4FillChecksum } from "../../wire/ipv4.js";
import { IP_BROADCAST, ipToString, parseIp } from "../../wire/ipv4addr.js";
import { MAC_BROADCAST, macToString } from "../../wire/mac.js";
import { udpComputeChecksum } from "../../wire/udp.js";

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** How long an OFFER keeps its address for the client (RFC 2131 §4.3.1 leaves it to the server). */
export const OFFER_HOLD_MS = 30_000;
/** The largest range served: the lease table is bounded by it. */
export const MAX_RANGE = 4096;

const OP_REQUEST = 1;
const OP_REPLY = 2;
const MAGIC = 0x63825363;
/** BOOTP fixed fields up to the magic cookie, then the cookie (RFC 2131 §2, Figure 1). */
const FIXED = 236;
const OPTIONS = FIXED + 4;
const OFF_FLAGS = 10;
const OFF_CIADDR = 12;
const OFF_YIADDR = 16;
const OFF_SIADDR = 20;
const OFF_GIADDR = 24;
const OFF_CHADDR = 28;
const FLAG_BROADCAST = 0x8000;

const DISCOVER = 1;
const OFFER = 2;
const REQUEST = 3;
const DECLINE = 4;
const ACK = 5;
const NAK = 6;
const RELEASE = 7;

const OPT_PAD = 0;
const OPT_MASK = 1;
const OPT_ROUTER = 3;
const OPT_DNS = 6;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE = 51;
const OPT_MSG_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_T1 = 58;
const OPT_T2 = 59;
const OPT_END = 255;

export interface DhcpOptions {
  /** "FIRST-LAST": the addresses handed out (inside the interface's subnet). */
  range: string;
  /** Seconds. */
  leaseTime: number;
  dns: string[];
}

export interface DhcpLeaseRow {
  interface: string;
  mac: string;
  ip: string;
  state: "offered" | "bound" | "declined";
  expiresInS: number;
}

interface Lease {
  ip: number;
  /** chaddr as a number; -1 for an address a client declined. */
  mac: number;
  bound: boolean;
  expires: number;
}

/** What a frame needs written: out of scratch, and where to send it. */
export interface DhcpSink {
  /** A scratch frame slot (its start), or -1. */
  alloc(): number;
  readonly pool: Buffer;
  /** Puts `len` bytes at `frame` on the interface's wire as they are. */
  push(frame: number, len: number): void;
  /** Sends the IPv4 packet at `ip` toward `dst` through the neighbour cache. */
  unicast(ip: number, ipLen: number, dst: number): void;
}

export class DhcpServer {
  readonly first: number;
  readonly last: number;
  readonly leaseMs: number;
  private readonly dns: number[];
  private readonly byMac = new Map<number, Lease>();
  private readonly byIp = new Map<number, Lease>();
  readonly stats = { received: 0, offers: 0, acks: 0, naks: 0, releases: 0, declines: 0, malformed: 0, ignored: 0, poolExhausted: 0 };

  /**
   * `addr`/`prefixLen`: the interface's address the pool lies in (server identifier,
   * router option, mask). Throws saying what is wrong with the options.
   */
  constructor(
    readonly ifname: string,
    o: DhcpOptions,
    readonly addr: number,
    readonly prefixLen: number,
  ) {
    const m = /^([\d.]+)-([\d.]+)$/.exec(o.range);
    if (!m) throw new Error(`interface ${ifname}: dhcp.range '${o.range}' is not FIRST-LAST (e.g. 10.0.0.100-10.0.0.150)`);
    this.first = parseIp(m[1]) >>> 0;
    this.last = parseIp(m[2]) >>> 0;
    const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
    const net = (addr & mask) >>> 0;
    const bcast = (net | ~mask) >>> 0;
    if (this.first > this.last) throw new Error(`interface ${ifname}: dhcp.range ${o.range}: the first address is above the last`);
    if ((this.first & mask) >>> 0 !== net || (this.last & mask) >>> 0 !== net || this.first === net || this.last === bcast)
      throw new Error(`interface ${ifname}: dhcp.range ${o.range} is not inside ${ipToString(addr)}/${prefixLen} (network and broadcast excluded)`);
    if (addr >= this.first && addr <= this.last)
      throw new Error(`interface ${ifname}: dhcp.range ${o.range} holds the interface's own address ${ipToString(addr)}`);
    if (this.last - this.first + 1 > MAX_RANGE) throw new Error(`interface ${ifname}: dhcp.range ${o.range}: at most ${MAX_RANGE} addresses`);
    if (!Number.isInteger(o.leaseTime) || o.leaseTime < 60) throw new Error(`interface ${ifname}: dhcp.leaseTime ${o.leaseTime}: at least 60 seconds`);
    // Option 6 holds at most 63 addresses (a one-byte length); a reply must fit its slot.
    if (o.dns.length > 8) throw new Error(`interface ${ifname}: dhcp.dns: at most 8 servers`);
    this.leaseMs = o.leaseTime * 1000;
    this.dns = o.dns.map((d) => parseIp(d) >>> 0);
  }

  /**
   * A UDP datagram to port 67: `ip` the IPv4 header, `udp` the UDP header, `end` the end
   * of the datagram in `buf`. `ifMac`: the interface's MAC (the reply's source).
   */
  input(buf: Buffer, udp: number, end: number, ifMac: number, sink: DhcpSink, now: number): void {
    this.stats.received++;
    const b = udp + 8;
    if (end - b < OPTIONS + 1 || buf[b] !== OP_REQUEST || buf[b + 1] !== 1 || buf[b + 2] !== 6 || buf.readUInt32BE(b + FIXED) !== MAGIC) {
      this.stats.malformed++;
      return;
    }
    if (buf.readUInt32BE(b + OFF_GIADDR) !== 0) {
      this.stats.ignored++; // through a relay agent: not served here
      return;
    }
    // Options (RFC 2132 §2): code, length, data; pad and end have no length.
    let type = 0;
    let requested = 0;
    let serverId = -1;
    let o = b + OPTIONS;
    while (o < end) {
      const code = buf[o];
      if (code === OPT_END) break;
      if (code === OPT_PAD) {
        o++;
        continue;
      }
      if (o + 2 > end || o + 2 + buf[o + 1] > end) {
        this.stats.malformed++;
        return;
      }
      const len = buf[o + 1];
      if (code === OPT_MSG_TYPE && len === 1) type = buf[o + 2];
      else if (code === OPT_REQUESTED_IP && len === 4) requested = buf.readUInt32BE(o + 2);
      else if (code === OPT_SERVER_ID && len === 4) serverId = buf.readUInt32BE(o + 2);
      o += 2 + len;
    }
    if (type === 0) {
      this.stats.malformed++;
      return;
    }
    const mac = buf.readUIntBE(b + OFF_CHADDR, 6);
    const ciaddr = buf.readUInt32BE(b + OFF_CIADDR);
    this.expire(now);
    let lease = this.byMac.get(mac);
    switch (type) {
      case DISCOVER: {
        if (lease === undefined) {
          const ip = this.inRange(requested) && !this.byIp.has(requested) ? requested : this.freeAddress();
          if (ip === 0) {
            this.stats.poolExhausted++;
            return;
          }
          lease = { ip, mac, bound: false, expires: now + OFFER_HOLD_MS };
          this.byMac.set(mac, lease);
          this.byIp.set(ip, lease);
        } else if (!lease.bound) lease.expires = now + OFFER_HOLD_MS;
        this.stats.offers++;
        this.reply(buf, b, OFFER, lease.ip, ifMac, sink, now);
        return;
      }
      case REQUEST: {
        if (serverId >= 0) {
          // SELECTING: the client answers one server's offer.
          if (serverId >>> 0 !== this.addr) {
            if (lease !== undefined && !lease.bound) this.drop(lease);
            return;
          }
          if (lease === undefined || lease.ip !== requested) return this.nak(buf, b, ifMac, sink, now);
          return this.bind(buf, b, lease, ifMac, sink, now);
        }
        if (ciaddr !== 0) {
          // RENEWING (unicast) or REBINDING (broadcast): the lease it holds.
          if (lease === undefined || lease.ip !== ciaddr) return this.nak(buf, b, ifMac, sink, now);
          return this.bind(buf, b, lease, ifMac, sink, now);
        }
        // INIT-REBOOT: the address it remembers.
        if (lease !== undefined && lease.ip === requested) return this.bind(buf, b, lease, ifMac, sink, now);
        if (lease === undefined && this.inRange(requested) && !this.byIp.has(requested)) {
          const l: Lease = { ip: requested, mac, bound: false, expires: now };
          this.byMac.set(mac, l);
          this.byIp.set(requested, l);
          return this.bind(buf, b, l, ifMac, sink, now);
        }
        return this.nak(buf, b, ifMac, sink, now);
      }
      case DECLINE: {
        if (lease === undefined || lease.ip !== requested) return;
        this.stats.declines++;
        // The address is in use by someone else: out of the pool for a lease time.
        this.byMac.delete(mac);
        lease.mac = -1;
        lease.bound = false;
        lease.expires = now + this.leaseMs;
        return;
      }
      case RELEASE: {
        if (lease === undefined || lease.ip !== ciaddr) return;
        this.stats.releases++;
        this.drop(lease);
        return;
      }
      default:
        this.stats.ignored++;
    }
  }

  private inRange(ip: number): boolean {
    return ip >= this.first && ip <= this.last;
  }

  private freeAddress(): number {
    for (let ip = this.first; ip <= this.last; ip++) if (!this.byIp.has(ip)) return ip;
    return 0;
  }

  private drop(l: Lease): void {
    if (this.byIp.get(l.ip) === l) this.byIp.delete(l.ip);
    if (l.mac >= 0 && this.byMac.get(l.mac) === l) this.byMac.delete(l.mac);
  }

  private expire(now: number): void {
    for (const l of this.byIp.values()) if (l.expires <= now) this.drop(l);
  }

  private bind(buf: Buffer, b: number, l: Lease, ifMac: number, sink: DhcpSink, now: number): void {
    l.bound = true;
    l.expires = now + this.leaseMs;
    this.stats.acks++;
    this.reply(buf, b, ACK, l.ip, ifMac, sink, now);
  }

  private nak(buf: Buffer, b: number, ifMac: number, sink: DhcpSink, now: number): void {
    this.stats.naks++;
    this.reply(buf, b, NAK, 0, ifMac, sink, now);
  }

  /** Writes the reply to the request at `b` (BOOTP start) into scratch and sends it. */
  private reply(req: Buffer, b: number, type: number, yiaddr: number, ifMac: number, sink: DhcpSink, _now: number): void {
    const frame = sink.alloc();
    if (frame < 0) return;
    const p = sink.pool;
    const ip = frame + ETH_HEADER_LEN;
    const udp = ip + 20;
    const r = udp + 8;
    p.fill(0, r, r + OPTIONS);
    p[r] = OP_REPLY;
    p[r + 1] = 1;
    p[r + 2] = 6;
    req.copy(p, r + 4, b + 4, b + 8); // xid
    req.copy(p, r + OFF_FLAGS, b + OFF_FLAGS, b + OFF_FLAGS + 2);
    if (type !== NAK) req.copy(p, r + OFF_CIADDR, b + OFF_CIADDR, b + OFF_CIADDR + 4);
    p.writeUInt32BE(yiaddr, r + OFF_YIADDR);
    p.writeUInt32BE(0, r + OFF_SIADDR);
    req.copy(p, r + OFF_CHADDR, b + OFF_CHADDR, b + OFF_CHADDR + 16);
    p.writeUInt32BE(MAGIC, r + FIXED);
    let o = r + OPTIONS;
    o = opt8(p, o, OPT_MSG_TYPE, type);
    o = opt32(p, o, OPT_SERVER_ID, this.addr);
    if (type !== NAK) {
      const secs = this.leaseMs / 1000;
      o = opt32(p, o, OPT_LEASE, secs);
      o = opt32(p, o, OPT_T1, Math.floor(secs / 2));
      o = opt32(p, o, OPT_T2, Math.floor((secs * 7) / 8));
      o = opt32(p, o, OPT_MASK, this.prefixLen === 0 ? 0 : (0xffffffff << (32 - this.prefixLen)) >>> 0);
      o = opt32(p, o, OPT_ROUTER, this.addr);
      if (this.dns.length > 0) {
        p[o] = OPT_DNS;
        p[o + 1] = 4 * this.dns.length;
        o += 2;
        for (const d of this.dns) {
          p.writeUInt32BE(d, o);
          o += 4;
        }
      }
    }
    p[o++] = OPT_END;
    // BOOTP messages are at least 300 bytes (RFC 1542 §2.1: some clients drop shorter ones).
    const bootpEnd = Math.max(o, r + 300);
    p.fill(0, o, bootpEnd);
    const ciaddr = req.readUInt32BE(b + OFF_CIADDR);
    const broadcast = type === NAK || (req.readUInt16BE(b + OFF_FLAGS) & FLAG_BROADCAST) !== 0 || (ciaddr === 0 && yiaddr === 0);
    const dst = broadcast ? IP_BROADCAST : ciaddr !== 0 ? ciaddr : yiaddr;
    const ipLen = bootpEnd - ip;
    // IPv4 header (RFC 791): no options, TTL 64, protocol UDP.
    p[ip] = 0x45;
    p[ip + 1] = 0;
    p.writeUInt16BE(ipLen, ip + 2);
    p.writeUInt32BE(0, ip + 4);
    p[ip + 8] = 64;
    p[ip + 9] = 17;
    p.writeUInt32BE(this.addr, ip + 12);
    p.writeUInt32BE(dst >>> 0, ip + 16);
    ipv4FillChecksum(p, ip);
    p.writeUInt16BE(DHCP_SERVER_PORT, udp);
    p.writeUInt16BE(DHCP_CLIENT_PORT, udp + 2);
    p.writeUInt16BE(bootpEnd - udp, udp + 4);
    p.writeUInt16BE(0, udp + 6);
    p.writeUInt16BE(udpComputeChecksum(p, udp, this.addr, dst >>> 0), udp + 6);
    if (!broadcast && ciaddr !== 0) {
      sink.unicast(ip, ipLen, ciaddr);
      return;
    }
    ethSetDstAddr(p, frame, broadcast ? MAC_BROADCAST : req.readUIntBE(b + OFF_CHADDR, 6));
    ethSetSrcAddr(p, frame, ifMac);
    ethSetEtherType(p, frame, ETHERTYPE_IPV4);
    sink.push(frame, ETH_HEADER_LEN + ipLen);
  }

  /** The leases, for `tapnet show dhcp`. */
  leases(now: number): DhcpLeaseRow[] {
    this.expire(now);
    return [...this.byIp.values()]
      .sort((a, b) => a.ip - b.ip)
      .map((l) => ({
        interface: this.ifname,
        mac: l.mac < 0 ? "" : macToString(l.mac),
        ip: ipToString(l.ip),
        state: l.mac < 0 ? "declined" : l.bound ? "bound" : "offered",
        expiresInS: Math.max(0, Math.round((l.expires - now) / 1000)),
      }));
  }
}

function opt8(p: Buffer, o: number, code: number, v: number): number {
  p[o] = code;
  p[o + 1] = 1;
  p[o + 2] = v;
  return o + 3;
}

function opt32(p: Buffer, o: number, code: number, v: number): number {
  p[o] = code;
  p[o + 1] = 4;
  p.writeUInt32BE(v >>> 0, o + 2);
  return o + 6;
}
