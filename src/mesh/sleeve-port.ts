/**
 * SleevePort: the mesh's data path ("sleeve", as Weave calls its userspace mode) as a
 * tapnet port on the node's switch. The switch sees one port behind which every pod
 * of every other node lives; frames it sends there leave in UDP to the peer that owns
 * the destination MAC, frames that arrive go into the switch.
 *
 * Transmit (one call per pass, the switch's queue for this port):
 *   - the destination MAC is looked up in the mesh's MAC table (an FdbTable: MAC ->
 *     the peer it lives behind, learned from received frames); a known MAC goes to that
 *     peer; broadcast, multicast and unknown unicast go to every peer, along our own
 *     broadcast tree (Weave floods the same way);
 *   - a frame to peer P leaves toward the next hop to P (the peer itself when the
 *     connection is usable, else a relay, from the gossiped topology), in a datagram
 *     whose header names us as origin and P as destination; frames for the same
 *     destination in one pass share datagrams, up to the datagram size the underlay
 *     carries without fragmenting (underlayMtu - 28);
 *   - all datagrams of the pass leave in one sendmmsg.
 * A frame with no route (the peer is unreachable) or above the mesh MTU is dropped and
 * counted. The mesh MTU is the path MTU the agent sets (setPathMtu(): the smallest PMTU
 * of the mesh's connections, found by pmtu.ts) minus 28 (IP, UDP) - 16 - 2 - 14, at
 * first the configured underlay MTU's; datagrams leave with DF set and are never
 * fragmented (IP_PMTUDISC_DO). An IPv4 frame above it with DF set is answered as a
 * router would (RFC 1191 section 4): an ICMP "fragmentation needed" with the mesh MTU,
 * from the frame's destination (Weave's sleeve does the same; the mesh has no address
 * of its own), put into the switch after the pass, so the pod lowers its path MTU.
 * Offloads: the port takes no virtio-net headers, so super-frames reach it already
 * segmented (the graph builder's software offload).
 *
 * Receive (one recvmmsg per wake-up into landing slots of the pool): every datagram's
 * header is checked (length, magic, version, a sender that is a known peer, known
 * origin and destination peers); then by destination:
 *   us         its frames are copied into the output slots (HEADROOM in, as every port
 *              receives), their source MACs learned against the origin, and handed
 *              to the switch as one batch;
 *   broadcast  the same, and the datagram is sent on, unchanged but its TTL, to our
 *              children in the origin's broadcast tree;
 *   another    relayed: sent on to our next hop toward it, TTL taken one.
 * Heartbeats and path-MTU probes are reported to the agent, which answers those of its
 * connections (an ack to the sender's address and port); acks are reported to the agent. Nothing a peer sends throws: what fails
 * a check is dropped at a named counter.
 *
 * The routing tables (peer slots, next hops, broadcast children, the MAC table) are in
 * sleeve-routes.ts, which the agent reprograms when the topology changes (program());
 * control datagrams in sleeve-control.ts, the frag-needed answer in
 * sleeve-frag-needed.ts, the counters in sleeve-counters.ts.
 */
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, type RxHandler } from "../core/port.js";
import { SendList, TunnelPort } from "../io/tunnel-port.js";
import { errnoText, landing, listenLanded, openUdp, type UdpHandle, type UdpOptions } from "../io/udp-native.js";
import { readU16, readU32, writeU16, writeU32 } from "../wire/bytes.js";
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import { ipToString } from "../wire/ipv4addr.js";
import { receiveControl, SleeveControl, type SleeveListener } from "./sleeve-control.js";
import { SLEEVE_COUNTERS, type SleeveCounter } from "./sleeve-counters.js";
import { FRAG_NEEDED_REGION, FragNeededAnswers } from "./sleeve-frag-needed.js";
import { BCAST, SleeveRoutes, type SleeveProgram } from "./sleeve-routes.js";
import {
  FRAME_PREFIX,
  SLEEVE_FRAMES,
  SLEEVE_HEADER,
  SLEEVE_MAGIC,
  SLEEVE_PROBE_ACK,
  SLEEVE_TTL,
  SLEEVE_VERSION,
  UDP_IP_OVERHEAD,
  writeSleeveHeader,
} from "./wire.js";

