/**
 * VxlanPort: a VXLAN tunnel endpoint (RFC 7348) as a tapnet port. The node's switch or
 * router sees an Ethernet port; what it transmits is encapsulated in IPv4/UDP/VXLAN
 * toward remote VTEPs over the kernel network of the node's namespace; what it
 * receives is the inner frame of VXLAN packets sent to (localAddr, dstPort). It speaks
 * with a Linux kernel `vxlan` device (or flannel's flannel.1) on the other side.
 *
 * The port is three parts:
 *   this file       options, the sockets' life, the receive path, ARP replies;
 *   vxlan-tx.ts     the transmit path: encapsulation, UDP GSO, the send sockets;
 *   vxlan-fdb.ts    the forwarding table (`fdb`): remote VTEPs, static and learned
 *                   entries, ageing, ARP suppression, `show fdb`; changeable at run
 *                   time (`bridge fdb append/del` as flanneld does);
 * with the header codec and the outer source port hash in src/wire/vxlan.ts and the
 * counters declared in vxlan-counters.ts (`show tunnels`, `show stats`).
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
 * outer source address (RFC 7348 section 4). Nothing a peer sends throws: bad
 * datagrams are dropped and counted. The kernel has already checked the UDP checksum.
 *
 * ARP suppression (the kernel's `proxy`, arp_reduce): a request for an address in the
 * FDB's suppression table is answered here, the answer delivered as a received frame
 * on the next turn of the event loop; the request does not cross the tunnel.
 *
 * MTU. Overlay MTU = underlayMtu - 50 (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet
 * 14); a frame whose payload (length - 14) exceeds it is dropped (tooBig): RFC 7348
 * section 4.3 rules out fragmenting. (A VLAN-tagged inner frame has 4 bytes less.)
 *
 * Pool region: LAND_SLOTS landing slots for recvmmsg (64 KiB + 128 each: a GRO train),
 * the output slots (batchSize of slotSize; with offloads 64 of 64 KiB + 256, room for a
 * coalesced super-frame), 2 x 16 reply slots of HEADROOM + 64 bytes (ARP replies; two
 * halves so that replies made during a pass never overwrite those being delivered),
 * then the transmit staging area for segmented super-frames (512 KiB).
 *
 * The receive socket is bound in open(): a failure (the address is not on the node, the
 * port is taken) does not throw there; it sets `lastError`, leaves `listening` false
 * and rejects ready(), which the node awaits. The sockets' poll handles live on the
 * loop of the thread that opened the port.
 */
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, type RxHandler } from "../core/port.js";
import { ARP_LEN, ARP_OPER_REQUEST, arpCheck, arpGetOper, arpGetSha, arpGetSpa, arpGetTpa, emitArpReply } from "../wire/arp.js";
import { writeU16 } from "../wire/bytes.js";
import { ETH_HEADER_LEN, ETHERTYPE_ARP } from "../wire/ethernet.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { writeMac } from "../wire/mac.js";
import { CHECK_OK } from "../wire/reason.js";
import { vnetClear } from "../wire/vnet.js";
import { VXLAN_HEADER_LEN, VXLAN_OVERHEAD, VXLAN_PORT, vxlanGetVni, vxlanValid } from "../wire/vxlan.js";
import { groCoalesce } from "./offload.js";
import { TunnelPort } from "./tunnel-port.js";
import { landing, listenLanded, openUdp, type UdpHandle, type UdpOptions } from "./udp-native.js";
import { V, VXLAN_COUNTERS, type VxlanCounter } from "./vxlan-counters.js";
import { VxlanFdb, type VxlanFdbOptions } from "./vxlan-fdb.js";
import { STAGE_BYTES, VxlanTx } from "./vxlan-tx.js";

export interface VxlanPortOptions extends VxlanFdbOptions {
  /** VXLAN Network Identifier, 24 bits (1..16777215). */
  vni: number;
  /** UDP destination port: 4789 (IANA) by default; flannel and old kernels use 8472. */
  dstPort?: number;
  /** The node's underlay address: the receive socket binds here; outer source address. */
  localAddr: string;
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
  /** How super-frames leave (vxlan-tx.ts): "scatter-gather", or "copy (why)"; "closed". */
  txPath: string;
}

const REPLY_SLOTS = 16;
/** A reply slot: HEADROOM, then a 42-byte ARP reply. */
const REPLY_SLOT_SIZE = HEADROOM + 64;
/** recvmmsg landing slots; with UDP GRO one message holds up to 64 KiB of datagrams. */
const LAND_SLOTS = 64;
const LAND_SLOT = 65536 + 128;
/** Output slots with offloads: a coalesced super-frame (64 KiB) behind its headroom. */
const OFFLOAD_OUT_SLOT = 65536 + 256;
const OFFLOAD_OUT_SLOTS = 64;

