/**
 * Ipv4Reassembly — IPv4 fragment reassembly (RFC 791 §3.2, RFC 815), what Linux's
 * nf_defrag_ipv4 does in front of conntrack. Not an element: the router hands it the
 * fragments it receives while NAT is on (router/ip-input.ts, before PREROUTING) and
 * continues with the whole datagram once the last piece is in. Its counters
 * (REASM_COUNTERS) are part of the router's: the router declares them among its own and
 * gives the reassembler their storage.
 *
 * Datagrams in progress are keyed by (source, destination, protocol, identification)
 * and live in a fixed number of slots of the router's packet memory (the pool), each
 * big enough for the largest datagram (65535 bytes) plus room in front for an Ethernet
 * header and a virtio-net header: the finished datagram is a frame in the pool like any
 * other (first fragment's Ethernet header, zeroed virtio-net header), so the router forwards
 * it, and its ports send pool offsets, unchanged. State is in typed arrays; nothing is
 * allocated per fragment.
 *
 * Rules (as Linux's ip_fragment.c / inet_fragment.c):
 *   - a non-last fragment (MF set) must carry a non-zero multiple of 8 bytes;
 *     offset + length must stay within 65535 - 20; otherwise the fragment is dropped
 *     (reasmDropped);
 *   - a fragment that partly overlaps data already held drops the whole datagram
 *     (reasmOverlap, RFC 5722's rule that Linux applies to IPv4 too); one wholly
 *     covered by data held (a duplicate) is ignored;
 *   - a last fragment disagreeing with the end already known, or data beyond that
 *     end, drops the datagram (reasmDropped); the reassembled total length must be
 *     <= 65535 (reasmDropped);
 *   - at most `slots` datagrams in progress and `byteBudget` bytes held; a fragment
 *     that would need more is dropped (reasmDropped);
 *   - a datagram not complete `timeoutMs` (30 s, ipfrag_time) after its first fragment
 *     arrived expires (reasmTimeout): the router asks nextExpired() from its timer and
 *     before each fragment, and sends ICMP time exceeded, code 1, when the first
 *     fragment (offset 0) was received (ip_expire).
 *
 * The finished datagram's header is the first fragment's, with total length set, MF
 * and offset cleared, DF set only if every fragment had it, and a new checksum. Its
 * slot stays untouched until the end of the engine pass (beginPass() frees it), since
 * the router may have pushed its offset onto a port.
 */
import { counters } from "../core/element.js";
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import {
  IPV4_FLAG_DF,
  ipv4FillChecksum,
  ipv4GetDf,
  ipv4GetDstAddr,
  ipv4GetFragOffset,
  ipv4GetHeaderLen,
  ipv4GetIdent,
  ipv4GetMf,
  ipv4GetProtocol,
  ipv4GetSrcAddr,
  ipv4SetFlags,
  ipv4SetFragOffset,
  ipv4SetTotalLen,
} from "../wire/ipv4.js";
import { vnetClear } from "../wire/vnet.js";

/** Room in front of the data: virtio-net header (12) + Ethernet (14) + IPv4 header (<= 60). */
const FRONT = 128;
const MAX_PAYLOAD_END = 65535 - 20;
/** Bytes of pool per slot. */
export const REASM_SLOT_BYTES = FRONT + 65536;
const BLOCKS = 8192; // 8-byte units of a 65536-byte datagram

const FREE = 0;
const BUSY = 1;
const DONE = 2;

export interface ReassemblyOptions {
  /** Datagrams in progress at most (default 16). */
  slots?: number;
  /** Fragment data held at most, over all datagrams (default 1 MiB). */
  byteBudget?: number;
  /** ms from a datagram's first fragment until it expires (default 30000). */
  timeoutMs?: number;
}

/**
 * A fragment the router takes ends here (fragsReceived); the datagram it completes comes
 * back to the router as one more frame (reassembled). What becomes of the fragments held
 * is counted on the way (events), never as a second end.
 */
export const REASM_COUNTERS = counters({
  deliver: {
    fragsReceived: "fragments taken by the reassembler (NAT on); a completed datagram re-enters as one frame",
  },
  event: {
    reassembled: "datagrams completed, each handed back to the router as a frame",
    reasmTimeout: "datagrams expired before all fragments came (ICMP time exceeded when the first was in)",
    reasmOverlap: "datagrams dropped: a fragment partly overlapped data held",
    reasmDropped: "fragments or datagrams dropped: malformed, beyond 65535, contradicting ends, out of slots or bytes",
  },
});
const R = REASM_COUNTERS.id;