export type { SleeveListener } from "./sleeve-control.js";
export { SLEEVE_COUNTERS, type SleeveCounter } from "./sleeve-counters.js";
export { MAX_PEERS, type SleeveProgram } from "./sleeve-routes.js";

const S = SLEEVE_COUNTERS.id;
const LAND_SLOTS = 64;
const LAND_SLOT = 9216 + 64;

export interface SleeveOptions {
  /** UDP port of the mesh (the same on every peer). */
  port: number;
  /** Underlay MTU: datagrams are at most underlayMtu - 28 bytes. */
  underlayMtu?: number;
  batchSize?: number;
  slotSize?: number;
  /** Opens the UDP socket (default: the addon's; tests may pass a simulated one). */
  openSocket?: (opts: UdpOptions) => UdpHandle;
}

export class SleevePort extends TunnelPort<SleeveCounter> {
  readonly kind = "mesh";
  readonly udpPort: number;
  /** The configured underlay MTU: the largest path MTU the mesh uses. */
  readonly underlayMtu: number;
  /** The path MTU in force (setPathMtu), at most underlayMtu. */
  pathMtu: number;
  /** Largest datagram: pathMtu - 28. */
  maxDatagram: number;
  /** Mesh MTU (an Ethernet payload): what fits one frame in one datagram. */
  mtu: number;
  listening = false;
  lastError = "";
  listener: SleeveListener | null = null;

  /** Peer slots, next hops, broadcast trees and the MAC table. */
  private readonly routes = new SleeveRoutes();
  /** MAC -> peer slot (the FdbTable's port field). */
  readonly macs = this.routes.macs;

  private sock: UdpHandle | null = null;
  private poolBuf: Buffer | null = null;
  private readonly land = landing(LAND_SLOTS, LAND_SLOT);
  private outBase = 0;
  private outSlots = 0;
  private stageBase = 0;
  private stageBytes = 0;
  private readonly control: SleeveControl;
  private readonly icmp = new FragNeededAnswers();
  /** Delivers the pending ICMP frames after the pass that made them. */
  private readonly flushIcmp = (): void => this.deliverIcmp();
  /** The messages of one sendmmsg (transmit, relays). */
  private readonly send: SendList;
  /** Transmit: each queued frame's destination slot (BCAST for the tree), -1 when dropped. */
  private readonly destOf: Int32Array;
  /** Transmit: the datagram (send list index range) each frame went into. */
  private readonly dgFirst: Int32Array;
  private readonly dgLast: Int32Array;
  private readonly openSocket: (opts: UdpOptions) => UdpHandle;

  constructor(name: string, opts: SleeveOptions) {
    super(name, SLEEVE_COUNTERS, opts.batchSize, opts.slotSize);
    const where = `mesh port '${name}'`;
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new RangeError(`${where}: port ${String(opts.port)} is not 1..65535`);
    const ul = opts.underlayMtu ?? 1500;
    if (!Number.isInteger(ul) || ul < 576 || ul > 9216) throw new RangeError(`${where}: underlayMtu ${String(ul)} is not 576..9216`);
    this.udpPort = opts.port;
    this.underlayMtu = ul;
    this.pathMtu = ul;
    this.maxDatagram = ul - UDP_IP_OVERHEAD;
    this.mtu = this.maxDatagram - SLEEVE_HEADER - FRAME_PREFIX - ETH_HEADER_LEN;
    if (this.mtu + ETH_HEADER_LEN + HEADROOM > this.slotSize) throw new RangeError(`${where}: slotSize ${this.slotSize} is too small for MTU ${this.mtu}`);
    this.openSocket = opts.openSocket ?? openUdp;
    this.control = new SleeveControl(ul);
    const cap = this.txq.capacity;
    // Messages of one send: at most one datagram per frame, each to every tree child;
    // relays: one per landed datagram per child.
    this.send = new SendList(cap * 4 + LAND_SLOTS * 8);
    this.destOf = new Int32Array(cap);
    this.dgFirst = new Int32Array(cap);
    this.dgLast = new Int32Array(cap);
  }

