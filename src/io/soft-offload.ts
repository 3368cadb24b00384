/**
 * SoftOffload: software TSO and checksum completion for a port whose device takes no
 * virtio-net header (libpcap, a TAP without IFF_VNET_HDR, a test's memory port) on a
 * node with offloads — the kernel's GSO fallback (validate_xmit_skb). It is the
 * TxOffload (src/core/port.ts) the graph builder installs on such a port.
 *
 *   in   the port's TxQueue at flush(): frames with a virtio-net header in front
 *        (src/wire/vnet.ts), some of them TSO super-frames or with a partial checksum;
 *   out  wire frames, through the port's writer: a plain frame as it is (a partial
 *        checksum completed in place, completeChecksum), a super-frame as the
 *        segments gsoSegment cuts into the staging area, each SOFT_PREFIX bytes
 *        behind the last. When the staging area or the segment list fills, what is
 *        there is written and the area reused: the port's counters count wire frames.
 *
 * Pool region: SOFT_STAGE_BYTES of staging, room for the segments of at least three
 * 64 KiB super-frames.
 *
 * Counters (`show stats`, offloads): segmented (super-frames cut), segments (what they
 * became), csumCompleted (partial checksums finished), badOffload (super-frames or
 * partial checksums that could not be resolved: malformed headers; dropped, and the
 * port counts them in txDrops).
 */
import { TxQueue } from "../core/batch.js";
import { counters } from "../core/element.js";
import type { TxOffload, TxWriter } from "../core/port.js";
import { vnetIsGso, vnetNeedsCsum } from "../wire/vnet.js";
import { completeChecksum, gsoSegment, OFFLOAD_ERR_NO_ROOM } from "./offload.js";

/** Staging: room for the segments of at least three 64 KiB super-frames. */
const SOFT_STAGE_BYTES = 256 * 1024;
/** Most segments one super-frame may be cut into (an MSS of ~64 bytes). */
const SOFT_MAX_SEGS = 1024;
/** Free bytes before each software segment (a port may build a header there: IPIP's outer header). */
const SOFT_PREFIX = 32;

const SOFT_OFFLOAD_COUNTERS = counters({
  drop: {
    badOffload: "super-frames or partial checksums that could not be resolved (malformed)",
  },
  event: {
    segmented: "TSO super-frames cut into segments in software",
    segments: "segments those super-frames became",
    csumCompleted: "partial checksums completed in software",
  },
});
const C = SOFT_OFFLOAD_COUNTERS.id;

export class SoftOffload implements TxOffload {
  readonly regionBytes = SOFT_STAGE_BYTES;
  readonly c = SOFT_OFFLOAD_COUNTERS.create();
  /** Frames to write: the queue's own frames and segments in the staging area. */
  private readonly out = new TxQueue(SOFT_MAX_SEGS);
  private readonly segLens = new Uint32Array(SOFT_MAX_SEGS);
  private base = 0;
  private end = 0;
  /** Where the next segments go in the staging area. */
  private used = 0;

  attach(base: number): void {
    this.base = base;
    this.end = base + SOFT_STAGE_BYTES;
  }

  flush(pool: Buffer, q: TxQueue, write: TxWriter): number {
    let dropped = 0;
    this.out.count = 0;
    this.used = this.base;
    for (let i = 0; i < q.count; i++) if (!this.stage(pool, q.offsets[i], q.lengths[i], write)) dropped++;
    if (this.out.count !== 0) this.writeOut(pool, write);
    return dropped;
  }

  /**
   * Puts one frame on the list to write: as it is (its partial checksum completed), or
   * as its segments. False when it is dropped (malformed offload).
   */
  private stage(pool: Buffer, off: number, len: number, write: TxWriter): boolean {
    const out = this.out;
    const c = this.c;
    if (!vnetIsGso(pool, off)) {
      if (vnetNeedsCsum(pool, off)) {
        if (completeChecksum(pool, off, len) < 0) {
          c[C.badOffload]++;
          return false;
        }
        c[C.csumCompleted]++;
      }
      if (out.count === out.capacity) this.writeOut(pool, write);
      out.push(off, len);
      return true;
    }
    const segLens = this.segLens;
    let k = gsoSegment(pool, off, len, pool, this.used, this.end, SOFT_PREFIX, segLens);
    if (k === OFFLOAD_ERR_NO_ROOM || (k > 0 && out.count + k > out.capacity)) {
      // No room left: write what is staged, then cut this one at the start.
      this.writeOut(pool, write);
      k = gsoSegment(pool, off, len, pool, this.used, this.end, SOFT_PREFIX, segLens);
    }
    if (k <= 0) {
      c[C.badOffload]++;
      return false;
    }
    const used = this.used;
    const stride = k > 1 ? SOFT_PREFIX + segLens[0] : 0;
    for (let j = 0; j < k; j++) out.push(used + j * stride + SOFT_PREFIX, segLens[j]);
    this.used = used + (k - 1) * stride + SOFT_PREFIX + segLens[k - 1];
    c[C.segmented]++;
    c[C.segments] += k;
    return true;
  }

  /** Writes the list and starts the staging area over. */
  private writeOut(pool: Buffer, write: TxWriter): void {
    write(pool, this.out);
    this.out.count = 0;
    this.used = this.base;
  }

  counters(): Record<string, number> {
    return SOFT_OFFLOAD_COUNTERS.read(this.c);
  }
}
