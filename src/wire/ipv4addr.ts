// IPv4 addresses as unsigned 32-bit numbers (always >= 0: every producer ends in `>>> 0`),
// so they compare with === and key a Map without strings.

/** 255.255.255.255, the limited broadcast address (RFC 919, RFC 1812 section 4.2.3.1). */
export const IP_BROADCAST = 0xffffffff;

/** Dotted quad. Not for the hot path. */
export function ipToString(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`;
}

const OCTET = "(0|[1-9][0-9]{0,2})";
const IP_RE = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Parses a strict dotted quad: four decimal octets 0-255, no leading zeros (which
 * inet_aton would read as octal), no shorthand forms like "10.1". Throws on anything else.
 */
export function parseIp(str: string): number {
  const m = typeof str === "string" ? IP_RE.exec(str) : null;
  if (m !== null) {
    const a = +m[1];
    const b = +m[2];
    const c = +m[3];
    const d = +m[4];
    if (a <= 255 && b <= 255 && c <= 255 && d <= 255) return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
  }
  throw new Error(`invalid IPv4 address ${JSON.stringify(str)}: expected a dotted quad of four decimal octets 0-255 like "10.0.0.1"`);
}

/** Netmask for a prefix length: 0 -> 0, 24 -> 0xffffff00, 32 -> 0xffffffff. Throws outside 0..32. */
export function maskFromPrefix(prefixLen: number): number {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) {
    throw new Error(`invalid IPv4 prefix length ${String(prefixLen)}: expected an integer 0-32`);
  }
  // JavaScript masks shift counts to 5 bits, so `<< 32` would be `<< 0`: special-case 0.
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

export interface Cidr {
  /** The address as written (host bits kept). */
  addr: number;
  prefixLen: number;
  mask: number;
  /** addr & mask */
  network: number;
}

/** Parses "10.0.0.1/24". The prefix is required. Throws a clear Error on bad input. */
export function parseCidr(str: string): Cidr {
  const slash = typeof str === "string" ? str.indexOf("/") : -1;
  if (slash < 0 || str.indexOf("/", slash + 1) >= 0) {
    throw new Error(`invalid CIDR ${JSON.stringify(str)}: expected address/prefix like "10.0.0.1/24"`);
  }
  const addr = parseIp(str.slice(0, slash));
  const p = str.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(p) || +p > 32) {
    throw new Error(`invalid CIDR ${JSON.stringify(str)}: prefix length must be an integer 0-32`);
  }
  const prefixLen = +p;
  const mask = maskFromPrefix(prefixLen);
  return { addr, prefixLen, mask, network: (addr & mask) >>> 0 };
}

/** True when `addr` is inside network/mask. */
export function ipInSubnet(addr: number, network: number, mask: number): boolean {
  return (addr & mask) >>> 0 === network >>> 0;
}

/** 224.0.0.0/4 (RFC 5771). */
export function ipIsMulticast(addr: number): boolean {
  return addr >>> 28 === 0xe;
}
