/**
 * The native batched UDP socket (native/udp.c via src/io/udp-native.ts), in two network
 * namespaces this test makes, joined by a veth pair:
 *
 *   A: 10.211.0.1/24 (veth tnu<r>a) ─────── B: 10.211.0.2/24 (veth tnu<r>b)
 *
 * A Node process cannot change its own namespace, so each side is an agent child
 * process (`ip netns exec NS node agent.js`, test/io/agent.ts) that imports the real
 * src/io/udp-native.ts (transpiled into a temporary directory) and answers JSON lines.
 * Nothing in this file opens a socket in the test runner's namespace, not even for the
 * option checks (a bad call must leave no socket, but the check runs in A anyway).
 * Deleting the two namespaces removes the veth; afterAll kills the agents by PID.
 * UDPDEBUG=1 prints what the receivers saw.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errnoName, ipv4ToUint, uintToIpv4 } from "../../src/io/udp-native.js";
import { Agent as AgentBase, transpileTree } from "./agent.js";
import { snmp, waitSnmp } from "../integration/harness.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ADDON = join(REPO, "native/build/Release/tapnet.node");

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const haveCmd = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const canLab = process.platform === "linux" && isRoot && ["ip", "ss", "ethtool", "tc"].every(haveCmd) && existsSync(ADDON);
if (!canLab && process.env.CI) throw new Error("native UDP tests must run in CI: need root, ip, ss, ethtool, tc and the built addon");

const R = randomBytes(3).toString("hex");
const NSA = `tn-udpt-${R}-a`;
const NSB = `tn-udpt-${R}-b`;
const IFA = `tnu${R}a`; // 10 characters
const IFB = `tnu${R}b`;
const ADDR_A = "10.211.0.1";
const ADDR_B = "10.211.0.2";
const UNREACHABLE = "10.99.0.1"; // no route in A: ENETUNREACH before anything leaves

/** The agent: UDP handles by name, a log of what each received, JSON lines. */
const AGENT = String.raw`
import { readdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { openUdp, ipv4ToUint } from "./src/io/udp-native.js";

const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");
process.on("uncaughtException", (e) => { process.stderr.write("agent: " + (e && e.stack || e) + "\n"); process.exit(3); });
const fds = () => readdirSync("/proc/self/fd").length;
const handles = new Map();

/** Options from JSON; the "bad*" keys break one thing on purpose. */
function options(o, log) {
  const slots = o.slots ?? 64, slotSize = o.slotSize ?? 2048, rxBase = o.rxBase ?? 64;
  const arr = () => new Uint32Array(o.arrLen ?? slots);
  const opts = {
    bindAddr: o.bindAddr === undefined ? 0 : ipv4ToUint(o.bindAddr), port: o.port ?? 0,
    pool: Buffer.alloc(o.poolSize ?? rxBase + slots * slotSize), rxBase, slots, slotSize,
    offsets: arr(), lengths: arr(), addrs: arr(), ports: arr(), segs: arr(),
  };
  for (const k of ["gro", "noCheck", "noDf", "df", "rcvbuf", "sndbuf"]) if (o[k] !== undefined) opts[k] = o[k];
  if (log !== undefined) opts.onBatch = (n) => {
    log.batches.push(n);
    for (let i = 0; i < n; i++) {
      const off = opts.offsets[i], len = opts.lengths[i];
      log.msgs.push({ len, addr: opts.addrs[i], port: opts.ports[i], seg: opts.segs[i], slotOff: off - rxBase,
                      b64: opts.pool.toString("base64", off, off + len) });
    }
  };
  if (o.badPool) opts.pool = "not a buffer"; // (any Uint8Array counts as a Buffer for N-API)
  if (o.badOnBatch) opts.onBatch = 42;
  if (o.badPort !== undefined) opts.port = o.badPort;
  return opts;
}

function stats(h) { return { ...h.h.stats(), fd: h.h.fd }; }
function get(name) { const h = handles.get(name); if (!h) throw new Error("no handle " + name); return h; }

function send(m) {
  const h = get(m.h), n = m.msgs.length;
  const datas = m.msgs.map((x) => x.b64 !== undefined ? Buffer.from(x.b64, "base64") : Buffer.alloc(x.zeros ?? 0, 0x5a));
  const pool = Buffer.concat([Buffer.alloc(16), ...datas]);
  const offsets = new Uint32Array(n), lengths = new Uint32Array(n), addrs = new Uint32Array(n), segs = new Uint32Array(n);
  let off = 16;
  m.msgs.forEach((x, i) => {
    offsets[i] = x.outside ? pool.length - 8 : off;
    lengths[i] = x.outside ? 100 : datas[i].length;
    addrs[i] = ipv4ToUint(x.to);
    segs[i] = x.seg ?? 0;
    off += datas[i].length;
  });
  const sent = h.h.send(pool, offsets, lengths, addrs, m.port, m.noSegs ? null : segs, m.count ?? n);
  return { sent, lengths: [...lengths], stats: stats(h) };
}

function tryOpen(o) {
  const before = fds();
  try {
    const h = openUdp(options(o, o.noOnBatch ? undefined : { batches: [], msgs: [] }));
    try {
      if (o.startIt) h.start();
    } finally {
      h.close();
    }
    return { threw: false, fdsBefore: before, fdsAfter: fds() };
  } catch (e) {
    return { threw: true, name: e.constructor.name, code: e.code, errno: e.errno, syscall: e.syscall,
             message: e.message, fdsBefore: before, fdsAfter: fds() };
  }
}

out({ ready: true });
const rl = createInterface({ input: process.stdin });
rl.on("close", () => process.exit(0)); // the test process died: do not linger
rl.on("line", (line) => {
  const m = JSON.parse(line);
  const reply = (x) => out({ id: m.id, ok: true, ...x });
  try {
    switch (m.op) {
      case "open": {
        const log = m.opts.noOnBatch ? undefined : { batches: [], msgs: [] };
        const h = openUdp(options(m.opts, log));
        handles.set(m.h, { h, log });
        if (m.start) h.start();
        return reply({ fd: h.fd, port: h.port, rcvbuf: h.rcvbuf, sndbuf: h.sndbuf });
      }
      case "tryOpen": return reply(tryOpen(m.opts));
      case "start": get(m.h).h.start(); return reply({ stats: stats(get(m.h)) });
      case "stop": get(m.h).h.stop(); return reply({ stats: stats(get(m.h)) });
      case "close": {
        const h = get(m.h);
        h.h.close();
        h.h.close();
        return reply({ stats: stats(h) });
      }
      case "tryCall": {
        try { get(m.h).h[m.method](); return reply({ threw: false }); }
        catch (e) { return reply({ threw: true, code: e.code, message: e.message }); }
      }
      case "trySend": {
        try { return reply({ threw: false, ...send(m) }); }
        catch (e) { return reply({ threw: true, name: e.constructor.name, code: e.code, message: e.message }); }
      }
      case "send": return reply(send(m));
      case "recv": {
        const h = get(m.h), log = h.log;
        const r = { batches: [...log.batches], msgs: log.msgs, stats: stats(h) };
        if (m.take) { log.batches = []; log.msgs = []; }
        return reply(r);
      }
      case "exit":
        for (const h of handles.values()) h.h.close();
        reply({});
        setTimeout(() => process.exit(0), 20);
        return;
      default: throw new Error("unknown op " + m.op);
    }
  } catch (e) {
    out({ id: m.id, ok: false, error: String(e && e.stack || e) });
  }
});
`;

