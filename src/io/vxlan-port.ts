/**
 * VxlanPort: a VXLAN tunnel endpoint (RFC 7348) as a tapnet port. The node's switch or
 * router sees an Ethernet port; what it transmits is encapsulated in IPv4/UDP/VXLAN
 * toward remote VTEPs over the kernel network of the node's namespace; what it
 * receives is the inner frame of VXLAN packets sent to (localAddr, dstPort). It speaks
 * with a Linux kernel `vxlan` device (or flannel's flannel.1) on the other side.
 *
 * Receive. A `dgram` udp4 socket bound to (localAddr, dstPort), with a 4 MiB receive
 * buffer (capped by net.core.rmem_max). Node emits one 'message' event per datagram
 * (a fresh Buffer each: dgram has no recvmmsg, DESIGN.md). Each datagram is checked
 * (8-byte header, I flag set, our VNI, an inner frame of at least 14 bytes that fits a
 * slot) and copied whole into the next receive slot so that the inner frame lands
 * HEADROOM bytes into the slot, as on a TAP port; the VXLAN header falls in the
 * headroom, which is free space (copying the whole datagram is the one Buffer.copy
 * that needs no view). The inner source MAC is learned against the outer source
 * address (RFC 7348 section 4, like the kernel's `learning`). The frames of one turn
 * of the event loop go to the engine as one batch from a setImmediate, or at once
 * when the slots fill (as in PcapPort). Nothing a peer sends throws: bad datagrams are
 * dropped and counted. The kernel has already checked the UDP checksum.
 *
 * Transmit. For each queued frame: ARP suppression (the kernel's `proxy`: an ARP
 * request for an address in arpSuppress is answered here and the answer delivered as
 * a received frame on the next turn; the request does not cross the tunnel); else the
 * destination MAC is looked up in the FDB (static, or learned and not aged) for one
 * remote, else the frame is replicated to every flood remote (head-end replication,
 * as the kernel does with all-zeros FDB entries). The outer packet is built in a
 * staging area of the pool (copyWithin: no allocation): IPv4 (IHL 5, TOS 0, an
 * incrementing ident, DF clear, TTL 64, protocol UDP, checksum), UDP (source port from
 * a hash of the inner flow in 49152..65535 as RFC 7348 section 5 recommends, so the
 * underlay's ECMP spreads flows and keeps each in order; checksum over the IPv4
 * pseudo-header unless udpChecksum is false), VXLAN (flags 0x08, VNI), the frame. The
 * sum over UDP header, VXLAN header and frame is taken once per frame; replicas only
 * add their own pseudo-header.
 *
 * The packet leaves through a `raw-socket` socket of protocol IPPROTO_RAW (255): that
 * implies IP_HDRINCL (the whole IP header is ours; the kernel only rewrites the total
 * length and header checksum, which we wrote the same, and picks an ident where ours
 * is 0) and it is send-only, so it
 * never gets a copy of the namespace's UDP traffic. The kernel routes it by its
 * destination. raw-socket's JavaScript Socket.send() only queues the request and
 * writes one queued packet per writable poll event, a later turn of the loop, holding
 * a reference to the caller's buffer; its native SocketWrap.send() calls sendto(2) at
 * once and then its callback, synchronously. This port uses the native send: the
 * kernel has copied the packet into an skb when sendto returns (also when the
 * neighbour is not resolved yet: the skb waits in the neighbour queue), so one
 * staging area is reused for every packet. A refused send (EMSGSIZE, ENOBUFS, EAGAIN
 * on a full send buffer, ENETUNREACH) throws; it is counted in txErrors. A frame
 * counts as sent when at least one of its replicas was; an ARP request answered here
 * counts as sent too (the port took it; nothing was refused).
 *
 * MTU. Overlay MTU = underlayMtu - 50 (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet
 * 14). A frame whose payload (length - 14) exceeds it would not fit the underlay
 * without fragmenting, which RFC 7348 section 4.3 rules out: it is dropped and counted
 * in tooBig. (A VLAN-tagged inner frame has 4 bytes less for payload.) Outer DF is
 * clear, as the kernel's vxlan does by default.
 *
 * Learning and ageing. Learned entries (inner unicast source MAC -> outer source
 * address) age after ageingTime seconds, checked lazily on lookup and in fdbEntries().
 * Static entries never age and are never moved by learning (the kernel goes further
 * and drops such packets; here they are delivered, only not learned). All-zeros
 * static entries (00:00:00:00:00:00) add flood remotes, as with `bridge fdb append`.
 * At most maxEntries MACs are learned (a peer must not grow the table without bound);
 * past that, new MACs are not learned (learnLimit).
 *
 * Pool region: batchSize receive slots of slotSize bytes, then 2 x 16 reply slots of
 * 64 bytes (ARP replies; two halves so that replies made during a pass never
 * overwrite those being delivered), then the staging area (underlayMtu bytes).
 *
 * Counters: the Port ones, plus
 *   encapsulated  - outer packets sent (a flooded frame counts once per remote)
 *   decapsulated  - inner frames received
 *   flooded       - frames replicated to the flood list (once per frame)
 *   learned       - new or moved learned entries; aged - learned entries expired
 *   learnLimit    - source MACs not learned because the table was full
 *   badHeader     - datagrams shorter than 8 bytes or without the I flag
 *                   (RFC 7348 section 5: I must be 1; reserved bits ignored)
 *   vniMismatch   - another VNI
 *   runt          - inner frame shorter than 14 bytes (received, or queued to send)
 *   rxTooBig      - inner frame larger than a slot's room (slotSize - HEADROOM)
 *   tooBig        - frame to send above the overlay MTU
 *   arpSuppressed - ARP requests answered locally
 *   txErrors      - sends the kernel refused (lastTxError has the latest message)
 *   unknownDst    - frames with nowhere to go: no FDB entry and no flood remotes
 * Received drops also count in rxDrops; frames not sent get length 0 (txDrops).
 *
 * bind(2) happens after open() returns (dgram binds asynchronously): a failure (the
 * address is not on the node, the port is taken) sets `lastError`, leaves `listening`
 * false and rejects ready(). Runs on the main thread only (raw-socket's poll handle
 * lives on the default loop).
 */
