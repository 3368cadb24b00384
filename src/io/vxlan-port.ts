/**
 * VxlanPort: a VXLAN tunnel endpoint (RFC 7348) as a tapnet port. The node's switch or
 * router sees an Ethernet port; what it transmits is encapsulated in IPv4/UDP/VXLAN
 * toward remote VTEPs over the kernel network of the node's namespace; what it
 * receives is the inner frame of VXLAN packets sent to (localAddr, dstPort). It speaks
 * with a Linux kernel `vxlan` device (or flannel's flannel.1) on the other side.
 *
 * Receive. A UDP socket of the native addon (src/io/udp-native.ts) bound to
 * (localAddr, dstPort), with a 4 MiB receive buffer and UDP_GRO: each poll wake-up is
 * one recvmmsg of up to LAND_SLOTS messages straight into landing slots of the pool,
 * and a message may hold several datagrams of one flow back to back (the kernel's UDP
 * GRO; segs gives their size). Every datagram is checked (8-byte header, I flag set,
 * our VNI, an inner frame of at least 14 bytes that fits an output slot); then
 * groCoalesce (src/io/offload.ts, C) copies the inner frames into the output slots,
 * HEADROOM bytes in as on a TAP port with a zeroed virtio-net header in front, and,
 * when the node has offloads, merges consecutive TCP segments of one flow (checksums
 * verified) into one TSO super-frame: the receiving host's TAP takes 64 KiB at once,
 * as the kernel's VXLAN GRO would hand it. The inner source MAC is learned against the
 * outer source address (RFC 7348 section 4, like the kernel's `learning`). Nothing a
 * peer sends throws: bad datagrams are dropped and counted. The kernel has already
 * checked the UDP checksum.
 *
 * Transmit. For each queued frame: ARP suppression (the kernel's `proxy`: an ARP
 * request for an address in arpSuppress is answered here and the answer delivered as
 * a received frame on the next turn; the request does not cross the tunnel); else the
 * destination MAC is looked up in the FDB (static, or learned and not aged) for one
 * remote, else the frame is replicated to every flood remote (head-end replication,
 * as the kernel does with all-zeros FDB entries). A plain frame gets its VXLAN header
 * (flags 0x08, VNI) in the headroom in front of it and is sent from where it is; a
 * partial checksum (offloads) is completed first. A TSO super-frame is cut once by
 * gsoSegment (C: per segment IPv4 ident, sequence number, flags and a full TCP
 * checksum) into a staging area, each segment behind its own VXLAN header at a fixed
 * stride, and leaves as one UDP GSO message (UDP_SEGMENT): the kernel makes the
 * datagrams (and carries them through veths as one GSO packet). All messages of a
 * transmit go out with one sendmmsg per send socket. The kernel builds the outer IPv4
 * and UDP headers and the UDP checksum (offloaded on veths); udpChecksum: false sets
 * SO_NO_CHECK, under which the kernel refuses UDP GSO, so segments then go as one
 * message each. Outer source ports: TX_SOCKETS send sockets bound to ports in
 * 49152..65535, picked by a hash of the inner flow (RFC 7348 section 5), so a flow
 * keeps one port and its order. A refused message (ENETUNREACH, EMSGSIZE, a full send
 * buffer) is counted in txErrors, never thrown. A frame counts as sent when at least
 * one of its replicas was; an ARP request answered here counts as sent too.
 *
 * MTU. Overlay MTU = underlayMtu - 50 (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet
 * 14). A frame whose payload (length - 14) exceeds it would not fit the underlay
 * without fragmenting, which RFC 7348 section 4.3 rules out: it is dropped and counted
 * in tooBig. (A VLAN-tagged inner frame has 4 bytes less for payload.) Outer DF is
 * clear, as the kernel's vxlan does by default (the send sockets use IP_PMTUDISC_DONT).
 *
 * Learning and ageing. Learned entries (inner unicast source MAC -> outer source
 * address) age after ageingTime seconds, checked lazily on lookup and in fdbEntries().
 * Static entries never age and are never moved by learning (the kernel goes further
 * and drops such packets; here they are delivered, only not learned). All-zeros
 * static entries (00:00:00:00:00:00) add flood remotes, as with `bridge fdb append`.
 * At most maxEntries MACs are learned (a peer must not grow the table without bound);
 * past that, new MACs are not learned (learnLimit).
 *
 * Pool region: LAND_SLOTS landing slots for recvmmsg (64 KiB + 128 each: a GRO train),
 * the output slots (batchSize of slotSize; with offloads 64 of 64 KiB + 256, room for a
 * coalesced super-frame), 2 x 16 reply slots of HEADROOM + 64 bytes (ARP replies; two
 * halves so that replies made during a pass never overwrite those being delivered),
 * then the staging area for segmented super-frames (512 KiB).
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
 *   segmented     - TSO super-frames cut into segments here (offloads)
 *   coalesced     - received datagrams merged into a super-frame (not delivered on their own)
 *   badOffload    - super-frames or partial checksums that could not be resolved (malformed)
 * Received drops also count in rxDrops; frames not sent get length 0 (txDrops).
 *
 * The receive socket is bound in open(): a failure (the address is not on the node, the
 * port is taken) does not throw there; it sets `lastError`, leaves `listening` false
 * and rejects ready(), which the node awaits. The sockets' poll handles live on the
 * loop of the thread that opened the port.
 */
