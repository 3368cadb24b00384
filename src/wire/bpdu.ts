// IEEE 802.1D Bridge Protocol Data Units (802.1D-1998 clause 9; 802.1D-2004 clause 9):
// the configuration and topology change notification BPDUs of the spanning tree
// protocol, as the Linux bridge sends them (stp_state 1). They travel in IEEE 802.3
// frames (a length, not an EtherType, after the MACs) with an LLC header, to the bridge
// group address 01:80:c2:00:00:00:
//
//   frame   0 dst 01:80:c2:00:00:00 | 6 src (the sending port's MAC) | 12 length (LLC + BPDU)
//   LLC     14 DSAP 0x42 | 15 SSAP 0x42 | 16 control 0x03 (UI)
//   BPDU    0 protocol id (2) = 0 | 2 version (1) | 3 type (1): 0x00 config, 0x80 TCN, 0x02 RST
//   config  4 flags (TC 0x01, TCA 0x80) | 5 root id (8) | 13 root path cost (4)
//           17 bridge id (8) | 25 port id (2) | 27 message age | 29 max age
//           31 hello time | 33 forward delay            (times in 1/256 s, 9.2.8)
//
// A bridge id is a 16-bit priority followed by a MAC (9.2.5): here two numbers, the
// priority and the MAC as a 48-bit integer, compared in that order. Offsets of the BPDU
// fields are from the BPDU (the byte after the LLC header); the frame functions take the
// frame's offset. A config BPDU is 35 bytes (a 52-byte frame, padded to 60 by who sends
// it), a TCN 4.

import { readU16, readU32, writeU16, writeU32 } from "./bytes.js";
import { ETH_MIN_FRAME_LEN, ETHERTYPE_MIN } from "./ethernet.js";
import { readMac, writeMac } from "./mac.js";
import { CHECK_BAD_LENGTH, CHECK_BAD_PROTO_TYPE, CHECK_BAD_VERSION, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

/** 01:80:c2:00:00:00, the group address of 802.1D bridges (Table 7-9). */
export const STP_GROUP_MAC = 0x0180c2000000;
/** The LLC SAP of the spanning tree protocol (DSAP = SSAP = 0x42). */
export const LLC_SAP_STP = 0x42;
/** LLC control field: Unnumbered Information. */
export const LLC_UI = 0x03;
/** Offset of the BPDU in its frame: Ethernet header (14) and LLC header (3). */
export const BPDU_FRAME_OFF = 17;

export const BPDU_TYPE_CONFIG = 0x00;
export const BPDU_TYPE_TCN = 0x80;
/** Rapid spanning tree BPDU (802.1D-2004 9.3.3): not spoken here, recognised to be ignored. */
export const BPDU_TYPE_RST = 0x02;

export const BPDU_CONFIG_LEN = 35;
export const BPDU_TCN_LEN = 4;

export const BPDU_FLAG_TC = 0x01;
export const BPDU_FLAG_TCA = 0x80;

export const BPDU_VERSION_OFF = 2;
export const BPDU_TYPE_OFF = 3;
export const BPDU_FLAGS_OFF = 4;
export const BPDU_ROOT_OFF = 5;
export const BPDU_COST_OFF = 13;
export const BPDU_BRIDGE_OFF = 17;
export const BPDU_PORT_OFF = 25;
export const BPDU_MESSAGE_AGE_OFF = 27;
export const BPDU_MAX_AGE_OFF = 29;
export const BPDU_HELLO_OFF = 31;
export const BPDU_FORWARD_DELAY_OFF = 33;

/** True when the frame at `off` goes to 01:80:c2:00:00:00 (the STP group address). */
export function isStpGroup(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0x01 && buf[off + 1] === 0x80 && buf[off + 2] === 0xc2 && buf[off + 3] === 0 && buf[off + 4] === 0 && buf[off + 5] === 0;
}

/**
 * Validates a BPDU frame (802.1D-2004 9.3.4, LLC framing of 7.12.3): an 802.3 length
 * that covers the LLC header and the BPDU and fits the frame, LLC 0x42 0x42 0x03,
 * protocol id 0, and enough bytes for the type (35 for a config BPDU, 4 for a TCN, 36
 * for an RST BPDU). Returns CHECK_OK or a reason; the type is then bpduGetType().
 */
export function bpduFrameCheck(buf: Uint8Array, off: number, len: number): number {
  if (off < 0 || len < BPDU_FRAME_OFF + BPDU_TCN_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  const l = readU16(buf, off + 12);
  // An EtherType (>= 0x0600) is not 802.3 framing; the length must hold LLC + a TCN.
  if (l >= ETHERTYPE_MIN || l < 3 + BPDU_TCN_LEN || l > len - 14) return CHECK_BAD_LENGTH;
  if (buf[off + 14] !== LLC_SAP_STP || buf[off + 15] !== LLC_SAP_STP || buf[off + 16] !== LLC_UI) return CHECK_BAD_PROTO_TYPE;
  const b = off + BPDU_FRAME_OFF;
  if (buf[b] !== 0 || buf[b + 1] !== 0) return CHECK_BAD_VERSION;
  const type = buf[b + BPDU_TYPE_OFF];
  const need = type === BPDU_TYPE_CONFIG ? BPDU_CONFIG_LEN : type === BPDU_TYPE_RST ? BPDU_CONFIG_LEN + 1 : BPDU_TCN_LEN;
  if (l - 3 < need) return CHECK_TOO_SHORT;
  return CHECK_OK;
}

export function bpduGetVersion(buf: Uint8Array, bpdu: number): number {
  return buf[bpdu + BPDU_VERSION_OFF];
}
export function bpduGetType(buf: Uint8Array, bpdu: number): number {
  return buf[bpdu + BPDU_TYPE_OFF];
}
export function bpduGetFlags(buf: Uint8Array, bpdu: number): number {
  return buf[bpdu + BPDU_FLAGS_OFF];
}
export function bpduGetRootPriority(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_ROOT_OFF);
}
export function bpduGetRootMac(buf: Uint8Array, bpdu: number): number {
  return readMac(buf, bpdu + BPDU_ROOT_OFF + 2);
}
export function bpduGetRootPathCost(buf: Uint8Array, bpdu: number): number {
  return readU32(buf, bpdu + BPDU_COST_OFF);
}
export function bpduGetBridgePriority(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_BRIDGE_OFF);
}
export function bpduGetBridgeMac(buf: Uint8Array, bpdu: number): number {
  return readMac(buf, bpdu + BPDU_BRIDGE_OFF + 2);
}
export function bpduGetPortId(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_PORT_OFF);
}
/** Message age in 1/256 s. */
export function bpduGetMessageAge(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_MESSAGE_AGE_OFF);
}
export function bpduGetMaxAge(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_MAX_AGE_OFF);
}
export function bpduGetHelloTime(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_HELLO_OFF);
}
export function bpduGetForwardDelay(buf: Uint8Array, bpdu: number): number {
  return readU16(buf, bpdu + BPDU_FORWARD_DELAY_OFF);
}