import { createRequire } from "node:module";
import dgram from "node:dgram";
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, Port, type RxHandler } from "../core/port.js";
import {
  ARP_LEN,
  ARP_OPER_REQUEST,
  CHECK_OK,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  ETH_HEADER_LEN,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  IPV4_HEADER_LEN,
  UDP_HEADER_LEN,
  arpCheck,
  arpGetOper,
  arpGetSha,
  arpGetSpa,
  arpGetTpa,
  checksumFold,
  checksumSum,
  emitArpReply,
  ipToString,
  ipv4FillChecksum,
  macIsUnicast,
  macToString,
  parseIp,
  parseMac,
  pseudoHeaderSum,
  readMac,
  readU16,
  readU32,
  writeMac,
  writeU16,
  writeU32,
} from "../wire/index.js";

export interface VxlanPortOptions {
  /** VXLAN Network Identifier, 24 bits (1..16777215). */
  vni: number;
  /** UDP destination port: 4789 (IANA) by default; flannel and old kernels use 8472. */
  dstPort?: number;
  /** The node's underlay address: the receive socket binds here; outer source address. */
  localAddr: string;
  /** Flood list: broadcast, multicast and unknown unicast go to each (head-end replication). */
  remotes?: string[];
  /** Static entries (as flanneld writes them); mac 00:00:00:00:00:00 adds a flood remote. */
  fdb?: Array<{ mac: string; remote: string }>;
  /** ARP requests for these addresses are answered here (the kernel's `proxy`). */
  arpSuppress?: Array<{ ip: string; mac: string }>;
  /** Learn inner source MAC -> outer source address (default true, as the kernel). */
  learning?: boolean;
  /** Seconds a learned entry lives without being refreshed (default 300). */
  ageingTime?: number;
  /** Most learned entries (default 8192). */
  maxEntries?: number;
  /** Outer UDP checksums (default true); false sends 0, allowed for IPv4 (RFC 7348 section 5). */
  udpChecksum?: boolean;
  /** Underlay MTU (default 1500); the overlay MTU is 50 bytes less. */
  underlayMtu?: number;
  /** SO_RCVBUF of the receive socket, bytes (default 4 MiB; capped by net.core.rmem_max). */
  recvBufferSize?: number;
  batchSize?: number;
  slotSize?: number;
}

