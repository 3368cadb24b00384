import { describe, expect, it } from "vitest";
import { IP_BROADCAST, ipInSubnet, ipIsMulticast, ipToString, maskFromPrefix, parseCidr, parseIp, readU32 } from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// IPv4 header of an ICMP echo request captured in a test namespace (frame 7).
// tshark: ip.src 10.99.1.1, ip.dst 10.99.1.254.
const FIXTURE = hex("45000054f94940004001299b 0a630101 0a6301fe");

describe("ipv4 addresses", () => {
  it("formats addresses read from a real header", () => {
    expect(ipToString(readU32(FIXTURE, 12))).toBe("10.99.1.1");
    expect(ipToString(readU32(FIXTURE, 16))).toBe("10.99.1.254");
    expect(parseIp("10.99.1.254")).toBe(readU32(FIXTURE, 16));
  });

  it("keeps high addresses unsigned", () => {
    expect(parseIp("255.255.255.255")).toBe(IP_BROADCAST);
    expect(parseIp("224.0.0.1")).toBe(0xe0000001);
    expect(parseIp("224.0.0.1")).toBeGreaterThan(0);
    expect(ipToString(0xffffffff)).toBe("255.255.255.255");
    expect(ipToString(0)).toBe("0.0.0.0");
  });

  it.each(["", "10.0.0", "10.0.0.1.2", "10.0.0.256", "010.0.0.1", "10.0.0.-1", "10.0.0.1 ", "a.b.c.d", "10..0.1", "1e1.0.0.1"])(
    "rejects %j with a clear error",
    (s) => {
      expect(() => parseIp(s)).toThrow(/invalid IPv4 address/);
      expect(() => parseIp(s)).toThrow(JSON.stringify(s));
    },
  );

  it.each([
    [0, 0],
    [1, 0x80000000],
    [8, 0xff000000],
    [24, 0xffffff00],
    [31, 0xfffffffe],
    [32, 0xffffffff],
  ])("maskFromPrefix(%i)", (len, mask) => {
    expect(maskFromPrefix(len)).toBe(mask);
  });

  it("every prefix length gives an unsigned mask of that many leading ones", () => {
    for (let len = 0; len <= 32; len++) {
      const m = maskFromPrefix(len);
      expect(m).toBeGreaterThanOrEqual(0);
      expect(m).toBe(2 ** 32 - 2 ** (32 - len));
    }
  });

  it("rejects bad prefix lengths", () => {
    expect(() => maskFromPrefix(33)).toThrow(/prefix length/);
    expect(() => maskFromPrefix(-1)).toThrow(/prefix length/);
    expect(() => maskFromPrefix(1.5)).toThrow(/prefix length/);
  });

  it("parses CIDR", () => {
    expect(parseCidr("10.99.1.1/24")).toEqual({
      addr: 0x0a630101,
      prefixLen: 24,
      mask: 0xffffff00,
      network: 0x0a630100,
    });
    expect(parseCidr("0.0.0.0/0")).toEqual({ addr: 0, prefixLen: 0, mask: 0, network: 0 });
    expect(parseCidr("192.168.1.1/32").network).toBe(0xc0a80101);
    expect(parseCidr("255.255.255.255/1").network).toBe(0x80000000);
  });

  it.each(["10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/024", "10.0.0.1/2/4", "10.0.0/8", "/8", "10.0.0.1/x"])("rejects CIDR %j", (s) => {
    expect(() => parseCidr(s)).toThrow(/invalid (CIDR|IPv4 address)/);
  });

  it("tests membership and classes", () => {
    const c = parseCidr("10.99.1.0/24");
    expect(ipInSubnet(parseIp("10.99.1.254"), c.network, c.mask)).toBe(true);
    expect(ipInSubnet(parseIp("10.99.2.1"), c.network, c.mask)).toBe(false);
    expect(ipInSubnet(parseIp("200.1.2.3"), 0, 0)).toBe(true);
    const hi = parseCidr("240.0.0.0/4");
    expect(ipInSubnet(parseIp("255.1.2.3"), hi.network, hi.mask)).toBe(true);
    expect(ipIsMulticast(parseIp("239.255.255.250"))).toBe(true);
    expect(ipIsMulticast(parseIp("240.0.0.1"))).toBe(false);
  });
});
