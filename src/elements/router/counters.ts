/**
 * What the router counts (`show stats`, the `router` object): one declaration, in the
 * order `show stats` prints it, followed by the reassembler's counters
 * (ipv4-reassembly.ts), which the router keeps in its own storage.
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
  forward: {
    forwarded: "packets forwarded (whole, or in fragments) toward their next hop",
  },
  deliver: {
    delivered: "packets for one of the router's own addresses",
    arpIn: "ARP frames (requests and replies) taken",
  },
  drop: {
    ttlExpired: "TTL 1 or 0: not forwarded (time exceeded sent)",
    noRoute: "no route to the destination (net unreachable sent)",
    fragNeeded: "DF set and larger than the out MTU (fragmentation needed sent)",
    fragDropped: "packets to forward that needed fragmenting and could not be (see fragFailed, scratchFull)",
    tooShort: "IPv4 header: shorter than 20 bytes or its IHL",
    badVersion: "IPv4 header: version not 4",
    badIhl: "IPv4 header: IHL below 5",
    badTotalLen: "IPv4 header: total length below the header or beyond the frame",
    badChecksum: "IPv4 header: checksum wrong",
    martianSource: "source cannot be a host: 0/8, 127/8, 224/4 and up, ours, a subnet broadcast (RFC 1812 §5.3.7)",
    martianDestination: "destination 0/8, 127/8 or 240/4 (RFC 1812 §5.3.7)",
    broadcastDropped: "link broadcast, multicast or directed broadcast: not forwarded (RFC 1812 §5.3.4, §5.3.5)",
    otherHost: "unicast frame for another station (flooded by the switch)",
    unknownEtherType: "neither IPv4 nor ARP",
    runt: "shorter than an Ethernet header",
    serviceRejected: "to a service without endpoints (port unreachable sent, as kube-proxy's REJECT)",
    natDropped: "dropped by the NAT (invalid, table full, no source port)",
    paramProblems: "malformed IP options: dropped (parameter problem 12/0 sent with a pointer to the fault, RFC 1812 §5.2.5)",
    sourceRouted: "loose or strict source route option received where acceptSourceRoute is off: dropped (Linux's accept_source_route 0, RFC 1812 §5.2.4.1)",
    sourceRouteDropped:
      "source route followed to a next address without a unicast route, or in a link broadcast: dropped silently (Linux's ip_options_rcv_srr)",
    sourceRouteFailed: "strict source route whose next hop is not directly connected: dropped (destination unreachable 3/5 sent, RFC 1812 §5.2.4.1)",
    gsoDropped: "TSO super-frames whose segments would need IP fragmentation",
  },
  event: {
    echoReplies: "echo replies sent (of delivered)",
    icmpErrors: "ICMP errors sent",
    icmpRateLimited: "ICMP errors not sent: over the rate limit (RFC 1812 §4.3.2.8)",
    icmpSuppressed: "ICMP errors not sent: about an error, a broadcast, a fragment (RFC 1812 §4.3.2.7)",
    redirectsSent: "ICMP redirects sent: a packet left by the interface it came in on, its sender and next hop on one subnet (RFC 1812 §5.2.7.2)",
    hostUnreachable: "packets that waited for ARP in vain (host unreachable sent)",
    fragmented: "packets cut into fragments",
    fragmentsOut: "fragments made",
    fragFailed: "packets that could not be fragmented (too many fragments, malformed options)",
    refragmented: "reassembled datagrams forwarded in fragments no larger than those received",
    protoUnreachable: "delivered packets of a protocol the router does not speak (protocol unreachable sent)",
    portUnreachable: "delivered UDP datagrams (port unreachable sent)",
    reassembledLocal: "datagrams for the router's own addresses reassembled from fragments (each then delivered)",
    localDropped: "delivered packets ignored: link broadcasts, ICMP but a valid echo request, TCP not to be reset",
    arpRepliesSent: "ARP replies sent (own addresses, proxy ARP)",
    arpRequestsSent: "ARP requests sent (resolution, probes, announcements)",
    badArp: "ARP frames ignored (of arpIn): malformed, group or zero sender",
    arpQueueFull: "packets not queued for ARP: the queue was full",
    neighbourTableFull: "packets not sent: no room for a new neighbour entry",
    scratchFull: "frames the router would write, not written: the pass's scratch was used up",
    tcpResets: "delivered TCP segments answered with a reset (RFC 793)",
    outNoRoute: "packets of the router's own (replies, errors, resets) with no route (Linux OutNoRoutes)",
  },
}).concat(REASM_COUNTERS);
export type RouterCounter = (typeof ROUTER_COUNTERS.names)[number];
/** Counter ids, for `s.c[C.name]++`. */
export const C = ROUTER_COUNTERS.id;
/** Where the reassembler's counters sit in the router's storage (declared in a row). */
export const REASM_FIRST = C.fragsReceived;