export interface VxlanFdbEntry {
  mac: string;
  remote: string;
  static: boolean;
  /** Seconds (to 0.1 s, as the switch shows them) since the entry was last refreshed; null for static entries. */
  age: number | null;
}

export interface VxlanTunnelInfo {
  kind: "vxlan";
  vni: number;
  local: string;
  dstPort: number;
  remotes: string[];
  mtu: number;
  learning: boolean;
}

export const VXLAN_PORT = 4789;
export const VXLAN_HEADER_LEN = 8;
/** The I flag, first byte of the header (RFC 7348 section 5). */
export const VXLAN_FLAG_I = 0x08;
/** Outer IPv4 + UDP + VXLAN bytes before the inner frame. */
export const VXLAN_ENCAP_LEN = IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/** What the overlay MTU loses to the tunnel: the encapsulation and the inner Ethernet header. */
export const VXLAN_OVERHEAD = VXLAN_ENCAP_LEN + ETH_HEADER_LEN;

const IPPROTO_RAW = 255;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const REPLY_SLOTS = 16;
const REPLY_SLOT_SIZE = 64;
const SRC_PORT_MIN = 49152;
const IP_PROTO_SCTP = 132;
const IP_PROTO_UDPLITE = 136;
const IP_PROTO_DCCP = 33;

export const VXLAN_COUNTERS = [
  "encapsulated",
  "decapsulated",
  "flooded",
  "learned",
  "aged",
  "learnLimit",
  "badHeader",
  "vniMismatch",
  "runt",
  "rxTooBig",
  "tooBig",
  "arpSuppressed",
  "txErrors",
  "unknownDst",
] as const;
export type VxlanCounter = (typeof VXLAN_COUNTERS)[number];

interface Entry {
  /** Outer destination, dotted quad (what sendto takes) and as a number (headers). */
  remote: string;
  remoteAddr: number;
  lastSeen: number;
  isStatic: boolean;
}

/** What this file uses of raw-socket. */
interface RawSocket {
  wrap: {
    send(buf: Buffer, offset: number, length: number, address: string, cb: (bytes: number) => void): unknown;
  };
  setOption(level: number, option: number, value: number): void;
  close(): unknown;
  on(event: "error", fn: (e: Error) => void): unknown;
  removeAllListeners(event?: string): unknown;
}
interface RawSocketModule {
  createSocket(opts: { protocol: number }): RawSocket;
}

let rawModule: RawSocketModule | null = null;
function loadRaw(): RawSocketModule {
  if (rawModule === null) {
    rawModule = createRequire(import.meta.url)("raw-socket") as RawSocketModule;
  }
  return rawModule;
}

const noop = (): void => {};

// murmur3's 32-bit mixing: cheap, no allocation, and every input bit reaches the low
// 14 bits that pick the source port.
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * UDP source port for the inner frame at `off` (RFC 7348 section 5: a hash of the
 * inner headers, in 49152..65535). Ethernet addresses always; for IPv4 also the
 * addresses, the protocol and, unless the packet is a fragment (whose later pieces
 * carry no ports: all pieces must take one path), the TCP/UDP/SCTP/DCCP ports or the
 * ICMP echo identifier. One 802.1Q/802.1ad tag is looked through.
 */
export function vxlanSourcePort(buf: Uint8Array, off: number, len: number): number {
  let h = 0x7a70;
  h = mix(h, readU32(buf, off));
  h = mix(h, readU32(buf, off + 4));
  h = mix(h, readU32(buf, off + 8));
  let l3 = off + ETH_HEADER_LEN;
  let etherType = readU16(buf, off + 12);
  if ((etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) && len >= ETH_HEADER_LEN + 4) {
    etherType = readU16(buf, off + 16);
    l3 += 4;
  }
  const end = off + len;
  if (etherType === ETHERTYPE_IPV4 && l3 + IPV4_HEADER_LEN <= end && buf[l3] >>> 4 === 4) {
    const proto = buf[l3 + 9];
    h = mix(h, readU32(buf, l3 + 12));
    h = mix(h, readU32(buf, l3 + 16));
    h = mix(h, proto);
    const l4 = l3 + ((buf[l3] & 0x0f) << 2);
    const fragment = (readU16(buf, l3 + 6) & 0x3fff) !== 0;
    if (!fragment && l4 + 8 <= end) {
      if (
        proto === IP_PROTO_TCP ||
        proto === IP_PROTO_UDP ||
        proto === IP_PROTO_SCTP ||
        proto === IP_PROTO_UDPLITE ||
        proto === IP_PROTO_DCCP
      ) {
        h = mix(h, readU32(buf, l4));
      } else if (proto === IP_PROTO_ICMP && (buf[l4] === ICMP_ECHO_REQUEST || buf[l4] === ICMP_ECHO_REPLY)) {
        h = mix(h, readU16(buf, l4 + 4));
      }
    }
  }
  return SRC_PORT_MIN + (fmix(h) & 0x3fff);
}

