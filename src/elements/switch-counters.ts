/**
 * The learning switch's counters (the element contract, src/core/element.ts): every
 * frame the switch takes ends in exactly one `forward`, `deliver` or `drop` counter;
 * `event` counters count what happened on the way. The drop counters are the reasons
 * `show stats` gives for a frame the switch did not pass on.
 */
import { counters } from "../core/element.js";

export const SWITCH_COUNTERS = counters({
  forward: {
    forwarded: "known unicast sent out of the one port that owns the destination",
    flooded: "broadcast, multicast and unknown unicast sent to every other member of the VLAN",
  },
  drop: {
    filtered: "destination is on the port the frame came in on",
    runt: "shorter than an Ethernet (or tagged) header",
    oversize: "longer than the largest frame, and not a TSO super-frame",
    badSrcMac: "group or all-zero source address",
    vlanFiltered: "VLAN not allowed on the port, or a tag on an access port",
    linkLocal: "802.1D reserved group address 01:80:c2:00:00:0X (never forwarded; BPDUs too while STP is off)",
    stpDiscarded: "received on a port spanning tree has blocking or listening: not learned, not forwarded",
    stpLearning: "received on a learning port (spanning tree): source learned, frame not forwarded",
    stpEgress: "destination known on a port that is not forwarding (spanning tree)",
    stormBroadcast: "broadcast over the ingress port's storm control limit",
    stormMulticast: "multicast over the ingress port's storm control limit",
    stormUnknownUnicast: "unknown unicast over the ingress port's storm control limit",
    secViolation: "port security: a source MAC beyond the port's maxMacs (or another port's secure MAC)",
    portShutdown: "received on a port port security shut (until tapnet security reset)",
    arpSpoofed: "ARP inspection: the sender IP is bound to another MAC in the VLAN",
    arpInvalid: "ARP inspection: truncated ARP, or sender MAC not the frame's source",
  },
  event: {
    learned: "new (VLAN, MAC) entries",
    stationMoves: "a known MAC seen on another port",
    aged: "entries removed after the ageing time",
    evicted: "entries evicted to learn a new station in a full table",
    macLimit: "stations not learned: static entries fill the table",
    scratchFull: "flooded copies not made: the pass's scratch was used up",
    portsShut: "ports shut by a port security violation",
  },
  deliver: {
    bpdu: "spanning tree BPDUs handed to the bridge protocol (STP on)",
  },
});
export type SwitchCounter = (typeof SWITCH_COUNTERS.names)[number];
