/**
 * The counters of a VXLAN port (`show tunnels`, `show stats`), declared once for the
 * three files that count them: the port's receive path (vxlan-port.ts), its transmit
 * path (vxlan-tx.ts) and its forwarding table (vxlan-fdb.ts). The Port's own rx/tx
 * counters come on top; received drops also count in rxDrops, frames not sent in
 * txDrops.
 */
import { counters } from "../core/element.js";

export const VXLAN_COUNTERS = counters({
  encapsulated: { kind: "forward", help: "outer packets sent (a flooded frame counts once per remote)" },
  decapsulated: { kind: "forward", help: "inner frames received" },
  flooded: { kind: "event", help: "frames replicated to the flood list (once per frame)" },
  learned: { kind: "event", help: "new or moved learned entries" },
  aged: { kind: "event", help: "learned entries expired" },
  learnLimit: { kind: "event", help: "source MACs not learned because the table was full" },
  badHeader: { kind: "drop", help: "datagrams shorter than 8 bytes or without the I flag (RFC 7348 section 5)" },
  vniMismatch: { kind: "drop", help: "datagrams of another VNI" },
  runt: { kind: "drop", help: "inner frames shorter than 14 bytes (received, or queued to send)" },
  rxTooBig: { kind: "drop", help: "inner frames larger than a slot's room (slotSize - HEADROOM)" },
  tooBig: { kind: "drop", help: "frames to send above the overlay MTU (RFC 7348 section 4.3: no fragmenting)" },
  arpSuppressed: { kind: "deliver", help: "ARP requests answered in the port" },
  txErrors: { kind: "drop", help: "sends the kernel refused (lastTxError has the latest message)" },
  unknownDst: { kind: "drop", help: "frames with nowhere to go: no FDB entry and no flood remotes" },
  segmented: { kind: "event", help: "TSO super-frames cut into segments (offloads)" },
  coalesced: { kind: "event", help: "received datagrams merged into a super-frame (not delivered on their own)" },
  badOffload: { kind: "drop", help: "super-frames or partial checksums that could not be resolved (malformed)" },
});

export type VxlanCounter = (typeof VXLAN_COUNTERS.names)[number];

/** Counter ids, for `c[V.name]++` on the hot path. */
export const V = VXLAN_COUNTERS.id;
