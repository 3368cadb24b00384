/**
 * The learning switch's counters (the element contract, src/core/element.ts): every
 * frame the switch takes ends in exactly one `forward`, `deliver` or `drop` counter;
 * `event` counters count what happened on the way. The drop counters are the reasons
 * `show stats` gives for a frame the switch did not pass on.
 */
import { counters } from "../core/element.js";

export const SWITCH_COUNTERS = counters({
  forwarded: { kind: "forward", help: "known unicast sent out of the one port that owns the destination" },
  flooded: { kind: "forward", help: "broadcast, multicast and unknown unicast sent to every other member of the VLAN" },
  filtered: { kind: "drop", help: "destination is on the port the frame came in on" },
  learned: { kind: "event", help: "new (VLAN, MAC) entries" },
  stationMoves: { kind: "event", help: "a known MAC seen on another port" },
  aged: { kind: "event", help: "entries removed after the ageing time" },
  evicted: { kind: "event", help: "entries evicted to learn a new station in a full table" },
  macLimit: { kind: "event", help: "stations not learned: static entries fill the table" },
  runt: { kind: "drop", help: "shorter than an Ethernet (or tagged) header" },
  oversize: { kind: "drop", help: "longer than the largest frame, and not a TSO super-frame" },
  badSrcMac: { kind: "drop", help: "group or all-zero source address" },
  vlanFiltered: { kind: "drop", help: "VLAN not allowed on the port, or a tag on an access port" },
  linkLocal: { kind: "drop", help: "802.1D reserved group address 01:80:c2:00:00:0X (never forwarded; BPDUs too while STP is off)" },
  scratchFull: { kind: "event", help: "flooded copies not made: the pass's scratch was used up" },
  bpdu: { kind: "deliver", help: "spanning tree BPDUs handed to the bridge protocol (STP on)" },
  stpDiscarded: { kind: "drop", help: "received on a port spanning tree has blocking or listening: not learned, not forwarded" },
  stpLearning: { kind: "drop", help: "received on a learning port (spanning tree): source learned, frame not forwarded" },
  stpEgress: { kind: "drop", help: "destination known on a port that is not forwarding (spanning tree)" },
  stormBroadcast: { kind: "drop", help: "broadcast over the ingress port's storm control limit" },
  stormMulticast: { kind: "drop", help: "multicast over the ingress port's storm control limit" },
  stormUnknownUnicast: { kind: "drop", help: "unknown unicast over the ingress port's storm control limit" },
  secViolation: { kind: "drop", help: "port security: a source MAC beyond the port's maxMacs (or another port's secure MAC)" },
  portShutdown: { kind: "drop", help: "received on a port port security shut (until tapnet security reset)" },
  portsShut: { kind: "event", help: "ports shut by a port security violation" },
  arpSpoofed: { kind: "drop", help: "ARP inspection: the sender IP is bound to another MAC in the VLAN" },
  arpInvalid: { kind: "drop", help: "ARP inspection: truncated ARP, or sender MAC not the frame's source" },
});
export type SwitchCounter = (typeof SWITCH_COUNTERS.names)[number];
