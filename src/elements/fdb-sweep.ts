/**
 * Whole-table operations on the learning switch's MAC table (fdb-table.ts), apart from
 * the per frame path: the ageing sweep, the listings of live entries (`show fdb`) and
 * the flushes (all, one VLAN, one port: a port spanning tree stops forwarding, a port
 * shut by port security, a port that leaves or changes VLANs). An entry is live when static or seen within the ageing time
 * in use (which spanning tree shortens during a topology change).
 */
import type { FdbTable } from "./fdb-table.js";

export interface FdbEntry {
  mac: number;
  vlan: number;
  port: number;
  lastSeen: number;
  isStatic: boolean;
}

/** Removes dynamic entries idle `ageingMs` or longer; returns how many went. */
export function sweepAged(fdb: FdbTable, ageingMs: number, now: number): number {
  let removed = 0;
  // removeSlot() may shift a later entry into the slot: look at it again.
  for (let i = 0; i < fdb.capacity; ) {
    if (fdb.isUsed(i) && !fdb.isStatic(i) && now - fdb.lastSeen(i) >= ageingMs) {
      fdb.removeSlot(i);
      removed++;
    } else {
      i++;
    }
  }
  return removed;
}

/** The live entries, by VLAN then MAC. */
export function liveEntries(fdb: FdbTable, ageingMs: number, now: number): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const e of fdb.entries()) {
    if (e.isStatic || now - e.lastSeen < ageingMs) {
      out.push({ mac: e.mac, vlan: e.vlan, port: e.port, lastSeen: e.lastSeen, isStatic: e.isStatic });
    }
  }
  return out;
}

/**
 * liveEntries() unsorted and step by step, for a listing that pauses between event-loop
 * turns (see FdbTable.walk for what it promises; null marks a point to pause, and the
 * clock and the ageing in use are read there). Returns whether the table grew meanwhile.
 */
export function* walkLive(fdb: FdbTable, ageingMs: () => number, clock: () => number): Generator<FdbEntry | null, { resized: boolean }, void> {
  let now = clock();
  let ageing = ageingMs();
  const it = fdb.walk();
  for (;;) {
    const r = it.next();
    if (r.done === true) return r.value;
    const e = r.value;
    if (e === null) {
      yield null;
      now = clock();
      ageing = ageingMs();
    } else if (e.isStatic || now - e.lastSeen < ageing) {
      yield e;
    }
  }
}

/**
 * Removes the entries of VLAN `vlan` and/or port `port` (-1: any): the dynamic ones, or
 * with `withStatic` every one (a port that leaves).
 */
export function removeEntries(fdb: FdbTable, vlan: number, port: number, withStatic: boolean): void {
  if (vlan < 0 && port < 0 && !withStatic) {
    fdb.clear(true);
    return;
  }
  for (let i = 0; i < fdb.capacity; ) {
    if (fdb.isUsed(i) && (withStatic || !fdb.isStatic(i)) && (vlan < 0 || fdb.vlan(i) === vlan) && (port < 0 || fdb.port(i) === port)) {
      fdb.removeSlot(i);
    } else {
      i++;
    }
  }
}