export class VxlanPort extends Port {
  readonly kind = "vxlan";
  readonly vni: number;
  readonly dstPort: number;
  readonly localAddr: string;
  readonly learning: boolean;
  readonly ageingMs: number;
  readonly maxEntries: number;
  readonly udpChecksum: boolean;
  readonly underlayMtu: number;
  /** Overlay MTU: underlayMtu - 50. */
  readonly mtu: number;
  readonly recvBufferSize: number;

  encapsulated = 0;
  decapsulated = 0;
  flooded = 0;
  learned = 0;
  aged = 0;
  learnLimit = 0;
  badHeader = 0;
  vniMismatch = 0;
  runt = 0;
  rxTooBig = 0;
  tooBig = 0;
  arpSuppressed = 0;
  txErrors = 0;
  unknownDst = 0;

  /** The latest refused send, and the latest socket error (bind, receive). */
  lastTxError = "";
  lastError = "";
  /** True once the receive socket is bound. */
  listening = false;
  /** SO_RCVBUF as the kernel granted it (after bind; twice the request, as Linux reports). */
  recvBufferGranted = 0;

  private readonly localU32: number;
  private readonly floodStr: string[] = [];
  private readonly floodU32: number[] = [];
  private readonly fdb = new Map<number, Entry>();
  private learnedCount = 0;
  private readonly suppress = new Map<number, number>();

  private udp: dgram.Socket | null = null;
  private raw: RawSocket | null = null;
  private poolBuf: Buffer | null = null;
  private rxBase = 0;
  private replyBase = 0;
  private stageBase = 0;
  private pending = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Which half of the reply area is filling, and how many replies it holds. */
  private replyHalf = 0;
  private replyCount = 0;
  private readonly replyLengths = new Uint16Array(2 * REPLY_SLOTS);
  private ident = 1;
  private readyWaiters: Array<{ res: () => void; rej: (e: Error) => void }> = [];

