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
 * Underlay: one raw IPv4 socket of protocol 4 (the `raw-socket` package), opened for
 * the life of the port. It receives every IPIP packet addressed to the namespace,
 * with its outer header; keeping it open is also what stops the kernel (which has no
 * ipip module here) from answering each IPIP packet with ICMP protocol-unreachable
 * (ip_local_deliver_finish sends one only when no raw socket took the packet).
 * SO_RCVBUF is raised (SO_RCVBUFFORCE first, as root) to rcvBufBytes.
 *
 * raw-socket, as measured and read (1.8.1, src/raw.cc and index.js):
 *  - Its Socket.send() is asynchronous: it queues {buffer, offset, length} and calls
 *    sendto() later, one request per UV_WRITABLE wake-up, without copying the buffer
 *    first; a reused staging buffer would be overwritten before it is sent, and the
 *    rate is bounded by one datagram per loop turn. The native SocketWrap.send() under
 *    it is synchronous: one sendto() on the non-blocking fd, the callback called before
 *    it returns, an Error thrown on failure (EAGAIN, EMSGSIZE, ENOBUFS...). The kernel
 *    has copied the bytes into an skb when sendto() returns, so this port calls
 *    SocketWrap.send() directly and one staging area is enough.
 *  - Its Socket receives one datagram per UV_READABLE wake-up (one recvfrom() into one
 *    shared buffer, 4096 bytes unless `bufferSize` is given) and emits 'message' with a
 *    new slice and a new closure per packet; uv_poll is level-triggered, so that gives
 *    one datagram per loop turn, and batches of one. SocketWrap.recv(buffer, cb) is one
 *    synchronous recvfrom() into any Buffer (its whole length), throwing on EAGAIN.
 *    This port replaces the Socket's 'recvReady' listener with its own, which drains
 *    up to batchSize datagrams per wake-up straight into its receive slots (a Buffer
 *    view per slot, made once at open), then hands them to the engine as one batch:
 *    one wake-up = one batch, as on a TAP port. The EAGAIN that ends a drain costs
 *    ~4 us (a thrown Error), once per wake-up. Per packet, raw-socket still allocates
 *    the source address string; nothing else is allocated.
 *  - recvfrom() on a raw socket truncates silently: a packet longer than the view is
 *    recognised by its outer total length (rxTooBig).
 *  - IP_HDRINCL (set here) makes the kernel send our outer header as written; it
 *    still fills in the checksum and total length (and an ident of 0), and never
 *    fragments: a packet longer than the route MTU is refused with EMSGSIZE.
 *  - Everything runs on the main loop (uv_default_loop); not in worker threads.
 *
 * Receive layout: slot i's view starts 6 bytes before slot + HEADROOM, so a packet
 * with a 20-byte outer header has its inner packet at slot + HEADROOM + 14 and its
 * Ethernet header is written over the outer header's last 14 bytes, at
 * slot + HEADROOM: no copy. (Outer options move the frame further in.) The outer
 * header is checked (version, IHL, protocol 4, total length), its source must be a
 * known peer, the inner header must pass ipv4Check (checksum included); RFC 6040 §4.2
 * ECN: an outer CE is copied into an ECN-capable inner header; outer CE over a
 * not-ECT inner packet is dropped. The frame ends at the inner total length.
 *
 * Transmit: per frame, IPv4 only (else notIpv4), destination MAC of the 02:50 form
 * naming a unicast address (else noTunnelDst), the inner header well formed (else
 * badInner), inner length <= MTU - 20 (else tooBig). The outer header (RFC 2003 §3.1:
 * version 4, IHL 5, TOS copied from the inner header, an incrementing ident, DF copied
 * from the inner header, TTL 64, protocol 4, source localAddr, destination from the
 * MAC, header checksum) is written into a staging area in the pool, the inner packet
 * (without Ethernet padding) copied after it with copyWithin, and sent with one
 * sendto(). Refused frames get length 0 (the Port contract) and count in txErrors
 * (lastTxError keeps the message). No ICMP is generated here: a packet larger than
 * the tunnel MTU should have been answered by the router, which reads info().mtu.
 *
 * Counters (tunnelCounters): encapsulated, decapsulated, unknownPeer, badOuter,
 * badInner (received, or asked to send), notIpv4, noTunnelDst, tooBig (asked to send),
 * rxTooBig (received packets larger than a slot, or truncated), ecnDrop, wrongDst
 * (outer destination not localAddr), txErrors, rxErrors (recvfrom failures other than
 * EAGAIN, e.g. ECONNREFUSED after a peer's ICMP error, and poll errors).
 *
 * Pool region: batchSize slots of slotSize bytes, then a staging area of `mtu`
 * bytes (rounded up to 64). slotSize defaults to the larger of DEFAULT_SLOT and what
 * an underlay packet of `mtu` bytes needs.
 */
import { createRequire } from "node:module";
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { DEFAULT_SLOT, HEADROOM, Port, type RxHandler } from "../core/port.js";
import { readU16, readU32, writeU16, writeU32 } from "../wire/bytes.js";
import { checksumUpdate16 } from "../wire/checksum.js";
import { ETH_HEADER_LEN, ETHERTYPE_IPV4 } from "../wire/ethernet.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { IP_PROTO_IPIP, IPV4_HEADER_LEN, ipv4Check, ipv4FillChecksum } from "../wire/ipv4.js";
import { writeMac } from "../wire/mac.js";
import { CHECK_OK } from "../wire/reason.js";

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
}

