/**
 * XdpPort and openXsk (native/xsk.c): what they refuse before touching the kernel. Their
 * traffic is tested on a lab (test/integration/xdp-lab.test.ts).
 */
import { describe, expect, it } from "vitest";
import { PacketPool } from "../../src/core/pool.js";
import { loadNative, nativeAvailable } from "../../src/io/native.js";
import { XdpPort } from "../../src/io/xdp-port.js";

type OpenXsk = (opts: Record<string, unknown>) => unknown;

describe("XdpPort", () => {
  it("refuses a name that is not an interface name, a bad mode and chunk counts that are not powers of two", () => {
    expect(() => new XdpPort("p", "a/b")).toThrow(/'a\/b' is not an interface name/);
    expect(() => new XdpPort("p", "x1", { mode: "fast" as "auto" })).toThrow(/mode must be auto, native or generic, got 'fast'/);
    expect(() => new XdpPort("p", "x1", { rxFrames: 100 })).toThrow(/rxFrames must be a power of two from 64 to 16384, got 100/);
    expect(() => new XdpPort("p", "x1", { txFrames: 32 })).toThrow(/txFrames must be a power of two/);
  });

  it("reserves its UMEM with a page to spare, and names a missing interface", () => {
    const p = new XdpPort("p", "tnxdpnone0", { rxFrames: 64, txFrames: 64 });
    expect(p.rxRegionBytes()).toBe(128 * 2048 + 4096);
    expect(new XdpPort("q", "x1", { rxFrames: 64, txFrames: 64, frameSize: 4096 }).rxRegionBytes()).toBe(128 * 4096 + 4096);
    expect(() => new XdpPort("q", "x1", { frameSize: 1024 as 2048 })).toThrow(/frameSize must be 2048 or 4096, got 1024/);
    const pool = new PacketPool(p.rxRegionBytes() + 64);
    expect(() => p.open(pool, () => {})).toThrow("xdp port 'p': no interface 'tnxdpnone0' in this network namespace");
    expect(p.isOpen).toBe(false);
  });
});

describe.skipIf(!nativeAvailable())("openXsk", () => {
  const openXsk = (): OpenXsk => (loadNative() as unknown as { openXsk: OpenXsk }).openXsk;
  const base = (): Record<string, unknown> => ({
    ifname: "lo",
    pool: Buffer.alloc(3 * 4096),
    region: 0,
    regionBytes: 3 * 4096,
    frameSize: 2048,
    rxFrames: 2,
    txFrames: 2,
    slots: 2,
    offsets: new Uint32Array(2),
    lengths: new Uint32Array(2),
  });

  it("checks every option before it makes a socket", () => {
    const open = openXsk();
    expect(() => open({ ...base(), ifname: "" })).toThrow(/option 'ifname' must be an interface name/);
    expect(() => open({ ...base(), frameSize: 3000 })).toThrow(/'frameSize' must be a power of two from 2048/);
    expect(() => open({ ...base(), rxFrames: 3 })).toThrow(/'rxFrames' and 'txFrames' must be powers of two \(got 3, 2\)/);
    expect(() => open({ ...base(), headroom: 1025 })).toThrow(/option 'headroom'/);
    expect(() => open({ ...base(), slots: 4 })).toThrow(/'slots' \(4\) must be at least 1 and at most the length of 'offsets' and 'lengths'/);
    expect(() => open({ ...base(), regionBytes: 4 * 4096 })).toThrow(/the region \(0 \+ 16384 bytes\) is outside the pool/);
    // Four chunks of 2048 fill two pages: with the alignment they need more than the region may hold.
    expect(() => open({ ...base(), pool: Buffer.alloc(8192), regionBytes: 8192 })).toThrow(/cannot hold 8192 bytes of frames at a page boundary/);
    expect(() => open({ ...base(), ifname: "tnxdpnone0" })).toThrow(/no interface 'tnxdpnone0' in this network namespace/);
  });
});
