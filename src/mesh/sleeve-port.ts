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
 * The routing tables (peer slots, next hops, broadcast children) are typed arrays the
 * agent rewrites when the topology changes (program()); the hot path reads them with
 * no allocation. Peers are slots 0..MAX_PEERS-1, short ids map to slots through a Map
 * of 30-bit integers (small integers in V8).
 */
import type { TxQueue } from "../core/batch.js";
import { counters } from "../core/element.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, type RxHandler } from "../core/port.js";
import { FdbTable } from "../elements/fdb-table.js";
import { errnoText, landing, listenLanded, openUdp, type UdpHandle, type UdpOptions } from "../io/udp-native.js";
import { TunnelPort } from "../io/tunnel-port.js";
import { readU16, readU32, writeU16 } from "../wire/bytes.js";
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import { emitIcmpError, ICMP_DEST_UNREACH, ICMP_UNREACH_FRAG_NEEDED, icmpErrorAllowed, icmpRestFragNeeded } from "../wire/icmp.js";
import { IPV4_DST_ADDR_OFF } from "../wire/ipv4.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import {
  FRAME_PREFIX,
  PROBE_BODY,
  SLEEVE_ACK,
  SLEEVE_FRAMES,
  SLEEVE_HEADER,
  SLEEVE_HEARTBEAT,
  SLEEVE_MAGIC,
  SLEEVE_PROBE,
  SLEEVE_PROBE_ACK,
  SLEEVE_TTL,
  SLEEVE_VERSION,
  UDP_IP_OVERHEAD,
  writeSleeveHeader,
} from "./wire.js";

export const SLEEVE_COUNTERS = counters({
  forward: {
    sent: "frames sent toward a peer (a broadcast frame once)",
    received: "frames received from peers and given to the switch",
  },
  drop: {
    badHeader: "datagrams shorter than the 16-byte header or without the magic byte",
    badVersion: "datagrams of another sleeve version or an unknown type",
    unknownPeer: "datagrams whose sender, origin or destination is no peer we know",
    badFrame: "frames cut short inside a datagram, or shorter than an Ethernet header",
    ttlExpired: "datagrams whose TTL ran out (a routing loop while views disagree)",
    ownOrigin: "datagrams that came back to their origin",
    rxTooBig: "received frames larger than an output slot",
    unreachable: "frames for a peer no usable path reaches",
    noPeers: "broadcast or unknown-unicast frames with no peer to go to",
    runt: "frames to send shorter than an Ethernet header",
    tooBig: "frames to send above the mesh MTU (never fragmented; IPv4 with DF answered with ICMP frag-needed)",
    txErrors: "datagrams the kernel refused (lastTxError has the latest reason)",
  },
  event: {
    datagramsSent: "data datagrams sent (a broadcast datagram once per tree child)",
    datagramsReceived: "data datagrams received for us or broadcast",
    batched: "frames that shared a datagram with an earlier frame",
    relayed: "datagrams of other peers sent on toward their destination",
    broadcastForwarded: "broadcast datagrams sent on to children in the origin's tree",
    learned: "MACs learned or moved to another peer",
    heartbeats: "heartbeats received (and answered)",
    acks: "heartbeat acks received",
    probes: "path-MTU probes received",
    probeAcks: "path-MTU probe acks received",
    fragNeeded: "ICMP fragmentation-needed messages sent to pods for frames above the mesh MTU",
  },
});
export type SleeveCounter = (typeof SLEEVE_COUNTERS.names)[number];
const S = SLEEVE_COUNTERS.id;

/** Most peers in one mesh. */
export const MAX_PEERS = 256;
/** Slot of "broadcast" in the per-destination arrays. */
const BCAST = MAX_PEERS;
const LAND_SLOTS = 64;
const LAND_SLOT = 9216 + 64;
const CTRL_SLOTS = 8;
const CTRL_SLOT = 64;
/** ICMP frag-needed frames waiting for the end of the pass: each HEADROOM, Ethernet and at most 576 bytes of IP. */
const ICMP_SLOTS = 8;
const ICMP_SLOT = HEADROOM + ETH_HEADER_LEN + 576 + 2;

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

