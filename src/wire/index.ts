// src/wire: codecs over bytes: plain functions on (buffer, offset); the hot path allocates nothing here (only parse* and copyBytes make objects).
export * from './bytes.js';
export * from './reason.js';
export * from './checksum.js';
export * from './mac.js';
export * from './ipv4addr.js';
export * from './ethernet.js';
export * from './vlan.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './icmp.js';
export * from './udp.js';
export * from './tcp.js';
export * from './l4.js';
export * from './bpdu.js';
