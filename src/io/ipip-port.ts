/**
 * IpipPort: an IP-in-IP tunnel (RFC 2003) as an Ethernet-shaped port, as Calico's
 * tunl0 (`<pod prefix> via <remote node> dev tunl0 onlink`).
 *
 * The router sends Ethernet frames out of ports, so the tunnel destination travels in
 * the destination MAC: the router has static neighbours
 * `<remote node> -> 02:50:<the remote node's four address bytes>` (ipipNeighbourMac),
 * and this port turns such a frame into `outer IPv4 (proto 4) + the inner packet` to
 * that node. Received IPIP packets come out of the port as Ethernet frames
 * `dst = opts.mac (the router interface), src = ipipNeighbourMac(outer source),
 * type IPv4`, so the router can tell which node a packet came from.
 *
 * Underlay: one raw IPv4 socket of protocol 4 with IP_HDRINCL from the native addon
 * (openRaw, src/io/raw-native.ts: recvmmsg/sendmmsg over the pool), opened for the
 * life of the port and not bound (a packet to another address of the node must reach
 * the port, to be counted as wrongDst). It receives every IPIP packet addressed to the
 * namespace, with its outer header; keeping it open is also what stops the kernel
 * (which has no ipip module here) from answering each IPIP packet with ICMP
 * protocol-unreachable (ip_local_deliver_finish sends one only when no raw socket
 * took the packet). An unconnected raw socket without IP_RECVERR ignores ICMP errors
 * from peers (raw_err), so they never become socket errors. SO_RCVBUF is raised
 * (SO_RCVBUFFORCE first, as root) to rcvBufBytes: a full receive buffer drops quietly
 * here, while with no socket at all the kernel would answer with ICMP.
 *
 * Receive: one wake-up = one recvmmsg of up to batchSize packets, straight into the
 * slots = one batch. Slot i receives at slot + HEADROOM - 6 (rxOffset), so a packet
 * with a 20-byte outer header has its inner packet at slot + HEADROOM + 14 and its
 * Ethernet header is written over the outer header's last 14 bytes, at
 * slot + HEADROOM: no copy. (Outer options move the frame further in.) A packet
 * longer than the slot's room is dropped by the addon (MSG_TRUNC) and counted in
 * rxTooBig. The outer header is checked (version, IHL, protocol 4, total length), its
 * source must be a known peer, its destination localAddr, the inner header must pass
 * ipv4Check (checksum included); RFC 6040 §4.2 ECN: an outer CE is copied into an
 * ECN-capable inner header; outer CE over a not-ECT inner packet is dropped. The
 * frame ends at the inner total length. The kept frames go to the engine as one batch.
 *
 * Transmit: per frame, IPv4 only (else notIpv4), destination MAC of the 02:50 form
 * naming a unicast address (else noTunnelDst), the inner header well formed (else
 * badInnerTx), inner length <= MTU - 20 (else tooBig). The outer header (RFC 2003 §3.1:
 * version 4, IHL 5, TOS copied from the inner header, an incrementing ident, DF copied
 * from the inner header, TTL 64, protocol 4, source localAddr, destination from the
 * MAC, header checksum) is written in place, 20 bytes ending where the inner packet
 * starts: over the frame's Ethernet header and the 6 bytes before the frame (inside
 * the headroom every frame in the pool has: HEADROOM for received frames, SOFT_PREFIX
 * for software segments, 16 bytes for frames the router writes; with offloads they
 * hold the tail of the frame's virtio-net header, which Port has read before
 * transmit()). The 20 bytes are saved first and put back after the send, so a frame
 * the switch also queued on another port (a flood) leaves there unchanged. A frame
 * with less than 6 bytes in front of it in the pool is copied to a staging area
 * instead. The whole batch then leaves with one sendmmsg (the kernel copies each
 * packet before the call returns); Ethernet padding is not sent. IP_HDRINCL makes the
 * kernel send our outer header as written; it still fills in the checksum and total
 * length, and never fragments: a packet longer than the route MTU is refused with
 * EMSGSIZE. Refused frames get length 0 (the Port contract) and count in txErrors
 * (lastTxError keeps a readable message). No ICMP is generated here: a packet larger
 * than the tunnel MTU should have been answered by the router, which reads info().mtu.
 *
 * Peers can be added and removed at run time (addPeer, removePeer), as Calico's
 * node agent does when nodes come and go.
 *
 * Counters (tunnelCounters, declared in IPIP_COUNTERS with their meaning): received
 * packets end in decapsulated or one drop (unknownPeer, badOuter, badInner, ecnDrop,
 * wrongDst, rxTooBig), frames to send in encapsulated or one drop (notIpv4,
 * noTunnelDst, badInnerTx, tooBig, txErrors); rxErrors counts the socket's receive
 * errors. underlayStats() adds the socket's wakeups, batches (wake-ups that delivered
 * packets), rxMessages, and the transmit side's sendBatches (sendmmsg batches) and
 * sendMessages.
 *
 * Pool region: batchSize slots of slotSize bytes, then a staging area of `mtu`
 * bytes (rounded up to 64). slotSize defaults to the larger of DEFAULT_SLOT and what
 * an underlay packet of `mtu` bytes needs.
 */