/** What the agent hears from the data path (control, not per frame). */
export interface SleeveListener {
  heartbeat(fromShort: number, addr: number, port: number): void;
  ack(fromShort: number, addr: number): void;
  /** A path-MTU probe that arrived as a datagram of `size` bytes (IP and UDP counted). */
  probe(fromShort: number, addr: number, port: number, seq: number, size: number): void;
  probeAck(fromShort: number, seq: number, size: number): void;
}

/** The routing state the agent programs: peers by slot, with their routes. */
export interface SleeveProgram {
  selfShort: number;
  /** By slot (null: a free slot); our own entry is one of them (origin of our frames). */
  peers: Array<{
    short: number;
    /** Underlay address (uint32) of the next hop toward this peer, 0 when unreachable. */
    nextHop: number;
    /** Underlay addresses of our children in this peer's broadcast tree. */
    children: number[];
  } | null>;
  /** Forget learned MACs (a slot changed hands). */
  flushMacs: boolean;
  /** Our children in our own tree (where our broadcasts go first). */
  ownChildren: number[];
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

  /** MAC -> peer slot (the FdbTable's port field). */
  readonly macs = new FdbTable(65536);
  private selfShort = 0;
  private readonly slotOf = new Map<number, number>();
  private readonly shortOf = new Uint32Array(MAX_PEERS);
  private readonly nextHop = new Int32Array(MAX_PEERS + 1);
  private readonly childStart = new Int32Array(MAX_PEERS + 2);
  private childAddrs = new Int32Array(16);
  private ownChildren = new Int32Array(0);

