/**
 * Integration tests of the native TAP addon (native/tap.c via src/io/native.ts).
 *
 * Needs root and /dev/net/tun. Every TAP is opened by this process in the root
 * namespace and then moved into a namespace the test creates (the way the lab
 * hands hosts their eth0); all traffic stays inside that namespace: the kernel
 * there talks to a fake peer (10.77.0.2 / 10.78.0.2) that this file plays by
 * answering ARP and ICMP echo through the TAP fd.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FrameList } from "../../src/core/batch.js";
import { PacketPool } from "../../src/core/pool.js";
import type { Port } from "../../src/core/port.js";
import { interfaceInfo, openTap, type TapHandle } from "../../src/io/native.js";
import { VNET_HDR_LEN } from "../../src/wire/vnet.js";
import { TapPort } from "../../src/io/tap-port.js";

const canRun = process.platform === "linux" && process.getuid?.() === 0 && existsSync("/dev/net/tun");
// In CI these tests must run: a machine that cannot run them fails the run.
if (!canRun && process.env.CI) throw new Error("native TAP tests must run in CI: need root and /dev/net/tun");

const PID = process.pid;
const NS = `tntap${PID}`;
const TAP_A = `tnta${PID}`; // plain, moved into NS, 10.77.0.1/24
const TAP_V = `tntv${PID}`; // offload (IFF_VNET_HDR), moved into NS, 10.78.0.1/24
const TAP_X = `tntx${PID}`; // error cases, stays in the root namespace
const NS2 = `tntap${PID}r`; // second namespace for the relay test
const TAP_R1 = `tntr${PID}a`; // relay: in NS, 10.90.0.1/24
const TAP_R2 = `tntr${PID}b`; // relay: in NS2, 10.90.0.2/24
const NSG_A = `tntap${PID}ga`; // egress GRO relay: host A (offloads off on its TAP)
const NSG_B = `tntap${PID}gb`; // egress GRO relay: host B
const TAP_GA = `tntg${PID}a`; // in NSG_A, 10.91.0.1/24
const TAP_GB = `tntg${PID}b`; // in NSG_B, 10.91.0.2/24
const ADDON = fileURLToPath(new URL("../../native/build/Release/tapnet.node", import.meta.url));

const IP_A = 0x0a4d0001; // 10.77.0.1, the kernel side
const PEER_A = 0x0a4d0002; // 10.77.0.2, played by this test
const IP_V = 0x0a4e0001; // 10.78.0.1
const PEER_V = 0x0a4e0002; // 10.78.0.2
const PEER_MAC = 0x020000770002;
const PEER_MAC_STR = "02:00:00:77:00:02";

const ETH_P_ARP = 0x0806;
const ETH_P_IPV4 = 0x0800;

// One pool for all ports, as in the dataplane.
const SLOTS_A = 64;
const SLOT_A = 2048;
const SLOTS_V = 8;
const SLOT_V = 65536 + 256;
const HEADROOM = 64;
const RXBASE_A = 0;
const RXBASE_V = RXBASE_A + SLOTS_A * SLOT_A;
const SLOTS_R = 32;
const RXBASE_R1 = RXBASE_V + SLOTS_V * SLOT_V;
const RXBASE_R2 = RXBASE_R1 + SLOTS_R * SLOT_V;
const POOL_SIZE = RXBASE_R2 + SLOTS_R * SLOT_V + 4096;

// ---------------------------------------------------------------------------
// Helpers: commands, bounded in time

function sh(cmd: string, args: string[], timeout = 5000): string {
  return execFileSync(cmd, args, { timeout, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function tryQuiet(cmd: string, args: string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

function linkExists(name: string, ns?: string): boolean {
  return tryQuiet("ip", ns === undefined ? ["link", "show", "dev", name] : ["-n", ns, "link", "show", "dev", name]);
}

const children = new Set<ChildProcess>();

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts a command without blocking the event loop (the TAP must keep being served meanwhile); killed after timeoutMs. */
function spawnBounded(cmd: string, args: string[], timeoutMs: number): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const done = new Promise<RunResult>((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, done };
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return spawnBounded(cmd, args, timeoutMs).done;
}

function inNs(args: string[], timeoutMs: number): Promise<RunResult> {
  return run("ip", ["netns", "exec", NS, ...args], timeoutMs);
}

async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function macStr(mac: number): string {
  return mac
    .toString(16)
    .padStart(12, "0")
    .replace(/(..)(?!$)/g, "$1:");
}

// ---------------------------------------------------------------------------
// A tiny peer: turns ARP requests and ICMP echo requests into replies in place

/** RFC 1071 Internet checksum of buf[start, end). */
function inetChecksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * If the Ethernet frame at `off` is an ARP request for `peerIp` or an ICMP
 * echo request to `peerIp`, rewrites it in place into the reply and returns
 * true.
 */
