/**
 * The mesh's two wire formats (tapnet's own; no Weave peer speaks them).
 *
 * TCP (control: handshake and gossip), one message after another:
 *
 *   0      4     5
 *   | len  | type | JSON body (len - 1 bytes, UTF-8) |
 *
 * len is big-endian and counts the type byte and the body; at most MAX_MESSAGE. Types:
 * HELLO, AUTH, GOSSIP, ERROR, and the address ring's RING and IPAM_REQUEST (ipam.ts) (MSG below). A body that is not the JSON its type wants
 * is dropped and counted; a length beyond MAX_MESSAGE closes the connection (the
 * stream cannot be resynchronised).
 *
 * UDP (data, "sleeve"), to the peers' mesh port:
 *
 *   0       1         2      3     4          8          12              16
 *   | magic | version | type | ttl | sender   | origin   | destination   | frames…
 *
 * magic 0x57, version 1; sender = the short id of the peer that sent this datagram
 * (the hop), origin = the peer whose switch the frames left, destination = the peer
 * they go to, 0 = a broadcast along origin's tree. Short ids are 30-bit hashes of
 * peer names (shortId()); the agent refuses a peer whose id collides with another's.
 * Types: FRAMES (then frames, each as a 2-byte big-endian length and the Ethernet
 * frame, several per datagram), HEARTBEAT and HEARTBEAT_ACK (a 16-byte header only:
 * each peer sends heartbeats to every neighbour it has a TCP connection with, and
 * a connection is usable for data while the acks come back), PROBE (the header, a
 * 4-byte sequence number, a 2-byte size, zeros up to that size: a path-MTU probe,
 * pmtu.ts) and PROBE_ACK (the header, the probe's sequence number and the size of the
 * datagram as it arrived, IP and UDP headers counted).
 */

import { writeU32 } from "../wire/bytes.js";

export const MESH_PORT = 6783;
/** The port name of a node's mesh peer (Weave calls its bridge port the same). */
export const MESH_PORT_NAME = "weave";
/** TCP protocol version (HELLO.version). */
export const MESH_PROTOCOL = 1;
export const MAX_MESSAGE = 1 << 20;

export const MSG = { HELLO: 1, AUTH: 2, GOSSIP: 3, ERROR: 4, RING: 5, IPAM_REQUEST: 6 } as const;

export const SLEEVE_MAGIC = 0x57;
export const SLEEVE_VERSION = 1;
export const SLEEVE_HEADER = 16;
export const SLEEVE_FRAMES = 1;
export const SLEEVE_HEARTBEAT = 2;
export const SLEEVE_ACK = 3;
export const SLEEVE_PROBE = 4;
export const SLEEVE_PROBE_ACK = 5;
/** A probe's and a probe ack's body after the header: sequence number (4) and size (2). */
export const PROBE_BODY = 6;
/** Hops a datagram may take (relays and broadcast forwarding each take one). */
export const SLEEVE_TTL = 16;
/** Per frame: its 2-byte length. */
export const FRAME_PREFIX = 2;
/** IPv4 and UDP headers around a datagram. */
export const UDP_IP_OVERHEAD = 28;

/** A peer's 30-bit short id: FNV-1a of its name (never 0, which means broadcast). */
export function shortId(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const id = h & 0x3fffffff;
  return id === 0 ? 1 : id;
}

/** Writes a sleeve header at `off`. */
export function writeSleeveHeader(buf: Uint8Array, off: number, type: number, ttl: number, sender: number, origin: number, dest: number): void {
  buf[off] = SLEEVE_MAGIC;
  buf[off + 1] = SLEEVE_VERSION;
  buf[off + 2] = type;
  buf[off + 3] = ttl;
  writeU32(buf, off + 4, sender);
  writeU32(buf, off + 8, origin);
  writeU32(buf, off + 12, dest);
}

/** Encodes one TCP message. */
export function encodeMessage(type: number, body: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(body), "utf8");
  const out = Buffer.allocUnsafe(5 + json.length);
  out.writeUInt32BE(json.length + 1, 0);
  out[4] = type;
  json.copy(out, 5);
  return out;
}

/**
 * Splits a TCP byte stream into messages. push() returns the messages complete so far
 * (type and parsed body, or body undefined when it is not JSON); when a length exceeds
 * MAX_MESSAGE it stops there and sets `tooLong` (the caller closes the connection
 * after handling the messages before it).
 */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);
  tooLong = false;

  push(chunk: Buffer): Array<{ type: number; body: unknown }> {
    if (this.tooLong) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Array<{ type: number; body: unknown }> = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len > MAX_MESSAGE) {
        this.tooLong = true;
        this.buf = Buffer.alloc(0);
        break;
      }
      if (len === 0) {
        out.push({ type: 0, body: undefined });
        this.buf = this.buf.subarray(4);
        continue;
      }
      if (this.buf.length < 4 + len) break;
      const type = this.buf[4];
      let body: unknown;
      try {
        body = JSON.parse(this.buf.toString("utf8", 5, 4 + len));
      } catch {
        body = undefined;
      }
      out.push({ type, body });
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
}