interface Stats {
  rxErrors: number;
  rxTruncated: number;
  txErrors: number;
  lastTxErrno: number;
  wakeups: number;
  batches: number;
  rxMessages: number;
  fd: number;
}
interface Msg {
  len: number;
  addr: number;
  port: number;
  seg: number;
  slotOff: number;
  b64: string;
}
interface Reply {
  fd: number;
  port: number;
  rcvbuf: number;
  sndbuf: number;
  sent: number;
  lengths: number[];
  stats: Stats;
  batches: number[];
  msgs: Msg[];
  threw: boolean;
  name: string;
  code: string;
  errno: number;
  syscall: string;
  message: string;
  fdsBefore: number;
  fdsAfter: number;
}
class Agent extends AgentBase<Reply> {}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr ?? ""}${r.error?.message ?? ""}`);
  return r.stdout;
}

/** Bytes that differ at every position and per seed, so a lost, reordered or shifted segment shows. */
function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let k = 0; k < len; k++) b[k] = (seed * 131 + k * 7 + (k >>> 8) * 13) & 0xff;
  return b;
}
const b64 = (b: Buffer): string => b.toString("base64");
const bytes = (m: Msg): Buffer => Buffer.from(m.b64, "base64");

async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}
const _sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function deleteNamespaces(): void {
  for (const ns of [NSA, NSB]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
}

describe.skipIf(!canLab)("native UDP socket (openUdp) in two namespaces made by this test", () => {
  let work = "";
  let a: Agent | null = null; // in A (10.211.0.1)
  let b: Agent | null = null; // in B (10.211.0.2)
  let portA = 0; // A's ephemeral sending port

  async function startAgent(ns: string): Promise<Agent> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, join(work, "agent.js")], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const ag = new Agent(child);
    const r = await ag.ready();
    if (r.ready !== true) throw new Error(`agent in ${ns} did not start\n${ag.stderr}`);
    return ag;
  }

  /** Waits until handle h in B has received n messages, then takes them. */
  async function receive(h: string, n: number, ms = 5_000): Promise<Reply> {
    await until(`${n} messages on ${h}`, async () => (await b!.call("recv", { h })).msgs.length >= n, ms);
    const r = await b!.call("recv", { h, take: true });
    if (process.env.UDPDEBUG)
      console.log(
        h,
        r.batches,
        r.msgs.map((m) => [m.len, m.seg]),
        r.stats,
      );
    return r;
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tapnet-udp-native-"));
    symlinkSync(join(REPO, "native"), join(work, "native"), "dir");
    writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
    transpileTree(REPO, ["src/io/udp-native.ts"], work);
    writeFileSync(join(work, "agent.js"), AGENT);
    try {
      for (const ns of [NSA, NSB]) {
        sh("ip", ["netns", "add", ns]);
        sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
      sh("ip", ["-n", NSA, "link", "add", IFA, "type", "veth", "peer", "name", IFB, "netns", NSB]);
      sh("ip", ["-n", NSA, "addr", "add", `${ADDR_A}/24`, "dev", IFA]);
      sh("ip", ["-n", NSB, "addr", "add", `${ADDR_B}/24`, "dev", IFB]);
      sh("ip", ["-n", NSA, "link", "set", IFA, "up"]);
      sh("ip", ["-n", NSB, "link", "set", IFB, "up"]);
      a = await startAgent(NSA);
      b = await startAgent(NSB);
    } catch (e) {
      deleteNamespaces(); // afterAll runs too, but a failed setup must not leave anything either
      throw e;
    }
  }, 30_000);

  afterAll(async () => {
    try {
      for (const ag of [a, b]) {
        if (ag === null) continue;
        await ag.stop().catch(() => ag.kill());
      }
    } finally {
      deleteNamespaces();
      if (work !== "") rmSync(work, { recursive: true, force: true });
    }
    const left = sh("ip", ["netns", "list"]);
    expect(left).not.toContain(NSA);
    expect(left).not.toContain(NSB);
  }, 20_000);

  it("binds: the ephemeral port is reported and bound in the namespace; a fixed port; forced buffers", async () => {
    const r = await a!.call("open", { h: "tx", opts: { bindAddr: ADDR_A, port: 0, slots: 4, noOnBatch: true } });
    expect(r.fd).toBeGreaterThan(2);
    expect(r.port).toBeGreaterThanOrEqual(1024);
    expect(r.port).toBeLessThanOrEqual(65535);
    portA = r.port;
    const ss = sh("ip", ["netns", "exec", NSA, "ss", "-Hnau"]);
    expect(ss).toContain(`${ADDR_A}:${portA}`);

    // SO_RCVBUFFORCE (root) goes past net.core.rmem_max; Linux reports twice the size.
    const rb = await b!.call("open", { h: "rx", opts: { bindAddr: ADDR_B, port: 4789, rcvbuf: 4 << 20, sndbuf: 1 << 20 } });
    expect(rb.port).toBe(4789);
    expect(rb.rcvbuf).toBe(8 << 20);
    expect(rb.sndbuf).toBe(2 << 20);
    expect(sh("ip", ["netns", "exec", NSB, "ss", "-Hnau"])).toContain(`${ADDR_B}:4789`);
  });

  it("a batch of 32 datagrams in one send() arrives whole in one onBatch, from A's address and port", async () => {
    // Stopped receiver: all 32 are queued when it starts, so one recvmmsg takes them all.
    const msgs = Array.from({ length: 32 }, (_, i) => ({ b64: b64(pattern(100 + i * 37, i)), to: ADDR_B }));
    // Ip.InDelivers counts a datagram once UDP has taken it (queued it on the socket);
    // Udp.InDatagrams would count it only when read.
    const inB = snmp(NSB)["Ip.InDelivers"];
    const s = await a!.call("send", { h: "tx", port: 4789, msgs });
    expect(s.sent).toBe(32);
    expect(s.stats.txErrors).toBe(0);
    await waitSnmp(NSB, "Ip.InDelivers", inB, 32); // all 32 queued in B's socket
    expect((await b!.call("recv", { h: "rx" })).msgs).toHaveLength(0); // not started yet
    await b!.call("start", { h: "rx" });
    const r = await receive("rx", 32);
    expect(r.batches).toEqual([32]);
    expect(r.stats).toMatchObject({ batches: 1, rxMessages: 32, rxTruncated: 0, rxErrors: 0 });
    r.msgs.forEach((m, i) => {
      expect(m.len).toBe(100 + i * 37);
      expect(bytes(m).equals(pattern(100 + i * 37, i))).toBe(true);
      expect(uintToIpv4(m.addr)).toBe(ADDR_A);
      expect(m.port).toBe(portA);
      expect(m.seg).toBe(0);
      expect(m.slotOff).toBe(i * 2048); // message i in slot i
    });

    // Started: 200 more in one send all arrive, in order, in fewer calls than datagrams
    // is likely but not guaranteed (the receiver may wake for each), so only totals count.
    const more = Array.from({ length: 200 }, (_, i) => ({ b64: b64(pattern(64, 1000 + i)), to: ADDR_B }));
    expect((await a!.call("send", { h: "tx", port: 4789, msgs: more })).sent).toBe(200);
    const r2 = await receive("rx", 200);
    expect(r2.msgs).toHaveLength(200);
    expect(r2.batches.reduce((x, y) => x + y, 0)).toBe(200);
    expect(Math.max(...r2.batches)).toBeLessThanOrEqual(64); // never more than `slots`
    r2.msgs.forEach((m, i) => expect(bytes(m).equals(pattern(64, 1000 + i))).toBe(true));
  });

  const GSO_LEN = 64000;
  const GSO_SEG = 1400;
  const GSO_N = Math.ceil(GSO_LEN / GSO_SEG); // 46: 45 of 1400 and one of 1000

  it("UDP GSO: one 64000-byte message with segs 1400 arrives at a socket without GRO as 46 datagrams", async () => {
    const payload = pattern(GSO_LEN, 7);
    await b!.call("stop", { h: "rx" });
    const inB = snmp(NSB)["Ip.InDelivers"];
    const s = await a!.call("send", { h: "tx", port: 4789, msgs: [{ b64: b64(payload), to: ADDR_B, seg: GSO_SEG }] });
    expect(s.sent).toBe(1);
    expect(s.lengths).toEqual([GSO_LEN]);
    // Over the veth the message stays one GSO packet until UDP cuts it for B's socket
    // (which has no GRO): one delivery, 46 datagrams queued.
    await waitSnmp(NSB, "Ip.InDelivers", inB, 1);
    await b!.call("start", { h: "rx" });
    const r = await receive("rx", GSO_N);
    expect(GSO_N).toBe(46);
    expect(r.batches).toEqual([46]);
    expect(r.msgs.map((m) => m.len)).toEqual([...Array(45).fill(1400), 1000]);
    expect(r.msgs.every((m) => m.seg === 0 && m.port === portA)).toBe(true);
    expect(Buffer.concat(r.msgs.map(bytes)).equals(payload)).toBe(true);
  });

  it("UDP GRO: the GSO train crosses the veth intact and arrives as one message with segs 1400", async () => {
    await b!.call("open", { h: "gro", opts: { bindAddr: ADDR_B, port: 4790, gro: true, slots: 8, slotSize: 65536 }, start: true });
    const payload = pattern(GSO_LEN, 9);
    // A lone datagram too: a GRO socket reports seg 0 for it.
    const s = await a!.call("send", {
      h: "tx",
      port: 4790,
      msgs: [
        { b64: b64(payload), to: ADDR_B, seg: GSO_SEG },
        { b64: b64(pattern(500, 3)), to: ADDR_B, seg: GSO_SEG }, // shorter than seg: sent without the cmsg
      ],
    });
    expect(s.sent).toBe(2);
    const r = await receive("gro", 2);
    expect(r.msgs.map((m) => [m.len, m.seg])).toEqual([
      [GSO_LEN, GSO_SEG],
      [500, 0],
    ]);
    expect(bytes(r.msgs[0]).equals(payload)).toBe(true);
    expect(bytes(r.msgs[1]).equals(pattern(500, 3))).toBe(true);
  });

  it("UDP GRO: a train A's veth segments in software arrives as datagrams, and is coalesced again when B's veth does GRO", async () => {
    // tx off on A's veth turns off its UDP segmentation offload: the kernel segments
    // the GSO packet before the veth, so B sees 46 ordinary datagrams...
    sh("ip", ["netns", "exec", NSA, "ethtool", "-K", IFA, "tx", "off"]);
    try {
      const payload = pattern(GSO_LEN, 11);
      const send = async (): Promise<void> => {
        const s = await a!.call("send", { h: "tx", port: 4790, msgs: [{ b64: b64(payload), to: ADDR_B, seg: GSO_SEG }] });
        expect(s.sent).toBe(1); // no EIO on Linux 6.x without checksum offload
      };
      await send();
      let r = await receive("gro", GSO_N);
      expect(r.msgs).toHaveLength(GSO_N);
      expect(r.msgs.every((m) => m.seg === 0)).toBe(true);
      expect(Buffer.concat(r.msgs.map(bytes)).equals(payload)).toBe(true);

      // ...unless B's veth does GRO (which gives it a NAPI poll): the 46 segments are
      // queued to it in one go and UDP GRO (for a socket with UDP_GRO) merges them.
      sh("ip", ["netns", "exec", NSB, "ethtool", "-K", IFB, "gro", "on"]);
      await send();
      await until("the whole train", async () => {
        const x = await b!.call("recv", { h: "gro" });
        return x.msgs.reduce((n, m) => n + m.len, 0) >= GSO_LEN;
      });
      r = await b!.call("recv", { h: "gro", take: true });
      if (process.env.UDPDEBUG)
        console.log(
          "veth gro on:",
          r.msgs.map((m) => [m.len, m.seg]),
        );
      expect(r.msgs.length).toBeLessThan(GSO_N); // coalesced (seen: 1 message of 64000)
      expect(r.msgs.some((m) => m.seg === GSO_SEG && m.len > GSO_SEG)).toBe(true);
      for (const m of r.msgs) if (m.seg > 0) expect(m.len % m.seg === 0 || m === r.msgs[r.msgs.length - 1]).toBe(true);
      expect(Buffer.concat(r.msgs.map(bytes)).equals(payload)).toBe(true);
    } finally {
      sh("ip", ["netns", "exec", NSA, "ethtool", "-K", IFA, "tx", "on"]);
      sh("ip", ["netns", "exec", NSB, "ethtool", "-K", IFB, "gro", "off"]);
    }
  });

  it("GRO trains longer than the slot and datagrams longer than the slot are dropped and counted as truncated", async () => {
    await b!.call("open", { h: "small", opts: { bindAddr: ADDR_B, port: 4791, slots: 8, slotSize: 512 }, start: true });
    const s = await a!.call("send", {
      h: "tx",
      port: 4791,
      msgs: [100, 1000, 300, 512, 513].map((n, i) => ({ b64: b64(pattern(n, 20 + i)), to: ADDR_B })),
    });
    expect(s.sent).toBe(5);
    await until("truncation counted", async () => {
      const x = await b!.call("recv", { h: "small" });
      return x.stats.rxTruncated + x.msgs.length >= 5;
    });
    const r = await b!.call("recv", { h: "small", take: true });
    expect(r.msgs.map((m) => m.len)).toEqual([100, 300, 512]);
    expect(r.stats.rxTruncated).toBe(2);
    expect(bytes(r.msgs[1]).equals(pattern(300, 22))).toBe(true);
    if (r.batches.length === 1) {
      // One recvmmsg: the arrays are compacted over the dropped message, the slots are not.
      expect(r.msgs.map((m) => m.slotOff)).toEqual([0, 2 * 512, 3 * 512]);
    }

    // A GRO socket with 2 KiB slots cannot hold a 64000-byte train: dropped whole, counted once.
    await b!.call("open", { h: "grosmall", opts: { bindAddr: ADDR_B, port: 4792, gro: true, slots: 8, slotSize: 2048 }, start: true });
    await a!.call("send", { h: "tx", port: 4792, msgs: [{ b64: b64(pattern(GSO_LEN, 5)), to: ADDR_B, seg: GSO_SEG }] });
    await until("the train counted", async () => (await b!.call("recv", { h: "grosmall" })).stats.rxTruncated >= 1);
    const g = await b!.call("recv", { h: "grosmall", take: true });
    expect(g.msgs).toHaveLength(0);
    expect(g.stats.rxTruncated).toBe(1);
  });

  it("send: refused messages are counted with their errno and zeroed, the others still go; nothing thrown", async () => {
    await b!.call("recv", { h: "rx", take: true });
    const s = await a!.call("send", {
      h: "tx",
      port: 4789,
      msgs: [
        { b64: b64(pattern(50, 40)), to: ADDR_B },
        { b64: b64(pattern(50, 41)), to: UNREACHABLE }, // ENETUNREACH
        { b64: b64(pattern(50, 42)), to: ADDR_B },
        { zeros: 70_000, to: ADDR_B }, // > 65507 without GSO: EMSGSIZE
        { outside: true, to: ADDR_B }, // runs past the pool: refused before the kernel
        { zeros: 0, to: ADDR_B }, // length 0: refused
        { b64: b64(pattern(50, 46)), to: ADDR_B },
      ],
    });
    expect(s.sent).toBe(3);
    expect(s.lengths).toEqual([50, 0, 50, 0, 0, 0, 50]);
    expect(s.stats.txErrors).toBe(4);
    // Pool checks come first, then the kernel's refusals in order: EMSGSIZE is the last.
    expect(errnoName(s.stats.lastTxErrno)).toBe("EMSGSIZE");
    const r = await receive("rx", 3);
    expect(r.msgs.map((m) => bytes(m).equals(pattern(50, [40, 42, 46][r.msgs.indexOf(m)])))).toEqual([true, true, true]);

    const u = await a!.call("send", { h: "tx", port: 4789, msgs: [{ b64: b64(pattern(50, 47)), to: UNREACHABLE }] });
    expect(u.sent).toBe(0);
    expect(u.lengths).toEqual([0]);
    expect(u.stats.txErrors).toBe(5);
    expect(errnoName(u.stats.lastTxErrno)).toBe("ENETUNREACH");

    // More segments than UDP_MAX_SEGMENTS (128 on this kernel): EINVAL.
    const tooMany = await a!.call("send", { h: "tx", port: 4789, msgs: [{ zeros: 13_000, to: ADDR_B, seg: 100 }] });
    expect(tooMany.sent).toBe(0);
    expect(errnoName(tooMany.stats.lastTxErrno)).toBe("EINVAL");

    // Bad arguments do throw: count beyond the arrays, port 0.
    const c = await a!.call("trySend", { h: "tx", port: 4789, count: 2, msgs: [{ b64: "AA==", to: ADDR_B }] });
    expect(c).toMatchObject({ threw: true, name: "RangeError", code: "ERR_OUT_OF_RANGE" });
    expect(c.message).toMatch(/count must be an integer in 0\.\.1/);
    const p = await a!.call("trySend", { h: "tx", port: 0, msgs: [{ b64: "AA==", to: ADDR_B }] });
    expect(p).toMatchObject({ threw: true, name: "RangeError" });
    expect(p.message).toMatch(/port must be an integer in 1\.\.65535/);
  });

  it("noCheck: plain datagrams go out, UDP GSO sends are refused by the kernel (EINVAL)", async () => {
    await a!.call("open", { h: "nock", opts: { bindAddr: ADDR_A, port: 0, noCheck: true, slots: 1, noOnBatch: true } });
    const s = await a!.call("send", {
      h: "nock",
      port: 4789,
      msgs: [
        { b64: b64(pattern(200, 60)), to: ADDR_B },
        { b64: b64(pattern(GSO_LEN, 61)), to: ADDR_B, seg: GSO_SEG },
      ],
    });
    expect(s.sent).toBe(1);
    expect(s.lengths).toEqual([200, 0]);
    expect(s.stats.txErrors).toBe(1);
    expect(errnoName(s.stats.lastTxErrno)).toBe("EINVAL");
    const r = await receive("rx", 1);
    expect(bytes(r.msgs[0]).equals(pattern(200, 60))).toBe(true);
  });

  it("df: a datagram above the link MTU is refused (EMSGSIZE), never fragmented; without df the kernel fragments it", async () => {
    await a!.call("open", { h: "df", opts: { bindAddr: ADDR_A, port: 0, df: true, slots: 1, noOnBatch: true } });
    // The veth's MTU is 1500: 1472 bytes of UDP payload fill it.
    const s = await a!.call("send", {
      h: "df",
      port: 4789,
      msgs: [
        { b64: b64(pattern(1472, 70)), to: ADDR_B },
        { b64: b64(pattern(1473, 71)), to: ADDR_B },
      ],
    });
    expect(s.lengths).toEqual([1472, 0]);
    expect(errnoName(s.stats.lastTxErrno)).toBe("EMSGSIZE");
    expect(bytes((await receive("rx", 1)).msgs[0]).equals(pattern(1472, 70))).toBe(true);
    // The default socket sends the same 1473 bytes as two fragments, reassembled at B.
    const w = await a!.call("send", { h: "tx", port: 4789, msgs: [{ b64: b64(pattern(1473, 72)), to: ADDR_B }] });
    expect(w.lengths).toEqual([1473]);
    expect(bytes((await receive("rx", 1)).msgs[0]).equals(pattern(1473, 72))).toBe(true);
    const both = await a!.call("tryOpen", { opts: { bindAddr: ADDR_A, port: 0, df: true, noDf: true } });
    expect(both).toMatchObject({ threw: true, name: "TypeError" });
    expect(both.message).toMatch(/noDf and options\.df exclude each other/);
    expect(both.fdsAfter).toBe(both.fdsBefore);
  });

  it("a full socket send buffer drops the rest of the batch (EAGAIN), counted, without blocking", async () => {
    // A slow qdisc holds the sent datagrams, still charged to the socket, so a minimal
    // send buffer (sndbuf 1: the kernel's floor, 4608) fills after a few. Port 4799 on B
    // has no socket: B's kernel answers port-unreachable, which A's unconnected socket ignores.
    sh("ip", ["netns", "exec", NSA, "tc", "qdisc", "add", "dev", IFA, "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "3000000"]);
    try {
      await a!.call("open", { h: "tiny", opts: { bindAddr: ADDR_A, port: 0, sndbuf: 1, slots: 1, noOnBatch: true } });
      const t0 = Date.now();
      const s = await a!.call("send", {
        h: "tiny",
        port: 4799,
        msgs: Array.from({ length: 200 }, () => ({ zeros: 1400, to: ADDR_B })),
      });
      expect(Date.now() - t0).toBeLessThan(1000); // 200 * 1400 bytes at 1 Mbit/s would take 2.2 s
      expect(s.sent).toBeGreaterThan(0);
      expect(s.sent).toBeLessThan(10);
      expect(s.lengths.slice(0, s.sent).every((l) => l === 1400)).toBe(true);
      expect(s.lengths.slice(s.sent).every((l) => l === 0)).toBe(true);
      expect(s.stats.txErrors).toBe(200 - s.sent);
      expect(errnoName(s.stats.lastTxErrno)).toBe("EAGAIN");
      await a!.call("close", { h: "tiny" });
    } finally {
      sh("ip", ["netns", "exec", NSA, "tc", "qdisc", "del", "dev", IFA, "root"]);
    }
  });

  it("bad options throw clear errors before any socket is made", async () => {
    const bad = async (opts: Record<string, unknown>): Promise<Reply> => {
      const r = await a!.call("tryOpen", { opts: { bindAddr: ADDR_A, port: 0, ...opts } });
      expect(r.threw).toBe(true);
      expect(r.fdsAfter).toBe(r.fdsBefore); // no socket left behind
      return r;
    };
    const na = await bad({ bindAddr: "10.9.9.9", port: 4999 });
    expect(na).toMatchObject({ name: "Error", code: "EADDRNOTAVAIL", errno: -99, syscall: "bind" });
    expect(na.message).toMatch(/10\.9\.9\.9:4999.*not on any interface.*ip addr add/);
    const inUse = await b!.call("tryOpen", { opts: { bindAddr: ADDR_B, port: 4789 } });
    expect(inUse).toMatchObject({ threw: true, code: "EADDRINUSE", syscall: "bind" });
    expect(inUse.message).toMatch(/10\.211\.0\.2:4789.*another socket/);
    expect(inUse.fdsAfter).toBe(inUse.fdsBefore);

    const region = await bad({ rxBase: 100, slots: 4, slotSize: 1000, poolSize: 4000 });
    expect(region).toMatchObject({ name: "RangeError", code: "ERR_OUT_OF_RANGE" });
    expect(region.message).toMatch(/100 \+ 4\*1000 = 4100 does not fit in the pool of 4000 bytes/);
    expect((await bad({ slotSize: 0 })).message).toMatch(/slotSize/);
    expect((await bad({ slots: 0 })).message).toMatch(/slots/);
    expect(await bad({ badPort: 70000 })).toMatchObject({ name: "RangeError" });
    expect((await bad({ badPort: 70000 })).message).toMatch(/openUdp: option 'port' must be an integer in 0\.\.65535/);
    expect((await bad({ slots: 8, arrLen: 4 })).message).toMatch(/'offsets' has 4 entries; it must hold at least slots = 8/);
    expect(await bad({ badPool: true })).toMatchObject({ name: "TypeError", message: "openUdp: option 'pool' must be a Buffer" });
    expect((await bad({ badOnBatch: true })).message).toMatch(/onBatch/);
    expect((await bad({ gro: "yes" })).message).toMatch(/'gro' must be a boolean/);
    // start() on a socket opened without onBatch.
    const nob = await bad({ noOnBatch: true, startIt: true });
    expect(nob.message).toMatch(/without onBatch/);
    // A good call for contrast: opened and closed, nothing left.
    const good = await a!.call("tryOpen", { opts: { bindAddr: ADDR_A, port: 0 } });
    expect(good).toMatchObject({ threw: false });
    expect(good.fdsAfter).toBe(good.fdsBefore);
  });

  it("close() is idempotent and a closed handle delivers nothing more", async () => {
    await b!.call("open", { h: "cl", opts: { bindAddr: ADDR_B, port: 4793, slots: 8 }, start: true });
    await a!.call("send", { h: "tx", port: 4793, msgs: [{ b64: b64(pattern(80, 70)), to: ADDR_B }] });
    expect((await receive("cl", 1)).msgs).toHaveLength(1);

    const c = await b!.call("close", { h: "cl" }); // closes twice
    expect(c.stats.fd).toBe(-1);
    expect(c.stats.rxMessages).toBe(1);
    expect(sh("ip", ["netns", "exec", NSB, "ss", "-Hnau"])).not.toContain(`${ADDR_B}:4793`);
    const noPorts = snmp(NSB)["Udp.NoPorts"];
    await a!.call("send", { h: "tx", port: 4793, msgs: [1, 2, 3].map((i) => ({ b64: b64(pattern(80, 70 + i)), to: ADDR_B })) });
    await waitSnmp(NSB, "Udp.NoPorts", noPorts, 3); // B's kernel found no socket for them
    const r = await b!.call("recv", { h: "cl" });
    expect(r.msgs).toHaveLength(0);
    expect(r.stats.rxMessages).toBe(1);
    for (const method of ["start", "send"]) {
      const t = await b!.call(method === "send" ? "trySend" : "tryCall", {
        h: "cl",
        method,
        port: 4789,
        msgs: [{ b64: "AA==", to: ADDR_A }],
      });
      expect(t).toMatchObject({ threw: true, code: "ERR_UDP_CLOSED" });
    }
    expect(await b!.call("tryCall", { h: "cl", method: "stop" })).toMatchObject({ threw: false });
    expect(await b!.call("tryCall", { h: "cl", method: "close" })).toMatchObject({ threw: false });
  });

  // The same worker teardown as tap.test.ts's, for UDP and raw handles: a close
  // callback left queued on the worker's loop once the addon is unloaded would crash.
  it("a worker thread may own a UDP or raw socket, receiving, and exit without closing it", { timeout: 30_000 }, () => {
    const script = join(work, "worker.mjs");
    writeFileSync(
      script,
      `import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const ADDR = ${ipv4ToUint(ADDR_B)}, PORT = 4794;
