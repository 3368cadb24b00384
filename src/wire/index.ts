// src/wire: pure codecs over bytes, a file per protocol: accessors, checks and emitters as
// plain functions on (buffer, offset); the parse/emit of repr objects are for slow paths
// and tests.
export * from "./bytes.js";
export * from "./reason.js";
export * from "./checksum.js";
export * from "./mac.js";
export * from "./ipv4addr.js";
export * from "./ethernet.js";
export * from "./vlan.js";
export * from "./arp.js";
export * from "./ipv4.js";
export * from "./ipv4-frag.js";
export * from "./icmp.js";
export * from "./udp.js";
export * from "./tcp.js";
export * from "./l4.js";
export * from "./bpdu.js";