export class Ipv4Reassembly {
  readonly slots: number;
  readonly byteBudget: number;
  readonly timeoutMs: number;
  private pool: Buffer | null = null;
  private base = 0;
  private readonly state: Uint8Array;
  private readonly src: Uint32Array;
  private readonly dst: Uint32Array;
  private readonly proto: Uint8Array;
  private readonly ident: Uint16Array;
  private readonly deadline: Float64Array;
  /** Payload length once the last fragment is in, else -1. */
  private readonly total: Int32Array;
  private readonly maxEnd: Int32Array;
  private readonly received: Int32Array;
  /** IPv4 header length of the first fragment, 0 until it arrives. */
  private readonly firstHl: Uint8Array;
  private readonly firstLen: Uint32Array;
  private readonly maxFrag: Uint32Array;
  private readonly dfAll: Uint8Array;
  private readonly inIf: Int32Array;
  /** One byte per 8-byte block of each slot: 1 = held. */
  private readonly blocks: Uint8Array;
  private held = 0;
  private busy = 0;
  private done = 0;
  private earliest = Infinity;

  /** Total length of the datagram add() last completed. */
  lastLen = 0;
  /** Largest fragment (IPv4 total length) of the datagram add() last completed. */
  lastMaxFrag = 0;

  /** Counter values, indexed by REASM_COUNTERS.id (the owner's storage, when given). */
  readonly c: Float64Array;

  constructor(o: ReassemblyOptions = {}, c: Float64Array = REASM_COUNTERS.create()) {
    this.c = c;
    const n = Math.max(1, Math.floor(o.slots ?? 16));
    this.slots = n;
    this.byteBudget = o.byteBudget ?? 1 << 20;
    this.timeoutMs = o.timeoutMs ?? 30000;
    this.state = new Uint8Array(n);
    this.src = new Uint32Array(n);
    this.dst = new Uint32Array(n);
    this.proto = new Uint8Array(n);
    this.ident = new Uint16Array(n);
    this.deadline = new Float64Array(n);
    this.total = new Int32Array(n);
    this.maxEnd = new Int32Array(n);
    this.received = new Int32Array(n);
    this.firstHl = new Uint8Array(n);
    this.firstLen = new Uint32Array(n);
    this.maxFrag = new Uint32Array(n);
    this.dfAll = new Uint8Array(n);
    this.inIf = new Int32Array(n);
    this.blocks = new Uint8Array(n * BLOCKS);
  }

  /** Pool bytes the slots need. */
  bytes(): number {
    return this.slots * REASM_SLOT_BYTES;
  }

  /** Where the slots live: `bytes()` bytes of `pool` from `base`. */
  attach(pool: Buffer, base: number): void {
    this.pool = pool;
    this.base = base;
  }

  /** Datagrams in progress. */
  inProgress(): number {
    return this.busy;
  }

  /** Start of an engine pass: slots of datagrams completed in the last pass are free again. */
  beginPass(): void {
    if (this.done === 0) return;
    for (let s = 0; s < this.slots; s++) if (this.state[s] === DONE) this.state[s] = FREE;
    this.done = 0;
  }