  constructor(name: string, opts: VxlanPortOptions) {
    super(name, opts.batchSize, opts.slotSize);
    const where = `vxlan port '${name}'`;
    if (!Number.isInteger(opts.vni) || opts.vni < 1 || opts.vni > 0xffffff) {
      throw new RangeError(`${where}: vni ${String(opts.vni)} is not 1..16777215 (24 bits)`);
    }
    const dstPort = opts.dstPort ?? VXLAN_PORT;
    if (!Number.isInteger(dstPort) || dstPort < 1 || dstPort > 65535) {
      throw new RangeError(`${where}: dstPort ${String(dstPort)} is not 1..65535`);
    }
    const underlayMtu = opts.underlayMtu ?? 1500;
    if (!Number.isInteger(underlayMtu) || underlayMtu < 68 + VXLAN_OVERHEAD || underlayMtu > 65535) {
      throw new RangeError(`${where}: underlayMtu ${String(underlayMtu)} is not ${68 + VXLAN_OVERHEAD}..65535`);
    }
    const ageing = opts.ageingTime ?? 300;
    if (!(ageing > 0)) throw new RangeError(`${where}: ageingTime must be > 0 seconds`);
    const maxEntries = opts.maxEntries ?? 8192;
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      throw new RangeError(`${where}: maxEntries must be an integer >= 0`);
    }
    if (this.slotSize <= HEADROOM + ETH_HEADER_LEN || HEADROOM < VXLAN_HEADER_LEN) {
      throw new RangeError(`${where}: slotSize ${this.slotSize} leaves no room for a frame`);
    }
    const ip = (s: string, what: string): number => {
      try {
        return parseIp(s);
      } catch (e) {
        throw new Error(`${where}: ${what}: ${(e as Error).message}`);
      }
    };
    const mac = (s: string, what: string): number => {
      try {
        return parseMac(s);
      } catch (e) {
        throw new Error(`${where}: ${what}: ${(e as Error).message}`);
      }
    };
    this.vni = opts.vni;
    this.dstPort = dstPort;
    this.localU32 = ip(opts.localAddr, "localAddr");
    this.localAddr = ipToString(this.localU32);
    this.learning = opts.learning ?? true;
    this.ageingMs = ageing * 1000;
    this.maxEntries = maxEntries;
    this.udpChecksum = opts.udpChecksum ?? true;
    this.underlayMtu = underlayMtu;
    this.mtu = underlayMtu - VXLAN_OVERHEAD;
    this.recvBufferSize = opts.recvBufferSize ?? 4 * 1024 * 1024;
    const addFlood = (a: number): void => {
      if (!this.floodU32.includes(a)) {
        this.floodU32.push(a);
        this.floodStr.push(ipToString(a));
      }
    };
    for (const r of opts.remotes ?? []) addFlood(ip(r, "remotes"));
    for (const f of opts.fdb ?? []) {
      const m = mac(f.mac, "fdb mac");
      const r = ip(f.remote, `fdb entry ${f.mac}`);
      if (m === 0) {
        addFlood(r);
      } else if (!macIsUnicast(m)) {
        throw new Error(`${where}: fdb entry ${f.mac} is a group address`);
      } else {
        this.fdb.set(m, { remote: ipToString(r), remoteAddr: r, lastSeen: 0, isStatic: true });
      }
    }
    for (const s of opts.arpSuppress ?? []) {
      const m = mac(s.mac, `arpSuppress ${s.ip}`);
      if (!macIsUnicast(m)) throw new Error(`${where}: arpSuppress ${s.ip}: ${s.mac} is not a unicast MAC`);
      this.suppress.set(ip(s.ip, "arpSuppress ip"), m);
    }
  }

  get isOpen(): boolean {
    return this.raw !== null;
  }

  /** Largest inner frame the port receives. */
  get room(): number {
    return this.slotSize - HEADROOM;
  }

  private get stageBytes(): number {
    return (this.underlayMtu + 63) & ~63;
  }

  override rxRegionBytes(): number {
    return this.batchSize * this.slotSize + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE + this.stageBytes;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.raw !== null) throw new Error(`vxlan port '${this.name}' is already open`);
    let mod: RawSocketModule;
    try {
      mod = loadRaw();
    } catch (e) {
      throw new Error(`vxlan port '${this.name}': cannot load raw-socket: ${(e as Error).message}`);
    }
    let raw: RawSocket;
    try {
      raw = mod.createSocket({ protocol: IPPROTO_RAW });
    } catch (e) {
      throw new Error(
        `vxlan port '${this.name}': cannot open a raw IP socket (needs CAP_NET_RAW): ${(e as Error).message}`,
      );
    }
    // Errors of the poll handle arrive as an event; without a listener, one would throw.
    raw.on("error", (e: Error) => {
      this.lastError = `raw socket: ${e.message}`;
    });
    try {
      raw.setOption(SOL_SOCKET, SO_SNDBUF, 4 * 1024 * 1024);
    } catch {
      // A smaller send buffer only means earlier ENOBUFS under load.
    }
    const base = pool.region(this.rxRegionBytes(), `vxlan port '${this.name}' rx`);
    this.poolBuf = pool.buf;
    this.rxBase = base;
    this.replyBase = base + this.batchSize * this.slotSize;
    this.stageBase = this.replyBase + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE;
    this.pending = 0;
    this.replyHalf = 0;
    this.replyCount = 0;
    this.onRx = onRx;
    this.raw = raw;
    this.listening = false;
    this.lastError = "";

    const udp = dgram.createSocket({ type: "udp4", recvBufferSize: this.recvBufferSize });
    this.udp = udp;
    udp.on("error", (e: Error) => {
      this.lastError = e.message;
      if (!this.listening) {
        // bind failed: this socket is of no further use.
        this.rejectWaiters(e);
        if (this.udp === udp) this.udp = null;
        try {
          udp.close();
        } catch {
          // already closed
        }
      }
    });
    udp.on("listening", () => {
      // A socket closed while its bind was under way is not ours any more.
      if (this.udp !== udp) return;
      this.listening = true;
      try {
        this.recvBufferGranted = udp.getRecvBufferSize();
      } catch {
        this.recvBufferGranted = 0;
      }
      const w = this.readyWaiters;
      this.readyWaiters = [];
      for (const x of w) x.res();
    });
    udp.on("message", this.onMessage);
    udp.bind({ address: this.localAddr, port: this.dstPort, exclusive: true });
  }

  /** Resolves when the receive socket is bound; rejects with the bind error. */
  ready(): Promise<void> {
    if (this.listening) return Promise.resolve();
    if (this.udp === null) {
      return Promise.reject(new Error(`vxlan port '${this.name}' is not listening: ${this.lastError || "closed"}`));
    }
    return new Promise((res, rej) => this.readyWaiters.push({ res, rej }));
  }

  private rejectWaiters(e: Error): void {
    const w = this.readyWaiters;
    this.readyWaiters = [];
    const err = new Error(`vxlan port '${this.name}': cannot listen on ${this.localAddr}:${this.dstPort}: ${e.message}`);
    for (const x of w) x.rej(err);
  }

  close(): void {
    const raw = this.raw;
    const udp = this.udp;
    this.raw = null;
    this.udp = null;
    this.onRx = null;
    this.listening = false;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    this.pending = 0;
    this.replyCount = 0;
    if (udp !== null) {
      udp.removeListener("message", this.onMessage);
      try {
        udp.close();
      } catch {
        // not running (bind failed): nothing to close
      }
    }
    if (raw !== null) {
      try {
        raw.close();
      } catch {
        // best effort
      }
    }
    if (this.readyWaiters.length !== 0) this.rejectWaiters(new Error("port closed"));
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (this.udp === null) return;
    const n = msg.length;
    if (n < VXLAN_HEADER_LEN || (msg[0] & VXLAN_FLAG_I) === 0) {
      this.badHeader++;
      this.rxDrops++;
      return;
    }
    if (((msg[4] << 16) | (msg[5] << 8) | msg[6]) !== this.vni) {
      this.vniMismatch++;
      this.rxDrops++;
      return;
    }
    const inner = n - VXLAN_HEADER_LEN;
    if (inner < ETH_HEADER_LEN) {
      this.runt++;
      this.rxDrops++;
      return;
    }
    if (inner > this.slotSize - HEADROOM) {
      this.rxTooBig++;
      this.rxDrops++;
      return;
    }
    const pool = this.poolBuf as Buffer;
    const k = this.pending;
    const dst = this.rxBase + k * this.slotSize + HEADROOM;
    msg.copy(pool, dst - VXLAN_HEADER_LEN);
    this.decapsulated++;
    if (this.learning) this.learn(pool, dst, rinfo.address);
    this.rx.offsets[k] = dst;
    this.rx.lengths[k] = inner;
    this.pending = k + 1;
    if (k + 1 === this.batchSize) {
      this.deliver();
    } else if (this.immediate === null) {
      this.immediate = setImmediate(this.onImmediate);
    }
  };

  private learn(pool: Buffer, frame: number, from: string): void {
    const src = readMac(pool, frame + 6);
    // A group or zero source is not a station (IEEE 802.1Q 8.7: never learned).
    if (src === 0 || (pool[frame + 6] & 1) === 1) return;
    const e = this.fdb.get(src);
    const now = performance.now();
    if (e !== undefined) {
      if (e.isStatic) return;
      if (e.remote === from) {
        e.lastSeen = now;
        return;
      }
      // Moved, or aged out and back: re-point it.
      e.remote = from;
      e.remoteAddr = parseIp(from);
      e.lastSeen = now;
      this.learned++;
      return;
    }
    if (this.learnedCount >= this.maxEntries) {
      this.learnLimit++;
      return;
    }
    this.fdb.set(src, { remote: from, remoteAddr: parseIp(from), lastSeen: now, isStatic: false });
    this.learnedCount++;
    this.learned++;
  }

  private readonly onImmediate = (): void => {
    this.immediate = null;
    // Replies made during the passes below go to the other half, for the next turn.
    const r = this.replyCount;
    const half = this.replyHalf;
    if (r !== 0) {
      this.replyHalf = half ^ 1;
      this.replyCount = 0;
    }
    this.deliver();
    if (r === 0 || this.onRx === null) return;
    const rx = this.rx;
    const first = half * REPLY_SLOTS;
    for (let i = 0; i < r; i++) {
      rx.offsets[i] = this.replyBase + (first + i) * REPLY_SLOT_SIZE;
      rx.lengths[i] = this.replyLengths[first + i];
    }
    rx.count = r;
    this.deliverBatch(this.poolBuf as Buffer, rx);
  };

  private deliver(): void {
    this.rx.count = this.pending;
    this.pending = 0;
    this.deliverBatch(this.poolBuf as Buffer, this.rx);
  }

  /** FDB lookup with lazy ageing. */
  private lookup(mac: number, now: number): Entry | undefined {
    const e = this.fdb.get(mac);
    if (e === undefined || e.isStatic || now - e.lastSeen < this.ageingMs) return e;
    this.fdb.delete(mac);
    this.learnedCount--;
    this.aged++;
    return undefined;
  }

  /**
   * Answers an ARP request for a suppressed address (the kernel vxlan's arp_reduce):
   * the reply, from the configured MAC to the requester's, is queued in the reply area.
   * Returns false when the frame is not such a request or the reply area is full (the
   * request then crosses the tunnel as usual).
   */
  private suppressArp(pool: Buffer, off: number, len: number): boolean {
    const arp = off + ETH_HEADER_LEN;
    if (arpCheck(pool, arp, len - ETH_HEADER_LEN) !== CHECK_OK) return false;
    if (arpGetOper(pool, arp) !== ARP_OPER_REQUEST) return false;
    const tpa = arpGetTpa(pool, arp);
    const spa = arpGetSpa(pool, arp);
    // A gratuitous request announces the sender's own address: nothing to answer.
    if (spa === tpa) return false;
    const mac = this.suppress.get(tpa);
    if (mac === undefined) return false;
    if (this.replyCount === REPLY_SLOTS) return false;
    const slot = this.replyHalf * REPLY_SLOTS + this.replyCount;
    const r = this.replyBase + slot * REPLY_SLOT_SIZE;
    const sha = arpGetSha(pool, arp);
    writeMac(pool, r, sha);
    writeMac(pool, r + 6, mac);
    writeU16(pool, r + 12, ETHERTYPE_ARP);
    emitArpReply(pool, r + ETH_HEADER_LEN, mac, tpa, sha, spa);
    this.replyLengths[slot] = ETH_HEADER_LEN + ARP_LEN;
    this.replyCount++;
    this.arpSuppressed++;
    if (this.immediate === null) this.immediate = setImmediate(this.onImmediate);
    return true;
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const offsets = q.offsets;
    const lengths = q.lengths;
    if (this.raw === null) {
      for (let i = 0; i < n; i++) lengths[i] = 0;
      this.txErrors += n;
      this.lastTxError = "port is closed";
      return 0;
    }
    const now = performance.now();
    const maxLen = this.mtu + ETH_HEADER_LEN;
    const suppressing = this.suppress.size !== 0;
    const flood = this.floodStr;
    let sent = 0;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      if (len < ETH_HEADER_LEN) {
        this.runt++;
        lengths[i] = 0;
        continue;
      }
      if (len > maxLen) {
        this.tooBig++;
        lengths[i] = 0;
        continue;
      }
      if (suppressing && readU16(pool, off + 12) === ETHERTYPE_ARP && this.suppressArp(pool, off, len)) {
        sent++;
        continue;
      }
      const e = this.lookup(readMac(pool, off), now);
      let ok = 0;
      if (e !== undefined) {
        const sum = this.stage(pool, off, len);
        ok = this.sendTo(pool, len, sum, e.remote, e.remoteAddr);
      } else if (flood.length !== 0) {
        const sum = this.stage(pool, off, len);
        const addrs = this.floodU32;
        for (let j = 0; j < flood.length; j++) ok += this.sendTo(pool, len, sum, flood[j], addrs[j]);
        this.flooded++;
      } else {
        this.unknownDst++;
        lengths[i] = 0;
        continue;
      }
      if (ok !== 0) sent++;
      else lengths[i] = 0;
    }
    return sent;
  }

  /**
   * Writes everything of the outer packet that does not depend on the remote into the
   * staging area: UDP header, VXLAN header, the frame. Returns the sum of UDP header
   * (checksum 0), VXLAN header and frame, for sendTo (0 when checksums are off).
   */
  private stage(pool: Buffer, off: number, len: number): number {
    const s = this.stageBase;
    const udp = s + IPV4_HEADER_LEN;
    const vx = udp + UDP_HEADER_LEN;
    pool.copyWithin(vx + VXLAN_HEADER_LEN, off, off + len);
    pool[vx] = VXLAN_FLAG_I;
    pool[vx + 1] = 0;
    pool[vx + 2] = 0;
    pool[vx + 3] = 0;
    writeU32(pool, vx + 4, this.vni << 8);
    writeU16(pool, udp, vxlanSourcePort(pool, off, len));
    writeU16(pool, udp + 2, this.dstPort);
    writeU16(pool, udp + 4, UDP_HEADER_LEN + VXLAN_HEADER_LEN + len);
    writeU16(pool, udp + 6, 0);
    return this.udpChecksum ? checksumSum(pool, udp, UDP_HEADER_LEN + VXLAN_HEADER_LEN + len) : 0;
  }

  /** Completes the staged packet for one remote and sends it; returns 1 when the kernel took it. */
  private sendTo(pool: Buffer, len: number, sum: number, remote: string, remoteAddr: number): number {
    const s = this.stageBase;
    const total = VXLAN_ENCAP_LEN + len;
    pool[s] = 0x45;
    pool[s + 1] = 0;
    writeU16(pool, s + 2, total);
    writeU16(pool, s + 4, this.ident);
    this.ident = (this.ident + 1) & 0xffff;
    writeU16(pool, s + 6, 0);
    pool[s + 8] = 64;
    pool[s + 9] = IP_PROTO_UDP;
    writeU32(pool, s + 12, this.localU32);
    writeU32(pool, s + 16, remoteAddr);
    ipv4FillChecksum(pool, s);
    if (this.udpChecksum) {
      const udpLen = total - IPV4_HEADER_LEN;
      const c = ~checksumFold(sum + pseudoHeaderSum(this.localU32, remoteAddr, IP_PROTO_UDP, udpLen)) & 0xffff;
      writeU16(pool, s + IPV4_HEADER_LEN + 6, c === 0 ? 0xffff : c);
    } else {
      writeU16(pool, s + IPV4_HEADER_LEN + 6, 0);
    }
    try {
      (this.raw as RawSocket).wrap.send(pool, s, total, remote, noop);
      this.encapsulated++;
      return 1;
    } catch (e) {
      this.txErrors++;
      this.lastTxError = e instanceof Error ? e.message : String(e);
      return 0;
    }
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: 0, mtu: this.mtu, ifname: this.name };
  }

  /** Static entries and learned ones not yet aged (aged ones are removed). `now` in ms, performance.now(). */
  fdbEntries(now: number): VxlanFdbEntry[] {
    const out: VxlanFdbEntry[] = [];
    for (const [mac, e] of this.fdb) {
      if (!e.isStatic && now - e.lastSeen >= this.ageingMs) {
        this.fdb.delete(mac);
        this.learnedCount--;
        this.aged++;
        continue;
      }
      out.push({
        mac: macToString(mac),
        remote: e.remote,
        static: e.isStatic,
        age: e.isStatic ? null : Math.max(0, Math.round((now - e.lastSeen) / 100) / 10),
      });
    }
    return out;
  }

  tunnelInfo(): VxlanTunnelInfo {
    return {
      kind: "vxlan",
      vni: this.vni,
      local: this.localAddr,
      dstPort: this.dstPort,
      remotes: [...this.floodStr],
      mtu: this.mtu,
      learning: this.learning,
    };
  }

  tunnelCounters(): Record<VxlanCounter, number> {
    const out = {} as Record<VxlanCounter, number>;
    for (const k of VXLAN_COUNTERS) out[k] = this[k];
    return out;
  }
}