import { constants as osConstants } from "node:os";
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, Port, type RxHandler, VNET_HDR_LEN } from "../core/port.js";
import { completeChecksum, groCoalesce, gsoSegment } from "./offload.js";
import { openUdp, type UdpHandle, type UdpOptions } from "./udp-native.js";
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
  /**
   * Opens the underlay sockets (default: the addon's openUdp). The fuzz tests pass a
   * simulated kernel here, which lands datagrams in the slots and calls onBatch as the
   * addon does, so the receive path runs without a socket.
   */
  openSocket?: (opts: UdpOptions) => UdpHandle;
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
  /** Outer UDP source ports (one per send socket; a flow always uses the same one). */
  sourcePorts: number[];
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

const REPLY_SLOTS = 16;
/** A reply slot: HEADROOM, then a 42-byte ARP reply. */
const REPLY_SLOT_SIZE = HEADROOM + 64;
/** recvmmsg landing slots; with UDP GRO one message holds up to 64 KiB of datagrams. */
const LAND_SLOTS = 64;
const LAND_SLOT = 65536 + 128;
/** Output slots with offloads: a coalesced super-frame (64 KiB) behind its headroom. */
const VNET_OUT_SLOT = 65536 + 256;
const VNET_OUT_SLOTS = 64;
/** Staging for segmented super-frames between two sendmmsg calls. */
const STAGE_BYTES = 512 * 1024;
/** Most segments of one super-frame; most messages per send socket per sendmmsg. */
const MAX_SEGS = 1024;
const MAX_MSGS = 1024;
/** Largest UDP payload (65535 - 20 - 8), and most datagrams per UDP GSO message (UDP_MAX_SEGMENTS). */
const UDP_MAX_PAYLOAD = 65507;
const GSO_MAX_SEGS = 64;
/** Send sockets (outer source ports); a power of two. */
const TX_SOCKETS = 4;
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
  "segmented",
  "coalesced",
  "badOffload",
] as const;
export type VxlanCounter = (typeof VXLAN_COUNTERS)[number];

interface Entry {
  /** Outer destination (IPv4 as a number). */
  remoteAddr: number;
  lastSeen: number;
  isStatic: boolean;
}


// murmur3's 32-bit mixing: cheap, no allocation, and every input bit reaches the low
// 14 bits that pick the source port.
function txErrorText(errno: number): string {
  return errno === 0 ? "send refused" : `sendmmsg: ${errnoName(errno)}`;
}

