/**
 * pcapng writer (and a small reader for tests), after draft-ietf-opsawg-pcapng.
 *
 * A capture is one Section Header Block (SHB), one Interface Description Block (IDB)
 * per captured port, then one Enhanced Packet Block (EPB) per frame. Everything is
 * written little-endian: the SHB's byte-order magic declares the section's byte order
 * (section 4.1), so readers on any host swap as needed.
 *
 * Timestamps are in nanoseconds: every IDB carries if_tsresol = 9 (section 4.2, a
 * power of ten when the high bit is clear). EPB flags (section 4.3.1) carry the
 * direction in bits 0-1: 01 inbound, 10 outbound; the option is left out when the
 * direction is unknown.
 *
 * Blocks are gathered in a chunk buffer and handed to the sink when the next block
 * does not fit or on flush(), so a busy capture costs one sink call per chunk, not
 * per frame. Each chunk handed over is a fresh Buffer the sink may keep (a Writable
 * queues it). A live capture should flush() at the end of a pass or on a timer.
 *
 * packet() copies the frame's bytes at once: the caller's buffer (a port's receive
 * region) is reused right after.
 */
import type { Writable } from "node:stream";

const LINKTYPE_ETHERNET = 1;

/** Block types, section 11.1. */
const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes. */
const OPT_ENDOFOPT = 0;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const OPT_COMMENT = 1;

/** epb_flags direction bits (section 4.3.1). */
export const EPB_DIR_INBOUND = 1;
export const EPB_DIR_OUTBOUND = 2;

const TWO_32 = 4294967296;

export interface PcapngInterface {
  name: string;
  /** LINKTYPE_* value; 1 (Ethernet) when left out. */
  linkType?: number;
  /** Largest number of bytes captured per frame; 0 (no limit) when left out. */
  snapLen?: number;
  description?: string;
}

export type PcapngSink = ((chunk: Buffer) => void) | Writable;

export interface PcapngWriterOptions {
  /** Size of the chunks handed to the sink (default 64 KiB). */
  chunkSize?: number;
  /** Name written in shb_userappl (default "tapnet"). */
  userAppl?: string;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Bytes an option with a value of `len` bytes takes, header and padding included. */
function optLen(len: number): number {
  return 4 + pad4(len);
}

/**
 * Wall-clock time in nanoseconds since the Unix epoch, as a number. A double holds
 * it to within 256 ns today, which is finer than the clock itself; it spares the
 * per-frame BigInt a bigint timestamp would cost.
 */
export function nowNs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}

export class PcapngWriter {
  /** Frames written since construction. */
  packets = 0;
  /** Bytes handed to the sink so far. */
  bytesWritten = 0;
  private readonly sink: (chunk: Buffer) => void;
  private readonly chunkSize: number;
  private readonly userAppl: string;
  private chunk: Buffer;
  private used = 0;
  private snapLens: number[] = [];

  constructor(sink: PcapngSink, opts: PcapngWriterOptions = {}) {
    if (typeof sink === "function") {
      this.sink = sink;
    } else {
      const w = sink;
      this.sink = (chunk) => {
        w.write(chunk);
      };
    }
    this.chunkSize = Math.max(opts.chunkSize ?? 65536, 256);
    this.userAppl = opts.userAppl ?? "tapnet";
    this.chunk = Buffer.allocUnsafe(this.chunkSize);
  }

  /** Bytes waiting in the chunk buffer. */
  get pending(): number {
    return this.used;
  }

  /**
   * Starts a section: an SHB and one IDB per interface. Interface i of the list is
   * the ifIndex that packet() takes. Calling it again starts a new section (with its
   * own interface numbering), which readers handle as a concatenated capture.
   */
  header(interfaces: PcapngInterface[]): void {
    const appl = Buffer.from(this.userAppl, "utf8");
    // SHB: type, length, magic, major, minor, section length (-1 = unknown), options.
    const shbLen = 24 + optLen(appl.length) + 4 + 4;
    const b = this.reserve(shbLen);
    const c = this.chunk;
    let o = b;
    c.writeUInt32LE(BT_SHB, o);
    c.writeUInt32LE(shbLen, o + 4);
    c.writeUInt32LE(BYTE_ORDER_MAGIC, o + 8);
    c.writeUInt16LE(1, o + 12);
    c.writeUInt16LE(0, o + 14);
    c.writeInt32LE(-1, o + 16);
    c.writeInt32LE(-1, o + 20);
    o = this.writeOption(o + 24, SHB_USERAPPL, appl);
    o = this.writeEndOfOpt(o);
    c.writeUInt32LE(shbLen, o);
    this.used = o + 4;

    this.snapLens = [];
    for (const itf of interfaces) {
      const name = Buffer.from(itf.name, "utf8");
      const desc = itf.description !== undefined ? Buffer.from(itf.description, "utf8") : null;
      const snapLen = itf.snapLen ?? 0;
      this.snapLens.push(snapLen);
      const idbLen = 16 + optLen(name.length) + (desc !== null ? optLen(desc.length) : 0) + optLen(1) + 4 + 4;
      let p = this.reserve(idbLen);
      const d = this.chunk;
      d.writeUInt32LE(BT_IDB, p);
      d.writeUInt32LE(idbLen, p + 4);
      d.writeUInt16LE(itf.linkType ?? LINKTYPE_ETHERNET, p + 8);
      d.writeUInt16LE(0, p + 10);
      d.writeUInt32LE(snapLen >>> 0, p + 12);
      p = this.writeOption(p + 16, IF_NAME, name);
      if (desc !== null) p = this.writeOption(p, IF_DESCRIPTION, desc);
      // if_tsresol: one byte, 9 = 10^-9 s.
      d.writeUInt16LE(IF_TSRESOL, p);
      d.writeUInt16LE(1, p + 2);
      d.writeUInt32LE(0, p + 4);
      d[p + 4] = 9;
      p = this.writeEndOfOpt(p + 8);
      d.writeUInt32LE(idbLen, p);
      this.used = p + 4;
    }
  }