export class VxlanPort extends TunnelPort<VxlanCounter> {
  readonly kind = "vxlan";
  readonly vni: number;
  readonly dstPort: number;
  readonly localAddr: string;
  readonly udpChecksum: boolean;
  readonly underlayMtu: number;
  /** Overlay MTU: underlayMtu - 50. */
  readonly mtu: number;
  readonly recvBufferSize: number;
  /** Remote VTEPs, learned and static entries, ARP suppression. */
  readonly fdb: VxlanFdb;

  /** The latest socket error (bind, receive). */
  lastError = "";
  /** True once the receive socket is bound. */
  listening = false;
  /** SO_RCVBUF as the kernel granted it (after bind; twice the request, as Linux reports). */
  recvBufferGranted = 0;

  private readonly localU32: number;
  private readonly tx: VxlanTx;
  private rxSock: UdpHandle | null = null;
  private poolBuf: Buffer | null = null;
  /** Receive: where recvmmsg reports messages (in the landing slots). */
  private readonly land = landing(LAND_SLOTS, LAND_SLOT);
  /** Output slots (this.rx): where inner frames (and coalesced super-frames) go. */
  private outBase = 0;
  private outSlots = 0;
  private outSlotSize = 0;
  private replyBase = 0;
  /** The turn of the event loop that delivers the ARP replies made so far. */
  private immediate: NodeJS.Immediate | undefined;
  /** Which half of the reply area is filling, and how many replies it holds. */
  private replyHalf = 0;
  private replyCount = 0;
  private readonly replyLengths = new Uint16Array(2 * REPLY_SLOTS);
  private readonly openSocket: (opts: UdpOptions) => UdpHandle;

  /** The outer headers the frame at `off` would leave behind (traces only). */
  override traceTx(buf: Buffer, off: number, _len: number): string {
    const dst = buf.readUIntBE(off, 6);
    const e = this.fdb.lookup(dst, performance.now());
    const to =
      e !== undefined
        ? ipToString(e.remoteAddr)
        : this.fdb.flood.length > 0
          ? `{${this.fdb.flood.map((a) => ipToString(a)).join(", ")}} (flooded: no FDB entry)`
          : "nowhere (no FDB entry, no flood remote)";
    return `VXLAN vni ${this.vni}: outer IPv4 ${this.localAddr} > ${to}, UDP > ${this.dstPort}`;
  }

  constructor(name: string, opts: VxlanPortOptions) {
    super(name, VXLAN_COUNTERS, opts.batchSize, opts.slotSize);
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
    if (this.slotSize <= HEADROOM + ETH_HEADER_LEN || HEADROOM < VXLAN_HEADER_LEN) {
      throw new RangeError(`${where}: slotSize ${this.slotSize} leaves no room for a frame`);
    }
    try {
      this.localU32 = parseIp(opts.localAddr);
    } catch (e) {
      throw new Error(`${where}: localAddr: ${(e as Error).message}`);
    }
    this.fdb = new VxlanFdb(opts, where, this.c);
    this.vni = opts.vni;
    this.dstPort = dstPort;
    this.localAddr = ipToString(this.localU32);
    this.udpChecksum = opts.udpChecksum ?? true;
    this.underlayMtu = underlayMtu;
    this.mtu = underlayMtu - VXLAN_OVERHEAD;
    this.recvBufferSize = opts.recvBufferSize ?? 4 * 1024 * 1024;
    this.openSocket = opts.openSocket ?? openUdp;
    const cfg = { vni: this.vni, dstPort, udpChecksum: this.udpChecksum, mtu: this.mtu, localAddr: this.localU32 };
    this.tx = new VxlanTx(cfg, this.fdb, this, this.txq.capacity, (pool, off, len) => this.suppressArp(pool, off, len));
  }

  get isOpen(): boolean {
    return this.rxSock !== null;
  }

  /** Learn inner source MACs (the FDB's setting). */
  get learning(): boolean {
    return this.fdb.learning;
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
    return this.offload ? Math.max(this.slotSize, OFFLOAD_OUT_SLOT) : this.slotSize;
  }

  private outCount(): number {
    return this.offload ? Math.min(this.batchSize, OFFLOAD_OUT_SLOTS) : this.batchSize;
  }

