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
 * for an RST BPDU). Returns CHECK_OK or a reason; bpduDecode() reads the fields.
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

/**
 * A BPDU's fields as they are on the wire (times in 1/256 s, 9.2.8; flags BPDU_FLAG_*).
 * One record is decoded into and encoded from; the spanning tree element reuses one for
 * what it receives and one for what it sends. The fields past `type` are zero in a TCN.
 */
export interface Bpdu {
  /** Source MAC of the frame (the sending port's). */
  src: number;
  version: number;
  type: number;
  flags: number;
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

/** A record to decode into or fill for bpduEncode (a TCN from 00:00:00:00:00:00 until set). */
export function newBpdu(): Bpdu {
  const r = { src: 0, version: 0, type: BPDU_TYPE_TCN } as Bpdu;
  clearConfig(r);
  return r;
}

/** Zeroes the fields only a config BPDU has. */
function clearConfig(r: Bpdu): void {
  r.flags = r.rootPriority = r.rootMac = r.rootPathCost = r.bridgePriority = r.bridgeMac = r.portId = 0;
  r.messageAge = r.maxAge = r.helloTime = r.forwardDelay = 0;
}

/**
 * Decodes the BPDU frame at `off` into `r` when bpduFrameCheck accepts it; returns the
 * check's result (`r` is untouched unless CHECK_OK). An RST BPDU decodes as far as the
 * fields it shares with a config BPDU.
 */
export function bpduDecode(buf: Uint8Array, off: number, len: number, r: Bpdu): number {
  const check = bpduFrameCheck(buf, off, len);
  if (check !== CHECK_OK) return check;
  const b = off + BPDU_FRAME_OFF;
  r.src = readMac(buf, off + 6);
  r.version = buf[b + BPDU_VERSION_OFF];
  r.type = buf[b + BPDU_TYPE_OFF];
  if (r.type !== BPDU_TYPE_CONFIG && r.type !== BPDU_TYPE_RST) {
    clearConfig(r);
    return CHECK_OK;
  }
  r.flags = buf[b + BPDU_FLAGS_OFF];
  r.rootPriority = readU16(buf, b + BPDU_ROOT_OFF);
  r.rootMac = readMac(buf, b + BPDU_ROOT_OFF + 2);
  r.rootPathCost = readU32(buf, b + BPDU_COST_OFF);
  r.bridgePriority = readU16(buf, b + BPDU_BRIDGE_OFF);
  r.bridgeMac = readMac(buf, b + BPDU_BRIDGE_OFF + 2);
  r.portId = readU16(buf, b + BPDU_PORT_OFF);
  r.messageAge = readU16(buf, b + BPDU_MESSAGE_AGE_OFF);
  r.maxAge = readU16(buf, b + BPDU_MAX_AGE_OFF);
  r.helloTime = readU16(buf, b + BPDU_HELLO_OFF);
  r.forwardDelay = readU16(buf, b + BPDU_FORWARD_DELAY_OFF);
  return CHECK_OK;
}

/** A new record of the BPDU frame at `off` (tests, captures); null when bpduFrameCheck rejects it. */
export function parseBpdu(buf: Uint8Array, off: number, len: number): Bpdu | null {
  const r = newBpdu();
  return bpduDecode(buf, off, len, r) === CHECK_OK ? r : null;
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

/**
 * Writes `r` at `off` as a TCN (type BPDU_TYPE_TCN) or else a config BPDU, padded with
 * zeros to the 60-byte minimum frame; returns the frame length (60).
 */
export function bpduEncode(r: Bpdu, buf: Uint8Array, off: number): number {
  const tcn = r.type === BPDU_TYPE_TCN;
  const bpduLen = tcn ? BPDU_TCN_LEN : BPDU_CONFIG_LEN;
  const b = writeHeaders(buf, off, r.src, bpduLen);
  buf[b] = 0;
  buf[b + 1] = 0;
  buf[b + BPDU_VERSION_OFF] = r.version;
  buf[b + BPDU_TYPE_OFF] = tcn ? BPDU_TYPE_TCN : BPDU_TYPE_CONFIG;
  if (!tcn) {
    buf[b + BPDU_FLAGS_OFF] = r.flags;
    writeU16(buf, b + BPDU_ROOT_OFF, r.rootPriority);
    writeMac(buf, b + BPDU_ROOT_OFF + 2, r.rootMac);
    writeU32(buf, b + BPDU_COST_OFF, r.rootPathCost);
    writeU16(buf, b + BPDU_BRIDGE_OFF, r.bridgePriority);
    writeMac(buf, b + BPDU_BRIDGE_OFF + 2, r.bridgeMac);
    writeU16(buf, b + BPDU_PORT_OFF, r.portId);
    writeU16(buf, b + BPDU_MESSAGE_AGE_OFF, r.messageAge);
    writeU16(buf, b + BPDU_MAX_AGE_OFF, r.maxAge);
    writeU16(buf, b + BPDU_HELLO_OFF, r.helloTime);
    writeU16(buf, b + BPDU_FORWARD_DELAY_OFF, r.forwardDelay);
  }
  for (let i = BPDU_FRAME_OFF + bpduLen; i < ETH_MIN_FRAME_LEN; i++) buf[off + i] = 0;
  return ETH_MIN_FRAME_LEN;
}

/** A bridge id as Linux's sysfs writes it (bridge_id, root_id): `8000.020000000001`. */
export function bridgeIdString(priority: number, mac: number): string {
  return `${priority.toString(16).padStart(4, "0")}.${mac.toString(16).padStart(12, "0")}`;
}