  /**
   * Writes one frame as an EPB. `timestampNs` is nanoseconds since the epoch (see
   * nowNs()); a number avoids a BigInt per frame. Frames longer than the
   * interface's snapLen are cut, with the original length kept.
   */
  packet(ifIndex: number, buf: Buffer, off: number, len: number, timestampNs: bigint | number, dir?: "in" | "out", comment?: string): void {
    if (ifIndex < 0 || ifIndex >= this.snapLens.length) {
      throw new RangeError(`pcapng: interface ${ifIndex} was not declared in header()`);
    }
    const snap = this.snapLens[ifIndex];
    const capLen = snap !== 0 && len > snap ? snap : len;
    const flagsLen = dir === undefined ? 0 : 8;
    // opt_comment (section 3.5): UTF-8, not zero-terminated; `capture --drops` puts the drop reason there.
    const commentBytes = comment === undefined ? 0 : Buffer.byteLength(comment, "utf8");
    const commentLen = comment === undefined ? 0 : optLen(commentBytes);
    const total = 28 + pad4(capLen) + flagsLen + commentLen + (flagsLen + commentLen !== 0 ? 4 : 0) + 4;
    const p = this.reserve(total);
    const c = this.chunk;
    let hi: number;
    let lo: number;
    if (typeof timestampNs === "bigint") {
      hi = Number((timestampNs >> 32n) & 0xffffffffn);
      lo = Number(timestampNs & 0xffffffffn);
    } else {
      const t = Math.floor(timestampNs);
      hi = Math.floor(t / TWO_32);
      lo = t - hi * TWO_32;
    }
    c.writeUInt32LE(BT_EPB, p);
    c.writeUInt32LE(total, p + 4);
    c.writeUInt32LE(ifIndex, p + 8);
    c.writeUInt32LE(hi >>> 0, p + 12);
    c.writeUInt32LE(lo >>> 0, p + 16);
    c.writeUInt32LE(capLen, p + 20);
    c.writeUInt32LE(len, p + 24);
    // On Node 20 a partial-range copy between two buffers makes one view; capture
    // is off the forwarding fast path, so that is the one allocation per frame.
    buf.copy(c, p + 28, off, off + capLen);
    let o = p + 28 + capLen;
    while ((o & 3) !== 0) c[o++] = 0;
    if (dir !== undefined) {
      c.writeUInt16LE(EPB_FLAGS, o);
      c.writeUInt16LE(4, o + 2);
      c.writeUInt32LE(dir === "in" ? EPB_DIR_INBOUND : EPB_DIR_OUTBOUND, o + 4);
      o += 8;
    }
    if (comment !== undefined) {
      c.writeUInt16LE(OPT_COMMENT, o);
      c.writeUInt16LE(commentBytes, o + 2);
      c.write(comment, o + 4, commentBytes, "utf8");
      o += 4 + commentBytes;
      while ((o & 3) !== 0) c[o++] = 0;
    }
    if (flagsLen + commentLen !== 0) o = this.writeEndOfOpt(o);
    c.writeUInt32LE(total, o);
    this.used = o + 4;
    this.packets++;
  }

  /** Hands what is buffered to the sink. */
  flush(): void {
    if (this.used === 0) return;
    const out = this.chunk.subarray(0, this.used);
    this.chunk = Buffer.allocUnsafe(this.chunkSize);
    this.bytesWritten += this.used;
    this.used = 0;
    this.sink(out);
  }

  /**
   * Returns an offset in this.chunk with room for `bytes`, flushing first when the
   * chunk cannot hold them; a block larger than a chunk gets a chunk of its own.
   */
  private reserve(bytes: number): number {
    if (this.used + bytes > this.chunk.length) {
      this.flush();
      if (bytes > this.chunk.length) this.chunk = Buffer.allocUnsafe(bytes);
    }
    return this.used;
  }

