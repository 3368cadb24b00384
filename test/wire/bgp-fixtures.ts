/**
 * BGP messages captured from BIRD 2.0.12 (Debian bird2) with tcpdump on a veth between
 * two namespaces, payloads as `tshark -T fields -e tcp.payload` printed them, and what
 * `tshark -O bgp` decoded from the same frames.
 *
 * Capture 1: two BIRDs, iBGP AS 64512, 192.168.77.1 (static 10.250.0.0/24 and
 * 10.251.0.0/16, hold time 9) and 192.168.77.2; then `birdc disable pods` (withdraw)
 * and `birdc disable b` (NOTIFICATION).
 * Capture 2: BIRD 192.168.78.3 as route reflector (cluster id 192.168.78.3) of clients
 * .1 (10.250.0.0/24) and .2, with an eBGP peer .5 in AS 4200000001 (10.252.0.0/24,
 * MED 7); captured at client .2.
 */
export const BIRD = {
  /** tshark: OPEN, My AS 64512, Hold Time 9, BGP Identifier 192.168.77.1, capabilities
   * MP IPv4 unicast (1), route refresh (2), graceful restart (64, time 120), 4-octet AS
   * 64512 (65), enhanced route refresh (70), long-lived graceful restart (71). */
  open: "ffffffffffffffffffffffffffffffff00350104fc000009c0a84d0118021601040001000102004002007841040000fc0046004700",
  keepalive: "ffffffffffffffffffffffffffffffff001304",
  /** tshark: UPDATE, no withdrawn routes, no attributes (BIRD's End-of-RIB marker, RFC 4724 §2). */
  endOfRib: "ffffffffffffffffffffffffffffffff00170200000000",
  /** tshark: UPDATE, ORIGIN IGP, AS_PATH empty, NEXT_HOP 192.168.77.1, LOCAL_PREF 100,
   * NLRI 10.250.0.0/24 and 10.251.0.0/16. */
  update: "ffffffffffffffffffffffffffffffff0033020000001540010100400200400304c0a84d0140050400000064180afa00100afb",
  /** tshark: UPDATE, withdrawn 10.250.0.0/24 and 10.251.0.0/16, total path attribute length 0. */
  withdraw: "ffffffffffffffffffffffffffffffff001e020007180afa00100afb0000",
  /** tshark: NOTIFICATION, Cease (6), Administratively Shutdown (2). */
  notification: "ffffffffffffffffffffffffffffffff0015030602",
  /** tshark: UPDATE, ORIGIN IGP, AS_PATH empty, NEXT_HOP 192.168.78.1, LOCAL_PREF 100,
   * ORIGINATOR_ID 192.168.78.1, CLUSTER_LIST 192.168.78.3, NLRI 10.250.0.0/24. */
  reflected: "ffffffffffffffffffffffffffffffff003e020000002340010100400200400304c0a84e0140050400000064800904c0a84e01800a04c0a84e03180afa00",
  /** tshark: UPDATE, ORIGIN IGP, AS_PATH 4200000001 (4-octet), NEXT_HOP 192.168.78.5,
   * MULTI_EXIT_DISC 7, LOCAL_PREF 100, NLRI 10.252.0.0/24. */
  ebgp: "ffffffffffffffffffffffffffffffff003d0200000022400101004002060201fa56ea01400304c0a84e058004040000000740050400000064180afc00",
};