/** 02:50:00:00:00:00: the next-hop MACs that name a remote node. */
const IPIP_MAC_BASE = 0x0250_0000_0000;
const TWO32 = 4294967296;
/** Bytes a slot's receive view starts before slot + HEADROOM (outer 20 - Ethernet 14). */
const VIEW_LEAD = IPV4_HEADER_LEN - ETH_HEADER_LEN;
const OUTER_TTL = 64;
// Linux socket options raw-socket does not export (asm-generic/socket.h).
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
/** glibc's strerror(EAGAIN): what SocketWrap.recv throws when the socket is empty. */
const EAGAIN_MESSAGE = "Resource temporarily unavailable";
/** Distinct remote addresses whose sendto() address strings are kept. */
const DST_CACHE_MAX = 1024;

/** The next-hop MAC naming remote node `remote` (an IPv4 address as uint32): 02:50:a.b.c.d. */
export function ipipNeighbourMac(remote: number): number {
  return IPIP_MAC_BASE + (remote >>> 0);
}

/** The remote node named by a 02:50 MAC, or -1 when the MAC is not of that form. */
export function ipipMacRemote(mac: number): number {
  return Math.floor(mac / TWO32) === 0x0250 ? mac >>> 0 : -1;
}

/** What this file uses of raw-socket's native SocketWrap (see the header). */
interface RawWrap {
  recv(buffer: Buffer, cb: (buffer: Buffer, bytes: number, source: string) => void): void;
  send(buffer: Buffer, offset: number, length: number, address: string, cb: (bytes: number) => void): void;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  removeAllListeners(event?: string): unknown;
}

interface RawSocket {
  wrap: RawWrap;
  setOption(level: number, option: number, value: number): void;
  getOption(level: number, option: number, value: Buffer, length: number): number;
  close(): unknown;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  removeAllListeners(event?: string): unknown;
}

interface RawSocketModule {
  createSocket(opts: { protocol: number; bufferSize?: number }): RawSocket;
  SocketLevel: { SOL_SOCKET: number; IPPROTO_IP: number };
  SocketOption: { SO_RCVBUF: number; SO_SNDBUF: number; IP_HDRINCL: number };
}

let rawModule: RawSocketModule | null = null;

function loadRawSocket(): RawSocketModule {
  if (rawModule === null) {
    const require = createRequire(import.meta.url);
    rawModule = require("raw-socket") as RawSocketModule;
  }
  return rawModule;
}

const noop = (): void => {};

export class IpipPort extends Port {
  readonly kind = "ipip";
  readonly localAddr: number;
  readonly peers: readonly number[];
  readonly mac: number;
  /** Underlay MTU. */
  readonly underlayMtu: number;
  readonly rcvBufBytes: number;
  readonly sndBufBytes: number;
  /** SO_RCVBUF as the kernel reports it after open (it doubles what was asked), 0 before. */
  rcvBufEffective = 0;
  encapsulated = 0;
  decapsulated = 0;
  unknownPeer = 0;
  badOuter = 0;
  badInner = 0;
  notIpv4 = 0;
  noTunnelDst = 0;
  tooBig = 0;
  rxTooBig = 0;
  ecnDrop = 0;
  wrongDst = 0;
  txErrors = 0;
  rxErrors = 0;
  lastTxError = "";
  lastRxError = "";
  private readonly peerSet: Set<number>;
  private sock: RawSocket | null = null;
  private wrap: RawWrap | null = null;
  private poolBuf: Buffer | null = null;
  private rxBase = 0;
  private stagingBase = 0;
  private views: Buffer[] = [];
  /** Bytes of the datagram the last recv() returned (set by onRecv). */
  private got = -1;
  private ident: number;
  private lastDst = -1;
  private lastDstStr = "";
  private readonly dstStrings = new Map<number, string>();

