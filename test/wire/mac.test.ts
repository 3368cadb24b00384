import { describe, expect, it } from "vitest";
import { MAC_BROADCAST, macIsUnicast, macToString, parseMac, readMac, writeMac } from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// ARP request captured on a veth in a test namespace (tcpdump -w, frame 5 of the capture).
// tshark: eth.dst ff:ff:ff:ff:ff:ff, eth.src 02:00:00:00:0a:01, arp.src.hw_mac 02:00:00:00:0a:01.
const FIXTURE = hex(`
  ffffffffffff 020000000a01 0806
  0001 0800 06 04 0001 020000000a01 0a630101 000000000000 0a6301fe
`);

describe("mac", () => {
  it("reads addresses from a real frame", () => {
    expect(readMac(FIXTURE, 0)).toBe(MAC_BROADCAST);
    expect(readMac(FIXTURE, 6)).toBe(0x020000000a01);
    expect(readMac(FIXTURE, 22)).toBe(0x020000000a01);
    expect(readMac(FIXTURE, 32)).toBe(0);
    expect(macToString(readMac(FIXTURE, 6))).toBe("02:00:00:00:0a:01");
  });

  it("round-trips high addresses without sign or precision loss", () => {
    const b = hex("fedcba987654");
    const mac = readMac(b, 0);
    expect(mac).toBe(0xfedcba987654);
    expect(mac).toBeGreaterThan(0);
    const out = Buffer.alloc(10, 0xa5);
    writeMac(out, 3, mac);
    expect(out.toString("hex")).toBe("a5a5a5fedcba987654a5");
    expect(macToString(mac)).toBe("fe:dc:ba:98:76:54");
  });

  it("writes at an offset without touching neighbours", () => {
    const out = Buffer.alloc(20, 0xa5);
    writeMac(out, 7, 0x020000000a01);
    expect(out.subarray(7, 13).toString("hex")).toBe("020000000a01");
    expect([...out.subarray(0, 7), ...out.subarray(13)].every((b) => b === 0xa5)).toBe(true);
  });

  it.each([
    ["02:00:00:00:0a:01", 0x020000000a01],
    ["FF:FF:FF:FF:FF:FF", MAC_BROADCAST],
    ["00-11-22-33-44-55", 0x001122334455],
    ["00:00:00:00:00:00", 0],
  ])("parses %s", (s, v) => {
    expect(parseMac(s)).toBe(v);
  });

  it.each([
    "",
    "02:00:00:00:0a",
    "02:00:00:00:0a:01:02",
    "2:0:0:0:a:1",
    "02:00:00:00:0a:0g",
    "02:00-00:00:0a:01",
    " 02:00:00:00:0a:01",
    "02:00:00:00:0a:01 ",
    "020000000a01",
  ])("rejects %j with a clear error", (s) => {
    expect(() => parseMac(s)).toThrow(/invalid MAC address/);
    expect(() => parseMac(s)).toThrow(JSON.stringify(s));
  });

  it("rejects non-strings", () => {
    expect(() => parseMac(42 as unknown as string)).toThrow(/invalid MAC address/);
  });

  it.each([
    ["ff:ff:ff:ff:ff:ff", false],
    ["01:00:5e:00:00:01", false],
    ["33:33:00:00:00:16", false],
    ["02:00:00:00:0a:01", true],
    ["00:11:22:33:44:55", true],
    ["00:00:00:00:00:00", false],
  ])("classifies %s (unicast: %s)", (s, unicast) => {
    const m = parseMac(s);
    expect(macIsUnicast(m)).toBe(unicast);
    expect(macToString(m)).toBe(s.toLowerCase());
  });
});