  private writeOption(o: number, code: number, value: Buffer): number {
    const c = this.chunk;
    c.writeUInt16LE(code, o);
    c.writeUInt16LE(value.length, o + 2);
    value.copy(c, o + 4);
    let e = o + 4 + value.length;
    while ((e & 3) !== 0) c[e++] = 0;
    return e;
  }

  private writeEndOfOpt(o: number): number {
    this.chunk.writeUInt32LE(OPT_ENDOFOPT, o);
    return o + 4;
  }
}

export interface PcapngReadInterface {
  name: string;
  description?: string;
  linkType: number;
  snapLen: number;
  /** Timestamp units per second (from if_tsresol; 10^6 when absent). */
  tsUnitsPerSec: bigint;
}

export interface PcapngReadPacket {
  ifIndex: number;
  data: Buffer;
  origLen: number;
  /** epb_flags, 0 when absent. */
  flags: number;
  /** Raw timestamp in the interface's units. */
  timestamp: bigint;
}

/**
 * Reads the SHB, IDB and EPB blocks of a pcapng file of one or more sections
 * (interfaces are numbered per section; this reader concatenates them, which is
 * right for files of one section). Other blocks are skipped. Meant for tests: it
 * checks every block's framing and throws on anything malformed.
 */
export function readPcapng(buf: Buffer): {
  interfaces: PcapngReadInterface[];
  packets: PcapngReadPacket[];
} {
  const interfaces: PcapngReadInterface[] = [];
  const packets: PcapngReadPacket[] = [];
  let le = true;
  let base = 0; // first interface of the current section
  const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  let o = 0;
  while (o < buf.length) {
    if (o + 12 > buf.length) throw new Error(`pcapng: truncated block at ${o}`);
    const type = buf.readUInt32LE(o); // the SHB type is a palindrome
    if (type === BT_SHB) {
      const magic = buf.readUInt32LE(o + 8);
      if (magic === BYTE_ORDER_MAGIC) le = true;
      else if (magic === 0x4d3c2b1a) le = false;
      else throw new Error(`pcapng: bad byte-order magic at ${o}`);
      base = interfaces.length;
    } else if (o === 0) {
      throw new Error("pcapng: file does not start with a Section Header Block");
    }
    const t = u32(o);
    const len = u32(o + 4);
    if (len < 12 || (len & 3) !== 0 || o + len > buf.length) {
      throw new Error(`pcapng: bad block length ${len} at ${o}`);
    }
    if (u32(o + len - 4) !== len) {
      throw new Error(`pcapng: trailing block length differs at ${o}`);
    }
    const end = o + len - 4;
    const options = (start: number, each: (code: number, vo: number, vl: number) => void): void => {
      let p = start;
      while (p + 4 <= end) {
        const code = u16(p);
        const vl = u16(p + 2);
        if (code === OPT_ENDOFOPT) break;
        if (p + 4 + vl > end) throw new Error(`pcapng: option overruns its block at ${p}`);
        each(code, p + 4, vl);
        p += 4 + pad4(vl);
      }
    };
    if (t === BT_SHB) {
      if (u16(o + 12) !== 1) throw new Error(`pcapng: unsupported major version ${u16(o + 12)}`);
    } else if (t === BT_IDB) {
      const itf: PcapngReadInterface = {
        name: "",
        linkType: u16(o + 8),
        snapLen: u32(o + 12),
        tsUnitsPerSec: 1000000n,
      };
      options(o + 16, (code, vo, vl) => {
        if (code === IF_NAME) itf.name = buf.toString("utf8", vo, vo + vl);
        else if (code === IF_DESCRIPTION) itf.description = buf.toString("utf8", vo, vo + vl);
        else if (code === IF_TSRESOL) {
          const r = buf[vo];
          itf.tsUnitsPerSec = r & 0x80 ? 1n << BigInt(r & 0x7f) : 10n ** BigInt(r);
        }
      });
      interfaces.push(itf);
    } else if (t === BT_EPB) {
      const ifIndex = base + u32(o + 8);
      if (ifIndex >= interfaces.length) throw new Error(`pcapng: EPB names unknown interface at ${o}`);
      const timestamp = (BigInt(u32(o + 12)) << 32n) | BigInt(u32(o + 16));
      const capLen = u32(o + 20);
      const origLen = u32(o + 24);
      if (o + 28 + capLen > end) throw new Error(`pcapng: EPB data overruns its block at ${o}`);
      const data = Buffer.from(buf.subarray(o + 28, o + 28 + capLen));
      let flags = 0;
      options(o + 28 + pad4(capLen), (code, vo, vl) => {
        if (code === EPB_FLAGS && vl === 4) flags = u32(vo);
      });
      packets.push({ ifIndex, data, origLen, flags, timestamp });
    }
    o += len;
  }
  return { interfaces, packets };
}
