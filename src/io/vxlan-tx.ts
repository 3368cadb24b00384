/**
 * VxlanTx: the transmit side of a VXLAN port (RFC 7348): encapsulation, UDP GSO and
 * the send sockets.
 *
 *   in   the port's TxQueue at flush (frames with a virtio-net header in front when
 *        the node has offloads);
 *   out  one sendmmsg per send socket per flush (more when a flush has more than
 *        MAX_MSGS messages for one socket or the staging area fills).
 *
 * For each queued frame: ARP suppression first (the port's hook answers a request for
 * a suppressed address locally: the frame counts as sent, nothing crosses the
 * tunnel); else the destination MAC is looked up in the FDB (vxlan-fdb.ts) for one
 * remote, else the frame is replicated to every flood remote (head-end replication),
 * else it is dropped (unknownDst). A plain frame gets its VXLAN header in the headroom
 * in front of it and is sent from where it is; a partial checksum (offloads) is
 * completed first. A TSO super-frame is cut once into segments (C: per segment IPv4
 * ident, sequence number, flags and a full TCP checksum), each behind its own VXLAN
 * header, and leaves as UDP GSO messages (UDP_SEGMENT): the kernel makes the datagrams
 * (and carries them through veths as one GSO packet). Scatter-gather (the default):
 * gsoHeaders writes only each segment's VXLAN, Ethernet, IP and TCP headers into the
 * staging area and a message is a gather list (sendv: sendmmsg with iovecs) of
 * header, payload, header, payload… with the payloads read where the TAP put them, so
 * the payload is copied once, by the kernel. The copying path (gsoSegment copies the
 * whole segments into the staging area at a fixed stride, then send) is kept for a
 * socket without sendv (simulated sockets in tests) and TAPNET_VXLAN_SG=0 (A/B
 * measurement); the wire bytes are the same (test/io/vxlan-sg.test.ts). `txPath` says
 * which path is in use and why. The kernel builds the outer IPv4 and UDP headers and the
 * UDP checksum; udpChecksum: false sets SO_NO_CHECK, under which the kernel refuses
 * UDP GSO, so segments then go as one message each.
 *
 * Outer source ports: TX_SOCKETS send sockets bound to ports in 49152..65535, picked
 * by a hash of the inner flow (vxlanSourcePort, RFC 7348 section 5), so a flow keeps
 * one port and its order. Outer DF is clear, as the kernel's vxlan sends by default
 * (IP_PMTUDISC_DONT); a frame above the overlay MTU is dropped (tooBig) since RFC 7348
 * section 4.3 rules out fragmenting. A refused message (ENETUNREACH, EMSGSIZE, a full
 * send buffer) is counted in txErrors, never thrown. A frame counts as sent when at
 * least one of its replicas was.
 *
 * Counters (the port's VXLAN counters): encapsulated, flooded, runt, tooBig,
 * txErrors, unknownDst, segmented, badOffload.
 */
import type { TxQueue } from "../core/batch.js";
import { ETH_HEADER_LEN, ETHERTYPE_ARP } from "../wire/ethernet.js";
import { readU16 } from "../wire/bytes.js";
import { readMac } from "../wire/mac.js";
import { vnetIsGso, vnetNeedsCsum } from "../wire/vnet.js";
import { VXLAN_HEADER_LEN, VXLAN_SRC_PORT_MIN, vxlanSourcePort, vxlanWriteHeader } from "../wire/vxlan.js";
import { completeChecksum, gsoHeaders, gsoSegment, OFFLOAD_ERR_NO_ROOM } from "./offload.js";
import { SendList } from "./tunnel-port.js";
import { errnoText, UDP_MAX_PAYLOAD, type UdpHandle, type UdpOptions } from "./udp-native.js";
import { V } from "./vxlan-counters.js";
import type { VxlanFdb } from "./vxlan-fdb.js";

/** Staging for segmented super-frames between two sendmmsg calls. */
export const STAGE_BYTES = 512 * 1024;
/** Most segments of one super-frame; most messages per send socket per sendmmsg. */
const MAX_SEGS = 1024;
const MAX_MSGS = 1024;
/** Most datagrams per UDP GSO message (UDP_MAX_SEGMENTS on older kernels). */
const GSO_MAX_SEGS = 64;
/** Send sockets (outer source ports); a power of two. */
const TX_SOCKETS = 4;
/** Gather entries of one transmit (scatter-gather path): two per segment, one per plain frame. */
const IOV_CAP = 16384;