if (isMainThread) {
  // Only the workers load the addon, so that each worker exit really unloads it.
  // The worker's socket is gone afterwards: no UDP socket on PORT, no raw one of protocol 253.
  const gone = (kind) => !readFileSync("/proc/net/" + kind, "utf8").split("\\n").slice(1)
    .some((l) => (l.trim().split(/\\s+/)[1] ?? "").endsWith(":" + (kind === "udp" ? PORT : 253).toString(16).toUpperCase().padStart(4, "0")));
  for (const kind of ["udp", "raw"]) {
    for (const mode of ["exit", "terminate", "close-then-exit", "end-stopped"]) {
      const w = new Worker(new URL(import.meta.url), { workerData: { kind, mode } });
      const got = await new Promise((r) => w.once("message", r));
      const before = gone(kind);
      const exited = new Promise((r) => w.once("exit", r));
      if (mode === "terminate") w.terminate(); else w.postMessage("go");
      const code = await exited;
      console.log(kind, mode, got, before, code, gone(kind));
    }
  }
} else {
  const b = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
  const { kind, mode } = workerData;
  let told = false;
  const onBatch = (n) => { if (n > 0 && !told) { told = true; parentPort.postMessage("received"); } };
  const arr = () => new Uint32Array(8);
  const o = { pool: Buffer.alloc(8 * 2048), rxBase: 0, slots: 8, slotSize: 2048, offsets: arr(), lengths: arr(), addrs: arr(), onBatch };
  const h = kind === "udp" ? b.openUdp({ ...o, bindAddr: ADDR, port: PORT, ports: arr(), segs: arr() }) : b.openRaw({ ...o, protocol: 253 });
  const pool = Buffer.from("hello from a worker");
  const one = (v) => new Uint32Array([v]);
  if (mode === "end-stopped") parentPort.postMessage("stopped");
  else { h.start(); h.send(pool, one(0), one(pool.length), one(ADDR), kind === "udp" ? PORT : 0, null, 1); }
  parentPort.once("message", () => {
    if (mode === "exit") process.exit(3);
    if (mode === "close-then-exit") { h.close(); process.exit(4); }
    parentPort.unref();
  });
}
`,
    );
    const r = spawnSync("ip", ["netns", "exec", NSB, process.execPath, script], { encoding: "utf8", timeout: 25_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(
      ["udp", "raw"].flatMap((k) => [
        `${k} exit received false 3 true`,
        `${k} terminate received false 1 true`,
        `${k} close-then-exit received false 4 true`,
        `${k} end-stopped stopped false 0 true`,
      ]),
    );
  });
});

describe("udp-native helpers", () => {
  it("converts addresses and names errnos", () => {
    expect(ipv4ToUint("192.168.77.1")).toBe(0xc0a84d01);
    expect(ipv4ToUint("255.255.255.255")).toBe(0xffffffff);
    expect(uintToIpv4(0xc0a84d01)).toBe("192.168.77.1");
    expect(() => ipv4ToUint("10.0.0.256")).toThrow(/invalid IPv4/);
    expect(errnoName(101)).toBe("ENETUNREACH");
    expect(errnoName(0)).toBe("");
  });
});