import type { TxQueue } from "../core/batch.js";
import { counters } from "../core/element.js";
import type { PacketPool } from "../core/pool.js";
import { DEFAULT_SLOT, HEADROOM, type RxHandler } from "../core/port.js";
import { readU16, readU32, writeU16, writeU32 } from "../wire/bytes.js";
import { checksumUpdate16 } from "../wire/checksum.js";
import { ETH_HEADER_LEN, ETHERTYPE_IPV4 } from "../wire/ethernet.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { IP_PROTO_IPIP, IPV4_HEADER_LEN, ipv4Check, ipv4FillChecksum } from "../wire/ipv4.js";
import { readMac, writeMac } from "../wire/mac.js";
import { CHECK_OK } from "../wire/reason.js";
import { openRaw, type RawHandle, type RawOptions } from "./raw-native.js";
import { SendList, TunnelPort } from "./tunnel-port.js";
import { errnoText } from "./udp-native.js";

export interface IpipPortOptions {
  /** The node's underlay address: the outer source. */
  localAddr: string;
  /** Remote nodes: only packets from these are decapsulated (others: unknownPeer). */
  peers: string[];
  /** The MAC of the router interface behind the port: received frames are sent to it. */
  mac?: number;
  /** Underlay MTU (default 1500); the port's MTU is mtu - 20. */
  mtu?: number;
  /** SO_RCVBUF in bytes (default 8 MiB). */
  rcvBufBytes?: number;
  /** SO_SNDBUF in bytes (default 4 MiB). */
  sndBufBytes?: number;
  batchSize?: number;
  slotSize?: number;
  /**
   * Opens the underlay socket (default: the addon's openRaw). The fuzz tests pass a
   * simulated kernel here, which lands packets in the slots and calls onBatch as the
   * addon does, so the receive path runs without a socket.
   */
  openSocket?: (opts: RawOptions) => RawHandle;
}

/** 02:50:00:00:00:00: the next-hop MACs that name a remote node. */
const IPIP_MAC_BASE = 0x0250_0000_0000;
const TWO32 = 4294967296;
/** Bytes a slot's receive view starts before slot + HEADROOM (outer 20 - Ethernet 14). */
const VIEW_LEAD = IPV4_HEADER_LEN - ETH_HEADER_LEN;
const OUTER_TTL = 64;
/** Packets per sendmmsg; a bigger queue goes out in chunks of this size. */
const SEND_CHUNK = 1024;