/** The arrays a UDP socket reports received datagrams in (a send socket receives none). */
export type UdpArrays = Pick<UdpOptions, "offsets" | "lengths" | "addrs" | "ports" | "segs">;

export interface VxlanTxConfig {
  vni: number;
  dstPort: number;
  /** Outer UDP checksums (false: SO_NO_CHECK, and no UDP GSO). */
  udpChecksum: boolean;
  /** Overlay MTU: the largest inner payload (frame length - 14). */
  mtu: number;
  /** The send sockets bind here (host-order IPv4). */
  localAddr: number;
}

/** Where the transmit path counts: the port's VXLAN counters and its lastTxError. */
export interface VxlanTxOwner {
  readonly c: Float64Array;
  lastTxError: string;
}

export class VxlanTx {
  private readonly socks: UdpHandle[] = [];
  /** Messages of one transmit, per send socket (extra: the datagrams each becomes). */
  private readonly msgs: SendList[] = [];
  private readonly segLens = new Uint32Array(MAX_SEGS);
  /** Per frame of the TxQueue chunk being sent: at least one of its messages was taken. */
  private readonly frameOk: Uint8Array;
  private stageBase = 0;
  private stageEnd = 0;
  /** Scatter-gather: gather entries (absolute pool ranges) and, per send socket, each message's entry count (its first entry is in the SendList's offsets). */
  private sg = false;
  private readonly iovOffsets = new Uint32Array(IOV_CAP);
  private readonly iovLengths = new Uint32Array(IOV_CAP);
  private readonly iovCounts: Uint32Array[] = [];
  /** How super-frames leave: "scatter-gather" or "copy (…why…)". */
  txPath = "closed";

  private readonly c: Float64Array;

  /**
   * @param owner the port: its VXLAN counters and lastTxError
   * @param capacity the port's TxQueue capacity
   * @param suppressArp answers an ARP request locally (true: done, nothing to send)
   */
  constructor(
    private readonly cfg: VxlanTxConfig,
    private readonly fdb: VxlanFdb,
    private readonly owner: VxlanTxOwner,
    capacity: number,
    private readonly suppressArp: (pool: Buffer, off: number, len: number) => boolean,
  ) {
    this.c = owner.c;
    for (let k = 0; k < TX_SOCKETS; k++) {
      this.msgs.push(new SendList(MAX_MSGS));
      this.iovCounts.push(new Uint32Array(MAX_MSGS));
    }
    this.frameOk = new Uint8Array(capacity);
  }

  get isOpen(): boolean {
    return this.socks.length !== 0;
  }

  /** Outer UDP source ports (one per send socket). */
  get sourcePorts(): number[] {
    return this.socks.map((t) => t.port);
  }

  /**
   * Opens the send sockets, each bound to (localAddr, a port in 49152..65535 picked from
   * its index and the VNI); the staging area is STAGE_BYTES at `stageBase`. Throws
   * (with nothing left open) when one cannot be opened.
   */
  open(buf: Buffer, stageBase: number, openSocket: (opts: UdpOptions) => UdpHandle, arrays: UdpArrays): void {
    this.stageBase = stageBase;
    this.stageEnd = stageBase + STAGE_BYTES;
    try {
      for (let k = 0; k < TX_SOCKETS; k++) this.socks.push(this.openOne(buf, k, openSocket, arrays));
    } catch (e) {
      this.close();
      throw e;
    }
    if (process.env.TAPNET_VXLAN_SG === "0") this.txPath = "copy (TAPNET_VXLAN_SG=0)";
    else if (this.socks.some((t) => typeof t.sendv !== "function")) this.txPath = "copy (the socket has no sendv)";
    else this.txPath = "scatter-gather";
    this.sg = this.txPath === "scatter-gather";
  }