  /**
   * Takes the fragment at `buf[ip, ip + ipLen)` (its header already checked, the 14
   * bytes before it its Ethernet header). Returns the offset in the pool of the
   * complete datagram's IPv4 header (lastLen, lastMaxFrag describe it), or -1: held,
   * ignored or dropped (counted).
   */
  add(buf: Buffer, ip: number, ipLen: number, inIf: number, now: number): number {
    const pool = this.pool;
    const c = this.c;
    c[R.fragsReceived]++;
    if (pool === null) {
      c[R.reasmDropped]++;
      return -1;
    }
    const hl = ipv4GetHeaderLen(buf, ip);
    const offset = ipv4GetFragOffset(buf, ip) << 3;
    const mf = ipv4GetMf(buf, ip);
    const dlen = ipLen - hl;
    const end = offset + dlen;
    if (dlen < 0 || end > MAX_PAYLOAD_END || (mf && (dlen === 0 || (dlen & 7) !== 0))) {
      c[R.reasmDropped]++;
      return -1;
    }
    const s0 = ipv4GetSrcAddr(buf, ip);
    const d0 = ipv4GetDstAddr(buf, ip);
    const p0 = ipv4GetProtocol(buf, ip);
    const id0 = ipv4GetIdent(buf, ip);
    let s = -1;
    if (this.busy > 0) {
      for (let k = 0; k < this.slots; k++) {
        if (this.state[k] === BUSY && this.ident[k] === id0 && this.src[k] === s0 && this.dst[k] === d0 && this.proto[k] === p0) {
          s = k;
          break;
        }
      }
    }
    if (s < 0) {
      if (this.held + dlen > this.byteBudget) {
        c[R.reasmDropped]++;
        return -1;
      }
      for (let k = 0; k < this.slots; k++) {
        if (this.state[k] === FREE) {
          s = k;
          break;
        }
      }
      if (s < 0) {
        c[R.reasmDropped]++;
        return -1;
      }
      this.state[s] = BUSY;
      this.busy++;
      this.src[s] = s0;
      this.dst[s] = d0;
      this.proto[s] = p0;
      this.ident[s] = id0;
      const dl = now + this.timeoutMs;
      this.deadline[s] = dl;
      if (dl < this.earliest) this.earliest = dl;
      this.total[s] = -1;
      this.maxEnd[s] = 0;
      this.received[s] = 0;
      this.firstHl[s] = 0;
      this.firstLen[s] = 0;
      this.maxFrag[s] = 0;
      this.dfAll[s] = 1;
      this.inIf[s] = inIf;
      this.blocks.fill(0, s * BLOCKS, (s + 1) * BLOCKS);
    } else if (this.held + dlen > this.byteBudget) {
      c[R.reasmDropped]++;
      return -1;
    }
    // The end: known from the last fragment; nothing may contradict it.
    const total = this.total[s];
    if (!mf) {
      if ((total >= 0 && total !== end) || end < this.maxEnd[s]) {
        c[R.reasmDropped]++;
        this.release(s);
        return -1;
      }
    } else if (total >= 0 && end > total) {
      c[R.reasmDropped]++;
      this.release(s);
      return -1;
    }
    // Overlap and duplicate, by 8-byte block (a non-last fragment ends on a block
    // boundary and the last one's end is the end of the datagram).
    const b0 = s * BLOCKS + (offset >>> 3);
    const b1 = s * BLOCKS + ((end + 7) >>> 3);
    let have = 0;
    for (let b = b0; b < b1; b++) have += this.blocks[b];
    if (have !== 0) {
      if (have === b1 - b0 && (mf || total === end)) return -1; // a duplicate: ignored
      c[R.reasmOverlap]++;
      this.release(s);
      return -1;
    }
    if (!mf) this.total[s] = end;
    this.blocks.fill(1, b0, b1);
    const data = this.base + s * REASM_SLOT_BYTES + FRONT;
    buf.copy(pool, data + offset, ip + hl, ip + ipLen);
    this.received[s] += dlen;
    this.held += dlen;
    if (end > this.maxEnd[s]) this.maxEnd[s] = end;
    if (ipLen > this.maxFrag[s]) this.maxFrag[s] = ipLen;
    if (!ipv4GetDf(buf, ip)) this.dfAll[s] = 0;
    if (offset === 0) {
      // The first fragment's header and its frame's Ethernet header, zeroed virtio-net header.
      const h = data - hl;
      buf.copy(pool, h, ip, ip + hl);
      buf.copy(pool, h - ETH_HEADER_LEN, ip - ETH_HEADER_LEN, ip);
      vnetClear(pool, h - ETH_HEADER_LEN);
      this.firstHl[s] = hl;
      this.firstLen[s] = ipLen;
      this.inIf[s] = inIf;
    }
    const fh = this.firstHl[s];
    if (fh === 0 || this.total[s] < 0 || this.received[s] !== this.total[s]) return -1;
    // Complete.
    const len = fh + this.total[s];
    if (len > 65535) {
      c[R.reasmDropped]++;
      this.release(s);
      return -1;
    }
    const h = data - fh;
    ipv4SetTotalLen(pool, h, len);
    ipv4SetFragOffset(pool, h, 0);
    ipv4SetFlags(pool, h, this.dfAll[s] !== 0 ? IPV4_FLAG_DF : 0);
    ipv4FillChecksum(pool, h);
    this.lastLen = len;
    this.lastMaxFrag = this.maxFrag[s];
    c[R.reassembled]++;
    this.held -= this.received[s];
    this.state[s] = DONE;
    this.busy--;
    this.done++;
    return h;
  }

  /** A datagram in progress past its deadline, or -1. The caller reports it and release()s it. */
  nextExpired(now: number): number {
    if (this.busy === 0 || now < this.earliest) return -1;
    let next = Infinity;
    for (let s = 0; s < this.slots; s++) {
      if (this.state[s] !== BUSY) continue;
      if (this.deadline[s] <= now) return s;
      if (this.deadline[s] < next) next = this.deadline[s];
    }
    this.earliest = next;
    return -1;
  }

  /** Expired slot `s`: counts the timeout; true when its first fragment arrived. */
  expired(s: number): boolean {
    this.c[R.reasmTimeout]++;
    return this.firstHl[s] !== 0;
  }

  /** Offset in the pool of slot `s`'s first fragment (header as received, then its data). */
  firstIp(s: number): number {
    return this.base + s * REASM_SLOT_BYTES + FRONT - this.firstHl[s];
  }

  firstFragLen(s: number): number {
    return this.firstLen[s];
  }

  inIfOf(s: number): number {
    return this.inIf[s];
  }

  /** Frees a datagram in progress. */
  release(s: number): void {
    if (this.state[s] !== BUSY) return;
    this.state[s] = FREE;
    this.busy--;
    this.held -= this.received[s];
  }
}