  override rxRegionBytes(): number {
    return LAND_SLOTS * LAND_SLOT + this.outCount() * this.outSize() + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE + STAGE_BYTES;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.rxSock !== null) throw new Error(`vxlan port '${this.name}' is already open`);
    const base = pool.region(this.rxRegionBytes(), `vxlan port '${this.name}' rx`);
    const buf = pool.buf;
    this.poolBuf = buf;
    this.outBase = base + LAND_SLOTS * LAND_SLOT;
    this.outSlots = this.outCount();
    this.outSlotSize = this.outSize();
    this.replyBase = this.outBase + this.outSlots * this.outSlotSize;
    this.replyHalf = 0;
    this.replyCount = 0;
    this.listening = false;
    this.lastError = "";
    this.onRx = onRx;
    const rx = listenLanded(this.openSocket, this.land, {
      bindAddr: this.localU32,
      port: this.dstPort,
      rcvbuf: this.recvBufferSize,
      gro: true,
      pool: buf,
      rxBase: base,
      onBatch: this.onLanded,
    });
    if (typeof rx === "string") {
      this.lastError = rx;
      return;
    }
    try {
      // Send sockets: the outer source port is theirs; a flow always takes the same one.
      this.tx.open(buf, this.replyBase + 2 * REPLY_SLOTS * REPLY_SLOT_SIZE, this.openSocket, this.land);
    } catch (e) {
      rx.close();
      this.onRx = null;
      throw new Error(`vxlan port '${this.name}': cannot open its send sockets: ${(e as Error).message}`);
    }
    this.rxSock = rx;
    this.recvBufferGranted = rx.rcvbuf;
    this.listening = true;
    rx.start();
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
    clearImmediate(this.immediate);
    this.immediate = undefined;
    this.replyCount = 0;
    if (rx !== null) rx.close();
    this.tx.close();
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
    const c = this.c;
    const fdb = this.fdb;
    const learning = fdb.learning;
    const room = this.outSlotSize - HEADROOM;
    const vni = this.vni;
    const now = performance.now(); // one clock read per wake-up, for learning
    let out = 0;
    for (let i = 0; i < count; i++) {
      const off = land.offsets[i];
      const len = land.lengths[i];
      const seg = land.segs[i] !== 0 && land.segs[i] < len ? land.segs[i] : len;
      const from = land.addrs[i];
      if (len === 0) {
        // An empty datagram: no header at all.
        c[V.badHeader]++;
        this.rxDrops++;
        continue;
      }
      // Check every datagram of the message.
      let good = 0;
      let n = 0;
      for (let p = 0; p < len; p += seg, n++) {
        const dl = Math.min(seg, len - p);
        const d = off + p;
        if (!vxlanValid(pool, d, dl)) c[V.badHeader]++;
        else if (vxlanGetVni(pool, d) !== vni) c[V.vniMismatch]++;
        else if (dl - VXLAN_HEADER_LEN < ETH_HEADER_LEN) c[V.runt]++;
        else if (dl - VXLAN_HEADER_LEN > room) c[V.rxTooBig]++;
        else {
          good++;
          continue;
        }
        pool[d] = 0; // marks the datagram bad for the loop below
      }
      this.rxDrops += n - good;
      c[V.decapsulated] += good;
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
          c[V.decapsulated] -= n;
          c[V.badOffload] += n;
          out = before;
          continue;
        }
        c[V.coalesced] += n - (out - before);
        if (learning) for (let j = before; j < out; j++) fdb.learn(pool, rx.offsets[j], from, now);
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
        if (learning) fdb.learn(pool, rx.offsets[out], from, now);
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

  private readonly onImmediate = (): void => {
    this.immediate = undefined;
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
    const mac = this.fdb.suppressedMac(tpa);
    if (mac === undefined) return false;
    if (this.replyCount === REPLY_SLOTS) return false;
    const slot = this.replyHalf * REPLY_SLOTS + this.replyCount;
    const r = this.replyBase + slot * REPLY_SLOT_SIZE + HEADROOM;
    const sha = arpGetSha(pool, arp);
    vnetClear(pool, r);
    writeMac(pool, r, sha);
    writeMac(pool, r + 6, mac);
    writeU16(pool, r + 12, ETHERTYPE_ARP);
    emitArpReply(pool, r + ETH_HEADER_LEN, mac, tpa, sha, spa);
    this.replyLengths[slot] = ETH_HEADER_LEN + ARP_LEN;
    this.replyCount++;
    this.c[V.arpSuppressed]++;
    if (this.immediate === undefined) this.immediate = setImmediate(this.onImmediate);
    return true;
  }

  /**
   * Encapsulates q and sends it (vxlan-tx.ts): one sendmmsg per send socket, one
   * message per remote (a flooded frame is one message to each).
   */
  protected transmit(pool: Buffer, q: TxQueue): number {
    if (!this.tx.isOpen) return this.refuseClosed(q, V.txErrors);
    return this.tx.send(pool, q, this.offload);
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: 0, mtu: this.mtu, ifname: this.name };
  }

  tunnelInfo(): VxlanTunnelInfo {
    return {
      kind: "vxlan",
      vni: this.vni,
      local: this.localAddr,
      dstPort: this.dstPort,
      remotes: this.fdb.remotes(),
      sourcePorts: this.tx.sourcePorts,
      mtu: this.mtu,
      learning: this.fdb.learning,
      txPath: this.tx.txPath,
    };
  }
}