  override rxRegionBytes(): number {
    this.stageBytes = this.txq.capacity * (this.slotSize + FRAME_PREFIX + SLEEVE_HEADER);
    return LAND_SLOTS * LAND_SLOT + this.batchSize * this.slotSize + this.control.regionBytes() + this.stageBytes + FRAG_NEEDED_REGION;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.sock !== null) throw new Error(`mesh port '${this.name}' is already open`);
    const base = pool.region(this.rxRegionBytes(), `mesh port '${this.name}'`);
    this.poolBuf = pool.buf;
    this.outBase = base + LAND_SLOTS * LAND_SLOT;
    this.outSlots = this.batchSize;
    const ctrlBase = this.outBase + this.outSlots * this.slotSize;
    this.control.place(pool.buf, ctrlBase);
    this.stageBase = ctrlBase + this.control.regionBytes();
    this.icmp.base = this.stageBase + this.stageBytes;
    this.onRx = onRx;
    const sock = listenLanded(this.openSocket, this.land, {
      bindAddr: 0,
      port: this.udpPort,
      rcvbuf: 4 * 1024 * 1024,
      // DF set, never fragmented here: what the path-MTU probe measures is what data gets.
      df: true,
      pool: pool.buf,
      rxBase: base,
      onBatch: this.onLanded,
    });
    if (typeof sock === "string") {
      this.lastError = sock;
      return;
    }
    this.sock = sock;
    this.listening = true;
    this.sock.start();
  }

  ready(): Promise<void> {
    if (this.listening) return Promise.resolve();
    return Promise.reject(new Error(`mesh port '${this.name}': cannot listen on UDP ${this.udpPort}: ${this.lastError || "closed"}`));
  }

  close(): void {
    const s = this.sock;
    this.sock = null;
    this.onRx = null;
    this.listening = false;
    if (s !== null) s.close();
  }

  /** Rewrites the routing tables (between passes: the agent runs on the same thread). */
  program(p: SleeveProgram): void {
    this.routes.program(p);
  }

  /** Sends a heartbeat (or an ack) to a neighbour: control traffic, from the control slots. */
  sendControl(type: number, addr: string | number, port: number, destShort: number): boolean {
    const sock = this.sock;
    const pool = this.poolBuf;
    if (sock === null || pool === null) return false;
    return this.sent(sock, this.control.sendHeader(sock, pool, type, this.routes.selfShort, addr, port, destShort));
  }

  /**
   * Sends a path-MTU probe of `size` bytes (IP and UDP headers counted) to a neighbour;
   * false when the kernel refused it (EMSGSIZE: above the MTU it knows for the path),
   * which is the probe's answer, not an error.
   */
  sendProbe(addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const sock = this.sock;
    const pool = this.poolBuf;
    if (sock === null || pool === null) return false;
    return this.control.sendProbe(sock, pool, this.routes.selfShort, addr, port, destShort, seq, size);
  }

  /** Acks a probe: its sequence number and the size it arrived with. */
  sendProbeAck(addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const sock = this.sock;
    const pool = this.poolBuf;
    if (sock === null || pool === null) return false;
    return this.sent(sock, this.control.sendProbeAck(sock, pool, this.routes.selfShort, addr, port, destShort, seq, size));
  }

  /** A control send's result; a refusal is counted at txErrors with its reason. */
  private sent(sock: UdpHandle, ok: boolean): boolean {
    if (!ok) {
      this.c[S.txErrors]++;
      this.lastTxError = errnoText(sock.stats().lastTxErrno ?? 0);
    }
    return ok;
  }

  /**
   * The path MTU the mesh uses (the smallest of its connections'): the largest datagram
   * becomes pathMtu - 28 and the mesh MTU follows. Clamped to 576..underlayMtu.
   */
  setPathMtu(pathMtu: number): void {
    const p = Math.max(576, Math.min(this.underlayMtu, Math.floor(pathMtu)));
    this.pathMtu = p;
    this.maxDatagram = p - UDP_IP_OVERHEAD;
    this.mtu = this.maxDatagram - SLEEVE_HEADER - FRAME_PREFIX - ETH_HEADER_LEN;
  }

  /** Sends the send list (one sendmmsg); returns how many messages the kernel took. */
  private flushSend(): number {
    const s = this.send;
    const n = s.count;
    s.count = 0;
    const sock = this.sock;
    if (n === 0 || sock === null) return 0;
    const sent = sock.send(this.poolBuf as Buffer, s.offsets, s.lengths, s.addrs, this.udpPort, s.segs, n);
    if (sent !== n) {
      this.c[S.txErrors] += n - sent;
      this.lastTxError = errnoText(sock.stats().lastTxErrno ?? 0);
    }
    return sent;
  }

  /**
   * The datagram the frame at `off` would leave in (traces only), as transmit() chooses
   * it: the peer the destination MAC lives behind and the next hop toward it, or our
   * broadcast tree's children; the sleeve header names us as origin and the peer as
   * destination (short ids: a hash of the peer's name, src/mesh/wire.ts shortId).
   */
  override traceTx(buf: Buffer, off: number, len: number): string {
    if (len < ETH_HEADER_LEN) return "mesh: a runt (dropped: runt)";
    if (len > this.mtu + ETH_HEADER_LEN) return `mesh: above the mesh MTU ${this.mtu} (dropped: tooBig)`;
    const r = this.routes;
    const dest = r.destination(buf, off);
    const hex = (x: number): string => `0x${(x >>> 0).toString(16)}`;
    const sleeve = `sleeve header origin ${hex(r.selfShort)} dest`;
    if (dest === BCAST) {
      if (r.ownChildren.length === 0) return "mesh: broadcast or unknown MAC, no peer to go to (dropped: noPeers)";
      const to = [...r.ownChildren].map((a) => ipToString(a >>> 0)).join(", ");
      return `mesh: outer IPv4 > {${to}} (our broadcast tree), UDP > ${this.udpPort}, ${sleeve} broadcast`;
    }
    const hop = r.nextHop[dest];
    if (hop === 0) return `mesh: peer ${hex(r.shortOf[dest])} has no usable path (dropped: unreachable)`;
    return `mesh: outer IPv4 > ${ipToString(hop >>> 0)}, UDP > ${this.udpPort}, ${sleeve} ${hex(r.shortOf[dest])}`;
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const c = this.c;
    if (this.sock === null) return this.refuseClosed(q, S.txErrors);
    const r = this.routes;
    const destOf = this.destOf;
    const maxFrame = this.mtu + ETH_HEADER_LEN;
    // 1. Where each frame goes.
    for (let i = 0; i < n; i++) {
      const off = q.offsets[i];
      const len = q.lengths[i];
      destOf[i] = -1;
      if (len < ETH_HEADER_LEN) {
        c[S.runt]++;
        continue;
      }
      if (len > maxFrame) {
        c[S.tooBig]++;
        this.fragNeeded(pool, off, len);
        continue;
      }
      const dest = r.destination(pool, off);
      if (dest === BCAST) {
        if (r.ownChildren.length === 0) {
          c[S.noPeers]++;
          continue;
        }
      } else if (r.nextHop[dest] === 0) {
        c[S.unreachable]++;
        continue;
      }
      destOf[i] = dest;
    }
    // 2. Datagrams: frames for one destination packed back to back, in queue order.
    const s = this.send;
    s.count = 0;
    const stageEnd = this.stageBase + this.stageBytes;
    let w = this.stageBase;
    const self = r.selfShort;
    for (let i = 0; i < n; i++) {
      const dest = destOf[i];
      if (dest < 0 || this.dgFirst[i] === -2) continue;
      // Open a datagram for dest and fill it with this and the following frames for dest.
      let dg = w;
      let dgLen = SLEEVE_HEADER;
      let firstMsg = s.count;
      let inDg = 0;
      for (let j = i; j < n; j++) {
        if (destOf[j] !== dest || (j > i && this.dgFirst[j] === -2)) continue;
        const len = q.lengths[j];
        if (dgLen + FRAME_PREFIX + len > this.maxDatagram || dg + dgLen + FRAME_PREFIX + len > stageEnd) {
          firstMsg = this.closeDatagram(dg, dgLen, dest, self);
          w = dg + dgLen;
          if (w + SLEEVE_HEADER + FRAME_PREFIX + len > stageEnd) break;
          dg = w;
          dgLen = SLEEVE_HEADER;
          inDg = 0;
        }
        writeU16(pool, dg + dgLen, len);
        pool.copyWithin(dg + dgLen + FRAME_PREFIX, q.offsets[j], q.offsets[j] + len);
        dgLen += FRAME_PREFIX + len;
        if (inDg > 0) c[S.batched]++;
        inDg++;
        this.dgFirst[j] = -2; // packed
        this.dgLast[j] = firstMsg;
      }
      this.closeDatagram(dg, dgLen, dest, self);
      w = dg + dgLen;
    }
    // 3. One sendmmsg; a frame is sent when the message of its datagram (one of them,
    //    for a broadcast) was taken.
    const msgs = s.count;
    const sent = this.flushSend();
    let ok = 0;
    for (let i = 0; i < n; i++) {
      const packed = this.dgFirst[i] === -2;
      this.dgFirst[i] = 0;
      if (!packed) {
        q.lengths[i] = 0;
        continue;
      }
      const m = this.dgLast[i];
      // Refused messages have length 0 (the native contract).
      let taken = false;
      for (let k = m; k < msgs && s.offsets[k] === s.offsets[m]; k++) {
        if (s.lengths[k] !== 0) {
          taken = true;
          break;
        }
      }
      if (taken) {
        ok++;
        c[S.sent]++;
      } else q.lengths[i] = 0;
    }
    c[S.datagramsSent] += sent;
    return ok;
  }

  /** A frame above the mesh MTU: answered (sleeve-frag-needed.ts) after the pass when it is IPv4 with DF set. */
  private fragNeeded(pool: Buffer, off: number, len: number): void {
    if (this.onRx === null || !this.icmp.answer(pool, off, len, this.mtu)) return;
    if (this.icmp.count === 1) setImmediate(this.flushIcmp);
    this.c[S.fragNeeded]++;
  }

  private deliverIcmp(): void {
    if (this.icmp.count === 0 || this.sock === null) {
      this.icmp.count = 0;
      return;
    }
    this.deliverOut(this.icmp.take(this.poolBuf as Buffer, this.rx));
  }

  /** Writes a datagram's header and queues it to its next hop (or tree children); returns the next message index. */
  private closeDatagram(dg: number, len: number, dest: number, self: number): number {
    const pool = this.poolBuf as Buffer;
    const r = this.routes;
    if (len === SLEEVE_HEADER) return this.send.count;
    if (dest === BCAST) {
      writeSleeveHeader(pool, dg, SLEEVE_FRAMES, SLEEVE_TTL, self, self, 0);
      const ch = r.ownChildren;
      for (let k = 0; k < ch.length; k++) this.send.add(dg, len, ch[k] >>> 0, 0, 0, 0);
    } else {
      writeSleeveHeader(pool, dg, SLEEVE_FRAMES, SLEEVE_TTL, self, self, r.shortOf[dest]);
      this.send.add(dg, len, r.nextHop[dest] >>> 0, 0, 0, 0);
    }
    return this.send.count;
  }

  /** One recvmmsg's worth of datagrams. */
  private readonly onLanded = (count: number): void => {
    if (this.sock === null) return;
    const pool = this.poolBuf as Buffer;
    const land = this.land;
    const c = this.c;
    const r = this.routes;
    const slotOf = r.slotOf;
    const self = r.selfShort;
    const rx = this.rx;
    let out = 0;
    this.send.count = 0;
    for (let i = 0; i < count; i++) {
      const off = land.offsets[i];
      const len = land.lengths[i];
      if (len < SLEEVE_HEADER || pool[off] !== SLEEVE_MAGIC) {
        c[S.badHeader]++;
        this.rxDrops++;
        continue;
      }
      const type = pool[off + 2];
      if (pool[off + 1] !== SLEEVE_VERSION || type < SLEEVE_FRAMES || type > SLEEVE_PROBE_ACK) {
        c[S.badVersion]++;
        this.rxDrops++;
        continue;
      }
      const sender = readU32(pool, off + 4);
      const origin = readU32(pool, off + 8);
      const dest = readU32(pool, off + 12);
      if (type !== SLEEVE_FRAMES) {
        if (dest !== self) c[S.unknownPeer]++;
        else if (!receiveControl(this.listener, c, pool, off, len, type, sender, land.addrs[i], land.ports[i])) this.rxDrops++;
        continue;
      }
      const os = slotOf.get(origin);
      if (slotOf.get(sender) === undefined || os === undefined || (dest !== 0 && dest !== self && slotOf.get(dest) === undefined)) {
        c[S.unknownPeer]++;
        this.rxDrops++;
        continue;
      }
      if (origin === self) {
        c[S.ownOrigin]++;
        this.rxDrops++;
        continue;
      }
      if (dest !== self) {
        const ttl = pool[off + 3];
        if (ttl <= 1) {
          c[S.ttlExpired]++;
          this.rxDrops++;
          continue;
        }
        pool[off + 3] = ttl - 1;
        writeU32(pool, off + 4, self); // we are the sender of the hop
        if (dest !== 0) {
          const hop = r.nextHop[slotOf.get(dest) as number];
          if (hop === 0) {
            c[S.unreachable]++;
            this.rxDrops++;
            continue;
          }
          this.send.add(off, len, hop >>> 0, 0, 0, 0);
          c[S.relayed]++;
          continue;
        }
        for (let k = r.childStart[os]; k < r.childStart[os + 1]; k++) {
          this.send.add(off, len, r.childAddrs[k] >>> 0, 0, 0, 0);
          c[S.broadcastForwarded]++;
        }
      }
      c[S.datagramsReceived]++;
      // Our frames: into the output slots, their sources learned against the origin.
      const end = off + len;
      let p = off + SLEEVE_HEADER;
      while (p < end) {
        if (p + FRAME_PREFIX > end) {
          c[S.badFrame]++;
          this.rxDrops++;
          break;
        }
        const fl = readU16(pool, p);
        const f = p + FRAME_PREFIX;
        if (fl < ETH_HEADER_LEN || f + fl > end) {
          c[S.badFrame]++;
          this.rxDrops++;
          break;
        }
        p = f + fl;
        if (fl + HEADROOM > this.slotSize) {
          c[S.rxTooBig]++;
          this.rxDrops++;
          continue;
        }
        if (out === this.outSlots) {
          this.deliverOut(out);
          out = 0;
        }
        const o = this.outBase + out * this.slotSize + HEADROOM;
        pool.copyWithin(o, f, f + fl);
        rx.offsets[out] = o;
        rx.lengths[out] = fl;
        out++;
        c[S.received]++;
        if ((pool[f + 6] & 1) === 0 && r.learn(pool, f + 6, os)) c[S.learned]++;
      }
    }
    if (out !== 0) this.deliverOut(out);
    const relays = this.send.count;
    if (relays !== 0) c[S.datagramsSent] += this.flushSend();
  };

  private deliverOut(count: number): void {
    const rx = this.rx;
    rx.count = count;
    this.deliverBatch(this.poolBuf as Buffer, rx);
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: 0, mtu: this.mtu, ifname: this.name };
  }

  tunnelInfo(): object {
    return { kind: "mesh", local: "0.0.0.0", dstPort: this.udpPort, mtu: this.mtu, pathMtu: this.pathMtu, macs: this.macs.entries().length };
  }
}