/** Writes the 802.3 header (to the STP group, from `src`) and the LLC header; returns the BPDU's offset. */
function writeHeaders(buf: Uint8Array, off: number, src: number, bpduLen: number): number {
  writeMac(buf, off, STP_GROUP_MAC);
  writeMac(buf, off + 6, src);
  writeU16(buf, off + 12, 3 + bpduLen);
  buf[off + 14] = LLC_SAP_STP;
  buf[off + 15] = LLC_SAP_STP;
  buf[off + 16] = LLC_UI;
  return off + BPDU_FRAME_OFF;
}

/** Zeroes the frame's padding up to the 60-byte minimum; returns the frame length (60). */
function pad(buf: Uint8Array, off: number, from: number): number {
  for (let i = from; i < ETH_MIN_FRAME_LEN; i++) buf[off + i] = 0;
  return ETH_MIN_FRAME_LEN;
}

/**
 * Writes a configuration BPDU frame at `off` (60 bytes, padded). Ids are (priority,
 * MAC) pairs; times are in 1/256 s (9.2.8). Returns the frame length.
 */
export function emitConfigBpdu(
  buf: Uint8Array,
  off: number,
  src: number,
  flags: number,
  rootPrio: number,
  rootMac: number,
  cost: number,
  bridgePrio: number,
  bridgeMac: number,
  portId: number,
  messageAge: number,
  maxAge: number,
  helloTime: number,
  forwardDelay: number,
): number {
  const b = writeHeaders(buf, off, src, BPDU_CONFIG_LEN);
  buf[b] = 0;
  buf[b + 1] = 0;
  buf[b + BPDU_VERSION_OFF] = 0;
  buf[b + BPDU_TYPE_OFF] = BPDU_TYPE_CONFIG;
  buf[b + BPDU_FLAGS_OFF] = flags;
  writeU16(buf, b + BPDU_ROOT_OFF, rootPrio);
  writeMac(buf, b + BPDU_ROOT_OFF + 2, rootMac);
  writeU32(buf, b + BPDU_COST_OFF, cost);
  writeU16(buf, b + BPDU_BRIDGE_OFF, bridgePrio);
  writeMac(buf, b + BPDU_BRIDGE_OFF + 2, bridgeMac);
  writeU16(buf, b + BPDU_PORT_OFF, portId);
  writeU16(buf, b + BPDU_MESSAGE_AGE_OFF, messageAge);
  writeU16(buf, b + BPDU_MAX_AGE_OFF, maxAge);
  writeU16(buf, b + BPDU_HELLO_OFF, helloTime);
  writeU16(buf, b + BPDU_FORWARD_DELAY_OFF, forwardDelay);
  return pad(buf, off, BPDU_FRAME_OFF + BPDU_CONFIG_LEN);
}

