/**
 * TapPort — a Linux TAP device opened through tapnet's native addon.
 *
 * The addon drains up to `batchSize` frames per wake-up straight into this port's
 * region of the packet pool and calls back once per batch; transmit hands the whole
 * TxQueue to one native call. The device is created if missing (attached to when a
 * persistent one of that name exists). By default it disappears when the process
 * exits; with `persist` (lab nodes) it outlives the process, so a host whose eth0 it
 * is keeps its interface while its node restarts, and only dispose() (the port
 * removed at runtime) or deleting its namespace (`lab down`) removes it. With `fd`
 * the port adopts a TAP its parent attached to (a restarted lab node: the TAP is a
 * host's eth0 in the host's namespace, out of the node's reach by name).
 *
 * Egress GRO (with offload): TCP segments that crossed the node one by one (from a
 * tunnel, libpcap, a host without TSO) would reach the receiving host's stack one
 * write() and one skb each; within each flush, runs of
 * consecutive in-order segments of one flow are merged into a TSO super-frame
 * (groFrames, native/offload.c) in a staging area after the receive slots and written
 * as one frame, the way the kernel's GRO would have on a real NIC.
 *
 * Counters: groMerged (super-frames written from runs), groSegments (segments in
 * them), in offloadCounters() (`tapnet show stats`). txFrames/txBytes keep counting
 * the frames as queued: a run written as one super-frame counts as its N segments
 * and their bytes (they were sent); refused, it counts N txDrops.
 */
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { DEFAULT_BATCH, DEFAULT_SLOT, HEADROOM, Port, type RxHandler } from "../core/port.js";
import { VNET_HDR_LEN, vnetIsGso } from "../wire/vnet.js";
import { openTap, type TapHandle, tapPersist } from "./native.js";
import { groFrames, OFFLOAD_ERR_NO_ROOM } from "./offload.js";

export interface TapPortOptions {
  batchSize?: number;
  slotSize?: number;
  offload?: boolean;
  /** Egress GRO (merge runs of TCP segments into super-frames); default on with offload, impossible without. */
  gro?: boolean;
  /** The TAP outlives the process (TUNSETPERSIST) until the port is disposed of. */
  persist?: boolean;
  /** An inherited fd attached to the TAP, adopted at open() instead of opening by name (the port owns it from then). */
  fd?: number;
  /** The MTU to report for an adopted TAP (its namespace is not ours to ask). */
  mtu?: number;
  /**
   * How frames move between the TAP and the pool: "rw" (readv()/write(), one system
   * call per frame; the default) or "uring" (io_uring: a multishot read into the
   * receive slots, one submission per transmitted batch; native/uring.c). When
   * io_uring cannot be set up the port logs why and uses "rw".
   */
  io?: TapIo;
}

export type TapIo = "rw" | "uring";

/** GRO staging: four 64 KiB super-frames with their vnet headers; one flush reuses it as it writes. */
const GRO_STAGE_BYTES = 4 * (65536 + 128);
/** Below this much staging room, write what is staged before looking for the next run. */
const GRO_MIN_ROOM = 16 * 1024;

/** An IPv4 TCP segment carrying data (untagged or one tag): one that may start or join a GRO run. */
function tcpWithData(b: Buffer, off: number, len: number): boolean {
  if (len < 54) return false;
  let l3 = off + 14;
  let et = (b[off + 12] << 8) | b[off + 13];
  if (et === 0x8100 || et === 0x88a8) {
    et = (b[off + 16] << 8) | b[off + 17];
    l3 += 4;
  }
  if (et !== 0x0800 || b[l3 + 9] !== 6) return false;
  const tcp = l3 + ((b[l3] & 0x0f) << 2);
  return tcp + 13 < off + len && off + len > tcp + ((b[tcp + 12] >>> 4) << 2);
}

/** Egress GRO state: the list actually written, and how many queued frames each entry stands for. */
class TapGro {
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly segs: Uint32Array;
  readonly result = new Uint32Array(1);
  base = 0;
  end = 0;
  merged = 0;
  segments = 0;
  constructor(capacity: number) {
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.segs = new Uint32Array(capacity);
  }
}

/** The io_uring fds of open TAP ports: the seccomp filter tells them from foreign rings (src/node/sandbox.ts). */
const openRings = new Set<number>();
export function tapRingFds(): number[] {
  return [...openRings];
}

/** Slot for a TAP with offloads: a 64 KiB TSO super-frame, its virtio-net header, headroom. */
const VNET_SLOT = 65536 + 256;
/** Batch for such a TAP: 64 slots of 64 KiB are 4 MiB of pool per port. */
const VNET_BATCH = 64;

