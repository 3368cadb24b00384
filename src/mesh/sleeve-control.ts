/**
 * The sleeve port's control datagrams (src/mesh/wire.ts): heartbeats and their acks,
 * path-MTU probes and their acks. Sent one at a time from control slots of the port's
 * pool region, with send arrays of their own (they may be sent while a receive batch
 * fills the data send list); received ones are counted and told to the agent (a
 * SleeveListener), which answers those of its connections.
 */
import type { UdpHandle } from "../io/udp-native.js";
import { readU16, readU32, writeU16, writeU32 } from "../wire/bytes.js";
import { parseIp } from "../wire/ipv4addr.js";
import { SLEEVE_COUNTERS } from "./sleeve-counters.js";
import { PROBE_BODY, SLEEVE_ACK, SLEEVE_HEADER, SLEEVE_HEARTBEAT, SLEEVE_PROBE, SLEEVE_PROBE_ACK, UDP_IP_OVERHEAD, writeSleeveHeader } from "./wire.js";

const S = SLEEVE_COUNTERS.id;
const CTRL_SLOTS = 8;
const CTRL_SLOT = 64;

/** What the agent hears from the data path (control, not per frame). */
export interface SleeveListener {
  heartbeat(fromShort: number, addr: number, port: number): void;
  ack(fromShort: number, addr: number): void;
  /** A path-MTU probe that arrived as a datagram of `size` bytes (IP and UDP counted). */
  probe(fromShort: number, addr: number, port: number, seq: number, size: number): void;
  probeAck(fromShort: number, seq: number, size: number): void;
}

export class SleeveControl {
  private readonly one = { offsets: new Uint32Array(1), lengths: new Uint32Array(1), addrs: new Uint32Array(1), segs: new Uint32Array(1) };
  private ctrlBase = 0;
  /** A probe of up to underlayMtu bytes: zeros after its header and body. */
  private probeBase = 0;

  constructor(private readonly underlayMtu: number) {}

  /** Pool bytes the control slots and the probe need. */
  regionBytes(): number {
    return CTRL_SLOTS * CTRL_SLOT + this.underlayMtu;
  }

  /** Places the slots at `base` in the pool (when the port opens). */
  place(pool: Buffer, base: number): void {
    this.ctrlBase = base;
    this.probeBase = base + CTRL_SLOTS * CTRL_SLOT;
    pool.fill(0, this.probeBase, this.probeBase + this.underlayMtu);
  }

  /** A heartbeat or heartbeat ack (a header only); false when the kernel refused it. */
  sendHeader(sock: UdpHandle, pool: Buffer, type: number, self: number, addr: string | number, port: number, destShort: number): boolean {
    writeSleeveHeader(pool, this.ctrlBase, type, 1, self, self, destShort);
    return this.sendOne(sock, pool, this.ctrlBase, SLEEVE_HEADER, addr, port);
  }

  /** A probe of `size` bytes (IP and UDP headers counted); false when it cannot be sent. */
  sendProbe(sock: UdpHandle, pool: Buffer, self: number, addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const len = size - UDP_IP_OVERHEAD;
    if (len < SLEEVE_HEADER + PROBE_BODY || size > this.underlayMtu) return false;
    writeProbe(pool, this.probeBase, SLEEVE_PROBE, self, destShort, seq, size);
    return this.sendOne(sock, pool, this.probeBase, len, addr, port);
  }

  /** A probe's ack: its sequence number and the size it arrived with. */
  sendProbeAck(sock: UdpHandle, pool: Buffer, self: number, addr: string | number, port: number, destShort: number, seq: number, size: number): boolean {
    const off = this.ctrlBase + CTRL_SLOT;
    writeProbe(pool, off, SLEEVE_PROBE_ACK, self, destShort, seq, size);
    return this.sendOne(sock, pool, off, SLEEVE_HEADER + PROBE_BODY, addr, port);
  }

  private sendOne(sock: UdpHandle, pool: Buffer, off: number, len: number, addr: string | number, port: number): boolean {
    const s = this.one;
    s.offsets[0] = off;
    s.lengths[0] = len;
    s.addrs[0] = typeof addr === "number" ? addr : parseIp(addr);
    s.segs[0] = 0;
    return sock.send(pool, s.offsets, s.lengths, s.addrs, port, s.segs, 1) === 1;
  }
}

/**
 * A control datagram for us (header checked, `type` not FRAMES) from `addr`:`port`:
 * counted in `c` and told to the listener; false when a probe or probe ack is too short
 * for its body (a drop, counted at badHeader).
 */
export function receiveControl(
  listener: SleeveListener | null,
  c: Float64Array,
  pool: Buffer,
  off: number,
  len: number,
  type: number,
  sender: number,
  addr: number,
  port: number,
): boolean {
  if (type === SLEEVE_HEARTBEAT) {
    c[S.heartbeats]++;
    listener?.heartbeat(sender, addr, port);
  } else if (type === SLEEVE_ACK) {
    c[S.acks]++;
    listener?.ack(sender, addr);
  } else if (len < SLEEVE_HEADER + PROBE_BODY) {
    c[S.badHeader]++;
    return false;
  } else if (type === SLEEVE_PROBE) {
    c[S.probes]++;
    listener?.probe(sender, addr, port, readU32(pool, off + SLEEVE_HEADER), len + UDP_IP_OVERHEAD);
  } else {
    c[S.probeAcks]++;
    listener?.probeAck(sender, readU32(pool, off + SLEEVE_HEADER), readU16(pool, off + SLEEVE_HEADER + 4));
  }
  return true;
}

/** A probe or probe ack: the header, the sequence number, the size. */
function writeProbe(pool: Buffer, off: number, type: number, self: number, destShort: number, seq: number, size: number): void {
  writeSleeveHeader(pool, off, type, 1, self, self, destShort);
  writeU32(pool, off + SLEEVE_HEADER, seq);
  writeU16(pool, off + SLEEVE_HEADER + 4, size);
}