  private openOne(buf: Buffer, k: number, openSocket: (opts: UdpOptions) => UdpHandle, arrays: UdpArrays): UdpHandle {
    let lastErr: Error | null = null;
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = VXLAN_SRC_PORT_MIN + ((this.cfg.vni * 7919 + k * 4099 + attempt * 257) & 0x3fff);
      try {
        return openSocket({
          ...arrays,
          bindAddr: this.cfg.localAddr,
          port,
          sndbuf: 4 * 1024 * 1024,
          noCheck: !this.cfg.udpChecksum,
          noDf: true,
          pool: buf,
          rxBase: 0,
          slots: 1,
          slotSize: 1,
        });
      } catch (e) {
        lastErr = e as Error;
        if ((e as { code?: string }).code !== "EADDRINUSE") break;
      }
    }
    throw lastErr ?? new Error("no free source port");
  }

  close(): void {
    for (const t of this.socks) t.close();
    this.socks.length = 0;
    this.sg = false;
    this.txPath = "closed";
  }

  /**
   * Encapsulates q and sends it with one sendmmsg per send socket; returns how many
   * frames were sent and zeroes the length of the others (the Port contract).
   */
  send(pool: Buffer, q: TxQueue, offload: boolean): number {
    const n = q.count;
    const offsets = q.offsets;
    const lengths = q.lengths;
    const { c, fdb, frameOk, segLens } = this;
    const now = performance.now();
    const maxLen = this.cfg.mtu + ETH_HEADER_LEN;
    const suppressing = fdb.suppressing;
    const flood = fdb.flood;
    const { sg, iovOffsets, iovLengths } = this;
    let iov = 0; // gather entries used (scatter-gather)
    let stage = this.stageBase;
    let sent = 0;
    let first = 0; // frames [first, i) have messages queued
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      lengths[i] = 0;
      frameOk[i - first] = 0;
      if (len < ETH_HEADER_LEN) {
        c[V.runt]++;
        continue;
      }
      if (suppressing && readU16(pool, off + 12) === ETHERTYPE_ARP && this.suppressArp(pool, off, len)) {
        lengths[i] = len;
        frameOk[i - first] = 1;
        continue;
      }
      const e = fdb.lookup(readMac(pool, off), now);
      let remotes = 1;
      if (e === undefined) {
        if (flood.length === 0) {
          c[V.unknownDst]++;
          continue;
        }
        remotes = flood.length;
      }
      let msgOff: number;
      let msgLen: number;
      let seg = 0;
      let k = 1;
      let firstIov = 0; // scatter-gather: the frame's first gather entry
      let nIov = 1; // and how many (1 plain; 2 per segment)
      if (sg && offload && vnetIsGso(pool, off)) {
        k = gsoHeaders(pool, off, len, stage, this.stageEnd, VXLAN_HEADER_LEN, iovOffsets, iovLengths, iov);
        if (k === OFFLOAD_ERR_NO_ROOM) {
          sent += this.sendQueued(pool, lengths, first, i);
          first = i;
          frameOk[0] = 0;
          stage = this.stageBase;
          iov = 0;
          k = gsoHeaders(pool, off, len, stage, this.stageEnd, VXLAN_HEADER_LEN, iovOffsets, iovLengths, iov);
        }
        if (k <= 0) {
          c[V.badOffload]++;
          continue;
        }
        // Entry iov + 2j: segment j's VXLAN and inner headers; iov + 2j + 1: its payload.
        const hs = iovLengths[iov];
        const dgram = hs + iovLengths[iov + 1]; // every datagram but the last
        if (dgram - VXLAN_HEADER_LEN > maxLen) {
          c[V.tooBig]++;
          continue;
        }
        for (let j = 0; j < k; j++) vxlanWriteHeader(pool, iovOffsets[iov + 2 * j], this.cfg.vni);
        msgOff = 0;
        msgLen = (k - 1) * dgram + hs + iovLengths[iov + 2 * k - 1];
        seg = k > 1 ? dgram : 0;
        firstIov = iov;
        nIov = 2 * k;
        iov += nIov;
        stage += (k * hs + 63) & ~63;
        c[V.segmented]++;
      } else if (offload && vnetIsGso(pool, off)) {
        k = gsoSegment(pool, off, len, pool, stage, this.stageEnd, VXLAN_HEADER_LEN, segLens);
        if (k === OFFLOAD_ERR_NO_ROOM) {
          sent += this.sendQueued(pool, lengths, first, i);
          first = i;
          frameOk[0] = 0;
          stage = this.stageBase;
          k = gsoSegment(pool, off, len, pool, stage, this.stageEnd, VXLAN_HEADER_LEN, segLens);
        }
        if (k <= 0) {
          c[V.badOffload]++;
          continue;
        }
        // The segments must fit the overlay MTU (the first is the longest).
        if (segLens[0] > maxLen) {
          c[V.tooBig]++;
          continue;
        }
        const stride = VXLAN_HEADER_LEN + segLens[0];
        for (let j = 0; j < k; j++) vxlanWriteHeader(pool, stage + j * stride, this.cfg.vni);
        msgOff = stage;
        msgLen = (k - 1) * stride + VXLAN_HEADER_LEN + segLens[k - 1];
        seg = k > 1 ? stride : 0;
        stage += (msgLen + 63) & ~63;
        c[V.segmented]++;
      } else {
        if (len > maxLen) {
          c[V.tooBig]++;
          continue;
        }
        if (offload && vnetNeedsCsum(pool, off) && completeChecksum(pool, off, len) < 0) {
          c[V.badOffload]++;
          continue;
        }
        msgOff = off - VXLAN_HEADER_LEN;
        msgLen = len + VXLAN_HEADER_LEN;
        vxlanWriteHeader(pool, msgOff, this.cfg.vni);
        if (sg) {
          if (iov === IOV_CAP) {
            sent += this.sendQueued(pool, lengths, first, i);
            first = i;
            frameOk[0] = 0;
            stage = this.stageBase;
            iov = 0;
          }
          iovOffsets[iov] = msgOff;
          iovLengths[iov] = msgLen;
          firstIov = iov++;
        }
      }
      const sk = vxlanSourcePort(pool, off, len) & (TX_SOCKETS - 1);
      const m = this.msgs[sk];
      // A UDP GSO message holds at most 64 KiB of payload (and UDP_MAX_SEGMENTS
      // datagrams): a super-frame's train may take several. Without UDP checksums the
      // kernel refuses UDP GSO: one message per segment then.
      const per = seg === 0 || !this.cfg.udpChecksum ? 1 : Math.min(GSO_MAX_SEGS, Math.floor(UDP_MAX_PAYLOAD / seg));
      const chunks = seg === 0 ? 1 : Math.ceil(k / per);
      if (m.count + remotes * chunks > MAX_MSGS) {
        sent += this.sendQueued(pool, lengths, first, i);
        first = i;
        frameOk[0] = 0;
      }
      // Scatter-gather: a message's offset is its first gather entry, its entry count in iovCounts.
      const counts = this.iovCounts[sk];
      for (let r = 0; r < remotes; r++) {
        const addr = e !== undefined ? e.remoteAddr : flood[r];
        if (seg === 0) {
          counts[m.count] = nIov;
          m.add(sg ? firstIov : msgOff, msgLen, addr, 0, i, 1);
          continue;
        }
        for (let j = 0; j < k; j += per) {
          const cn = Math.min(per, k - j);
          const cOff = sg ? firstIov + 2 * j : msgOff + j * seg;
          const cLen = j + cn === k ? msgLen - j * seg : cn * seg;
          counts[m.count] = 2 * cn;
          m.add(cOff, cLen, addr, cn > 1 ? seg : 0, i, cn);
        }
      }
      if (e === undefined) c[V.flooded]++;
      lengths[i] = len; // provisional: sendQueued zeroes it again if nothing was taken
    }
    return sent + this.sendQueued(pool, lengths, first, n);
  }

  /**
   * Sends the messages queued for frames [first, end), marks in frameOk which frames
   * had at least one message taken, zeroes the lengths of the others and returns how
   * many frames of [first, end) were sent.
   */
  private sendQueued(pool: Buffer, lengths: Uint32Array, first: number, end: number): number {
    const frameOk = this.frameOk;
    for (let k = 0; k < TX_SOCKETS; k++) {
      const m = this.msgs[k];
      const n = m.count;
      if (n === 0) continue;
      const sock = this.socks[k];
      if (this.sg && sock.sendv !== undefined) {
        sock.sendv(pool, this.iovOffsets, this.iovLengths, m.offsets, this.iovCounts[k], m.lengths, m.addrs, this.cfg.dstPort, m.segs, n);
      } else {
        sock.send(pool, m.offsets, m.lengths, m.addrs, this.cfg.dstPort, m.segs, n);
      }
      let failed = 0;
      for (let j = 0; j < n; j++) {
        if (m.lengths[j] !== 0) {
          frameOk[m.frame[j] - first] = 1;
          this.c[V.encapsulated] += m.extra[j];
        } else {
          failed++;
        }
      }
      m.count = 0;
      if (failed !== 0) {
        this.c[V.txErrors] += failed;
        this.owner.lastTxError = `sendmmsg: ${errnoText(this.socks[k].stats().lastTxErrno)}`;
      }
    }
    let sent = 0;
    for (let i = first; i < end; i++) {
      if (frameOk[i - first] === 0) lengths[i] = 0;
      else sent++;
    }
    return sent;
  }
}
