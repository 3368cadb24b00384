/**
 * The sleeve port's routing state (sleeve-port.ts): the MAC table (an FdbTable: MAC ->
 * the peer slot it lives behind, learned from received frames) and the tables the
 * agent programs from the mesh's routes (port-tables.ts): per peer slot its short id,
 * the underlay address of the next hop toward it and our children in its broadcast
 * tree; and our own tree's children. Typed arrays rewritten between passes, read by
 * the hot path with no allocation. Peers are slots 0..MAX_PEERS-1; short ids map to
 * slots through a Map of 30-bit integers (small integers in V8).
 */
import { FdbTable } from "../elements/fdb-table.js";
import { readU16, readU32 } from "../wire/bytes.js";
import type { PortTables } from "./port-tables.js";

/** Most peers in one mesh. */
export const MAX_PEERS = 256;
/** Slot of "broadcast" in the per-destination arrays. */
export const BCAST = MAX_PEERS;

/** The routing state the agent programs: peers by slot (null: a free slot; our own entry is one of them), with their routes. */
export type SleeveProgram = PortTables;

export class SleeveRoutes {
  /** MAC -> peer slot (the FdbTable's port field). */
  readonly macs = new FdbTable(65536);
  selfShort = 0;
  readonly slotOf = new Map<number, number>();
  readonly shortOf = new Uint32Array(MAX_PEERS);
  /** Underlay address (int32) of the next hop toward each slot, 0 when unreachable. */
  readonly nextHop = new Int32Array(MAX_PEERS + 1);
  /** Slot s's children in its broadcast tree: childAddrs[childStart[s] .. childStart[s + 1]). */
  readonly childStart = new Int32Array(MAX_PEERS + 2);
  childAddrs = new Int32Array(16);
  /** Our children in our own tree (where our broadcasts go first). */
  ownChildren = new Int32Array(0);

  /**
   * Rewrites the tables. A peer keeps its slot while it is known, so learned MACs stay
   * valid; when a slot was freed (`flushMacs`), what was learned may point at the wrong
   * peer and goes.
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

  /** The peer slot the destination MAC of the frame at `off` lives behind; BCAST for broadcast, multicast and unknown MACs. */
  destination(buf: Buffer, off: number): number {
    if ((buf[off] & 1) !== 0) return BCAST;
    const slot = this.macs.find(1, readU16(buf, off), readU32(buf, off + 2) | 0);
    return slot >= 0 ? this.macs.port(slot) : BCAST;
  }

  /** Learns the MAC at `mac` behind peer `slot`; true when it is new or moved from another peer. */
  learn(buf: Buffer, mac: number, slot: number): boolean {
    const macs = this.macs;
    const hi = readU16(buf, mac);
    const lo = readU32(buf, mac + 2) | 0;
    const now = performance.now();
    const e = macs.find(1, hi, lo);
    if (e >= 0) {
      const moved = macs.port(e) !== slot;
      if (moved) macs.setPort(e, slot);
      macs.touch(e, now);
      return moved;
    }
    return macs.insert(1, hi, lo, slot, now, false) >= 0;
  }
}
