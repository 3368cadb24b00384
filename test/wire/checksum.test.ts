import { describe, expect, it } from "vitest";
import {
  checksumFold,
  checksumSum,
  checksumUpdate16,
  checksumUpdate32,
  internetChecksum,
  ipv4ComputeChecksum,
  ipv4DecrementTtl,
  partialChecksumUpdate32,
  pseudoHeaderSum,
  readU16,
  readU32,
  writeU16,
  writeU32,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Deterministic PRNG (mulberry32) so failures reproduce.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Reference: the textbook loop with a fold after every addition.
function naiveChecksum(b: Uint8Array, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i < len; i += 2) {
    const w = (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
    sum += w;
    if (sum > 0xffff) sum = (sum & 0xffff) + 1;
  }
  return ~sum & 0xffff;
}

// IPv4 header of an ICMP echo request captured in a test namespace (frame 7).
// tshark: ip.checksum 0x299b, ip.checksum.status good.
const IP_HEADER = hex("45000054f94940004001299b0a6301010a6301fe");
// UDP datagram from 10.99.1.1:40000 to 10.99.1.254:9, payload "closed" (frame 18).
// tshark: udp.checksum 0x1380, udp.checksum.status good.
const UDP = hex("9c400009000e1380636c6f736564");

describe("RFC 1071 checksum", () => {
  it("matches the RFC 1071 section 3 numerical example", () => {
    // 00 01 f2 03 f4 f5 f6 f7: sum 0x2ddf0, folded 0xddf2, checksum 0x220d.
    const b = hex("0001f203f4f5f6f7");
    expect(checksumSum(b, 0, 8)).toBe(0xddf2);
    expect(internetChecksum(b, 0, 8)).toBe(0x220d);
  });

  it("pads an odd trailing byte with zero on the right", () => {
    // 0x0001 + 0xf203 + 0xf4f5 + 0xf600 = 0x2dcf9 -> 0xdcfb; checksum 0x2304.
    const b = hex("0001f203f4f5f6");
    expect(checksumSum(b, 0, 7)).toBe(0xdcfb);
    expect(internetChecksum(b, 0, 7)).toBe(0x2304);
    expect(internetChecksum(hex("0001f203f4f5f600"), 0, 8)).toBe(0x2304);
    expect(internetChecksum(hex("ab"), 0, 1)).toBe(~0xab00 & 0xffff);
    expect(internetChecksum(hex(""), 0, 0)).toBe(0xffff);
  });

  it("verifies and recomputes a real IPv4 header", () => {
    expect(internetChecksum(IP_HEADER, 0, 20)).toBe(0);
    expect(ipv4ComputeChecksum(IP_HEADER, 0)).toBe(0x299b);
    const z = Buffer.from(IP_HEADER);
    writeU16(z, 10, 0);
    expect(internetChecksum(z, 0, 20)).toBe(0x299b);
  });

  it("verifies a real UDP datagram with its pseudo-header", () => {
    const ph = pseudoHeaderSum(0x0a630101, 0x0a6301fe, 17, UDP.length);
    expect(checksumSum(UDP, 0, UDP.length, ph)).toBe(0xffff);
    const z = Buffer.from(UDP);
    writeU16(z, 6, 0);
    expect(internetChecksum(z, 0, z.length, ph)).toBe(0x1380);
  });

  it("agrees with a naive fold-every-step implementation at every offset and length", () => {
    const r = rng(1071);
    const buf = new Uint8Array(300);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(r() * 256);
    for (let off = 0; off < 9; off++) {
      for (let len = 0; len <= 280; len++) {
        expect(internetChecksum(buf, off, len)).toBe(naiveChecksum(buf, off, len));
      }
    }
  });

  it("handles a 64 KiB super-frame without losing carries", () => {
    const big = new Uint8Array(65535).fill(0xff);
    expect(internetChecksum(big, 0, big.length)).toBe(naiveChecksum(big, 0, big.length));
    const r = rng(7);
    for (let i = 0; i < big.length; i++) big[i] = Math.floor(r() * 256);
    expect(internetChecksum(big, 0, big.length)).toBe(naiveChecksum(big, 0, big.length));
  });

  it("chains sums over even-length ranges", () => {
    const whole = internetChecksum(IP_HEADER, 0, 20);
    const chained = ~checksumSum(IP_HEADER, 10, 10, checksumSum(IP_HEADER, 0, 10)) & 0xffff;
    expect(chained).toBe(whole);
  });

  it.each([
    [0, 0],
    [0xffff, 0xffff],
    [0x10000, 1],
    [0x2ddf0, 0xddf2],
    [0xffffffff, 0xffff],
    [2 ** 52, 2 ** 52 % 0xffff],
    [2 ** 53 - 1, (2 ** 53 - 1) % 0xffff || 0xffff],
  ])("folds %d", (v, folded) => {
    expect(checksumFold(v)).toBe(folded);
  });
});

describe("RFC 1624 incremental update", () => {
  it("matches the RFC 1624 section 4 example (eqn. 3 gives 0x0000, not 0xffff)", () => {
    // Sum of the other header words 0xcd7a, m = 0x5555 -> HC = 0xdd2f; m' = 0x3285.
    expect(checksumUpdate16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  // Table-driven, deterministic: random 20-byte headers, random word changes.
  const r = rng(1624);
  const cases: { header: Buffer; wordOff: number; newWord: number; wide: boolean }[] = [];
  for (let i = 0; i < 400; i++) {
    const header = Buffer.alloc(20);
    for (let j = 0; j < 20; j++) header[j] = Math.floor(r() * 256);
    header[0] = 0x45; // keep it from ever being all zero
    const wide = i % 2 === 1;
    // 16-bit changes anywhere but the checksum word; 32-bit changes on the addresses or ident/flags.
    const choices16 = [0, 2, 4, 6, 8, 12, 14, 16, 18];
    const choices32 = [4, 12, 16];
    const wordOff = wide ? choices32[Math.floor(r() * choices32.length)] : choices16[Math.floor(r() * choices16.length)];
    let newWord = wide ? Math.floor(r() * 4294967296) : Math.floor(r() * 65536);
    if (i % 37 === 0) newWord = wide ? 0xffffffff : 0xffff; // edge values
    if (i % 41 === 0) newWord = 0;
    cases.push({ header, wordOff, newWord, wide });
  }

  // Full recomputation over the 20 bytes with the checksum word zeroed, by the naive reference.
  const full = (h: Buffer): number => {
    const z = Buffer.from(h);
    writeU16(z, 10, 0);
    return naiveChecksum(z, 0, 20);
  };

  it.each(cases.map((c, i) => [i, c] as const))("case %i equals full recomputation", (_i, c) => {
    const h = Buffer.from(c.header);
    writeU16(h, 10, full(h));
    const hc = readU16(h, 10);
    if (c.wide) {
      const old = readU32(h, c.wordOff);
      writeU32(h, c.wordOff, c.newWord);
      writeU16(h, 10, checksumUpdate32(hc, old, c.newWord));
    } else {
      const old = readU16(h, c.wordOff);
      writeU16(h, c.wordOff, c.newWord);
      writeU16(h, 10, checksumUpdate16(hc, old, c.newWord));
    }
    expect(readU16(h, 10)).toBe(full(h));
    expect(internetChecksum(h, 0, 20)).toBe(0);
  });

  it("keeps the header checksum valid while the TTL counts down to 0", () => {
    const h = Buffer.from(IP_HEADER);
    for (let ttl = 64; ttl > 0; ttl--) {
      expect(ipv4DecrementTtl(h, 0)).toBe(ttl - 1);
      expect(readU16(h, 10)).toBe(ipv4ComputeChecksum(h, 0));
      expect(internetChecksum(h, 0, 20)).toBe(0);
    }
  });

  it("moves a partial (offload) pseudo-header seed like a recomputation", () => {
    const r2 = rng(99);
    for (let i = 0; i < 200; i++) {
      const src = Math.floor(r2() * 4294967296);
      const dst = Math.floor(r2() * 4294967296);
      const newSrc = Math.floor(r2() * 4294967296);
      const len = Math.floor(r2() * 65536);
      const seed = pseudoHeaderSum(src, dst, 6, len);
      const want = pseudoHeaderSum(newSrc, dst, 6, len);
      // Compare mod 0xffff: 0 and 0xffff are the same ones' complement number.
      expect(partialChecksumUpdate32(seed, src, newSrc) % 0xffff).toBe(want % 0xffff);
    }
  });
});