  private sock: UdpHandle | null = null;
  private poolBuf: Buffer | null = null;
  private readonly land = landing(LAND_SLOTS, LAND_SLOT);
  private outBase = 0;
  private outSlots = 0;
  private ctrlBase = 0;
  private stageBase = 0;
  private stageBytes = 0;
  private probeBase = 0;
  private icmpBase = 0;
  private icmpCount = 0;
  private icmpIdent = 0;
  /** Delivers the pending ICMP frames after the pass that made them. */
  private readonly flushIcmp = (): void => this.deliverIcmp();
  /** Control sends (heartbeats, probes, acks) have arrays of their own: they may be sent while a receive batch fills `send`. */
  private readonly ctrl = { offsets: new Uint32Array(1), lengths: new Uint32Array(1), addrs: new Uint32Array(1), segs: new Uint32Array(1) };
  /** The messages of one sendmmsg (transmit, relays, control). */
  private readonly send = { offsets: new Uint32Array(0), lengths: new Uint32Array(0), addrs: new Uint32Array(0), segs: new Uint32Array(0), count: 0 };
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
    const cap = this.txq.capacity;
    // Messages of one send: at most one datagram per frame, each to every tree child;
    // relays: one per landed datagram per child.
    const msgs = cap * 4 + LAND_SLOTS * 8;
    this.send.offsets = new Uint32Array(msgs);
    this.send.lengths = new Uint32Array(msgs);
    this.send.addrs = new Uint32Array(msgs);
    this.send.segs = new Uint32Array(msgs);
    this.destOf = new Int32Array(cap);
    this.dgFirst = new Int32Array(cap);
    this.dgLast = new Int32Array(cap);
    this.nextHop.fill(0);
  }

  override rxRegionBytes(): number {
    this.stageBytes = this.txq.capacity * (this.slotSize + FRAME_PREFIX + SLEEVE_HEADER);
    return LAND_SLOTS * LAND_SLOT + this.batchSize * this.slotSize + CTRL_SLOTS * CTRL_SLOT + this.stageBytes + this.underlayMtu + ICMP_SLOTS * ICMP_SLOT;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.sock !== null) throw new Error(`mesh port '${this.name}' is already open`);
    const base = pool.region(this.rxRegionBytes(), `mesh port '${this.name}'`);
    this.poolBuf = pool.buf;
    this.outBase = base + LAND_SLOTS * LAND_SLOT;
    this.outSlots = this.batchSize;
    this.ctrlBase = this.outBase + this.outSlots * this.slotSize;
    this.stageBase = this.ctrlBase + CTRL_SLOTS * CTRL_SLOT;
    this.probeBase = this.stageBase + this.stageBytes;
    this.icmpBase = this.probeBase + this.underlayMtu;
    // Probes are zeros after their header and body.
    pool.buf.fill(0, this.probeBase, this.probeBase + this.underlayMtu);
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

  /**
   * Rewrites the routing tables (between passes: the agent runs on the same thread).
   * A peer keeps its slot while it is known, so learned MACs stay valid; when a slot
   * was freed (`flushMacs`), what was learned may point at the wrong peer and goes.
   */
  program(p: SleeveProgram): void {
    this.selfShort = p.selfShort;
    this.slotOf.clear();
    const nChildren = p.peers.reduce((n, x) => n + (x === null ? 0 : x.children.length), 0);
    if (this.childAddrs.length < nChildren) this.childAddrs = new Int32Array(nChildren * 2);
    let k = 0;
    this.nextHop.fill(0);
    this.childStart.fill(0);
    for (let slot = 0; slot < Math.min(p.peers.length, MAX_PEERS); slot++) {
      const x = p.peers[slot];
      this.childStart[slot] = k;
      if (x !== null) {
        this.slotOf.set(x.short, slot);
        this.shortOf[slot] = x.short;
        this.nextHop[slot] = x.nextHop | 0;
        for (const a of x.children) this.childAddrs[k++] = a | 0;
      } else this.shortOf[slot] = 0;
      this.childStart[slot + 1] = k;
    }
    this.ownChildren = Int32Array.from(p.ownChildren, (a) => a | 0);
    if (p.flushMacs) this.macs.clear();
  }

  /** Sends a heartbeat (or an ack) to a neighbour: control traffic, from the control slots. */
  sendControl(type: number, addr: string | number, port: number, destShort: number): boolean {
    const pool = this.poolBuf;
    if (this.sock === null || pool === null) return false;
    writeSleeveHeader(pool, this.ctrlBase, type, 1, this.selfShort, this.selfShort, destShort);
    return this.sendOne(this.ctrlBase, SLEEVE_HEADER, addr, port, true);
  }

  /**
   * Sends a path-MTU probe of `size` bytes (IP and UDP headers counted) to a neighbour;
   * false when the kernel refused it (EMSGSIZE: above the MTU it knows for the path),
   * which is the probe's answer, not an error.
   */
  sendProbe(addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const pool = this.poolBuf;
    const len = size - UDP_IP_OVERHEAD;
    if (this.sock === null || pool === null || len < SLEEVE_HEADER + PROBE_BODY || size > this.underlayMtu) return false;
    const off = this.probeBase;
    writeSleeveHeader(pool, off, SLEEVE_PROBE, 1, this.selfShort, this.selfShort, destShort);
    pool.writeUInt32BE(seq >>> 0, off + SLEEVE_HEADER);
    writeU16(pool, off + SLEEVE_HEADER + 4, size);
    return this.sendOne(off, len, addr, port, false);
  }

  /** Acks a probe: its sequence number and the size it arrived with. */
  sendProbeAck(addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const pool = this.poolBuf;
    if (this.sock === null || pool === null) return false;
    const off = this.ctrlBase + CTRL_SLOT;
    writeSleeveHeader(pool, off, SLEEVE_PROBE_ACK, 1, this.selfShort, this.selfShort, destShort);
    pool.writeUInt32BE(seq >>> 0, off + SLEEVE_HEADER);
    writeU16(pool, off + SLEEVE_HEADER + 4, size);
    return this.sendOne(off, SLEEVE_HEADER + PROBE_BODY, addr, port, true);
  }

  private sendOne(off: number, len: number, addr: string | number, port: number, countError: boolean): boolean {
    const sock = this.sock as UdpHandle;
    const s = this.ctrl;
    s.offsets[0] = off;
    s.lengths[0] = len;
    s.addrs[0] = typeof addr === "number" ? addr : parseIp(addr);
    s.segs[0] = 0;
    const ok = sock.send(this.poolBuf as Buffer, s.offsets, s.lengths, s.addrs, port, s.segs, 1) === 1;
    if (!ok && countError) {
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

  /** Adds one message to the send list. */
  private queueSend(off: number, len: number, addr: number): void {
    const s = this.send;
    const n = s.count;
    s.offsets[n] = off;
    s.lengths[n] = len;
    s.addrs[n] = addr;
    s.segs[n] = 0;
    s.count = n + 1;
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
    let dest = BCAST;
    if ((buf[off] & 1) === 0) {
      const slot = this.macs.find(1, readU16(buf, off), readU32(buf, off + 2) | 0);
      if (slot >= 0) dest = this.macs.port(slot);
    }
    const hex = (x: number): string => `0x${(x >>> 0).toString(16)}`;
    const sleeve = `sleeve header origin ${hex(this.selfShort)} dest`;
    if (dest === BCAST) {
      if (this.ownChildren.length === 0) return "mesh: broadcast or unknown MAC, no peer to go to (dropped: noPeers)";
      const to = [...this.ownChildren].map((a) => ipToString(a >>> 0)).join(", ");
      return `mesh: outer IPv4 > {${to}} (our broadcast tree), UDP > ${this.udpPort}, ${sleeve} broadcast`;
    }
    const hop = this.nextHop[dest];
    if (hop === 0) return `mesh: peer ${hex(this.shortOf[dest])} has no usable path (dropped: unreachable)`;
    return `mesh: outer IPv4 > ${ipToString(hop >>> 0)}, UDP > ${this.udpPort}, ${sleeve} ${hex(this.shortOf[dest])}`;
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const c = this.c;
    if (this.sock === null) return this.refuseClosed(q, S.txErrors);
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
      let dest = BCAST;
      if ((pool[off] & 1) === 0) {
        const slot = this.macs.find(1, readU16(pool, off), readU32(pool, off + 2) | 0);
        if (slot >= 0) dest = this.macs.port(slot);
      }
      if (dest === BCAST) {
        if (this.ownChildren.length === 0) {
          c[S.noPeers]++;
          continue;
        }
      } else if (this.nextHop[dest] === 0) {
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
    const self = this.selfShort;
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
          firstMsg = this.closeDatagram(dg, dgLen, dest, self, firstMsg);
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
      this.closeDatagram(dg, dgLen, dest, self, firstMsg);
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

  /**
   * An IPv4 frame with DF set above the mesh MTU: an ICMP frag-needed (RFC 1191 section
   * 4) back to its sender, Ethernet and IP addresses swapped, queued for delivery after
   * the pass. At most ICMP_SLOTS wait at a time: more are dropped (a router rate-limits
   * its ICMP errors too, RFC 1812 section 4.3.2.8).
   */
  private fragNeeded(pool: Buffer, off: number, len: number): void {
    if (this.icmpCount === ICMP_SLOTS || this.onRx === null) return;
    // Unicast IPv4 (0x0800) with DF (the flags byte's 0x40).
    if ((pool[off] & 1) !== 0 || pool[off + 12] !== 0x08 || pool[off + 13] !== 0x00 || (pool[off + ETH_HEADER_LEN + 6] & 0x40) === 0) return;
    const ip = off + ETH_HEADER_LEN;
    if (!icmpErrorAllowed(pool, ip, len - ETH_HEADER_LEN, false)) return;
    const o = this.icmpBase + this.icmpCount * ICMP_SLOT + HEADROOM;
    this.icmpIdent = (this.icmpIdent + 1) & 0xffff;
    const n = emitIcmpError(
      pool,
      o + ETH_HEADER_LEN,
      pool,
      ip,
      len - ETH_HEADER_LEN,
      ICMP_DEST_UNREACH,
      ICMP_UNREACH_FRAG_NEEDED,
      icmpRestFragNeeded(this.mtu),
      readU32(pool, ip + IPV4_DST_ADDR_OFF),
      this.icmpIdent,
    );
    if (n < 0) return;
    pool.copy(pool, o, off + 6, off + 12); // to the frame's source
    pool.copy(pool, o + 6, off, off + 6); // from its destination
    pool[o + 12] = 0x08;
    pool[o + 13] = 0x00;
    if (this.icmpCount++ === 0) setImmediate(this.flushIcmp);
    this.c[S.fragNeeded]++;
  }

  private deliverIcmp(): void {
    const n = this.icmpCount;
    this.icmpCount = 0;
    if (n === 0 || this.sock === null) return;
    const rx = this.rx;
    for (let i = 0; i < n; i++) {
      rx.offsets[i] = this.icmpBase + i * ICMP_SLOT + HEADROOM;
      rx.lengths[i] = readU16(this.poolBuf as Buffer, rx.offsets[i] + ETH_HEADER_LEN + 2) + ETH_HEADER_LEN;
    }
    this.deliverOut(n);
  }

  /** Writes a datagram's header and queues it to its next hop (or tree children); returns the next message index. */
  private closeDatagram(dg: number, len: number, dest: number, self: number, _first: number): number {
    const pool = this.poolBuf as Buffer;
    if (len === SLEEVE_HEADER) return this.send.count;
    if (dest === BCAST) {
      writeSleeveHeader(pool, dg, SLEEVE_FRAMES, SLEEVE_TTL, self, self, 0);
      const ch = this.ownChildren;
      for (let k = 0; k < ch.length; k++) this.queueSend(dg, len, ch[k] >>> 0);
    } else {
      writeSleeveHeader(pool, dg, SLEEVE_FRAMES, SLEEVE_TTL, self, self, this.shortOf[dest]);
      this.queueSend(dg, len, this.nextHop[dest] >>> 0);
    }
    return this.send.count;
  }

  /** One recvmmsg's worth of datagrams. */
  private readonly onLanded = (count: number): void => {
    if (this.sock === null) return;
    const pool = this.poolBuf as Buffer;
    const land = this.land;
    const c = this.c;
    const slotOf = this.slotOf;
    const self = this.selfShort;
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
        if (dest !== self) {
          c[S.unknownPeer]++;
          continue;
        }
        if (type === SLEEVE_HEARTBEAT) {
          c[S.heartbeats]++;
          this.listener?.heartbeat(sender, land.addrs[i], land.ports[i]);
        } else if (type === SLEEVE_ACK) {
          c[S.acks]++;
          this.listener?.ack(sender, land.addrs[i]);
        } else if (len < SLEEVE_HEADER + PROBE_BODY) {
          c[S.badHeader]++;
          this.rxDrops++;
        } else if (type === SLEEVE_PROBE) {
          c[S.probes]++;
          this.listener?.probe(sender, land.addrs[i], land.ports[i], readU32(pool, off + SLEEVE_HEADER), len + UDP_IP_OVERHEAD);
        } else {
          c[S.probeAcks]++;
          this.listener?.probeAck(sender, readU32(pool, off + SLEEVE_HEADER), readU16(pool, off + SLEEVE_HEADER + 4));
        }
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
        pool[off + 4] = self >>> 24;
        pool[off + 5] = self >>> 16;
        pool[off + 6] = self >>> 8;
        pool[off + 7] = self;
        if (dest !== 0) {
          const hop = this.nextHop[slotOf.get(dest) as number];
          if (hop === 0) {
            c[S.unreachable]++;
            this.rxDrops++;
            continue;
          }
          this.queueSend(off, len, hop >>> 0);
          c[S.relayed]++;
          continue;
        }
        for (let k = this.childStart[os]; k < this.childStart[os + 1]; k++) {
          this.queueSend(off, len, this.childAddrs[k] >>> 0);
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
        if ((pool[f + 6] & 1) === 0) this.learn(pool, f + 6, os);
      }
    }
    if (out !== 0) this.deliverOut(out);
    const relays = this.send.count;
    if (relays !== 0) c[S.datagramsSent] += this.flushSend();
  };

  private learn(pool: Buffer, mac: number, slot: number): void {
    const macs = this.macs;
    const hi = readU16(pool, mac);
    const lo = readU32(pool, mac + 2) | 0;
    const now = performance.now();
    const e = macs.find(1, hi, lo);
    if (e >= 0) {
      if (macs.port(e) !== slot) {
        macs.setPort(e, slot);
        this.c[S.learned]++;
      }
      macs.touch(e, now);
      return;
    }
    if (macs.insert(1, hi, lo, slot, now, false) >= 0) this.c[S.learned]++;
  }

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
