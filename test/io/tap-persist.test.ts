/**
 * TAPs that outlive their process (native/tap.c): openTap's `persist` and `fd`
 * options, tapPersist, tapAttachIn, and TapPort.dispose — what a lab node's
 * supervisor uses to hand a restarted node its hosts' TAPs.
 *
 * Needs root and /dev/net/tun. The TAP is made here, then moved into a namespace of
 * this test and renamed eth0 (as `lab up` hands a host its interface); traffic stays
 * in that namespace (the kernel there talks to 10.79.0.2, played through the TAP fd).
 */
import { execFileSync } from "node:child_process";
import { closeSync, existsSync, fstatSync, openSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FrameList } from "../../src/core/batch.js";
import { PacketPool } from "../../src/core/pool.js";
import { openTap, sysctlIn, type TapHandle, tapAttachIn, tapPersist } from "../../src/io/native.js";
import { TapPort } from "../../src/io/tap-port.js";

const canRun = process.platform === "linux" && process.getuid?.() === 0 && existsSync("/dev/net/tun");
if (!canRun && process.env.CI) throw new Error("native TAP tests must run in CI: need root and /dev/net/tun");

const PID = process.pid;
const NS = `tnpst${PID}`;
const TAP = `tnps${PID}`;
const TAP2 = `tnpq${PID}`;
const NETNS = `/run/netns/${NS}`;
const PEER_MAC = 0x020000790002;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { timeout: 5000, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function tryQuiet(cmd: string, args: string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

const linkExists = (name: string, ns?: string): boolean =>
  tryQuiet("ip", ns === undefined ? ["link", "show", "dev", name] : ["-n", ns, "link", "show", "dev", name]);
/** Whether this (the test's own) namespace has a link `name` with MAC `mac`. */
function hostShows(name: string, mac: number): boolean {
  let out = "";
  try {
    out = sh("ip", ["-br", "link", "show", "dev", name]);
  } catch {
    return false;
  }
  return out.includes(macText(mac));
}
const macText = (mac: number): string =>
  mac
    .toString(16)
    .padStart(12, "0")
    .replace(/(..)(?!$)/g, "$1:");
const details = (name: string, ns: string): string => sh("ip", ["-d", "-n", ns, "link", "show", "dev", name]);

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pool = Buffer.alloc(1 << 20);
const offsets = new Uint32Array(16);
const lengths = new Uint32Array(16);
const base = { pool, rxBase: 0, slots: 16, slotSize: 2048, headroom: 64, offsets, lengths };
const handles: TapHandle[] = [];

/** Sends an ARP request from 10.79.0.2 for 10.79.0.1 (the namespace's eth0) through `h`. */
function arpRequest(h: TapHandle): void {
  const off = 65536;
  const f = pool.subarray(off, off + 42);
  f.fill(0);
  f.writeUIntBE(0xffffffffffff, 0, 6);
  f.writeUIntBE(PEER_MAC, 6, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16);
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20); // request
  f.writeUIntBE(PEER_MAC, 22, 6);
  f.writeUInt32BE(0x0a4f0002, 28); // 10.79.0.2
  f.writeUInt32BE(0x0a4f0001, 38); // 10.79.0.1
  expect(h.write(pool, Uint32Array.of(off), Uint32Array.of(42), 1)).toBe(1);
}

describe.skipIf(!canRun)("persistent TAPs, re-attached from another namespace", () => {
  beforeAll(() => {
    tryQuiet("ip", ["netns", "del", NS]);
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["-n", NS, "link", "set", "lo", "up"]);
  });
  afterAll(() => {
    for (const h of handles) h.close();
    tryQuiet("ip", ["netns", "del", NS]);
    for (const n of [TAP, TAP2]) if (linkExists(n)) tryQuiet("ip", ["link", "del", "dev", n]);
  });

  it("persist: the TAP outlives its fd; moved into a namespace as eth0 it keeps its setup", () => {
    const h = openTap({ ...base, name: TAP, persist: true, onBatch: () => {} });
    const mac = h.mac;
    h.close();
    expect(linkExists(TAP)).toBe(true);
    sh("ip", ["link", "set", "dev", TAP, "netns", NS]);
    sh("ip", ["-n", NS, "link", "set", "dev", TAP, "name", "eth0"]);
    sh("ip", ["-n", NS, "address", "add", "10.79.0.1/24", "dev", "eth0"]);
    sh("ip", ["-n", NS, "link", "set", "dev", "eth0", "up"]);
    expect(details("eth0", NS)).toMatch(/tun type tap pi off vnet_hdr off persist on/);
    expect(sh("ip", ["-n", NS, "-br", "link", "show", "eth0"])).toContain(macText(mac));
  });

  it("tapAttachIn attaches to it from here; openTap({ fd }) adopts the fd and frames flow both ways", async () => {
    const t = tapAttachIn({ netns: NETNS, name: "eth0" });
    expect(t.fd).toBeGreaterThan(2);
    expect(t.mtu).toBe(1500);
    expect(t.ifindex).toBeGreaterThan(0);
    // This thread is back in its own namespace: the device is not visible here (the
    // host may have an eth0 of its own, but not this TAP with this MAC).
    expect(hostShows("eth0", t.mac)).toBe(false);
    // Attached already: a second attach is refused.
    expect(() => tapAttachIn({ netns: NETNS, name: "eth0" })).toThrow(/EBUSY/);
    let arps = 0;
    const h = openTap({
      ...base,
      name: "adopted",
      fd: t.fd,
      persist: true,
      onBatch: (count) => {
        for (let i = 0; i < count; i++) if (pool.readUInt16BE(offsets[i] + 12) === 0x0806) arps++;
      },
    });
    handles.push(h);
    expect(h.fd).toBe(t.fd);
    expect(h.name).toBe("eth0"); // the device's own name, in its namespace
    expect(h.mac).toBe(t.mac);
    expect(h.ifindex).toBe(0); // not ours to know from here
    h.start();
    // Receive: the namespace's ARP for 10.79.0.2 reaches the adopted fd.
    tryQuiet("ip", ["netns", "exec", NS, "ping", "-c", "1", "-W", "1", "10.79.0.2"]); // unanswered: fails
    await waitFor(() => arps > 0, 5000, "an ARP request through the adopted fd");
    // Transmit: the kernel there learns 10.79.0.2 from our request.
    arpRequest(h);
    await waitFor(() => sh("ip", ["-n", NS, "neigh", "show", "10.79.0.2"]).includes("02:00:00:79:00:02"), 5000, "the namespace to learn 10.79.0.2");
    h.close();
    expect(linkExists("eth0", NS)).toBe(true); // still persistent
  });

  it("tapAttachIn with create makes a persistent TAP in the namespace, and attaches to one that is there", () => {
    const t = tapAttachIn({ netns: NETNS, name: "eth7", create: true });
    expect(t.fd).toBeGreaterThan(2);
    expect(t.mtu).toBe(1500);
    closeSync(t.fd);
    expect(linkExists("eth7", NS)).toBe(true); // outlives the fd
    expect(details("eth7", NS)).toMatch(/tun type tap pi off vnet_hdr off persist on/);
    expect(hostShows("eth7", t.mac)).toBe(false); // made there, not here
    // There now: attached to, not made again.
    const again = tapAttachIn({ netns: NETNS, name: "eth7", create: true });
    expect(again.mac).toBe(t.mac);
    closeSync(again.fd);
    sh("ip", ["-n", NS, "link", "del", "eth7"]);
  });

  it("sysctlIn writes a namespace's sysctls, not this one's, and refuses what is not a sysctl name", () => {
    const key = "net.ipv4.conf.default.forwarding";
    const here = sh("sysctl", ["-n", key]).trim();
    const next = sh("ip", ["netns", "exec", NS, "sysctl", "-n", key]).trim() === "1" ? "0" : "1";
    sysctlIn({ netns: NETNS, names: [key, "net.ipv4.conf.lo.forwarding"], value: next });
    expect(sh("ip", ["netns", "exec", NS, "sysctl", "-n", key]).trim()).toBe(next);
    expect(sh("ip", ["netns", "exec", NS, "sysctl", "-n", "net.ipv4.conf.lo.forwarding"]).trim()).toBe(next);
    expect(sh("sysctl", ["-n", key]).trim()).toBe(here); // this namespace's is untouched
    expect(() => sysctlIn({ netns: NETNS, names: ["../../etc/passwd"], value: "1" })).toThrow(/names\[0\] must be a dotted sysctl name/);
    expect(() => sysctlIn({ netns: NETNS, names: ["net.ipv4.no_such_thing"], value: "1" })).toThrow(/cannot write \/proc\/sys\/net\/ipv4\/no_such_thing/);
    expect(() => sysctlIn({ netns: "/run/netns/tn-no-such-ns", names: [key], value: "1" })).toThrow(/there is no network namespace/);
  });

  it("refuses, and leaves nothing behind: no such TAP, no such namespace, a header mode that does not match", () => {
    let e: NodeJS.ErrnoException | undefined;
    try {
      tapAttachIn({ netns: NETNS, name: "eth9" });
    } catch (x) {
      e = x as NodeJS.ErrnoException;
    }
    expect(e?.code).toBe("ENODEV");
    expect(e?.message).toMatch(/no persistent TAP named eth9/);
    expect(linkExists("eth9", NS)).toBe(false); // the TAP TUNSETIFF made went again
    expect(() => tapAttachIn({ netns: "/run/netns/tn-no-such-ns", name: "eth0" })).toThrow(/there is no network namespace/);
    expect(() => tapAttachIn({ netns: NETNS, name: "lo" })).toThrow(/EINVAL/);
    // Attached with virtio-net headers, adopted without: refused, and the fd closed.
    const t = tapAttachIn({ netns: NETNS, name: "eth0", offload: true });
    expect(() => openTap({ ...base, name: "adopted", fd: t.fd, onBatch: () => {} })).toThrow(
      /expected a TAP without packet information and without virtio-net headers/,
    );
    expect(() => fstatSync(t.fd)).toThrow(/EBADF/);
    expect(() => openTap({ ...base, name: "adopted", fd: 0, onBatch: () => {} })).toThrow(/must be an inherited fd >= 3/);
    const devNull = openSync("/dev/null", "r");
    expect(() => openTap({ ...base, name: "adopted", fd: devNull, onBatch: () => {} })).toThrow(new RegExp(`fd ${devNull} is not a /dev/net/tun file`));
    expect(() => fstatSync(devNull)).toThrow(/EBADF/); // the call owned it
    expect(linkExists("eth0", NS)).toBe(true);
  });

  it("TapPort: close() leaves a persistent TAP; dispose() (removed for good) takes it away", () => {
    const pp = new PacketPool(4 << 20);
    const onRx = (_p: unknown, _f: FrameList): void => {};
    const a = new TapPort("a", TAP2, { persist: true });
    pp.withOwner(a, () => a.open(pp, onRx));
    a.close();
    expect(linkExists(TAP2)).toBe(true);
    const b = new TapPort("b", TAP2, { persist: true });
    pp.withOwner(b, () => b.open(pp, onRx));
    b.dispose();
    expect(linkExists(TAP2)).toBe(false);
    // The adopted kind: the namespace's eth0 goes with dispose().
    const t = tapAttachIn({ netns: NETNS, name: "eth0" });
    const c = new TapPort("c", "eth0", { persist: true, fd: t.fd, mtu: t.mtu });
    pp.withOwner(c, () => c.open(pp, onRx));
    expect(c.adopted).toBe(true);
    expect(c.info()).toMatchObject({ mtu: 1500, mac: t.mac });
    c.dispose();
    expect(linkExists("eth0", NS)).toBe(false);
  });

  it("tapPersist changes a TAP's persistence through its fd", () => {
    const h = openTap({ ...base, name: TAP2, onBatch: () => {} });
    tapPersist(h.fd, true);
    h.close();
    expect(linkExists(TAP2)).toBe(true);
    const h2 = openTap({ ...base, name: TAP2, onBatch: () => {} });
    tapPersist(h2.fd, false);
    h2.close();
    expect(linkExists(TAP2)).toBe(false);
    expect(() => tapPersist(-1 as number, true)).toThrow(RangeError);
  });
});
