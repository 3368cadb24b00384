/**
 * The sleeve port's tables from the mesh's routes: per peer (in a stable slot) its short
 * id, the underlay address of its next hop, and our children in its broadcast tree; and
 * our own children. A peer that left frees its slot and flushes the learned MACs (they
 * may name it).
 */
import type { MeshTopology, Routes } from "./topology.js";
import { shortId } from "./wire.js";

export interface PortTables {
  selfShort: number;
  peers: Array<{ short: number; nextHop: number; children: number[] } | null>;
  ownChildren: number[];
  flushMacs: boolean;
}

/** `slots` (peer name -> slot) is kept by the caller across calls and updated here. */
export function portTables(self: string, topology: MeshTopology, routes: Routes, slots: Map<string, number>, addrOf: (peer: string) => number): PortTables {
  let flush = false;
  for (const name of [...slots.keys()]) {
    if (!topology.peers.has(name)) {
      slots.delete(name);
      flush = true;
    }
  }
  const used = new Set(slots.values());
  for (const name of topology.peers.keys()) {
    if (slots.has(name)) continue;
    let s = 0;
    while (used.has(s)) s++;
    slots.set(name, s);
    used.add(s);
  }
  const max = Math.max(0, ...slots.values()) + 1;
  const peers: PortTables["peers"] = new Array(max).fill(null);
  for (const [name, slot] of slots) {
    const hop = routes.nextHop.get(name);
    peers[slot] = {
      short: shortId(name),
      nextHop: hop === undefined ? 0 : addrOf(hop),
      children: (routes.children.get(name) ?? []).map(addrOf).filter((a) => a !== 0),
    };
  }
  return { selfShort: shortId(self), peers, ownChildren: (routes.children.get(self) ?? []).map(addrOf).filter((a) => a !== 0), flushMacs: flush };
}