/** The next-hop MAC naming remote node `remote` (an IPv4 address as uint32): 02:50:a.b.c.d. */
export function ipipNeighbourMac(remote: number): number {
  return IPIP_MAC_BASE + (remote >>> 0);
}

/** The remote node named by a 02:50 MAC, or -1 when the MAC is not of that form. */
export function ipipMacRemote(mac: number): number {
  return Math.floor(mac / TWO32) === 0x0250 ? mac >>> 0 : -1;
}

/** What the underlay socket and the send path have done (IpipPort.underlayStats). */
export interface IpipUnderlayStats {
  /** Poll wake-ups of the raw socket. */
  wakeups: number;
  /** Wake-ups that delivered packets (one recvmmsg batch each). */
  batches: number;
  /** Packets received (before the port's checks). */
  rxMessages: number;
  /** Packets longer than a slot's room, dropped by the addon (also in rxTooBig). */
  rxTruncated: number;
  /** sendmmsg batches (one per transmit, or per SEND_CHUNK packets). */
  sendBatches: number;
  /** Packets handed to sendmmsg. */
  sendMessages: number;
}

export const IPIP_COUNTERS = counters({
  forward: {
    encapsulated: "packets sent into the tunnel",
    decapsulated: "packets received from the tunnel, delivered as frames",
  },
  drop: {
    unknownPeer: "received from an outer source that is not a peer",
    badOuter: "received with a malformed outer header (version, IHL, protocol, length)",
    badInner: "received with a malformed inner IPv4 header (checksum included)",
    badInnerTx: "frames to send whose inner IPv4 header is malformed",
    notIpv4: "frames to send that are not IPv4",
    noTunnelDst: "frames to send whose destination MAC names no unicast node (02:50:a.b.c.d)",
    tooBig: "frames to send above the tunnel MTU (no fragmenting)",
    rxTooBig: "received packets larger than a slot's room",
    ecnDrop: "outer CE over a not-ECT inner packet (RFC 6040 section 4.2)",
    wrongDst: "received with an outer destination other than localAddr",
    txErrors: "packets the kernel refused (lastTxError has the latest message)",
  },
  event: {
    rxErrors: "receive errors of the socket (recvmmsg other than EAGAIN, poll errors)",
  },
});
type IpipCounter = (typeof IPIP_COUNTERS.names)[number];
const C = IPIP_COUNTERS.id;

export class IpipPort extends TunnelPort<IpipCounter> {
  readonly kind = "ipip";
  readonly localAddr: number;
  readonly mac: number;
  /** Underlay MTU. */
  readonly underlayMtu: number;
  readonly rcvBufBytes: number;
  readonly sndBufBytes: number;
  /** SO_RCVBUF as the kernel reports it after open (it doubles what was asked), 0 before. */
  rcvBufEffective = 0;
  lastRxError = "";
  sendBatches = 0;
  sendMessages = 0;
  /** Remote nodes (in the order they were added): only packets from these are decapsulated. */
  private readonly peerSet = new Set<number>();
  private sock: RawHandle | null = null;
  private poolBuf: Buffer | null = null;
  private stagingBase = 0;
  /** rxErrors of sockets closed before the current one. */
  private rxErrorsClosed = 0;
  /** Where the addon reports received packets: pool offset, length, source. */
  private readonly rxOffs: Uint32Array;
  private readonly rxLens: Uint32Array;
  private readonly rxAddrs: Uint32Array;
  /** The packets of one sendmmsg; extra: 1 when the outer header was written in place over `saved` bytes, 0 when staged. */
  private readonly tx = new SendList(SEND_CHUNK);
  /** The 20 bytes each in-place outer header overwrote, put back after the send. */
  private readonly saved = new Uint8Array(SEND_CHUNK * IPV4_HEADER_LEN);
  private stagingUsed = false;
  private ident: number;
  private readonly openSocket: (opts: RawOptions) => RawHandle;

