// MAC-48 addresses as plain numbers: hi16 * 2^32 + lo32, always an exact integer below
// 2^48, so it works as a Map key and compares with === without building a string per
// frame (a number key costs a tenth of a hex-string key: docs/architecture.md, "Rules
// of the hot path"). Never BigInt.

const TWO32 = 4294967296;
const TWO40 = 1099511627776;

/** ff:ff:ff:ff:ff:ff */
export const MAC_BROADCAST = 0xffffffffffff;

/** Reads 6 bytes at `off` as a 48-bit integer. */
export function readMac(buf: Uint8Array, off: number): number {
  const hi = (buf[off] << 8) | buf[off + 1];
  const lo = ((buf[off + 2] << 24) | (buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5]) >>> 0;
  return hi * TWO32 + lo;
}

/** Writes a 48-bit integer as 6 bytes at `off`. */
export function writeMac(buf: Uint8Array, off: number, mac: number): void {
  const hi = (mac / TWO32) | 0; // < 2^16, so truncation through int32 is exact
  const lo = mac >>> 0; // ToUint32 is mac mod 2^32
  buf[off] = hi >>> 8;
  buf[off + 1] = hi;
  buf[off + 2] = lo >>> 24;
  buf[off + 3] = lo >>> 16;
  buf[off + 4] = lo >>> 8;
  buf[off + 5] = lo;
}

/** Group address: the I/G bit, least significant bit of the first octet (IEEE 802-2014 8.2). Includes broadcast. */
function macIsMulticast(mac: number): boolean {
  return ((mac / TWO40) & 1) === 1;
}

/** A valid unicast address: not zero, not group. */
export function macIsUnicast(mac: number): boolean {
  return mac !== 0 && !macIsMulticast(mac);
}

const HEX = "0123456789abcdef";

/** "aa:bb:cc:dd:ee:ff", lower case. Not for the hot path. */
export function macToString(mac: number): string {
  let s = "";
  const hi = (mac / TWO32) | 0;
  const lo = mac >>> 0;
  for (let i = 0; i < 6; i++) {
    const b = i < 2 ? (hi >>> (8 * (1 - i))) & 0xff : (lo >>> (8 * (5 - i))) & 0xff;
    if (i > 0) s += ":";
    s += HEX[b >>> 4] + HEX[b & 15];
  }
  return s;
}

const MAC_RE = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/;

/**
 * Parses "aa:bb:cc:dd:ee:ff" (or with '-' separators, not mixed): six octets of exactly
 * two hex digits. Throws an Error that quotes the input on anything else.
 */
export function parseMac(str: string): number {
  if (typeof str !== "string") {
    throw new Error(`invalid MAC address ${String(str)}: expected a string like "02:00:00:00:00:01"`);
  }
  const m = MAC_RE.exec(str);
  if (m === null) {
    throw new Error(`invalid MAC address ${JSON.stringify(str)}: expected six two-digit hex octets separated by ':' like "02:00:00:00:00:01"`);
  }
  const hi = (parseInt(m[1], 16) << 8) | parseInt(m[3], 16);
  const lo = ((parseInt(m[4], 16) << 24) | (parseInt(m[5], 16) << 16) | (parseInt(m[6], 16) << 8) | parseInt(m[7], 16)) >>> 0;
  return hi * TWO32 + lo;
}