function answerInPlace(pool: Buffer, off: number, len: number, peerIp: number): boolean {
  if (len < 42) return false;
  const etherType = pool.readUInt16BE(off + 12);
  const srcMac = pool.readUIntBE(off + 6, 6);
  if (etherType === ETH_P_ARP) {
    const a = off + 14;
    if (pool.readUInt16BE(a + 6) !== 1 || pool.readUInt32BE(a + 24) !== peerIp) return false;
    const senderIp = pool.readUInt32BE(a + 14);
    pool.writeUIntBE(srcMac, off, 6);
    pool.writeUIntBE(PEER_MAC, off + 6, 6);
    pool.writeUInt16BE(2, a + 6); // oper = reply
    pool.writeUIntBE(srcMac, a + 18, 6); // tha
    pool.writeUInt32BE(senderIp, a + 24); // tpa
    pool.writeUIntBE(PEER_MAC, a + 8, 6); // sha
    pool.writeUInt32BE(peerIp, a + 14); // spa
    return true;
  }
  if (etherType === ETH_P_IPV4) {
    const ip = off + 14;
    const ihl = (pool[ip]! & 0x0f) * 4;
    const totalLen = pool.readUInt16BE(ip + 2);
    if (pool[ip + 9] !== 1 || pool.readUInt32BE(ip + 16) !== peerIp || 14 + totalLen > len) return false;
    const icmp = ip + ihl;
    if (pool[icmp] !== 8) return false; // echo request
    const srcIp = pool.readUInt32BE(ip + 12);
    pool.writeUIntBE(srcMac, off, 6);
    pool.writeUIntBE(PEER_MAC, off + 6, 6);
    pool.writeUInt32BE(peerIp, ip + 12);
    pool.writeUInt32BE(srcIp, ip + 16); // swapping addresses keeps the IPv4 header checksum valid
    pool[icmp] = 0; // echo reply
    pool.writeUInt16BE(0, icmp + 2);
    pool.writeUInt16BE(inetChecksum(pool, icmp, ip + totalLen), icmp + 2);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// A port as the dataplane would hold it: handle + batch arrays + a peer

interface TestPort {
  h: TapHandle;
  offsets: Uint32Array;
  lengths: Uint32Array;
  txOffsets: Uint32Array;
  txLengths: Uint32Array;
  vnet: boolean;
  peerIp: number;
  answer: boolean;
  capture: boolean;
  captured: Buffer[];
  batchSizes: number[];
  framesSeen: number;
  txAccepted: number;
  txTried: number;
}

const pool = Buffer.alloc(POOL_SIZE);
const handles: TapHandle[] = [];

function openPort(name: string, vnet: boolean, rxBase: number, slots: number, slotSize: number, peerIp: number): TestPort {
  const offsets = new Uint32Array(slots);
  const lengths = new Uint32Array(slots);
  const port = {
    offsets,
    lengths,
    txOffsets: new Uint32Array(slots),
    txLengths: new Uint32Array(slots),
    vnet,
    peerIp,
    answer: false,
    capture: true,
    captured: [],
    batchSizes: [],
    framesSeen: 0,
    txAccepted: 0,
    txTried: 0,
  } as unknown as TestPort;
  port.h = openTap({
    name,
    offload: vnet,
    pool,
    rxBase,
    slots,
    slotSize,
    headroom: HEADROOM,
    offsets,
    lengths,
    onBatch: (count) => onBatch(port, count),
  });
  handles.push(port.h);
  return port;
}

function onBatch(p: TestPort, count: number): void {
  p.batchSizes.push(count);
  p.framesSeen += count;
  const skip = p.vnet ? VNET_HDR_LEN : 0;
  let tx = 0;
  for (let i = 0; i < count; i++) {
    const off = p.offsets[i]!;
    const len = p.lengths[i]!;
    if (p.capture && p.captured.length < 4000) p.captured.push(Buffer.from(pool.subarray(off, off + len)));
    if (p.answer && answerInPlace(pool, off + skip, len - skip, p.peerIp)) {
      // Replies go out with an all-zero virtio-net header: no GSO, checksum complete.
      if (skip > 0) pool.fill(0, off, off + skip);
      p.txOffsets[tx] = off;
      p.txLengths[tx] = len;
      tx++;
    }
  }
  if (tx > 0) {
    p.txTried += tx;
    p.txAccepted += p.h.write(pool, p.txOffsets, p.txLengths, tx);
  }
}

function isArpRequest(f: Buffer, senderIp: number, targetIp: number): boolean {
  return (
    f.length >= 42 &&
    f.readUInt16BE(12) === ETH_P_ARP &&
    f.readUInt16BE(14 + 6) === 1 &&
    f.readUInt32BE(14 + 14) === senderIp &&
    f.readUInt32BE(14 + 24) === targetIp
  );
}

function nsMac(name: string): string {
  const j = JSON.parse(sh("ip", ["-n", NS, "-j", "link", "show", "dev", name])) as Array<{ address: string }>;
  return j[0]!.address;
}

/** Moves a TAP opened here into NS and configures it there. */
function moveAndConfigure(name: string, cidr: string): void {
  sh("ip", ["link", "set", "dev", name, "netns", NS]);
  // Fewer stray IPv6 frames (router solicitations, MLD) make the counts easier to read.
  sh("ip", ["netns", "exec", NS, "sysctl", "-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=1`]);
  sh("ip", ["-n", NS, "addr", "add", cidr, "dev", name]);
  sh("ip", ["-n", NS, "link", "set", "dev", name, "up"]);
}

// ---------------------------------------------------------------------------

describe.skipIf(!canRun)("native TAP port (root, /dev/net/tun)", () => {
  let a: TestPort;
  // What was true in the root namespace before TAP_A moved away.
  let beforeMove: { existed: boolean; info: ReturnType<typeof interfaceInfo> };

  beforeAll(() => {
    tryQuiet("ip", ["netns", "del", NS]); // left over by a killed run with the same PID
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["-n", NS, "link", "set", "lo", "up"]);
    // TAP_A is shared by the tests below (vitest runs them in order).
    a = openPort(TAP_A, false, RXBASE_A, SLOTS_A, SLOT_A, PEER_A);
    beforeMove = { existed: linkExists(TAP_A), info: interfaceInfo(TAP_A) };
    moveAndConfigure(TAP_A, "10.77.0.1/24");
    a.h.start();
  });

  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    for (const h of handles) h.close();
    tryQuiet("ip", ["netns", "del", NS]);
    tryQuiet("ip", ["netns", "del", NS2]);
    tryQuiet("ip", ["netns", "del", NSG_A]);
    tryQuiet("ip", ["netns", "del", NSG_B]);
    // Closing the fd destroys a non-persistent TAP wherever it lives; this is
    // only for the case where an assertion failed between open and close.
    for (const n of [TAP_A, TAP_V, TAP_X, TAP_R1, TAP_R2, TAP_GA, TAP_GB]) if (linkExists(n)) tryQuiet("ip", ["link", "del", "dev", n]);
  });

  it("receives ARP requests from a TAP moved into another namespace", { timeout: 20_000 }, async () => {
    expect(a.h.name).toBe(TAP_A);
    expect(a.h.fd).toBeGreaterThanOrEqual(0);
    expect(a.h.mtu).toBe(1500);
    expect(beforeMove.existed).toBe(true);
    expect(beforeMove.info).toEqual({ mac: a.h.mac, mtu: a.h.mtu, ifindex: a.h.ifindex });
    expect(linkExists(TAP_A)).toBe(false); // gone from the root namespace...
    expect(linkExists(TAP_A, NS)).toBe(true); // ...and in NS, same name, same MAC
    expect(nsMac(TAP_A)).toBe(macStr(a.h.mac));

    const ping = inNs(["ping", "-c", "3", "-W", "1", "10.77.0.2"], 8000);
    await waitFor(() => a.captured.some((f) => isArpRequest(f, IP_A, PEER_A)), 6000, "an ARP request on the TAP");
    const arp = a.captured.find((f) => isArpRequest(f, IP_A, PEER_A))!;
    expect(arp.readUIntBE(0, 6)).toBe(0xffffffffffff); // broadcast
    expect(macStr(arp.readUIntBE(6, 6))).toBe(nsMac(TAP_A)); // Ethernet source
    expect(arp.readUIntBE(14 + 8, 6)).toBe(a.h.mac); // ARP sender hardware address
    await ping; // nobody answers yet: ping fails, that is expected

    // Frames sit in their slots, after the headroom.
    for (let i = 0; i < a.batchSizes.at(-1)!; i++) {
      expect((a.offsets[i]! - RXBASE_A - HEADROOM) % SLOT_A).toBe(0);
      expect(a.lengths[i]).toBeLessThanOrEqual(SLOT_A - HEADROOM);
    }
    const s = a.h.stats();
    expect(s.batches).toBe(a.batchSizes.length);
    expect(s.wakeups).toBeGreaterThanOrEqual(s.batches);
    expect(s.rxErrors).toBe(0);
    expect(s.rxOversize).toBe(0);
    expect(a.batchSizes.every((n) => n > 0)).toBe(true);
  });

  it("transmits: the kernel learns an ARP reply and ping gets echo replies", { timeout: 20_000 }, async () => {
    sh("ip", ["-n", NS, "neigh", "flush", "dev", TAP_A]);
    a.answer = true;
    const trigger = inNs(["ping", "-c", "1", "-W", "1", "10.77.0.2"], 5000);
    const neigh = (): string => sh("ip", ["-n", NS, "neigh", "show", "10.77.0.2", "dev", TAP_A]);
    await waitFor(() => neigh().includes(PEER_MAC_STR), 5000, "the kernel to learn 10.77.0.2");
    expect(neigh()).toMatch(/lladdr 02:00:00:77:00:02 .*(REACHABLE|STALE|DELAY)/);
    await trigger;

    const ping = await inNs(["ping", "-c", "2", "-W", "2", "10.77.0.2"], 8000);
    expect(ping.stdout).toMatch(/2 packets transmitted, 2 received/);
    expect(ping.code).toBe(0);
    expect(a.txAccepted).toBeGreaterThanOrEqual(3);
    expect(a.txAccepted).toBe(a.txTried);
    expect(a.h.stats().txErrors).toBe(0);
  });

  it("write() skips frames the kernel rejects and sends the rest", { timeout: 10_000 }, () => {
    // Five frames: good, too short for Ethernet (EINVAL), empty, outside the pool, good.
    const base = POOL_SIZE - 4096;
    const frame = Buffer.alloc(60);
    frame.writeUIntBE(0xffffffffffff, 0, 6);
    frame.writeUIntBE(PEER_MAC, 6, 6);
    frame.writeUInt16BE(0x88b5, 12); // local experimental ethertype: the kernel drops it quietly
    frame.copy(pool, base);
    const before = a.h.stats().txErrors;
    const offs = Uint32Array.of(base, base, base, POOL_SIZE - 10, base);
    const lens = Uint32Array.of(60, 5, 0, 60, 60);
    expect(a.h.write(pool, offs, lens, 5)).toBe(2);
    expect(a.h.stats().txErrors - before).toBe(3);
    expect(a.h.write(pool, offs, lens, 0)).toBe(0);
    expect(() => a.h.write(pool, offs, lens, 6)).toThrow(RangeError);
  });

  it("drains bursts in batches (flood ping, and a backlog built while stopped)", { timeout: 30_000 }, async () => {
    // A permanent neighbour keeps ARP out of the counts.
    sh("ip", ["-n", NS, "neigh", "replace", "10.77.0.2", "lladdr", PEER_MAC_STR, "dev", TAP_A, "nud", "permanent"]);
    a.answer = true;
    a.capture = false;

    // 1. Flood ping with 32 requests in flight.
    a.batchSizes = [];
    a.framesSeen = 0;
    const stats0 = a.h.stats();
    const flood = await inNs(["ping", "-f", "-l", "32", "-c", "2000", "-W", "1", "10.77.0.2"], 20_000);
    const stats1 = a.h.stats();
    const batches = stats1.batches - stats0.batches;
    const maxBatch = Math.max(...a.batchSizes);
    console.log(
      `[tap] flood: ${a.framesSeen} frames in ${batches} batches (mean ${(a.framesSeen / batches).toFixed(2)}, max ${maxBatch}), ` +
        `${stats1.wakeups - stats0.wakeups} wake-ups; ping: ${/\d+ received/.exec(flood.stdout)?.[0] ?? flood.stdout.trim()}`,
    );
    expect(flood.stdout).toMatch(/2000 packets transmitted/);
    expect(a.framesSeen).toBeGreaterThanOrEqual(2000);
    expect(maxBatch).toBeGreaterThan(1);
    expect(batches).toBeLessThan(a.framesSeen);
    expect(a.h.stats().rxErrors).toBe(0);

    // 2. Backpressure: stop, let 100 requests queue in the kernel, start again.
    //    The first wake-up must deliver exactly `slots` frames, the next the rest.
    a.h.stop();
    a.batchSizes = [];
    const backlog = inNs(["ping", "-c", "100", "-l", "100", "-W", "5", "10.77.0.2"], 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(a.batchSizes).toEqual([]);
    a.h.start();
    await waitFor(() => a.batchSizes.reduce((x, y) => x + y, 0) >= 100, 5000, "100 queued frames");
    console.log(`[tap] backlog of 100 with slots=${SLOTS_A}: batches ${JSON.stringify(a.batchSizes)}`);
    expect(a.batchSizes[0]).toBe(SLOTS_A);
    expect(a.batchSizes[1]).toBe(100 - SLOTS_A);
    const res = await backlog;
    expect(res.stdout).toMatch(/100 packets transmitted, 100 received/);
    a.capture = true;
  });

  it("delivers a frame that exactly fills a slot and drops (and counts) one byte more", { timeout: 20_000 }, async () => {
    // read() on a tun fd returns min(frame, buffer): truncation is silent, so
    // the addon reads with one spare byte to tell "fits exactly" from "cut".
    // Slots of TAP_A hold 2048 - 64 = 1984 bytes = 14 + 20 + 8 + 1942 (ICMP payload).
    const room = SLOT_A - HEADROOM;
    sh("ip", ["-n", NS, "link", "set", "dev", TAP_A, "mtu", "4000"]);
    try {
      a.captured = [];
      const s0 = a.h.stats();
      const fits = await inNs(["ping", "-c", "1", "-W", "2", "-s", String(room - 42), "-M", "do", "10.77.0.2"], 5000);
      expect(fits.stdout).toMatch(/1 packets transmitted, 1 received/);
      expect(a.captured.some((f) => f.length === room)).toBe(true);
      const s1 = a.h.stats();
      expect(s1.rxOversize).toBe(s0.rxOversize);

      const cut = await inNs(["ping", "-c", "2", "-W", "1", "-s", String(room - 41), "-M", "do", "10.77.0.2"], 5000);
      expect(cut.stdout).toMatch(/2 packets transmitted, 0 received/);
      const s2 = a.h.stats();
      expect(s2.rxOversize - s1.rxOversize).toBe(2);
      expect(s2.rxErrors).toBe(s0.rxErrors);
      expect(a.captured.every((f) => f.length <= room)).toBe(true);
    } finally {
      sh("ip", ["-n", NS, "link", "set", "dev", TAP_A, "mtu", "1500"]);
    }
  });

  it("rejects bad options with clear errors and creates nothing", { timeout: 10_000 }, () => {
    const links = (): string =>
      sh("ip", ["-o", "link", "show"])
        .replace(/^\d+: /gm, "")
        .split("\n")
        .map((l) => l.split(":")[0])
        .sort()
        .join(",");
    const before = links();
    const base = {
      pool,
      rxBase: 0,
      slots: 4,
      slotSize: 2048,
      headroom: 64,
      offsets: new Uint32Array(4),
      lengths: new Uint32Array(4),
      onBatch: () => {},
    };
    const longName = "tnt-much-too-long0";
    expect(() => openTap({ ...base, name: longName })).toThrow(/too long.*18 characters.*at most 15/);
    try {
      openTap({ ...base, name: longName });
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe("ENAMETOOLONG");
    }
    expect(linkExists(longName.slice(0, 15))).toBe(false);
    expect(() => openTap({ ...base, name: "" })).toThrow(/empty/);
    expect(() => openTap({ ...base, name: "a/b" })).toThrow(/invalid interface name/);

    expect(() => openTap({ ...base, name: TAP_X, rxBase: POOL_SIZE })).toThrow(RangeError);
    expect(() => openTap({ ...base, name: TAP_X, rxBase: POOL_SIZE - 4096 })).toThrow(/does not fit in the pool/);
    expect(() => openTap({ ...base, name: TAP_X, rxBase: -1 })).toThrow(RangeError);
    expect(() => openTap({ ...base, name: TAP_X, offsets: new Uint32Array(3) })).toThrow(RangeError);
    expect(() => openTap({ ...base, name: TAP_X, slots: 0 })).toThrow(RangeError);
    expect(() => openTap({ ...base, name: TAP_X, headroom: 2040 })).toThrow(/no room for a frame/);
    expect(() => openTap({ ...base, name: TAP_X, lengths: new Int32Array(4) as unknown as Uint32Array })).toThrow(TypeError);
    expect(linkExists(TAP_X)).toBe(false);

    // An existing interface that is not a TAP.
    expect(() => openTap({ ...base, name: "lo" })).toThrow(/an interface named lo already exists and is not a TAP/);

    // A TAP (without multiQueue) takes one fd.
    const x = openTap({ ...base, name: TAP_X });
    handles.push(x);
    let busy: NodeJS.ErrnoException | undefined;
    try {
      handles.push(openTap({ ...base, name: TAP_X }));
    } catch (e) {
      busy = e as NodeJS.ErrnoException;
    }
    expect(busy?.message).toMatch(new RegExp(`TAP ${TAP_X} is already attached`));
    expect(busy?.code).toBe("EBUSY");
    expect(busy?.syscall).toBe("ioctl(TUNSETIFF)");

    // Close: idempotent; the non-persistent interface goes away with the fd.
    x.close();
    x.close();
    expect(x.fd).toBe(-1);
    expect(linkExists(TAP_X)).toBe(false);
    expect(() => x.start()).toThrow(/closed/);
    expect(() => x.write(pool, base.offsets, base.lengths, 0)).toThrow(/closed/);
    expect(x.stats().batches).toBe(0);
    x.stop();

    // With multiQueue, each open attaches one more queue to the same device;
    // mixing the two kinds on one name is EINVAL.
    const q1 = openTap({ ...base, name: TAP_X, multiQueue: true });
    handles.push(q1);
    const q2 = openTap({ ...base, name: TAP_X, multiQueue: true });
    handles.push(q2);
    expect(q2.ifindex).toBe(q1.ifindex);
    expect(() => openTap({ ...base, name: TAP_X })).toThrow(/flags differ/);
    q1.close();
    expect(linkExists(TAP_X)).toBe(true); // still held by q2
    q2.close();
    expect(linkExists(TAP_X)).toBe(false);

    expect(interfaceInfo("lo")).toEqual({ mac: 0, mtu: 65536, ifindex: 1 });
    expect(() => interfaceInfo(TAP_X)).toThrow(/no network interface named/);
    expect(links()).toBe(before);
  });

  it("offload: frames carry a 12-byte virtio-net header, both ways", { timeout: 20_000 }, async () => {
    const v = openPort(TAP_V, true, RXBASE_V, SLOTS_V, SLOT_V, PEER_V);
    moveAndConfigure(TAP_V, "10.78.0.1/24");
    v.h.start();
    v.answer = true;

    const ping = await inNs(["ping", "-c", "2", "-W", "2", "10.78.0.2"], 8000);
    const arp = v.captured.find((f) => isArpRequest(f.subarray(VNET_HDR_LEN), IP_V, PEER_V));
    expect(arp).toBeDefined();
    expect(arp!.subarray(0, VNET_HDR_LEN)).toEqual(Buffer.alloc(VNET_HDR_LEN)); // no offload for ARP
    expect(macStr(arp!.readUIntBE(VNET_HDR_LEN + 6, 6))).toBe(nsMac(TAP_V));
    // Our replies (written with a zero header) were understood.
    expect(ping.stdout).toMatch(/2 packets transmitted, 2 received/);
    expect(sh("ip", ["-n", NS, "neigh", "show", "10.78.0.2"])).toContain(PEER_MAC_STR);

    // With TUN_F_CSUM the kernel leaves TCP checksums to us: a SYN arrives
    // with VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start at the TCP header and
    // csum_offset 16 (the checksum field of the TCP header).
    v.captured = [];
    await inNs(["timeout", "-k", "1", "2", "bash", "-c", "exec 3<>/dev/tcp/10.78.0.2/7"], 5000);
    const syn = v.captured.find((f) => f.length >= VNET_HDR_LEN + 54 && f.readUInt16BE(VNET_HDR_LEN + 12) === ETH_P_IPV4 && f[VNET_HDR_LEN + 14 + 9] === 6);
    expect(syn).toBeDefined();
    expect(syn![0]! & 1).toBe(1); // flags: NEEDS_CSUM
    expect(syn![1]).toBe(0); // gso_type: none
    expect(syn!.readUInt16LE(6)).toBe(14 + 20); // csum_start
    expect(syn!.readUInt16LE(8)).toBe(16); // csum_offset
    expect(v.h.stats().rxOversize).toBe(0);
  });

  it("offload relay between two namespaces carries TSO super-frames (iperf3)", { timeout: 30_000 }, async () => {
    // The dataplane's fast path in miniature: every batch read from one TAP is
    // written, in place and in one call, to the other.
    sh("ip", ["netns", "add", NS2]);
    let maxLen = 0;
    let gsoFrames = 0;
    let frames = 0;
    const relay: TapHandle[] = [];
    const sides = [
      [0, TAP_R1, RXBASE_R1],
      [1, TAP_R2, RXBASE_R2],
    ] as const;
    for (const [k, name, rxBase] of sides) {
      const offsets = new Uint32Array(SLOTS_R);
      const lengths = new Uint32Array(SLOTS_R);
      const h = openTap({
        name,
        offload: true,
        pool,
        rxBase,
        slots: SLOTS_R,
        slotSize: SLOT_V,
        headroom: 0,
        offsets,
        lengths,
        onBatch: (count) => {
          frames += count;
          for (let i = 0; i < count; i++) {
            if (lengths[i]! > maxLen) maxLen = lengths[i]!;
            if (pool[offsets[i]! + 1] !== 0) gsoFrames++; // gso_type
          }
          relay[1 - k]!.write(pool, offsets, lengths, count);
        },
      });
      handles.push(h);
      relay.push(h);
    }
    const placement = [
      [TAP_R1, NS, "10.90.0.1/24"],
      [TAP_R2, NS2, "10.90.0.2/24"],
    ] as const;
    for (const [name, ns, cidr] of placement) {
      sh("ip", ["link", "set", "dev", name, "netns", ns]);
      sh("ip", ["-n", ns, "addr", "add", cidr, "dev", name]);
      sh("ip", ["-n", ns, "link", "set", "dev", name, "up"]);
    }
    for (const h of relay) h.start();
    const server = spawnBounded("ip", ["netns", "exec", NS2, "iperf3", "-s", "-1", "-B", "10.90.0.2"], 20_000);
    try {
      await waitFor(() => sh("ip", ["netns", "exec", NS2, "ss", "-Hltn", "sport = :5201"]).trim() !== "", 5000, "iperf3 to listen");
      const client = await inNs(["iperf3", "-c", "10.90.0.2", "-t", "2", "-f", "g"], 15_000);
      const rate = /([\d.]+) Gbits\/sec.*receiver/.exec(client.stdout)?.[1];
      console.log(`[tap] offload relay: ${rate} Gbit/s, ${frames} frames, ${gsoFrames} GSO, largest ${maxLen} bytes`);
      expect(client.code).toBe(0);
      expect(gsoFrames).toBeGreaterThan(0);
      expect(maxLen).toBeGreaterThan(VNET_HDR_LEN + 1514);
      expect(maxLen).toBeLessThanOrEqual(SLOT_V);
      for (const h of relay) expect(h.stats()).toMatchObject({ rxOversize: 0, rxErrors: 0, txErrors: 0 });
    } finally {
      server.child.kill("SIGKILL");
      for (const h of relay) h.close();
      tryQuiet("ip", ["netns", "del", NS2]);
    }
  });

  it("TapPort egress GRO: segments from a host without TSO reach the other host as super-frames", { timeout: 90_000 }, async () => {
    // A relay of two TapPorts with offload, as a tapnet node holds them: host A's TAP
    // has TSO and GSO off, so A's stack sends MSS-sized segments (with partial checksums
    // while tx checksumming is on); B's TapPort merges runs of them into super-frames.
    for (const ns of [NSG_A, NSG_B]) tryQuiet("ip", ["netns", "del", ns]);
    const dir = mkdtempSync(join(tmpdir(), "tntap-gro-"));
    const ga = new TapPort("a", TAP_GA, { offload: true });
    const gb = new TapPort("b", TAP_GB, { offload: true });
    const gpool = new PacketPool(ga.rxRegionBytes() + gb.rxRegionBytes() + 256);
    let aMax = 0;
    let aPartial = 0;
    let aGso = 0;
    const onRx = (p: Port, frames: FrameList): void => {
      const out = p === ga ? gb : ga;
      const buf = gpool.buf;
      for (let i = 0; i < frames.count; i++) {
        const off = frames.offsets[i]!;
        if (p === ga) {
          if (frames.lengths[i]! > aMax) aMax = frames.lengths[i]!;
          if (buf[off - VNET_HDR_LEN + 1] !== 0) aGso++;
          if ((buf[off - VNET_HDR_LEN]! & 1) !== 0 && buf[off + 23] === 6) aPartial++;
        }
        out.txq.push(off, frames.lengths[i]!);
      }
      out.flush(buf);
    };
    const netnsExec = (ns: string, args: string[], timeoutMs: number) => run("ip", ["netns", "exec", ns, ...args], timeoutMs);
    const snmp = (ns: string): Record<string, number> => {
      const lines = sh("ip", ["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .split("\n")
        .filter((l) => l.startsWith("Tcp:"));
      const keys = lines[0]!.split(/\s+/).slice(1);
      const vals = lines[1]!.split(/\s+/).slice(1).map(Number);
      return Object.fromEntries(keys.map((k, i) => [k, vals[i]!]));
    };
    // A 48 MiB deterministic stream A -> B, hashed on both ends: the receiver's kernel
    // takes a NEEDS_CSUM super-frame on trust, so only the bytes themselves prove the merge.
    writeFileSync(
      join(dir, "recv.py"),
      [
        "import hashlib, socket, sys",
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        "s.bind(('10.91.0.2', int(sys.argv[1]))); s.listen(1)",
        "c, _ = s.accept(); h = hashlib.sha256(); n = 0",
        "while True:",
        "    d = c.recv(1 << 20)",
        "    if not d: break",
        "    h.update(d); n += len(d)",
        "print(n, h.hexdigest())",
      ].join("\n"),
    );
    writeFileSync(
      join(dir, "send.py"),
      [
        "import hashlib, random, socket, sys",
        "data = random.Random(int(sys.argv[2])).randbytes(48 << 20)",
        "c = socket.create_connection(('10.91.0.2', int(sys.argv[1])))",
        "c.sendall(data); c.close()",
        "print(len(data), hashlib.sha256(data).hexdigest())",
      ].join("\n"),
    );
    const transfer = async (port: number, seed: number): Promise<void> => {
      const recv = spawnBounded("ip", ["netns", "exec", NSG_B, "python3", join(dir, "recv.py"), String(port)], 40_000);
      await waitFor(() => sh("ip", ["netns", "exec", NSG_B, "ss", "-Hltn", `sport = :${port}`]).trim() !== "", 5000, "receiver to listen");
      const sent = await netnsExec(NSG_A, ["python3", join(dir, "send.py"), String(port), String(seed)], 40_000);
      const got = await recv.done;
      expect(sent.code, sent.stderr).toBe(0);
      expect(got.code, got.stderr).toBe(0);
      expect(got.stdout.trim()).toBe(sent.stdout.trim());
    };
    try {
      for (const ns of [NSG_A, NSG_B]) {
        sh("ip", ["netns", "add", ns]);
        sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
      ga.open(gpool, onRx);
      gb.open(gpool, onRx);
      for (const [ns, name, cidr] of [
        [NSG_A, TAP_GA, "10.91.0.1/24"],
        [NSG_B, TAP_GB, "10.91.0.2/24"],
      ] as const) {
        sh("ip", ["link", "set", "dev", name, "netns", ns]);
        sh("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=1`]);
        sh("ip", ["-n", ns, "addr", "add", cidr, "dev", name]);
        sh("ip", ["-n", ns, "link", "set", "dev", name, "up"]);
      }
      sh("ip", ["netns", "exec", NSG_A, "ethtool", "-K", TAP_GA, "tso", "off", "gso", "off"]);
      const before = { a: snmp(NSG_A), b: snmp(NSG_B) };

      // 1. iperf3 with partial checksums (tx checksumming still on at A).
      const server = spawnBounded("ip", ["netns", "exec", NSG_B, "iperf3", "-s", "-1", "-B", "10.91.0.2"], 30_000);
      try {
        await waitFor(() => sh("ip", ["netns", "exec", NSG_B, "ss", "-Hltn", "sport = :5201"]).trim() !== "", 5000, "iperf3 to listen");
        const client = await netnsExec(NSG_A, ["iperf3", "-c", "10.91.0.2", "-t", "2", "-f", "g"], 25_000);
        const rate = /([\d.]+) Gbits\/sec.*receiver/.exec(client.stdout)?.[1];
        expect(client.code, client.stderr).toBe(0);
        const c = gb.offloadCounters()!;
        console.log(
          `[tap] egress GRO relay, A without TSO: ${rate} Gbit/s; B: ${c.groMerged} super-frames of ${c.groSegments} segments, A: largest ${aMax} bytes, ${aPartial} partial`,
        );
      } finally {
        server.child.kill("SIGKILL");
      }
      const c1 = gb.offloadCounters()!;
      expect(aMax).toBeLessThanOrEqual(1514);
      expect(aGso).toBe(0);
      expect(aPartial).toBeGreaterThan(0);
      expect(c1.groMerged).toBeGreaterThan(0);
      expect(c1.groSegments).toBeGreaterThanOrEqual(2 * c1.groMerged);

      // 2. The bytes arrive intact: partial checksums (trusted), then full ones (verified).
      await transfer(5301, 1);
      const c2 = gb.offloadCounters()!;
      expect(c2.groMerged).toBeGreaterThan(c1.groMerged);
      sh("ip", ["netns", "exec", NSG_A, "ethtool", "-K", TAP_GA, "tx", "off"]);
      const partialBefore = aPartial;
      await transfer(5302, 2);
      const c3 = gb.offloadCounters()!;
      expect(aPartial).toBe(partialBefore); // A now sends complete checksums
      expect(c3.groMerged).toBeGreaterThan(c2.groMerged);
      console.log(`[tap] egress GRO: ${c3.groMerged - c2.groMerged} super-frames of ${c3.groSegments - c2.groSegments} verified segments`);

      const after = { a: snmp(NSG_A), b: snmp(NSG_B) };
      for (const k of ["a", "b"] as const) expect(after[k].InCsumErrors - before[k].InCsumErrors, k).toBe(0);
      expect(gb.deviceStats()).toMatchObject({ rxOversize: 0, rxErrors: 0, txErrors: 0 });
      expect(ga.deviceStats()).toMatchObject({ rxOversize: 0, rxErrors: 0, txErrors: 0 });
      // Counted as the segments that were queued: each frame from A is a frame sent (or dropped) at B.
      expect(gb.txFrames + gb.txDrops).toBe(ga.rxFrames);
      expect(gb.txDrops).toBe(gb.deviceStats().txErrors);
    } finally {
      ga.close();
      gb.close();
      tryQuiet("ip", ["netns", "del", NSG_A]);
      tryQuiet("ip", ["netns", "del", NSG_B]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an exception thrown by onBatch becomes an uncaught exception", { timeout: 20_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tntap-"));
    const ns = `${NS}e`;
    sh("ip", ["netns", "add", ns]);
    try {
      const script = join(dir, "throw.cjs");
      writeFileSync(
        script,
        `const { execFileSync, spawn } = require('node:child_process');
const b = require(${JSON.stringify(ADDON)});
const pool = Buffer.alloc(8 * 2048);
const h = b.openTap({ name: ${JSON.stringify(`tnte${PID}`)}, pool, rxBase: 0, slots: 8, slotSize: 2048, headroom: 0,
  offsets: new Uint32Array(8), lengths: new Uint32Array(8), onBatch() { throw new Error('boom-from-onBatch'); } });
const ip = (...a) => execFileSync('ip', a);
ip('link', 'set', 'dev', h.name, 'netns', ${JSON.stringify(ns)});
ip('-n', ${JSON.stringify(ns)}, 'addr', 'add', '10.79.0.1/24', 'dev', h.name);
ip('-n', ${JSON.stringify(ns)}, 'link', 'set', 'dev', h.name, 'up');
h.start();
spawn('ip', ['netns', 'exec', ${JSON.stringify(ns)}, 'timeout', '3', 'ping', '-c', '2', '-W', '1', '10.79.0.2'], { stdio: 'ignore' }).unref();
setTimeout(() => { console.log('no exception'); process.exit(5); }, 5000).unref();
`,
      );
      const r = await run(process.execPath, [script], 10_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("boom-from-onBatch");
    } finally {
      tryQuiet("ip", ["netns", "del", ns]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a worker thread may own a TAP and exit without closing it", { timeout: 20_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tntap-"));
    try {
      const script = join(dir, "worker.mjs");
      writeFileSync(
        script,
        `import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
if (isMainThread) {
  const exists = (n) => { try { execFileSync('ip', ['link', 'show', 'dev', n], { stdio: 'ignore' }); return true; } catch { return false; } };
  for (const mode of ['exit', 'terminate', 'close-then-exit', 'end-stopped']) {
    const w = new Worker(new URL(import.meta.url), { workerData: mode });
    const name = await new Promise((r) => w.once('message', r));
    const existed = exists(name);
    const exited = new Promise((r) => w.once('exit', r));
    if (mode === 'terminate') w.terminate(); else w.postMessage('go');
    const code = await exited;
    console.log(mode, existed, code, exists(name));
  }
} else {
  const b = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
  const pool = Buffer.alloc(8 * 2048);
  const h = b.openTap({ name: ${JSON.stringify(`tntw${PID}`)}, pool, rxBase: 0, slots: 8, slotSize: 2048, headroom: 0,
    offsets: new Uint32Array(8), lengths: new Uint32Array(8), onBatch() {} });
  if (workerData !== 'end-stopped') h.start();
  parentPort.postMessage(h.name);
  parentPort.once('message', () => {
    if (workerData === 'exit') process.exit(3);
    if (workerData === 'close-then-exit') { h.close(); process.exit(4); }
    parentPort.unref();
  });
}
`,
      );
      const r = await run(process.execPath, [script], 15_000);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split("\n")).toEqual(["exit true 3 false", "terminate true 1 false", "close-then-exit true 4 false", "end-stopped true 0 false"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (linkExists(`tntw${PID}`)) tryQuiet("ip", ["link", "del", "dev", `tntw${PID}`]);
    }
  });
});
