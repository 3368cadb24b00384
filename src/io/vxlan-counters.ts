/**
 * The counters of a VXLAN port (`show tunnels`, `show stats`), declared once for the
 * three files that count them: the port's receive path (vxlan-port.ts), its transmit
 * path (vxlan-tx.ts) and its forwarding table (vxlan-fdb.ts). The Port's own rx/tx
 * counters come on top; received drops also count in rxDrops, frames not sent in
 * txDrops.
 */
import { counters } from "../core/element.js";

export const VXLAN_COUNTERS = counters({
  forward: {
    encapsulated: "outer packets sent (a flooded frame counts once per remote)",
    decapsulated: "inner frames received",
  },
  deliver: {
    arpSuppressed: "ARP requests answered in the port",
  },
  drop: {
    badHeader: "datagrams shorter than 8 bytes or without the I flag (RFC 7348 section 5)",
    vniMismatch: "datagrams of another VNI",
    runt: "inner frames shorter than 14 bytes (received, or queued to send)",
    rxTooBig: "inner frames larger than a slot's room (slotSize - HEADROOM)",
    tooBig: "frames to send above the overlay MTU (RFC 7348 section 4.3: no fragmenting)",
    txErrors: "sends the kernel refused (lastTxError has the latest message)",
    unknownDst: "frames with nowhere to go: no FDB entry and no flood remotes",
    badOffload: "super-frames or partial checksums that could not be resolved (malformed)",
  },
  event: {
    flooded: "frames replicated to the flood list (once per frame)",
    learned: "new or moved learned entries",
    aged: "learned entries expired",
    learnLimit: "source MACs not learned because the table was full",
    segmented: "TSO super-frames cut into segments (offloads)",
    coalesced: "received datagrams merged into a super-frame (not delivered on their own)",
  },
});

export type VxlanCounter = (typeof VXLAN_COUNTERS.names)[number];

/** Counter ids, for `c[V.name]++` on the hot path. */
export const V = VXLAN_COUNTERS.id;