  constructor(name: string, opts: IpipPortOptions) {
    const mtu = opts.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 + IPV4_HEADER_LEN || mtu > 65535) {
      throw new RangeError(`ipip port '${name}': mtu ${String(mtu)} is not an integer from 88 to 65535`);
    }
    // A slot holds HEADROOM - VIEW_LEAD bytes, then the whole underlay packet.
    const need = HEADROOM - VIEW_LEAD + mtu;
    super(name, opts.batchSize, opts.slotSize ?? Math.max(DEFAULT_SLOT, (need + 63) & ~63));
    if (this.slotSize < need) {
      throw new RangeError(
        `ipip port '${name}': slotSize ${this.slotSize} cannot hold an underlay packet of ${mtu} bytes after the headroom (needs ${need})`,
      );
    }
    const what = (s: string): string => `ipip port '${name}': ${s}`;
    try {
      this.localAddr = parseIp(opts.localAddr);
    } catch (e) {
      throw new Error(what(`localAddr: ${(e as Error).message}`));
    }
    if (!Array.isArray(opts.peers)) throw new Error(what("peers must be a list of IPv4 addresses"));
    this.peers = opts.peers.map((p) => {
      try {
        return parseIp(p);
      } catch (e) {
        throw new Error(what(`peer: ${(e as Error).message}`));
      }
    });
    this.peerSet = new Set(this.peers);
    const mac = opts.mac ?? 0;
    if (!Number.isInteger(mac) || mac < 0 || mac >= 2 ** 48) throw new RangeError(what(`mac ${String(mac)} is not a 48-bit number`));
    this.mac = mac;
    this.underlayMtu = mtu;
    this.rcvBufBytes = opts.rcvBufBytes ?? 8 * 1024 * 1024;
    this.sndBufBytes = opts.sndBufBytes ?? 4 * 1024 * 1024;
    // RFC 6864 only asks for uniqueness among fragmentable packets in flight; a random
    // start keeps two runs of a node from reusing the same sequence.
    this.ident = (Math.random() * 65536) | 0;
  }

  /** The port's (inner) MTU. */
  get mtu(): number {
    return this.underlayMtu - IPV4_HEADER_LEN;
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
    const raw = loadRawSocket();
    let sock: RawSocket;
    try {
      // bufferSize: the Socket's own receive buffer, which this port never uses.
      sock = raw.createSocket({ protocol: IP_PROTO_IPIP, bufferSize: 64 });
    } catch (e) {
      throw new Error(`ipip port '${this.name}': cannot open a raw IPv4 socket of protocol 4: ${(e as Error).message} (needs root or CAP_NET_RAW)`);
    }
    const wrap = sock.wrap;
    if (typeof wrap?.recv !== "function" || typeof wrap.send !== "function" || typeof wrap.removeAllListeners !== "function") {
      sock.close();
      throw new Error(`ipip port '${this.name}': this raw-socket version has no SocketWrap recv/send (1.8 expected)`);
    }
    try {
      const { SOL_SOCKET, IPPROTO_IP } = raw.SocketLevel;
      const { SO_RCVBUF, SO_SNDBUF, IP_HDRINCL } = raw.SocketOption;
      setBuf(sock, SOL_SOCKET, SO_RCVBUFFORCE, SO_RCVBUF, this.rcvBufBytes);
      setBuf(sock, SOL_SOCKET, SO_SNDBUFFORCE, SO_SNDBUF, this.sndBufBytes);
      sock.setOption(IPPROTO_IP, IP_HDRINCL, 1);
      const v = Buffer.alloc(4);
      sock.getOption(SOL_SOCKET, SO_RCVBUF, v, 4);
      this.rcvBufEffective = v.readInt32LE(0);
    } catch (e) {
      sock.close();
      throw new Error(`ipip port '${this.name}': cannot set socket options: ${(e as Error).message}`);
    }
    const buf = pool.buf;
    const views: Buffer[] = [];
    for (let i = 0; i < this.batchSize; i++) {
      const s = base + i * this.slotSize;
      views.push(buf.subarray(s + HEADROOM - VIEW_LEAD, s + this.slotSize));
    }
    this.views = views;
    this.poolBuf = buf;
    this.rxBase = base;
    this.stagingBase = base + this.batchSize * this.slotSize;
    this.onRx = onRx;
    this.sock = sock;
    this.wrap = wrap;
    // The Socket's own listener would read a datagram into its 4096-byte buffer and
    // emit 'message' to nobody: replace it. A poll error makes the Socket emit
    // 'error' and close itself; without a listener that 'error' would be thrown.
    wrap.removeAllListeners("recvReady");
    wrap.on("recvReady", this.onReadable);
    sock.on("error", this.onSocketError);
  }

  close(): void {
    const sock = this.sock;
    if (sock === null) return;
    this.sock = null;
    this.wrap = null;
    this.onRx = null;
    sock.wrap.removeAllListeners("recvReady");
    try {
      sock.close();
    } catch {
      // Best effort: the fd is closed by the addon's destructor otherwise.
    }
    sock.removeAllListeners("error");
    this.views = [];
  }

  private readonly onSocketError = (e: unknown): void => {
    this.rxErrors++;
    this.lastRxError = e instanceof Error ? e.message : String(e);
    // raw-socket has closed the socket already; make the port say so.
    this.close();
  };

  private readonly onRecv = (_buffer: Buffer, bytes: number): void => {
    this.got = bytes;
  };

  /** One wake-up: drains up to batchSize datagrams, then delivers what was kept. */
  private readonly onReadable = (): void => {
    const wrap = this.wrap;
    if (wrap === null) return;
    const views = this.views;
    const max = this.batchSize;
    let n = 0;
    for (let reads = 0; reads < max; reads++) {
      this.got = -1;
      try {
        wrap.recv(views[n], this.onRecv);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (msg !== EAGAIN_MESSAGE && !/temporarily unavailable|would block/i.test(msg)) {
          this.rxErrors++;
          this.lastRxError = msg;
        }
        break;
      }
      if (this.got >= 0 && this.decapsulate(n, this.got)) n++;
    }
    this.rx.count = n;
    this.deliverBatch(this.poolBuf as Buffer, this.rx);
  };

  /** Checks the datagram in slot n and turns it into a frame; false when dropped. */
  private decapsulate(n: number, got: number): boolean {
    const b = this.poolBuf as Buffer;
    const p = this.rxBase + n * this.slotSize + HEADROOM - VIEW_LEAD;
    if (got < IPV4_HEADER_LEN) return this.dropRx(0);
    const vi = b[p];
    const hlen = (vi & 0x0f) << 2;
    if (vi >>> 4 !== 4 || hlen < IPV4_HEADER_LEN || hlen > got || b[p + 9] !== IP_PROTO_IPIP) return this.dropRx(0);
    const total = readU16(b, p + 2);
    if (total > got) {
      // The view was full: the kernel cut the datagram to fit it.
      return got === this.slotSize - HEADROOM + VIEW_LEAD ? this.dropRx(1) : this.dropRx(0);
    }
    if (total < hlen) return this.dropRx(0);
    const src = readU32(b, p + 12);
    if (!this.peerSet.has(src)) return this.dropRx(2);
    if (readU32(b, p + 16) !== this.localAddr) return this.dropRx(3);
    const inner = p + hlen;
    if (ipv4Check(b, inner, total - hlen, true) !== CHECK_OK) return this.dropRx(4);
    // RFC 6040 section 4.2: an outer CE mark survives decapsulation.
    if ((b[p + 1] & 3) === 3) {
      const tos = b[inner + 1];
      if ((tos & 3) === 0) return this.dropRx(5);
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
    this.decapsulated++;
    return true;
  }

  /** Counts a received datagram dropped for `why`; returns false. */
  private dropRx(why: number): boolean {
    switch (why) {
      case 0:
        this.badOuter++;
        break;
      case 1:
        this.rxTooBig++;
        break;
      case 2:
        this.unknownPeer++;
        break;
      case 3:
        this.wrongDst++;
        break;
      case 4:
        this.badInner++;
        break;
      default:
        this.ecnDrop++;
    }
    this.rxDrops++;
    return false;
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const wrap = this.wrap;
    const lengths = q.lengths;
    if (wrap === null) {
      for (let i = 0; i < n; i++) lengths[i] = 0;
      this.txErrors += n;
      this.lastTxError = "port is closed";
      return 0;
    }
    const offsets = q.offsets;
    const s = this.stagingBase;
    const innerMtu = this.underlayMtu - IPV4_HEADER_LEN;
    let sent = 0;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      if (len < ETH_HEADER_LEN + IPV4_HEADER_LEN || readU16(pool, off + 12) !== ETHERTYPE_IPV4) {
        this.notIpv4++;
        lengths[i] = 0;
        continue;
      }
      // 02:50:a.b.c.d names node a.b.c.d; only a unicast address can be a tunnel end.
      const dst = readU32(pool, off + 2);
      if (pool[off] !== 0x02 || pool[off + 1] !== 0x50 || dst === 0 || dst >>> 28 >= 0xe) {
        this.noTunnelDst++;
        lengths[i] = 0;
        continue;
      }
      const inner = off + ETH_HEADER_LEN;
      if (ipv4Check(pool, inner, len - ETH_HEADER_LEN, false) !== CHECK_OK) {
        this.badInner++;
        lengths[i] = 0;
        continue;
      }
      const innerLen = readU16(pool, inner + 2);
      if (innerLen > innerMtu) {
        this.tooBig++;
        lengths[i] = 0;
        continue;
      }
      // RFC 2003 section 3.1.
      pool[s] = 0x45;
      pool[s + 1] = pool[inner + 1];
      writeU16(pool, s + 2, IPV4_HEADER_LEN + innerLen);
      const id = this.ident;
      this.ident = (id + 1) & 0xffff;
      writeU16(pool, s + 4, id);
      pool[s + 6] = pool[inner + 6] & 0x40;
      pool[s + 7] = 0;
      pool[s + 8] = OUTER_TTL;
      pool[s + 9] = IP_PROTO_IPIP;
      writeU32(pool, s + 12, this.localAddr);
      writeU32(pool, s + 16, dst);
      ipv4FillChecksum(pool, s);
      pool.copyWithin(s + IPV4_HEADER_LEN, inner, inner + innerLen);
      try {
        wrap.send(pool, s, IPV4_HEADER_LEN + innerLen, this.dstString(dst), noop);
        sent++;
        this.encapsulated++;
      } catch (e) {
        lengths[i] = 0;
        this.txErrors++;
        this.lastTxError = e instanceof Error ? e.message : String(e);
      }
    }
    return sent;
  }

  /** sendto() wants the address as a string: one per remote node, made once. */
  private dstString(dst: number): string {
    if (dst === this.lastDst) return this.lastDstStr;
    let str = this.dstStrings.get(dst);
    if (str === undefined) {
      if (this.dstStrings.size >= DST_CACHE_MAX) this.dstStrings.clear();
      str = ipToString(dst);
      this.dstStrings.set(dst, str);
    }
    this.lastDst = dst;
    this.lastDstStr = str;
    return str;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.underlayMtu - IPV4_HEADER_LEN, ifname: this.name };
  }

  tunnelInfo(): { kind: "ipip"; local: string; peers: string[]; mtu: number; underlayMtu: number } {
    return {
      kind: "ipip",
      local: ipToString(this.localAddr),
      peers: this.peers.map(ipToString),
      mtu: this.underlayMtu - IPV4_HEADER_LEN,
      underlayMtu: this.underlayMtu,
    };
  }

  tunnelCounters(): Record<string, number> {
    return {
      encapsulated: this.encapsulated,
      decapsulated: this.decapsulated,
      unknownPeer: this.unknownPeer,
      badOuter: this.badOuter,
      badInner: this.badInner,
      notIpv4: this.notIpv4,
      noTunnelDst: this.noTunnelDst,
      tooBig: this.tooBig,
      rxTooBig: this.rxTooBig,
      ecnDrop: this.ecnDrop,
      wrongDst: this.wrongDst,
      txErrors: this.txErrors,
      rxErrors: this.rxErrors,
    };
  }
}

/** Sets a socket buffer size, past net.core.*mem_max when allowed (the FORCE option needs CAP_NET_ADMIN). */
function setBuf(sock: RawSocket, level: number, force: number, plain: number, bytes: number): void {
  try {
    sock.setOption(level, force, bytes);
  } catch {
    sock.setOption(level, plain, bytes);
  }
}