export class TapPort extends Port {
  readonly kind = "tap";
  private handle: TapHandle | null = null;
  /**
   * With IFF_VNET_HDR (and TSO/checksum offloads), each frame travels with its 12-byte
   * virtio-net header, which sits in the 12 bytes before the frame in the pool:
   * elements see plain Ethernet at the frame's offset, and a TSO super-frame (up to
   * 64 KiB) goes through as one unit; the kernel segments it at the last hop.
   */
  private readonly headers: boolean;
  private readonly gro: TapGro | null;
  private readonly persist: boolean;
  /** The inherited fd to adopt at open(), until then. */
  private adoptFd: number | undefined;
  private readonly adoptedMtu: number;
  private readonly wantIo: TapIo;
  /** The I/O method in use once open ("rw" until then, or after a fallback). */
  io: TapIo = "rw";
  /** True when the port takes over an inherited TAP (a restarted node) rather than opening one. */
  readonly adopted: boolean;

  constructor(
    name: string,
    readonly ifname: string,
    opts: TapPortOptions = {},
  ) {
    const offload = opts.offload ?? false;
    super(name, opts.batchSize ?? (offload ? VNET_BATCH : DEFAULT_BATCH), opts.slotSize ?? (offload ? VNET_SLOT : DEFAULT_SLOT));
    this.headers = offload;
    this.gro = offload && (opts.gro ?? true) ? new TapGro(this.txq.capacity) : null;
    this.persist = opts.persist ?? false;
    this.adoptFd = opts.fd;
    this.adopted = opts.fd !== undefined;
    this.adoptedMtu = opts.mtu ?? 0;
    this.wantIo = opts.io ?? "rw";
  }

  override get deviceOffload(): boolean {
    return this.headers;
  }

  /** Receive slots, then the GRO staging area when there is one. */
  override rxRegionBytes(): number {
    return this.batchSize * this.slotSize + (this.gro !== null ? 64 + GRO_STAGE_BYTES : 0);
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    const base = pool.region(this.rxRegionBytes(), `port ${this.name} receive slots`);
    const g = this.gro;
    if (g !== null) {
      g.base = (base + this.batchSize * this.slotSize + 63) & ~63;
      g.end = g.base + GRO_STAGE_BYTES;
    }
    const rx = this.rx;
    const buf = pool.buf;
    const headers = this.headers;
    this.onRx = onRx;
    const fd = this.adoptFd;
    this.adoptFd = undefined; // openTap owns it from here, also when it fails
    this.handle = openTap({
      name: this.ifname,
      offload: headers,
      persist: this.persist,
      uring: this.wantIo === "uring",
      fd,
      pool: buf,
      rxBase: base,
      slots: this.batchSize,
      slotSize: this.slotSize,
      // The kernel writes header + frame; the frame itself starts at HEADROOM.
      headroom: headers ? HEADROOM - VNET_HDR_LEN : HEADROOM,
      offsets: rx.offsets,
      lengths: rx.lengths,
      onBatch: (count: number) => {
        rx.count = count;
        if (headers) {
          const offsets = rx.offsets;
          const lengths = rx.lengths;
          for (let i = 0; i < count; i++) {
            offsets[i] += VNET_HDR_LEN;
            lengths[i] -= VNET_HDR_LEN;
          }
        }
        this.deliverBatch(buf, rx);
      },
    });
    this.io = this.handle.io;
    for (const r of this.handle.rings) openRings.add(r);
    if (this.handle.ioFallback !== null) console.error(`port ${this.name}: io_uring unavailable (${this.handle.ioFallback}); using read/write`);
    this.handle.start();
  }

  close(): void {
    if (this.handle) {
      for (const r of this.handle.rings) openRings.delete(r);
      this.handle.close();
      this.handle = null;
    }
  }

  /** Removed for good: a persistent TAP stops being one, so it goes with the close. */
  override dispose(): void {
    const h = this.handle;
    if (h !== null && this.persist) {
      try {
        tapPersist(h.fd, false);
      } catch (e) {
        // The device is gone already (its namespace was deleted): nothing left to remove.
        if ((e as NodeJS.ErrnoException).code !== "EBADFD") console.error(`port ${this.name}: ${(e as Error).message}`);
      }
    }
    this.close();
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const h = this.handle;
    if (h === null) {
      q.lengths.fill(0, 0, q.count);
      return 0;
    }
    if (!this.headers) return h.write(pool, q.offsets, q.lengths, q.count);
    if (this.gro !== null) return this.transmitGro(h, pool, q, this.gro);
    // Hand the kernel each frame with the virtio-net header in front of it.
    const n = q.count;
    const offsets = q.offsets;
    const lengths = q.lengths;
    for (let i = 0; i < n; i++) {
      offsets[i] -= VNET_HDR_LEN;
      lengths[i] += VNET_HDR_LEN;
    }
    const sent = h.write(pool, offsets, lengths, n);
    for (let i = 0; i < n; i++) if (lengths[i] !== 0) lengths[i] -= VNET_HDR_LEN;
    return sent;
  }