/** Writes a topology change notification BPDU frame at `off` (60 bytes); returns its length. */
export function emitTcnBpdu(buf: Uint8Array, off: number, src: number): number {
  const b = writeHeaders(buf, off, src, BPDU_TCN_LEN);
  buf[b] = 0;
  buf[b + 1] = 0;
  buf[b + BPDU_VERSION_OFF] = 0;
  buf[b + BPDU_TYPE_OFF] = BPDU_TYPE_TCN;
  return pad(buf, off, BPDU_FRAME_OFF + BPDU_TCN_LEN);
}

/** A BPDU as an object (tests, captures, `show`): times in seconds. */
export interface BpduRepr {
  src: number;
  version: number;
  type: number;
  /** Config BPDUs only (zero for a TCN). */
  tc: boolean;
  tca: boolean;
  rootPriority: number;
  rootMac: number;
  rootPathCost: number;
  bridgePriority: number;
  bridgeMac: number;
  portId: number;
  messageAge: number;
  maxAge: number;
  helloTime: number;
  forwardDelay: number;
}

/** Parses a BPDU frame; null when bpduFrameCheck rejects it. */
export function parseBpdu(buf: Uint8Array, off: number, len: number): BpduRepr | null {
  if (bpduFrameCheck(buf, off, len) !== CHECK_OK) return null;
  const b = off + BPDU_FRAME_OFF;
  const type = bpduGetType(buf, b);
  const cfg = type === BPDU_TYPE_CONFIG || type === BPDU_TYPE_RST;
  const s = (v: number): number => (cfg ? v / 256 : 0);
  return {
    src: readMac(buf, off + 6),
    version: bpduGetVersion(buf, b),
    type,
    tc: cfg && (bpduGetFlags(buf, b) & BPDU_FLAG_TC) !== 0,
    tca: cfg && (bpduGetFlags(buf, b) & BPDU_FLAG_TCA) !== 0,
    rootPriority: cfg ? bpduGetRootPriority(buf, b) : 0,
    rootMac: cfg ? bpduGetRootMac(buf, b) : 0,
    rootPathCost: cfg ? bpduGetRootPathCost(buf, b) : 0,
    bridgePriority: cfg ? bpduGetBridgePriority(buf, b) : 0,
    bridgeMac: cfg ? bpduGetBridgeMac(buf, b) : 0,
    portId: cfg ? bpduGetPortId(buf, b) : 0,
    messageAge: s(bpduGetMessageAge(buf, b)),
    maxAge: s(bpduGetMaxAge(buf, b)),
    helloTime: s(bpduGetHelloTime(buf, b)),
    forwardDelay: s(bpduGetForwardDelay(buf, b)),
  };
}

/** Writes `r` as a config BPDU (type config) or a TCN frame at `off`; returns the length. */
export function emitBpdu(r: BpduRepr, buf: Uint8Array, off: number): number {
  if (r.type === BPDU_TYPE_TCN) return emitTcnBpdu(buf, off, r.src);
  const t = (s: number): number => Math.round(s * 256);
  return emitConfigBpdu(
    buf,
    off,
    r.src,
    (r.tc ? BPDU_FLAG_TC : 0) | (r.tca ? BPDU_FLAG_TCA : 0),
    r.rootPriority,
    r.rootMac,
    r.rootPathCost,
    r.bridgePriority,
    r.bridgeMac,
    r.portId,
    t(r.messageAge),
    t(r.maxAge),
    t(r.helloTime),
    t(r.forwardDelay),
  );
}

/** A bridge id as Linux's sysfs writes it (bridge_id, root_id): `8000.020000000001`. */
export function bridgeIdString(priority: number, mac: number): string {
  return `${priority.toString(16).padStart(4, "0")}.${mac.toString(16).padStart(12, "0")}`;
}
