/** The sleeve port's counters (sleeve-port.ts), declared once (src/core/element.ts counters()). */
import { counters } from "../core/element.js";

export const SLEEVE_COUNTERS = counters({
  forward: {
    sent: "frames sent toward a peer (a broadcast frame once)",
    received: "frames received from peers and given to the switch",
  },
  drop: {
    badHeader: "datagrams shorter than the 16-byte header or without the magic byte",
    badVersion: "datagrams of another sleeve version or an unknown type",
    unknownPeer: "datagrams whose sender, origin or destination is no peer we know",
    badFrame: "frames cut short inside a datagram, or shorter than an Ethernet header",
    ttlExpired: "datagrams whose TTL ran out (a routing loop while views disagree)",
    ownOrigin: "datagrams that came back to their origin",
    rxTooBig: "received frames larger than an output slot",
    unreachable: "frames for a peer no usable path reaches",
    noPeers: "broadcast or unknown-unicast frames with no peer to go to",
    runt: "frames to send shorter than an Ethernet header",
    tooBig: "frames to send above the mesh MTU (never fragmented; IPv4 with DF answered with ICMP frag-needed)",
    txErrors: "datagrams the kernel refused (lastTxError has the latest reason)",
  },
  event: {
    datagramsSent: "data datagrams sent (a broadcast datagram once per tree child)",
    datagramsReceived: "data datagrams received for us or broadcast",
    batched: "frames that shared a datagram with an earlier frame",
    relayed: "datagrams of other peers sent on toward their destination",
    broadcastForwarded: "broadcast datagrams sent on to children in the origin's tree",
    learned: "MACs learned or moved to another peer",
    heartbeats: "heartbeats received (and answered)",
    acks: "heartbeat acks received",
    probes: "path-MTU probes received",
    probeAcks: "path-MTU probe acks received",
    fragNeeded: "ICMP fragmentation-needed messages sent to pods for frames above the mesh MTU",
  },
});
export type SleeveCounter = (typeof SLEEVE_COUNTERS.names)[number];
