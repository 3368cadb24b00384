/**
 * The sleeve port's answer to an IPv4 frame with DF set above the mesh MTU, as a router
 * would give it (RFC 1191 section 4): an ICMP "fragmentation needed" carrying the mesh
 * MTU, from the frame's destination (the mesh has no address of its own), Ethernet and
 * IP addresses swapped, so the pod lowers its path MTU. Answers are written into slots
 * of the port's pool region and wait for the end of the pass; at most FRAG_NEEDED_SLOTS
 * wait at a time and more are not answered (a router rate-limits its ICMP errors too,
 * RFC 1812 section 4.3.2.8).
 */
import type { FrameList } from "../core/batch.js";
import { HEADROOM } from "../core/port.js";
import { readU16, readU32 } from "../wire/bytes.js";
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import { emitIcmpError, ICMP_DEST_UNREACH, ICMP_UNREACH_FRAG_NEEDED, icmpErrorAllowed, icmpRestFragNeeded } from "../wire/icmp.js";
import { IPV4_DST_ADDR_OFF } from "../wire/ipv4.js";

export const FRAG_NEEDED_SLOTS = 8;
/** Each slot: HEADROOM, Ethernet and at most 576 bytes of IP. */
const SLOT = HEADROOM + ETH_HEADER_LEN + 576 + 2;
/** Pool bytes the answers need. */
export const FRAG_NEEDED_REGION = FRAG_NEEDED_SLOTS * SLOT;

export class FragNeededAnswers {
  /** Pool offset of the first slot (set when the port opens). */
  base = 0;
  /** Answers waiting for delivery. */
  count = 0;
  private ident = 0;

  /**
   * Answers the frame at `off` (`len` bytes, above `mtu`) when it is unicast IPv4 with
   * DF set and may be answered (icmpErrorAllowed); true when an answer was queued.
   */
  answer(pool: Buffer, off: number, len: number, mtu: number): boolean {
    if (this.count === FRAG_NEEDED_SLOTS) return false;
    // Unicast IPv4 (0x0800) with DF (the flags byte's 0x40).
    if ((pool[off] & 1) !== 0 || pool[off + 12] !== 0x08 || pool[off + 13] !== 0x00 || (pool[off + ETH_HEADER_LEN + 6] & 0x40) === 0) return false;
    const ip = off + ETH_HEADER_LEN;
    if (!icmpErrorAllowed(pool, ip, len - ETH_HEADER_LEN, false)) return false;
    const o = this.base + this.count * SLOT + HEADROOM;
    this.ident = (this.ident + 1) & 0xffff;
    const n = emitIcmpError(
      pool,
      o + ETH_HEADER_LEN,
      pool,
      ip,
      len - ETH_HEADER_LEN,
      ICMP_DEST_UNREACH,
      ICMP_UNREACH_FRAG_NEEDED,
      icmpRestFragNeeded(mtu),
      readU32(pool, ip + IPV4_DST_ADDR_OFF),
      this.ident,
    );
    if (n < 0) return false;
    pool.copy(pool, o, off + 6, off + 12); // to the frame's source
    pool.copy(pool, o + 6, off, off + 6); // from its destination
    pool[o + 12] = 0x08;
    pool[o + 13] = 0x00;
    this.count++;
    return true;
  }

  /** Puts the waiting answers into `rx` (offsets and lengths from 0) and forgets them; returns how many. */
  take(pool: Buffer, rx: FrameList): number {
    const n = this.count;
    this.count = 0;
    for (let i = 0; i < n; i++) {
      const o = this.base + i * SLOT + HEADROOM;
      rx.offsets[i] = o;
      rx.lengths[i] = readU16(pool, o + ETH_HEADER_LEN + 2) + ETH_HEADER_LEN;
    }
    return n;
  }
}
