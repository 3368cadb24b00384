// Big-endian (network order) integer access on a byte array, without DataView or
// Buffer bounds-check helpers: plain indexed loads that TurboFan inlines. Reading past
// the end yields `undefined`, which the bit operators turn into 0, so a lying length
// can give wrong values but never throws; the check functions reject short input first.

/** Reads an unsigned 16-bit big-endian integer. */
export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}

/** Writes the low 16 bits of `v` big-endian. */
export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 8;
  buf[off + 1] = v;
}

/** Reads an unsigned 32-bit big-endian integer (always >= 0). */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/**
 * Reads a 32-bit big-endian value as int32 bits (an IPv4 address on a hot path). In V8
 * an int32 is a Smi, while a uint32 from 128.0.0.0 on is a HeapNumber each time it is
 * passed to a function that is not inlined: one allocation per packet per address.
 * Everything in src/wire that takes an address accepts either form.
 */
export function readI32(buf: Uint8Array, off: number): number {
  return (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
}

/** Writes the low 32 bits of `v` big-endian (signed or unsigned input). */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = v >>> 16;
  buf[off + 2] = v >>> 8;
  buf[off + 3] = v;
}

/** A copy of `len` bytes at `off`, as a plain Uint8Array (never a view into `buf`). */
export function copyBytes(buf: Uint8Array, off: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = buf[off + i];
  return out;
}