  constructor(name: string, opts: IpipPortOptions) {
    const mtu = opts.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 + IPV4_HEADER_LEN || mtu > 65535) {
      throw new RangeError(`ipip port '${name}': mtu ${String(mtu)} is not an integer from 88 to 65535`);
    }
    // A slot holds HEADROOM - VIEW_LEAD bytes, then the whole underlay packet.
    const need = HEADROOM - VIEW_LEAD + mtu;
    super(name, IPIP_COUNTERS, opts.batchSize, opts.slotSize ?? Math.max(DEFAULT_SLOT, (need + 63) & ~63));
    if (this.slotSize < need) {
      throw new RangeError(`ipip port '${name}': slotSize ${this.slotSize} cannot hold an underlay packet of ${mtu} bytes after the headroom (needs ${need})`);
    }
    const what = (s: string): string => `ipip port '${name}': ${s}`;
    try {
      this.localAddr = parseIp(opts.localAddr);
    } catch (e) {
      throw new Error(what(`localAddr: ${(e as Error).message}`));
    }
    if (!Array.isArray(opts.peers)) throw new Error(what("peers must be a list of IPv4 addresses"));
    for (const p of opts.peers) this.addPeer(p);
    const mac = opts.mac ?? 0;
    if (!Number.isInteger(mac) || mac < 0 || mac >= 2 ** 48) throw new RangeError(what(`mac ${String(mac)} is not a 48-bit number`));
    this.mac = mac;
    this.underlayMtu = mtu;
    this.rcvBufBytes = opts.rcvBufBytes ?? 8 * 1024 * 1024;
    this.sndBufBytes = opts.sndBufBytes ?? 4 * 1024 * 1024;
    this.rxOffs = new Uint32Array(this.batchSize);
    this.rxLens = new Uint32Array(this.batchSize);
    this.rxAddrs = new Uint32Array(this.batchSize);
    // RFC 6864 only asks for uniqueness among fragmentable packets in flight; a random
    // start keeps two runs of a node from reusing the same sequence.
    this.ident = (Math.random() * 65536) | 0;
    this.openSocket = opts.openSocket ?? openRaw;
  }

  /** Accepts packets from `peer` from now on; false when it was a peer already. */
  addPeer(peer: string): boolean {
    const a = this.parsePeer(peer);
    if (this.peerSet.has(a)) return false;
    this.peerSet.add(a);
    return true;
  }

  /** Drops packets from `peer` (unknownPeer) from now on; false when it was no peer. */
  removePeer(peer: string): boolean {
    return this.peerSet.delete(this.parsePeer(peer));
  }

  private parsePeer(peer: string): number {
    try {
      return parseIp(peer);
    } catch (e) {
      throw new Error(`ipip port '${this.name}': peer: ${(e as Error).message}`);
    }
  }

  /** The port's (inner) MTU. */
  get mtu(): number {
    return this.underlayMtu - IPV4_HEADER_LEN;
  }

  /** An IPIP tunnel has no ARP: the MAC of next hop `addr` names the remote node. */
  override nextHopMac(addr: number): number {
    return ipipNeighbourMac(addr);
  }

  get isOpen(): boolean {
    return this.sock !== null;
  }

  private get stagingBytes(): number {
    return (this.underlayMtu + 63) & ~63;
  }

  override rxRegionBytes(): number {
    return this.batchSize * this.slotSize + this.stagingBytes;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.sock !== null) throw new Error(`ipip port '${this.name}' is already open`);
    // Reserve first: a pool that is too small must not leave a socket open.
    const base = pool.region(this.rxRegionBytes(), `ipip port '${this.name}' rx`);
    let sock: RawHandle;
    try {
      sock = this.openSocket({
        protocol: IP_PROTO_IPIP,
        hdrIncl: true,
        rcvbuf: this.rcvBufBytes,
        sndbuf: this.sndBufBytes,
        pool: pool.buf,
        rxBase: base,
        slots: this.batchSize,
        slotSize: this.slotSize,
        rxOffset: HEADROOM - VIEW_LEAD,
        offsets: this.rxOffs,
        lengths: this.rxLens,
        addrs: this.rxAddrs,
        onBatch: this.onBatch,
      });
    } catch (e) {
      throw new Error(`ipip port '${this.name}': cannot open a raw IPv4 socket of protocol 4: ${(e as Error).message}`);
    }
    this.poolBuf = pool.buf;
    this.stagingBase = base + this.batchSize * this.slotSize;
    this.rcvBufEffective = sock.rcvbuf;
    this.onRx = onRx;
    try {
      sock.start();
    } catch (e) {
      sock.close();
      this.onRx = null;
      throw new Error(`ipip port '${this.name}': ${(e as Error).message}`);
    }
    this.sock = sock;
  }

  close(): void {
    const sock = this.sock;
    if (sock === null) return;
    this.syncRxErrors();
    this.rxErrorsClosed = this.c[C.rxErrors];
    this.sock = null;
    this.onRx = null;
    sock.close();
  }

  /** Brings rxErrors up to date with the addon's count. */
  private syncRxErrors(): void {
    if (this.sock === null) return;
    const now = this.rxErrorsClosed + this.sock.stats().rxErrors;
    const was = this.c[C.rxErrors];
    if (now !== was) {
      this.lastRxError = `${now - was} receive error(s) on the raw socket (recvmmsg other than EAGAIN, or a poll error)`;
      this.c[C.rxErrors] = now;
    }
  }

  /** One wake-up: `count` packets in the slots (`truncated` dropped by the addon); delivers what is kept as one batch. */
  private readonly onBatch = (count: number, truncated: number): void => {
    if (truncated !== 0) {
      this.c[C.rxTooBig] += truncated;
      this.rxDrops += truncated;
    }
    const offs = this.rxOffs;
    const lens = this.rxLens;
    let n = 0;
    for (let i = 0; i < count; i++) if (this.decapsulate(n, offs[i], lens[i])) n++;
    this.rx.count = n;
    this.deliverBatch(this.poolBuf as Buffer, this.rx);
  };

  /** Checks the packet of `got` bytes at p and turns it into frame n of the batch; false when dropped. */
  private decapsulate(n: number, p: number, got: number): boolean {
    const b = this.poolBuf as Buffer;
    if (got < IPV4_HEADER_LEN) return this.dropRx(C.badOuter);
    const vi = b[p];
    const hlen = (vi & 0x0f) << 2;
    if (vi >>> 4 !== 4 || hlen < IPV4_HEADER_LEN || hlen > got || b[p + 9] !== IP_PROTO_IPIP) return this.dropRx(C.badOuter);
    const total = readU16(b, p + 2);
    // (A packet longer than the slot never gets here: the addon drops it as truncated.)
    if (total > got || total < hlen) return this.dropRx(C.badOuter);
    const src = readU32(b, p + 12);
    if (!this.peerSet.has(src)) return this.dropRx(C.unknownPeer);
    if (readU32(b, p + 16) !== this.localAddr) return this.dropRx(C.wrongDst);
    const inner = p + hlen;
    if (ipv4Check(b, inner, total - hlen, true) !== CHECK_OK) return this.dropRx(C.badInner);
    // RFC 6040 section 4.2: an outer CE mark survives decapsulation.
    if ((b[p + 1] & 3) === 3) {
      const tos = b[inner + 1];
      if ((tos & 3) === 0) return this.dropRx(C.ecnDrop);
      if ((tos & 3) !== 3) {
        const oldWord = (b[inner] << 8) | tos;
        b[inner + 1] = tos | 3;
        writeU16(b, inner + 10, checksumUpdate16(readU16(b, inner + 10), oldWord, oldWord | 3));
      }
    }
    const eth = inner - ETH_HEADER_LEN;
    writeMac(b, eth, this.mac);
    writeMac(b, eth + 6, IPIP_MAC_BASE + src);
    writeU16(b, eth + 12, ETHERTYPE_IPV4);
    this.rx.offsets[n] = eth;
    this.rx.lengths[n] = ETH_HEADER_LEN + readU16(b, inner + 2);
    this.c[C.decapsulated]++;
    return true;
  }

  /** Counts a received packet dropped at counter `id`; returns false. */
  private dropRx(id: number): boolean {
    this.c[id]++;
    this.rxDrops++;
    return false;
  }

  /** The outer header the frame at `off` would leave in (traces only): RFC 2003 §3.1, as transmit() writes it. */
  override traceTx(buf: Buffer, off: number, len: number): string {
    if (len < ETH_HEADER_LEN + IPV4_HEADER_LEN || readU16(buf, off + 12) !== ETHERTYPE_IPV4) return "IPIP: not IPv4 (dropped: notIpv4)";
    const dst = ipipMacRemote(readMac(buf, off));
    if (dst <= 0 || dst >>> 28 >= 0xe) return "IPIP: the next hop's MAC names no tunnel end (dropped: noTunnelDst)";
    const inner = off + ETH_HEADER_LEN;
    const innerLen = readU16(buf, inner + 2);
    const df = (buf[inner + 6] & 0x40) !== 0 ? " DF" : "";
    const tooBig = innerLen > this.underlayMtu - IPV4_HEADER_LEN ? ` (dropped: tooBig, inner MTU ${this.underlayMtu - IPV4_HEADER_LEN})` : "";
    return `IPIP: outer IPv4 ${ipToString(this.localAddr)} > ${ipToString(dst)} proto 4 ttl ${OUTER_TTL}${df}, ${IPV4_HEADER_LEN + innerLen} bytes${tooBig}`;
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    if (this.sock === null) return this.refuseClosed(q, C.txErrors);
    const n = q.count;
    const lengths = q.lengths;
    const offsets = q.offsets;
    const innerMtu = this.underlayMtu - IPV4_HEADER_LEN;
    const tx = this.tx;
    let sent = 0;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      if (len < ETH_HEADER_LEN + IPV4_HEADER_LEN || readU16(pool, off + 12) !== ETHERTYPE_IPV4) {
        this.c[C.notIpv4]++;
        lengths[i] = 0;
        continue;
      }
      // 02:50:a.b.c.d names node a.b.c.d; only a unicast address can be a tunnel end.
      const dst = ipipMacRemote(readMac(pool, off));
      if (dst <= 0 || dst >>> 28 >= 0xe) {
        this.c[C.noTunnelDst]++;
        lengths[i] = 0;
        continue;
      }
      const inner = off + ETH_HEADER_LEN;
      if (ipv4Check(pool, inner, len - ETH_HEADER_LEN, false) !== CHECK_OK) {
        this.c[C.badInnerTx]++;
        lengths[i] = 0;
        continue;
      }
      const innerLen = readU16(pool, inner + 2);
      if (innerLen > innerMtu) {
        this.c[C.tooBig]++;
        lengths[i] = 0;
        continue;
      }
      // The outer header goes right in front of the inner packet: over the Ethernet
      // header and the 6 bytes before the frame, saved first and put back after the send.
      let s = inner - IPV4_HEADER_LEN;
      const inPlace = s >= 0 ? 1 : 0;
      if (inPlace) {
        const saved = this.saved;
        const sv = tx.count * IPV4_HEADER_LEN;
        for (let k = 0; k < IPV4_HEADER_LEN; k++) saved[sv + k] = pool[s + k];
      } else {
        // No room in front of this frame (never the case for frames of the pool's
        // regions): copy it behind a header in the staging area, which holds one.
        if (this.stagingUsed) sent += this.sendQueued(pool, lengths);
        s = this.stagingBase;
        this.stagingUsed = true;
        pool.copyWithin(s + IPV4_HEADER_LEN, inner, inner + innerLen);
      }
      // RFC 2003 section 3.1.
      const tos = pool[inner + 1];
      const df = pool[inner + 6] & 0x40;
      pool[s] = 0x45;
      pool[s + 1] = tos;
      writeU16(pool, s + 2, IPV4_HEADER_LEN + innerLen);
      const id = this.ident;
      this.ident = (id + 1) & 0xffff;
      writeU16(pool, s + 4, id);
      pool[s + 6] = df;
      pool[s + 7] = 0;
      pool[s + 8] = OUTER_TTL;
      pool[s + 9] = IP_PROTO_IPIP;
      pool[s + 10] = 0;
      pool[s + 11] = 0;
      writeU32(pool, s + 12, this.localAddr);
      writeU32(pool, s + 16, dst);
      ipv4FillChecksum(pool, s);
      tx.add(s, IPV4_HEADER_LEN + innerLen, dst, 0, i, inPlace);
      if (tx.count === SEND_CHUNK) sent += this.sendQueued(pool, lengths);
    }
    if (tx.count !== 0) sent += this.sendQueued(pool, lengths);
    return sent;
  }

  /**
   * Sends the packets prepared by transmit() with one sendmmsg, accounts for the
   * refused ones (their frames get length 0), and puts back the bytes the in-place
   * headers overwrote. Returns how many were accepted.
   */
  private sendQueued(pool: Buffer, lengths: Uint32Array): number {
    const sock = this.sock as RawHandle;
    const tx = this.tx;
    const m = tx.count;
    const accepted = sock.send(pool, tx.offsets, tx.lengths, tx.addrs, 0, null, m);
    this.sendBatches++;
    this.sendMessages += m;
    this.c[C.encapsulated] += accepted;
    if (accepted !== m) {
      // The addon zeroed the length of each refused packet.
      let last = -1;
      for (let j = 0; j < m; j++) {
        if (tx.lengths[j] === 0) {
          lengths[tx.frame[j]] = 0;
          this.c[C.txErrors]++;
          last = j;
        }
      }
      if (last >= 0) this.lastTxError = `sendmmsg to ${ipToString(tx.addrs[last])}: ${errnoText(sock.stats().lastTxErrno)}`;
    }
    // Backwards: should one frame be queued twice, its first save holds the original bytes.
    const saved = this.saved;
    for (let j = m - 1; j >= 0; j--) {
      if (tx.extra[j] === 0) continue;
      const s = tx.offsets[j];
      const sv = j * IPV4_HEADER_LEN;
      for (let k = 0; k < IPV4_HEADER_LEN; k++) pool[s + k] = saved[sv + k];
    }
    tx.count = 0;
    this.stagingUsed = false;
    return accepted;
  }

  /** The underlay socket's batching: receive wake-ups and batches, sendmmsg batches. */
  underlayStats(): IpipUnderlayStats {
    const st = this.sock?.stats();
    return {
      wakeups: st?.wakeups ?? 0,
      batches: st?.batches ?? 0,
      rxMessages: st?.rxMessages ?? 0,
      rxTruncated: st?.rxTruncated ?? 0,
      sendBatches: this.sendBatches,
      sendMessages: this.sendMessages,
    };
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.underlayMtu - IPV4_HEADER_LEN, ifname: this.name };
  }

  tunnelInfo(): { kind: "ipip"; local: string; peers: string[]; mtu: number; underlayMtu: number } {
    return {
      kind: "ipip",
      local: ipToString(this.localAddr),
      peers: [...this.peerSet].map(ipToString),
      mtu: this.underlayMtu - IPV4_HEADER_LEN,
      underlayMtu: this.underlayMtu,
    };
  }

  override tunnelCounters(): Record<IpipCounter, number> {
    this.syncRxErrors();
    return super.tunnelCounters();
  }
}