  /**
   * Builds the list to write: each queued frame with its vnet header in front, except
   * runs groFrames merges, which become one staged super-frame. The staging area is
   * written out and reused when it fills. Returns how many queued frames were sent and
   * zeroes the length of each refused one (a refused super-frame: all its segments).
   */
  private transmitGro(h: TapHandle, pool: Buffer, q: TxQueue, g: TapGro): number {
    const { count: n, offsets, lengths } = q;
    const { offsets: wo, lengths: wl, segs: ws, result: res } = g;
    let w = 0;
    let first = 0; // first queued frame of the list being built
    let used = g.base;
    let sent = 0;
    let i = 0;
    while (i < n) {
      if (w === wo.length) {
        // Only if txq grew past the list's capacity; write what there is and go on.
        sent += this.writeGro(h, pool, q, g, w, first);
        w = 0;
        first = i;
        used = g.base;
      }
      let k = 1;
      // Only a frame followed by another, neither a super-frame (gso_type), can start a
      // run; groFrames checks the rest.
      // A cheap look first (IPv4 TCP with payload, both), so floods of anything else
      // (UDP, pure ACKs) cost no native call per frame.
      if (
        i + 1 < n &&
        !vnetIsGso(pool, offsets[i]) &&
        !vnetIsGso(pool, offsets[i + 1]) &&
        tcpWithData(pool, offsets[i], lengths[i]) &&
        tcpWithData(pool, offsets[i + 1], lengths[i + 1])
      ) {
        if (g.end - used < GRO_MIN_ROOM) {
          sent += this.writeGro(h, pool, q, g, w, first);
          w = 0;
          first = i;
          used = g.base;
        }
        k = groFrames(pool, offsets, lengths, i, n, pool, used, g.end, res);
        if (k === OFFLOAD_ERR_NO_ROOM && used !== g.base) {
          sent += this.writeGro(h, pool, q, g, w, first);
          w = 0;
          first = i;
          used = g.base;
          k = groFrames(pool, offsets, lengths, i, n, pool, used, g.end, res);
        }
      }
      if (k >= 2) {
        wo[w] = used;
        wl[w] = VNET_HDR_LEN + res[0];
        ws[w] = k;
        used = (used + VNET_HDR_LEN + res[0] + 63) & ~63;
        g.merged++;
        g.segments += k;
        i += k;
      } else {
        // Alone (or a caller bug groFrames reported: write() refuses what lies outside the pool).
        wo[w] = offsets[i] - VNET_HDR_LEN;
        wl[w] = lengths[i] + VNET_HDR_LEN;
        ws[w] = 1;
        i++;
      }
      w++;
    }
    if (w !== 0) sent += this.writeGro(h, pool, q, g, w, first);
    return sent;
  }

  /** Writes g's list[0..w), whose entries stand for queued frames first, first+1, …; maps refusals back. */
  private writeGro(h: TapHandle, pool: Buffer, q: TxQueue, g: TapGro, w: number, first: number): number {
    const accepted = h.write(pool, g.offsets, g.lengths, w);
    const ws = g.segs;
    let sent = 0;
    if (accepted === w) {
      for (let j = 0; j < w; j++) sent += ws[j];
      return sent;
    }
    const wl = g.lengths;
    const lengths = q.lengths;
    let i = first;
    for (let j = 0; j < w; j++) {
      const k = ws[j];
      if (wl[j] !== 0) sent += k;
      else for (let t = 0; t < k; t++) lengths[i + t] = 0;
      i += k;
    }
    return sent;
  }

  /** Egress GRO counters (null without GRO). */
  override offloadCounters(): Record<string, number> | null {
    const g = this.gro;
    return g === null ? super.offloadCounters() : { groMerged: g.merged, groSegments: g.segments };
  }

  info(): { mac: number; mtu: number; ifname: string } {
    const h = this.handle;
    return { mac: h ? h.mac : 0, mtu: h ? h.mtu || this.adoptedMtu : 0, ifname: this.ifname };
  }

  deviceStats(): Record<string, number> {
    return this.handle ? { ...this.handle.stats() } : {};
  }
}
