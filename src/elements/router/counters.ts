/**
 * What the router counts (`show stats`, the `router` object): one declaration, in the
 * order `show stats` prints it, with the reassembler's counters (ipv4-reassembly.ts)
 * among them.
 *
 * Kinds say what a counter means for a frame the router takes from an interface: it
 * ends in exactly one `forward`, `deliver` or `drop` counter (a datagram the reassembler
 * completes comes back as one more frame). `event` counters count what happened on the
 * way — what the router sent of its own (replies, errors, ARP, resets), what became of a
 * packet after it was forwarded (waiting for ARP, fragments) — and are never a second
 * end: the fuzz harness checks that frames in = forward + deliver + drop, exactly.
 */
import { counters } from "../../core/element.js";
import { REASM_COUNTERS } from "../ipv4-reassembly.js";

export const ROUTER_COUNTERS = counters({
  forwarded: { kind: "forward", help: "packets forwarded (whole, or in fragments) toward their next hop" },
  delivered: { kind: "deliver", help: "packets for one of the router's own addresses" },
  echoReplies: { kind: "event", help: "echo replies sent (of delivered)" },
  icmpErrors: { kind: "event", help: "ICMP errors sent" },
  icmpRateLimited: { kind: "event", help: "ICMP errors not sent: over the rate limit (RFC 1812 §4.3.2.8)" },
  icmpSuppressed: { kind: "event", help: "ICMP errors not sent: about an error, a broadcast, a fragment (RFC 1812 §4.3.2.7)" },
  ttlExpired: { kind: "drop", help: "TTL 1 or 0: not forwarded (time exceeded sent)" },
  noRoute: { kind: "drop", help: "no route to the destination (net unreachable sent)" },
  hostUnreachable: { kind: "event", help: "packets that waited for ARP in vain (host unreachable sent)" },
  fragNeeded: { kind: "drop", help: "DF set and larger than the out MTU (fragmentation needed sent)" },
  fragmented: { kind: "event", help: "packets cut into fragments" },
  fragmentsOut: { kind: "event", help: "fragments made" },
  fragFailed: { kind: "event", help: "packets that could not be fragmented (too many fragments, malformed options)" },
  tooShort: { kind: "drop", help: "IPv4 header: shorter than 20 bytes or its IHL" },
  badVersion: { kind: "drop", help: "IPv4 header: version not 4" },
  badIhl: { kind: "drop", help: "IPv4 header: IHL below 5" },
  badTotalLen: { kind: "drop", help: "IPv4 header: total length below the header or beyond the frame" },
  badChecksum: { kind: "drop", help: "IPv4 header: checksum wrong" },
  martianSource: { kind: "drop", help: "source cannot be a host: 0/8, 127/8, 224/4 and up, ours, a subnet broadcast (RFC 1812 §5.3.7)" },
  martianDestination: { kind: "drop", help: "destination 0/8, 127/8 or 240/4 (RFC 1812 §5.3.7)" },
  broadcastDropped: { kind: "drop", help: "link broadcast, multicast or directed broadcast: not forwarded (RFC 1812 §5.3.4, §5.3.5)" },
  otherHost: { kind: "drop", help: "unicast frame for another station (flooded by the switch)" },
  unknownEtherType: { kind: "drop", help: "neither IPv4 nor ARP" },
  protoUnreachable: { kind: "event", help: "delivered packets of a protocol the router does not speak (protocol unreachable sent)" },
  portUnreachable: { kind: "event", help: "delivered UDP datagrams (port unreachable sent)" },
  localDropped: { kind: "event", help: "delivered packets ignored: fragments, link broadcasts, ICMP but a valid echo request, TCP not to be reset" },
  arpIn: { kind: "deliver", help: "ARP frames (requests and replies) taken" },
  arpRepliesSent: { kind: "event", help: "ARP replies sent (own addresses, proxy ARP)" },
  arpRequestsSent: { kind: "event", help: "ARP requests sent (resolution, probes, announcements)" },
  badArp: { kind: "event", help: "ARP frames ignored (of arpIn): malformed, group or zero sender" },
  arpQueueFull: { kind: "event", help: "packets not queued for ARP: the queue was full" },
  neighbourTableFull: { kind: "event", help: "packets not sent: no room for a new neighbour entry" },
  scratchFull: { kind: "event", help: "frames the router would write, not written: the pass's scratch was used up" },
  runt: { kind: "drop", help: "shorter than an Ethernet header" },
  serviceRejected: { kind: "drop", help: "to a service without endpoints (port unreachable sent, as kube-proxy's REJECT)" },
  natDropped: { kind: "drop", help: "dropped by the NAT (invalid, table full, no source port)" },
  gsoDropped: { kind: "drop", help: "TSO super-frames whose segments would need IP fragmentation" },
  tcpResets: { kind: "event", help: "delivered TCP segments answered with a reset (RFC 793)" },
  ...REASM_COUNTERS.decls,
  refragmented: { kind: "event", help: "reassembled datagrams forwarded in fragments no larger than those received" },
  fragDropped: { kind: "drop", help: "packets to forward that needed fragmenting and could not be (see fragFailed, scratchFull)" },
  outNoRoute: { kind: "event", help: "packets of the router's own (replies, errors, resets) with no route (Linux OutNoRoutes)" },
});
export type RouterCounter = (typeof ROUTER_COUNTERS.names)[number];
/** Counter ids, for `s.c[C.name]++`. */
export const C = ROUTER_COUNTERS.id;
/** Where the reassembler's counters sit in the router's storage (declared in a row). */
export const REASM_FIRST = C.fragsReceived;
