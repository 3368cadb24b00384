/**
 * The io_uring I/O method of the native TAP addon (native/uring.c, openTap({ uring })).
 *
 * Needs root and /dev/net/tun. The TAP is opened here and moved into a namespace this
 * file creates; the kernel there talks to a fake peer (10.79.0.2) that this file plays
 * by answering ARP and ICMP echo through the handle, as test/io/tap.test.ts does for
 * readv()/write(). Checks what differs: frames arrive through the ring's eventfd in
 * batches, a backlog is delivered `slots` at a time, a frame that fills its slot
 * exactly is dropped (one iovec cannot tell it from a truncated one), write() reports
 * per-frame results from one submission, and a failed io_uring set-up falls back to
 * readv()/write() with the reason (TAPNET_URING_FAIL=1 simulates it), in openTap and
 * in TapPort with a log line.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PacketPool } from "../../src/core/pool.js";
import { openTap, type TapHandle } from "../../src/io/native.js";
import { TapPort } from "../../src/io/tap-port.js";

const canRun = process.platform === "linux" && process.getuid?.() === 0 && existsSync("/dev/net/tun");
if (!canRun && process.env.CI) throw new Error("native TAP tests must run in CI: need root and /dev/net/tun");

const PID = process.pid;
const NS = `tnur${PID}`;
const TAP_U = `tnuu${PID}`; // io_uring, moved into NS, 10.79.0.1/24
const TAP_F = `tnuf${PID}`; // set-up forced to fail: readv()/write()
const TAP_P = `tnup${PID}`; // a TapPort asked for io_uring that cannot have it

const ADDON = fileURLToPath(new URL("../../native/build/Release/tapnet.node", import.meta.url));

const PEER = 0x0a4f0002; // 10.79.0.2, played by this test
const PEER_MAC = 0x020000790002;
const PEER_MAC_STR = "02:00:00:79:00:02";
const ETH_P_ARP = 0x0806;
const ETH_P_IPV4 = 0x0800;

const SLOTS = 64;
const SLOT = 2048;
const HEADROOM = 64;
const RXBASE_U = 0;
const RXBASE_F = SLOTS * SLOT;
const POOL_SIZE = 2 * SLOTS * SLOT + 4096;

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
  answer: boolean;
  captured: Buffer[];
  batchSizes: number[];
  framesSeen: number;
  txAccepted: number;
  txTried: number;
}

const pool = Buffer.alloc(POOL_SIZE);
const handles: TapHandle[] = [];

function openPort(name: string, rxBase: number): TestPort {
  const offsets = new Uint32Array(SLOTS);
  const lengths = new Uint32Array(SLOTS);
  const port = {
    offsets,
    lengths,
    txOffsets: new Uint32Array(SLOTS),
    txLengths: new Uint32Array(SLOTS),
    answer: true,
    captured: [],
    batchSizes: [],
    framesSeen: 0,
    txAccepted: 0,
    txTried: 0,
  } as unknown as TestPort;
  port.h = openTap({
    name,
    uring: true,
    pool,
    rxBase,
    slots: SLOTS,
    slotSize: SLOT,
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
  let tx = 0;
  for (let i = 0; i < count; i++) {
    const off = p.offsets[i]!;
    const len = p.lengths[i]!;
    if (p.captured.length < 4000) p.captured.push(Buffer.from(pool.subarray(off, off + len)));
    if (p.answer && answerInPlace(pool, off, len, PEER)) {
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

/** Moves a TAP opened here into NS and configures it there. */
function moveAndConfigure(name: string, cidr: string): void {
  sh("ip", ["link", "set", "dev", name, "netns", NS]);
  sh("ip", ["netns", "exec", NS, "sysctl", "-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=1`]);
  sh("ip", ["-n", NS, "addr", "add", cidr, "dev", name]);
  sh("ip", ["-n", NS, "link", "set", "dev", name, "up"]);
}

// ---------------------------------------------------------------------------

describe.skipIf(!canRun)("TAP I/O through io_uring (root, /dev/net/tun)", () => {
  let u: TestPort;

  beforeAll(() => {
    tryQuiet("ip", ["netns", "del", NS]);
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["-n", NS, "link", "set", "lo", "up"]);
    u = openPort(TAP_U, RXBASE_U);
    moveAndConfigure(TAP_U, "10.79.0.1/24");
    u.h.start();
  });

  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    for (const h of handles) h.close();
    tryQuiet("ip", ["netns", "del", NS]);
    for (const n of [TAP_U, TAP_F, TAP_P]) if (linkExists(n)) tryQuiet("ip", ["link", "del", "dev", n]);
    delete process.env.TAPNET_URING_FAIL;
  });

  it("uses io_uring: ARP and ping answered through the ring, a flood delivered in batches", { timeout: 30_000 }, async () => {
    expect(u.h.io).toBe("uring");
    expect(u.h.ioFallback).toBeNull();
    expect(u.h.rings).toHaveLength(2);
    const neigh = (): string => sh("ip", ["-n", NS, "neigh", "show", "10.79.0.2", "dev", TAP_U]);
    const ping = await inNs(["ping", "-c", "2", "-W", "2", "10.79.0.2"], 8000);
    expect(ping.stdout).toMatch(/2 packets transmitted, 2 received/);
    expect(neigh()).toContain(PEER_MAC_STR);
    // Frames sit in their slots, after the headroom, as with readv().
    for (let i = 0; i < u.batchSizes.at(-1)!; i++) expect((u.offsets[i]! - RXBASE_U - HEADROOM) % SLOT).toBe(0);

    sh("ip", ["-n", NS, "neigh", "replace", "10.79.0.2", "lladdr", PEER_MAC_STR, "dev", TAP_U, "nud", "permanent"]);
    u.batchSizes = [];
    u.framesSeen = 0;
    const s0 = u.h.stats();
    const flood = await inNs(["ping", "-f", "-l", "32", "-c", "2000", "-W", "1", "10.79.0.2"], 20_000);
    const s1 = u.h.stats();
    console.log(
      `[tap-uring] flood: ${u.framesSeen} frames in ${s1.batches - s0.batches} batches (max ${Math.max(...u.batchSizes)}), ` +
        `${s1.wakeups - s0.wakeups} wake-ups; ping: ${/\d+ received/.exec(flood.stdout)?.[0] ?? flood.stdout.trim()}`,
    );
    expect(flood.stdout).toMatch(/2000 packets transmitted, 2000 received/);
    expect(u.framesSeen).toBeGreaterThanOrEqual(2000);
    expect(Math.max(...u.batchSizes)).toBeGreaterThan(1);
    expect(s1.batches - s0.batches).toBeLessThan(u.framesSeen);
    expect(s1.rxErrors).toBe(0);
    expect(s1.txErrors).toBe(0);
    expect(u.txAccepted).toBe(u.txTried);
  });

  it("delivers a backlog built while stopped `slots` frames at a time", { timeout: 20_000 }, async () => {
    u.h.stop();
    u.batchSizes = [];
    // The kernel queues the requests on the TAP while nobody harvests (readiness: ICMP OutEchos in NS).
    const outEchos = (): number => {
      const lines = sh("ip", ["netns", "exec", NS, "cat", "/proc/net/snmp"])
        .split("\n")
        .filter((l) => l.startsWith("Icmp:"));
      const keys = lines[0]!.split(/\s+/);
      return Number(lines[1]!.split(/\s+/)[keys.indexOf("OutEchos")]);
    };
    const e0 = outEchos();
    const backlog = inNs(["ping", "-c", "100", "-l", "100", "-W", "5", "10.79.0.2"], 10_000);
    try {
      await waitFor(() => outEchos() - e0 >= 100, 5000, "100 echo requests sent to the TAP");
      expect(u.batchSizes).toEqual([]);
    } finally {
      u.h.start(); // the tests after this one need the port
    }
    await waitFor(() => u.batchSizes.reduce((x, y) => x + y, 0) >= 100, 5000, "100 queued frames");
    console.log(`[tap-uring] backlog of 100 with slots=${SLOTS}: batches ${JSON.stringify(u.batchSizes)}`);
    expect(u.batchSizes[0]).toBe(SLOTS);
    expect(u.batchSizes[1]).toBe(100 - SLOTS);
    expect((await backlog).stdout).toMatch(/100 packets transmitted, 100 received/);
  });

  it("delivers a frame one byte shorter than its slot and drops (and counts) one that fills it", { timeout: 20_000 }, async () => {
    const room = SLOT - HEADROOM;
    sh("ip", ["-n", NS, "link", "set", "dev", TAP_U, "mtu", "4000"]);
    try {
      u.captured = [];
      const s0 = u.h.stats();
      const fits = await inNs(["ping", "-c", "1", "-W", "2", "-s", String(room - 43), "-M", "do", "10.79.0.2"], 5000);
      expect(fits.stdout).toMatch(/1 packets transmitted, 1 received/);
      expect(u.captured.some((f) => f.length === room - 1)).toBe(true);
      const s1 = u.h.stats();
      expect(s1.rxOversize).toBe(s0.rxOversize);
      const cut = await inNs(["ping", "-c", "2", "-W", "1", "-s", String(room - 42), "-M", "do", "10.79.0.2"], 5000);
      expect(cut.stdout).toMatch(/2 packets transmitted, 0 received/);
      const s2 = u.h.stats();
      expect(s2.rxOversize - s1.rxOversize).toBe(2);
      expect(s2.rxErrors).toBe(s0.rxErrors);
      // The ring still reads after drops (their slots went back).
      const after = await inNs(["ping", "-c", "1", "-W", "2", "10.79.0.2"], 5000);
      expect(after.stdout).toMatch(/1 packets transmitted, 1 received/);
    } finally {
      sh("ip", ["-n", NS, "link", "set", "dev", TAP_U, "mtu", "1500"]);
    }
  });

  it("write() reports each frame of one submission: refused ones get length 0", { timeout: 10_000 }, () => {
    // Five frames: good, too short for Ethernet (EINVAL from the device), empty, outside the pool, good.
    const base = POOL_SIZE - 4096;
    const frame = Buffer.alloc(60);
    frame.writeUIntBE(0xffffffffffff, 0, 6);
    frame.writeUIntBE(PEER_MAC, 6, 6);
    frame.writeUInt16BE(0x88b5, 12); // local experimental ethertype: the kernel drops it quietly
    frame.copy(pool, base);
    const before = u.h.stats().txErrors;
    const offs = Uint32Array.of(base, base, base, POOL_SIZE - 10, base);
    const lens = Uint32Array.of(60, 5, 0, 60, 60);
    expect(u.h.write(pool, offs, lens, 5)).toBe(2);
    expect(Array.from(lens)).toEqual([60, 0, 0, 0, 60]);
    expect(u.h.stats().txErrors - before).toBe(3);
    // EINVAL: the device's refusal is the last one made (the pool checks come before the submission).
    expect(u.h.stats().lastTxErrno).toBe(22);
    expect(u.h.write(pool, offs, lens, 0)).toBe(0);
    // A batch larger than the ring's submission queue goes out in several submissions.
    const many = 600;
    const mo = new Uint32Array(many).fill(base);
    const ml = new Uint32Array(many).fill(60);
    expect(u.h.write(pool, mo, ml, many)).toBe(many);
  });

  it("falls back to readv()/write() when io_uring cannot be set up, and says why", { timeout: 20_000 }, async () => {
    process.env.TAPNET_URING_FAIL = "1";
    try {
      const f = openTap({
        name: TAP_F,
        uring: true,
        pool,
        rxBase: RXBASE_F,
        slots: SLOTS,
        slotSize: SLOT,
        headroom: HEADROOM,
        offsets: new Uint32Array(SLOTS),
        lengths: new Uint32Array(SLOTS),
        onBatch: () => {},
      });
      handles.push(f);
      expect(f.io).toBe("rw");
      expect(f.rings).toEqual([]);
      expect(f.ioFallback).toMatch(/^io_uring_setup \(TAPNET_URING_FAIL=1\) failed: /);
      f.close();

      // A TapPort logs the fallback once, naming the port and the reason.
      const errors = vi.spyOn(console, "error").mockImplementation(() => {});
      const port = new TapPort("p0", TAP_P, { io: "uring" });
      try {
        const pp = new PacketPool(port.rxRegionBytes() + 65536);
        port.open(pp, () => {});
        expect(port.io).toBe("rw");
        const lines = errors.mock.calls.map((c) => String(c[0]));
        expect(lines).toEqual([
          expect.stringMatching(/^port p0: io_uring unavailable \(io_uring_setup \(TAPNET_URING_FAIL=1\) failed: .*\); using read\/write$/),
        ]);
      } finally {
        port.close();
        errors.mockRestore();
      }
    } finally {
      delete process.env.TAPNET_URING_FAIL;
    }
  });

  it("a worker thread may own an io_uring TAP and exit without closing it", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tnur-"));
    const name = `tnuw${PID}`;
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
    const [n, io] = await new Promise((r) => w.once('message', r));
    const existed = exists(n);
    const exited = new Promise((r) => w.once('exit', r));
    if (mode === 'terminate') w.terminate(); else w.postMessage('go');
    const code = await exited;
    console.log(mode, io, existed, code, exists(n));
  }
} else {
  const b = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
  const pool = Buffer.alloc(8 * 2048);
  const h = b.openTap({ name: ${JSON.stringify(name)}, uring: true, pool, rxBase: 0, slots: 8, slotSize: 2048, headroom: 0,
    offsets: new Uint32Array(8), lengths: new Uint32Array(8), onBatch() {} });
  if (workerData !== 'end-stopped') h.start();
  parentPort.postMessage([h.name, h.io]);
  parentPort.once('message', () => {
    if (workerData === 'exit') process.exit(3);
    if (workerData === 'close-then-exit') { h.close(); process.exit(4); }
    parentPort.unref();
  });
}
`,
      );
      const r = await run(process.execPath, [script], 25_000);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split("\n")).toEqual([
        "exit uring true 3 false",
        "terminate uring true 1 false",
        "close-then-exit uring true 4 false",
        "end-stopped uring true 0 false",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (linkExists(name)) tryQuiet("ip", ["link", "del", "dev", name]);
    }
  });

  it("close() ends the rings: the TAP goes and no io_uring fd is left", { timeout: 10_000 }, () => {
    const rings = u.h.rings;
    const isRing = (fd: number): boolean => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[io_uring]";
      } catch {
        return false;
      }
    };
    expect(rings.every(isRing)).toBe(true);
    u.h.close();
    expect(u.h.fd).toBe(-1);
    expect(linkExists(TAP_U, NS)).toBe(false); // at once, as with readv()/write(): the rings let go of the TAP first
    expect(rings.some(isRing)).toBe(false);
  });
});