/** "ENETUNREACH" for 101, from Node's own table. */
function errnoName(errno: number): string {
  for (const [name, v] of Object.entries(osConstants.errno)) if (v === errno) return name;
  return `errno ${errno}`;
}

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
  segmented = 0;
  coalesced = 0;
  badOffload = 0;

  /** The latest refused send, and the latest socket error (bind, receive). */
  lastTxError = "";
  lastError = "";
  /** True once the receive socket is bound. */
  listening = false;
  /** SO_RCVBUF as the kernel granted it (after bind; twice the request, as Linux reports). */
  recvBufferGranted = 0;

  private readonly localU32: number;
  private readonly floodU32: number[] = [];
  private readonly fdb = new Map<number, Entry>();
  private learnedCount = 0;
  private readonly suppress = new Map<number, number>();

  private rxSock: UdpHandle | null = null;
  private readonly txSocks: UdpHandle[] = [];
  private poolBuf: Buffer | null = null;
  /** Receive: landing slots for what recvmmsg returns (a GRO message is up to 64 KiB). */
  private landBase = 0;
  private readonly land = {
    offsets: new Uint32Array(LAND_SLOTS),
    lengths: new Uint32Array(LAND_SLOTS),
    addrs: new Uint32Array(LAND_SLOTS),
    ports: new Uint32Array(LAND_SLOTS),
    segs: new Uint32Array(LAND_SLOTS),
  };
  /** Output slots (this.rx): where inner frames (and coalesced super-frames) go. */
  private outBase = 0;
  private outSlots = 0;
  private outSlotSize = 0;
  private replyBase = 0;
  private stageBase = 0;
  private stageEnd = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Which half of the reply area is filling, and how many replies it holds. */
  private replyHalf = 0;
  private replyCount = 0;
  private readonly replyLengths = new Uint16Array(2 * REPLY_SLOTS);
  private readyWaiters: Array<{ res: () => void; rej: (e: Error) => void }> = [];
  /** Messages of one transmit, per send socket. */
  private readonly tx: TxMessages[] = [];
  private readonly segLens = new Uint32Array(MAX_SEGS);
  /** Per frame of the TxQueue chunk being sent: at least one of its messages was taken. */
  private readonly frameOk: Uint8Array;
  private readonly openSocket: (opts: UdpOptions) => UdpHandle;

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
      if (!this.floodU32.includes(a)) this.floodU32.push(a);
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
        this.fdb.set(m, { remoteAddr: r, lastSeen: 0, isStatic: true });
      }
    }
    for (const s of opts.arpSuppress ?? []) {
      const m = mac(s.mac, `arpSuppress ${s.ip}`);
      if (!macIsUnicast(m)) throw new Error(`${where}: arpSuppress ${s.ip}: ${s.mac} is not a unicast MAC`);
      this.suppress.set(ip(s.ip, "arpSuppress ip"), m);
    }
    for (let k = 0; k < TX_SOCKETS; k++) this.tx.push(new TxMessages());
    this.frameOk = new Uint8Array(this.txq.capacity);
    this.openSocket = opts.openSocket ?? openUdp;
  }

  get isOpen(): boolean {
    return this.rxSock !== null;
  }

  /** The port reads and writes virtio-net headers itself (it segments for the underlay). */
  override get deviceOffload(): boolean {
    return true;
  }

  /** Largest inner frame the port receives. */
  get room(): number {
    return this.outSize() - HEADROOM;
  }

  /** Output slot size: a 64 KiB super-frame with offloads, else slotSize. */
  private outSize(): number {
    return this.offload ? Math.max(this.slotSize, VNET_OUT_SLOT) : this.slotSize;
  }

  private outCount(): number {
    return this.offload ? Math.min(this.batchSize, VNET_OUT_SLOTS) : this.batchSize;
  }

  override rxRegionBytes(): number {
    return LAND_SLOTS * LAND_SLOT + this.outCount() * this.outSize() + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE + STAGE_BYTES;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.rxSock !== null) throw new Error(`vxlan port '${this.name}' is already open`);
    const base = pool.region(this.rxRegionBytes(), `vxlan port '${this.name}' rx`);
    const buf = pool.buf;
    this.poolBuf = buf;
    this.landBase = base;
    this.outBase = base + LAND_SLOTS * LAND_SLOT;
    this.outSlots = this.outCount();
    this.outSlotSize = this.outSize();
    this.replyBase = this.outBase + this.outSlots * this.outSlotSize;
    this.stageBase = this.replyBase + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE;
    this.stageEnd = this.stageBase + STAGE_BYTES;
    this.replyHalf = 0;
    this.replyCount = 0;
    this.listening = false;
    this.lastError = "";
    const land = this.land;
    let rx: UdpHandle;
    try {
      rx = this.openSocket({
        bindAddr: this.localU32,
        port: this.dstPort,
        rcvbuf: this.recvBufferSize,
        gro: true,
        pool: buf,
        rxBase: base,
        slots: LAND_SLOTS,
        slotSize: LAND_SLOT,
        offsets: land.offsets,
        lengths: land.lengths,
        addrs: land.addrs,
        ports: land.ports,
        segs: land.segs,
        onBatch: this.onLanded,
      });
    } catch (e) {
      // Not fatal for open(): the port exists, ready() reports why it cannot listen
      // (the node prints it and exits; tests look at lastError).
      this.lastError = (e as Error).message;
      this.onRx = onRx;
      return;
    }
    try {
      // Send sockets: the outer source port is theirs; a flow always takes the same one.
      for (let k = 0; k < TX_SOCKETS; k++) this.txSocks.push(this.openTxSocket(buf, k));
    } catch (e) {
      rx.close();
      for (const t of this.txSocks) t.close();
      this.txSocks.length = 0;
      throw new Error(`vxlan port '${this.name}': cannot open its send sockets: ${(e as Error).message}`);
    }
    this.rxSock = rx;
    this.recvBufferGranted = rx.rcvbuf;
    this.onRx = onRx;
    this.listening = true;
    rx.start();
  }

  /** A send-only socket bound to (localAddr, a port in 49152..65535 picked from k and the VNI). */
  private openTxSocket(buf: Buffer, k: number): UdpHandle {
    let lastErr: Error | null = null;
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = SRC_PORT_MIN + ((this.vni * 7919 + k * 4099 + attempt * 257) & 0x3fff);
      try {
        return this.openSocket({
          bindAddr: this.localU32,
          port,
          sndbuf: 4 * 1024 * 1024,
          noCheck: !this.udpChecksum,
          noDf: true,
          pool: buf,
          rxBase: 0,
          slots: 1,
          slotSize: 1,
          offsets: this.land.offsets,
          lengths: this.land.lengths,
          addrs: this.land.addrs,
          ports: this.land.ports,
          segs: this.land.segs,
        });
      } catch (e) {
        lastErr = e as Error;
        if ((e as { code?: string }).code !== "EADDRINUSE") break;
      }
    }
    throw lastErr ?? new Error("no free source port");
  }

  /** Resolves when the receive socket is bound; rejects with the bind error. */
  ready(): Promise<void> {
    if (this.listening) return Promise.resolve();
    if (this.lastError !== "") {
      return Promise.reject(new Error(`vxlan port '${this.name}': cannot listen on ${this.localAddr}:${this.dstPort}: ${this.lastError}`));
    }
    return Promise.reject(new Error(`vxlan port '${this.name}' is not listening: closed`));
  }

  close(): void {
    const rx = this.rxSock;
    this.rxSock = null;
    this.onRx = null;
    this.listening = false;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    this.replyCount = 0;
    if (rx !== null) rx.close();
    for (const t of this.txSocks) t.close();
    this.txSocks.length = 0;
  }

  /**
   * One recvmmsg's worth of messages: each is one VXLAN datagram, or with UDP GRO
   * several of one flow back to back (segs = their size). Every datagram's header is
   * checked; a message whose datagrams all pass goes to groCoalesce whole (TCP
   * segments of one flow become one super-frame when the node has offloads), else its
   * good datagrams one by one. The frames go to the engine in batches of the output
   * slots.
   */
  private readonly onLanded = (count: number): void => {
    if (this.rxSock === null) return;
    const pool = this.poolBuf as Buffer;
    const land = this.land;
    const rx = this.rx;
    const room = this.outSlotSize - HEADROOM;
    const vni = this.vni;
    const now = performance.now(); // one clock read per wake-up, for learning
    let out = 0;
    for (let i = 0; i < count; i++) {
      const off = land.offsets[i];
      const len = land.lengths[i];
      const seg = land.segs[i] !== 0 && land.segs[i] < len ? land.segs[i] : len;
      const from = land.addrs[i];
      // Check every datagram of the message.
      let good = 0;
      let n = 0;
      if (len === 0) {
        // An empty datagram: no header at all.
        this.badHeader++;
        this.rxDrops++;
        continue;
      }
      for (let p = 0; p < len; p += seg, n++) {
        const dl = Math.min(seg, len - p);
        const d = off + p;
        if (dl < VXLAN_HEADER_LEN || (pool[d] & VXLAN_FLAG_I) === 0) this.badHeader++;
        else if (((pool[d + 4] << 16) | (pool[d + 5] << 8) | pool[d + 6]) !== vni) this.vniMismatch++;
        else if (dl - VXLAN_HEADER_LEN < ETH_HEADER_LEN) this.runt++;
        else if (dl - VXLAN_HEADER_LEN > room) this.rxTooBig++;
        else {
          good++;
          continue;
        }
        pool[d] = 0; // marks the datagram bad for the loop below
      }
      this.rxDrops += n - good;
      this.decapsulated += good;
      if (good === 0) continue;
      // Whole, the message must fit the output slots (the kernel's UDP GRO stops at 64
      // datagrams, which is the slot count with offloads; a longer one goes one by one).
      if (good === n && n <= this.outSlots) {
        if (out + n > this.outSlots) {
          this.deliverOut(out);
          out = 0;
        }
        const before = out;
        out = groCoalesce(pool, off, len, seg, VXLAN_HEADER_LEN, pool, this.outBase, this.outSlotSize, HEADROOM, this.outSlots, rx.offsets, rx.lengths, out);
        if (out < 0) {
          // Cannot happen (room was made above); count rather than throw, and take the
          // datagrams back out of decapsulated so that every one is counted once.
          this.rxDrops += n;
          this.decapsulated -= n;
          this.badOffload += n;
          out = before;
          continue;
        }
        this.coalesced += n - (out - before);
        if (this.learning) for (let j = before; j < out; j++) this.learn(pool, rx.offsets[j], from, now);
        continue;
      }
      for (let p = 0; p < len; p += seg) {
        const d = off + p;
        if (pool[d] === 0) continue;
        const dl = Math.min(seg, len - p);
        if (out === this.outSlots) {
          this.deliverOut(out);
          out = 0;
        }
        const r = groCoalesce(pool, d, dl, dl, VXLAN_HEADER_LEN, pool, this.outBase, this.outSlotSize, HEADROOM, this.outSlots, rx.offsets, rx.lengths, out);
        if (r <= out) continue;
        if (this.learning) this.learn(pool, rx.offsets[out], from, now);
        out = r;
      }
    }
    if (out !== 0) this.deliverOut(out);
  };

  private deliverOut(count: number): void {
    const rx = this.rx;
    rx.count = count;
    this.deliverBatch(this.poolBuf as Buffer, rx);
  }

  private learn(pool: Buffer, frame: number, from: number, now: number): void {
    const src = readMac(pool, frame + 6);
    // A group or zero source is not a station (IEEE 802.1Q 8.7: never learned).
    if (src === 0 || (pool[frame + 6] & 1) === 1) return;
    const e = this.fdb.get(src);
    if (e !== undefined) {
      if (e.isStatic) return;
      if (e.remoteAddr === from) {
        e.lastSeen = now;
        return;
      }
      // Moved, or aged out and back: re-point it.
      e.remoteAddr = from;
      e.lastSeen = now;
      this.learned++;
      return;
    }
    if (this.learnedCount >= this.maxEntries) {
      this.learnLimit++;
      return;
    }
    this.fdb.set(src, { remoteAddr: from, lastSeen: now, isStatic: false });
    this.learnedCount++;
    this.learned++;
  }

  private readonly onImmediate = (): void => {
    this.immediate = null;
    // Replies made during the pass below go to the other half, for the next turn.
    const r = this.replyCount;
    const half = this.replyHalf;
    if (r === 0 || this.onRx === null) return;
    this.replyHalf = half ^ 1;
    this.replyCount = 0;
    const rx = this.rx;
    const first = half * REPLY_SLOTS;
    for (let i = 0; i < r; i++) {
      rx.offsets[i] = this.replyBase + (first + i) * REPLY_SLOT_SIZE + HEADROOM;
      rx.lengths[i] = this.replyLengths[first + i];
    }
    rx.count = r;
    this.deliverBatch(this.poolBuf as Buffer, rx);
  };

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
    const r = this.replyBase + slot * REPLY_SLOT_SIZE + HEADROOM;
    const sha = arpGetSha(pool, arp);
    pool.fill(0, r - VNET_HDR_LEN, r);
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

  /**
   * Encapsulates q and sends it with one sendmmsg per send socket. A plain frame gets
   * its VXLAN header written in the headroom in front of it (no copy); a TSO
   * super-frame (offloads) is cut by gsoSegment into the staging area, each segment
   * behind its own VXLAN header, and leaves as one UDP GSO message (UDP_SEGMENT): the
   * kernel makes the datagrams. A partial checksum is completed first. One message per
   * remote: a flooded frame is one message to each.
   */
  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const offsets = q.offsets;
    const lengths = q.lengths;
    if (this.rxSock === null) {
      for (let i = 0; i < n; i++) lengths[i] = 0;
      this.txErrors += n;
      this.lastTxError = "port is closed";
      return 0;
    }
    const now = performance.now();
    const maxLen = this.mtu + ETH_HEADER_LEN;
    const suppressing = this.suppress.size !== 0;
    const flood = this.floodU32;
    const vnet = this.offload;
    const frameOk = this.frameOk;
    let stage = this.stageBase;
    let sent = 0;
    let first = 0; // frames [first, i) have messages queued
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      lengths[i] = 0;
      frameOk[i - first] = 0;
      if (len < ETH_HEADER_LEN) {
        this.runt++;
        continue;
      }
      if (suppressing && readU16(pool, off + 12) === ETHERTYPE_ARP && this.suppressArp(pool, off, len)) {
        lengths[i] = len;
        frameOk[i - first] = 1;
        continue;
      }
      const e = this.lookup(readMac(pool, off), now);
      let remotes = 1;
      if (e === undefined) {
        if (flood.length === 0) {
          this.unknownDst++;
          continue;
        }
        remotes = flood.length;
      }
      const h = off - VNET_HDR_LEN;
      const gso = vnet && pool[h + 1] !== 0;
      let msgOff: number;
      let msgLen: number;
      let seg = 0;
      let k = 1;
      if (gso) {
        const prefix = VXLAN_HEADER_LEN;
        k = gsoSegment(pool, off, len, pool, stage, this.stageEnd, prefix, this.segLens);
        if (k === -2) {
          this.sendQueued(pool, lengths, first, i);
          for (let j = first; j < i; j++) if (frameOk[j - first] !== 0) sent++;
          first = i;
          frameOk[0] = 0;
          stage = this.stageBase;
          k = gsoSegment(pool, off, len, pool, stage, this.stageEnd, prefix, this.segLens);
        }
        if (k <= 0) {
          this.badOffload++;
          continue;
        }
        // The segments must fit the overlay MTU (the first is the longest).
        if (this.segLens[0] > maxLen) {
          this.tooBig++;
          continue;
        }
        const stride = prefix + this.segLens[0];
        for (let j = 0; j < k; j++) this.writeVxlanHeader(pool, stage + j * stride);
        msgOff = stage;
        msgLen = (k - 1) * stride + prefix + this.segLens[k - 1];
        seg = k > 1 ? stride : 0;
        stage += (msgLen + 63) & ~63;
        this.segmented++;
      } else {
        if (len > maxLen) {
          this.tooBig++;
          continue;
        }
        if (vnet && (pool[h] & 1) !== 0 && completeChecksum(pool, off, len) < 0) {
          this.badOffload++;
          continue;
        }
        msgOff = off - VXLAN_HEADER_LEN;
        msgLen = len + VXLAN_HEADER_LEN;
        this.writeVxlanHeader(pool, msgOff);
      }
      const sock = vxlanSourcePort(pool, off, len) & (TX_SOCKETS - 1);
      const m = this.tx[sock];
      // A UDP GSO message holds at most 64 KiB of payload (and UDP_MAX_SEGMENTS
      // datagrams): a super-frame's train may take several. Without UDP checksums the
      // kernel refuses UDP GSO: one message per segment then.
      const per = seg === 0 ? 1 : !this.udpChecksum ? 1 : Math.min(GSO_MAX_SEGS, Math.floor(UDP_MAX_PAYLOAD / seg));
      const chunks = seg === 0 ? 1 : Math.ceil(k / per);
      if (m.count + remotes * chunks > MAX_MSGS) {
        this.sendQueued(pool, lengths, first, i);
        for (let j = first; j < i; j++) if (frameOk[j - first] !== 0) sent++;
        first = i;
        frameOk[0] = 0;
      }
      for (let r = 0; r < remotes; r++) {
        const addr = e !== undefined ? e.remoteAddr : flood[r];
        if (seg === 0) {
          m.add(msgOff, msgLen, addr, 0, i, 1);
          continue;
        }
        for (let j = 0; j < k; j += per) {
          const c = Math.min(per, k - j);
          const cOff = msgOff + j * seg;
          const cLen = j + c === k ? msgLen - j * seg : c * seg;
          m.add(cOff, cLen, addr, c > 1 ? seg : 0, i, c);
        }
      }
      if (e === undefined) this.flooded++;
      lengths[i] = len; // provisional: sendQueued zeroes it again if nothing was taken
    }
    this.sendQueued(pool, lengths, first, n);
    for (let j = first; j < n; j++) if (frameOk[j - first] !== 0) sent++;
    return sent;
  }

  /** VXLAN header (RFC 7348 section 5): flags I, VNI. */
  private writeVxlanHeader(pool: Buffer, at: number): void {
    pool[at] = VXLAN_FLAG_I;
    pool[at + 1] = 0;
    pool[at + 2] = 0;
    pool[at + 3] = 0;
    writeU32(pool, at + 4, this.vni << 8);
  }

  /**
   * Sends the messages queued for frames [first, end) and marks in frameOk which
   * frames had at least one message taken; lengths of the others are zeroed.
   */
  private sendQueued(pool: Buffer, lengths: Uint32Array, first: number, end: number): void {
    const frameOk = this.frameOk;
    for (let k = 0; k < TX_SOCKETS; k++) {
      const m = this.tx[k];
      const c = m.count;
      if (c === 0) continue;
      this.txSocks[k].send(pool, m.offsets, m.lengths, m.addrs, this.dstPort, m.segs, c);
      let failed = 0;
      for (let j = 0; j < c; j++) {
        if (m.lengths[j] !== 0) {
          frameOk[m.frame[j] - first] = 1;
          this.encapsulated += m.datagrams[j];
        } else {
          failed++;
        }
      }
      m.count = 0;
      if (failed !== 0) {
        this.txErrors += failed;
        this.lastTxError = txErrorText(this.txSocks[k].stats().lastTxErrno);
      }
    }
    for (let i = first; i < end; i++) if (frameOk[i - first] === 0) lengths[i] = 0;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: 0, mtu: this.mtu, ifname: this.name };
  }

  /** Static entries and learned ones not yet aged (aged ones are removed). `now` in ms, performance.now(). */
  fdbEntries(now: number): VxlanFdbEntry[] {
    const out: VxlanFdbEntry[] = [];
    for (const e of this.fdbWalk(() => now)) if (e !== null) out.push(e);
    return out;
  }

  /**
   * fdbEntries() step by step for a listing that pauses between event-loop turns
   * (null every 256 entries; the clock is read there). The Map iterator is live: an
   * entry present for the whole walk is listed once.
   */
  *fdbWalk(clock: () => number): Generator<VxlanFdbEntry | null, void, void> {
    let now = clock();
    let n = 0;
    for (const [mac, e] of this.fdb) {
      if (++n % 256 === 0) {
        yield null;
        now = clock();
      }
      if (!e.isStatic && now - e.lastSeen >= this.ageingMs) {
        this.fdb.delete(mac);
        this.learnedCount--;
        this.aged++;
        continue;
      }
      yield {
        mac: macToString(mac),
        remote: ipToString(e.remoteAddr),
        static: e.isStatic,
        age: e.isStatic ? null : Math.max(0, Math.round((now - e.lastSeen) / 100) / 10),
      };
    }
  }

  tunnelInfo(): VxlanTunnelInfo {
    return {
      kind: "vxlan",
      vni: this.vni,
      local: this.localAddr,
      dstPort: this.dstPort,
      remotes: this.floodU32.map(ipToString),
      sourcePorts: this.txSocks.map((t) => t.port),
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

/** The messages of one transmit for one send socket (sendmmsg arguments). */
class TxMessages {
  count = 0;
  readonly offsets = new Uint32Array(MAX_MSGS);
  readonly lengths = new Uint32Array(MAX_MSGS);
  readonly addrs = new Uint32Array(MAX_MSGS);
  readonly segs = new Uint32Array(MAX_MSGS);
  /** Index in the TxQueue of the frame the message carries. */
  readonly frame = new Uint32Array(MAX_MSGS);
  /** Datagrams the message becomes (its segments). */
  readonly datagrams = new Uint32Array(MAX_MSGS);

  add(off: number, len: number, addr: number, seg: number, frame: number, datagrams: number): void {
    const c = this.count;
    this.offsets[c] = off;
    this.lengths[c] = len;
    this.addrs[c] = addr;
    this.segs[c] = seg;
    this.frame[c] = frame;
    this.datagrams[c] = datagrams;
    this.count = c + 1;
  }
}
