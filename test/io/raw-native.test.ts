/**
 * The native batched raw IPv4 socket (openRaw in native/udp.c via src/io/raw-native.ts),
 * in two network namespaces this test makes, joined by a veth pair:
 *
 *   A: 10.212.0.1/24 (veth tnr<r>a) ─────── B: 10.212.0.2/24 (veth tnr<r>b)
 *
 * As in udp-native.test.ts, each side is an agent child process (`ip netns exec NS node
 * agent.js`, test/io/agent.ts) importing the real src/io/raw-native.ts (transpiled into
 * a temporary directory) and answering JSON lines; nothing here opens a socket in the
 * test runner's namespace. The packets use IP protocol 253 (RFC 3692: for
 * experimentation), which nothing else in the namespaces handles. Deleting the two
 * namespaces removes the veth; afterAll ends the agents by PID.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errnoName, ipv4ToUint } from "../../src/io/udp-native.js";
import { Agent as AgentBase, transpileTree } from "./agent.js";
import { snmp, waitSnmp } from "../integration/harness.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ADDON = join(REPO, "native/build/Release/tapnet.node");

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const haveCmd = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const canLab = process.platform === "linux" && isRoot && haveCmd("ip") && existsSync(ADDON);

const R = randomBytes(3).toString("hex");
const NSA = `tn-rawt-${R}-a`;
const NSB = `tn-rawt-${R}-b`;
const IFA = `tnr${R}a`;
const IFB = `tnr${R}b`;
const ADDR_A = "10.212.0.1";
const ADDR_B = "10.212.0.2";
const UNREACHABLE = "10.99.0.1"; // no route in A
const PROTO = 253;

/** The agent: raw handles by name, a log of what each received, JSON lines. */
const AGENT = String.raw`
import { readdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { openRaw } from "./src/io/raw-native.js";
import { ipv4ToUint } from "./src/io/udp-native.js";

const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");
process.on("uncaughtException", (e) => { process.stderr.write("agent: " + (e && e.stack || e) + "\n"); process.exit(3); });
const fds = () => readdirSync("/proc/self/fd").length;
const handles = new Map();

function options(o, log) {
  const slots = o.slots ?? 64, slotSize = o.slotSize ?? 2048, rxBase = o.rxBase ?? 64;
  const arr = () => new Uint32Array(o.arrLen ?? slots);
  const opts = {
    protocol: o.protocol, pool: Buffer.alloc(o.poolSize ?? rxBase + slots * slotSize), rxBase, slots, slotSize,
    offsets: arr(), lengths: arr(), addrs: arr(),
  };
  for (const k of ["hdrIncl", "rcvbuf", "sndbuf", "rxOffset"]) if (o[k] !== undefined) opts[k] = o[k];
  if (o.bindAddr !== undefined) opts.bindAddr = ipv4ToUint(o.bindAddr);
  if (log !== undefined) opts.onBatch = (n, truncated) => {
    log.batches.push([n, truncated]);
    for (let i = 0; i < n; i++) {
      const off = opts.offsets[i], len = opts.lengths[i];
      log.msgs.push({ len, addr: opts.addrs[i], slot: Math.floor((off - rxBase) / slotSize), inSlot: (off - rxBase) % slotSize,
                      b64: opts.pool.toString("base64", off, off + len) });
    }
  };
  if (o.badPool) opts.pool = "not a buffer";
  if (o.badOnBatch) opts.onBatch = 42;
  if (o.noProtocol) delete opts.protocol;
  return opts;
}

function stats(h) { return { ...h.h.stats(), fd: h.h.fd }; }
function get(name) { const h = handles.get(name); if (!h) throw new Error("no handle " + name); return h; }

function send(m) {
  const h = get(m.h), n = m.msgs.length;
  const datas = m.msgs.map((x) => Buffer.from(x.b64, "base64"));
  const pool = Buffer.concat([Buffer.alloc(16), ...datas]);
  const offsets = new Uint32Array(n), lengths = new Uint32Array(n), addrs = new Uint32Array(n);
  let off = 16;
  m.msgs.forEach((x, i) => {
    offsets[i] = off;
    lengths[i] = datas[i].length;
    addrs[i] = ipv4ToUint(x.to);
    off += datas[i].length;
  });
  const sent = h.h.send(pool, offsets, lengths, addrs, 0, m.segs ? new Uint32Array(n) : null, n);
  return { sent, lengths: [...lengths], stats: stats(h) };
}

function tryOpen(o) {
  const before = fds();
  try {
    const h = openRaw(options(o, { batches: [], msgs: [] }));
    h.close();
    return { threw: false, fdsBefore: before, fdsAfter: fds() };
  } catch (e) {
    return { threw: true, name: e.constructor.name, code: e.code, errno: e.errno, syscall: e.syscall,
             message: e.message, fdsBefore: before, fdsAfter: fds() };
  }
}

out({ ready: true });
const rl = createInterface({ input: process.stdin });
rl.on("close", () => process.exit(0));
rl.on("line", (line) => {
  const m = JSON.parse(line);
  const reply = (x) => out({ id: m.id, ok: true, ...x });
  try {
    switch (m.op) {
      case "open": {
        const log = { batches: [], msgs: [] };
        const h = openRaw(options(m.opts, log));
        handles.set(m.h, { h, log });
        if (m.start) h.start();
        return reply({ fd: h.fd, protocol: h.protocol, hdrIncl: h.hdrIncl, rcvbuf: h.rcvbuf, sndbuf: h.sndbuf,
                       className: h.constructor.name });
      }
      case "tryOpen": return reply(tryOpen(m.opts));
      case "start": get(m.h).h.start(); return reply({ stats: stats(get(m.h)) });
      case "stop": get(m.h).h.stop(); return reply({ stats: stats(get(m.h)) });
      case "close": { const h = get(m.h); h.h.close(); h.h.close(); return reply({ stats: stats(h) }); }
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
  slot: number;
  inSlot: number;
  b64: string;
}
interface Reply {
  fd: number;
  protocol: number;
  hdrIncl: boolean;
  rcvbuf: number;
  sndbuf: number;
  className: string;
  sent: number;
  lengths: number[];
  stats: Stats;
  batches: Array<[number, number]>;
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

function checksum(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An IPv4 packet (RFC 791) of protocol 253 with a correct header checksum. */
function ipPacket(src: string, dst: string, payload: Buffer, ident = 0x1234, tos = 0): Buffer {
  const b = Buffer.alloc(20 + payload.length);
  b[0] = 0x45;
  b[1] = tos;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(ident, 4);
  b.writeUInt16BE(0x4000, 6);
  b[8] = 64;
  b[9] = PROTO;
  b.writeUInt32BE(ipv4ToUint(src), 12);
  b.writeUInt32BE(ipv4ToUint(dst), 16);
  b.writeUInt16BE(checksum(b, 0, 20), 10);
  payload.copy(b, 20);
  return b;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let k = 0; k < len; k++) b[k] = (seed * 131 + k * 7) & 0xff;
  return b;
}
const b64 = (b: Buffer): string => b.toString("base64");
const bytes = (m: Msg): Buffer => Buffer.from(m.b64, "base64");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(30);
  }
}

function deleteNamespaces(): void {
  for (const ns of [NSA, NSB]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
}

describe.skipIf(!canLab)("native raw IPv4 socket (openRaw) in two namespaces made by this test", () => {
  let work = "";
  let a: Agent | null = null;
  let b: Agent | null = null;

  async function startAgent(ns: string): Promise<Agent> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, join(work, "agent.js")], { stdio: ["pipe", "pipe", "pipe"] });
    const ag = new Agent(child);
    const r = await ag.ready();
    if (r.ready !== true) throw new Error(`agent in ${ns} did not start\n${ag.stderr}`);
    return ag;
  }

  async function receive(h: string, n: number, ms = 5_000): Promise<Reply> {
    await until(`${n} packets on ${h}`, async () => (await b!.call("recv", { h })).msgs.length >= n, ms);
    return b!.call("recv", { h, take: true });
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tapnet-raw-native-"));
    symlinkSync(join(REPO, "native"), join(work, "native"), "dir");
    writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
    transpileTree(REPO, ["src/io/raw-native.ts", "src/io/udp-native.ts"], work);
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
      deleteNamespaces();
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

  it("an IP_HDRINCL send of a hand-built packet arrives whole, outer header included, at a raw socket of that protocol, from the right source", async () => {
    const tx = await a!.call("open", { h: "tx", opts: { protocol: PROTO, hdrIncl: true, slots: 1, sndbuf: 1 << 20 } });
    expect(tx).toMatchObject({ protocol: PROTO, hdrIncl: true, className: "RawHandle" });
    expect(tx.fd).toBeGreaterThan(0);
    expect(tx.sndbuf).toBeGreaterThanOrEqual(2 << 20); // the kernel reports twice what was set
    const rx = await b!.call("open", { h: "rx", opts: { protocol: PROTO, slots: 64, rxOffset: 58, rcvbuf: 4 << 20 }, start: true });
    expect(rx).toMatchObject({ protocol: PROTO, hdrIncl: false });
    expect(rx.rcvbuf).toBeGreaterThanOrEqual(8 << 20);

    const p = ipPacket(ADDR_A, ADDR_B, pattern(300, 1), 0x4242, 0x28);
    const s = await a!.call("send", { h: "tx", msgs: [{ b64: b64(p), to: ADDR_B }] });
    expect(s.sent).toBe(1);
    expect(s.lengths).toEqual([p.length]);
    const r = await receive("rx", 1);
    expect(r.batches).toEqual([[1, 0]]);
    const m = r.msgs[0];
    expect(m.addr).toBe(ipv4ToUint(ADDR_A));
    expect(m.len).toBe(p.length);
    expect(m.inSlot).toBe(58); // rxOffset
    // As written: ident, TOS, DF, TTL 64 (sent straight to a neighbour, no router in between).
    expect(bytes(m).equals(p)).toBe(true);
    expect(r.stats).toMatchObject({ rxMessages: 1, batches: 1, rxTruncated: 0, rxErrors: 0 });
  });

  it("without IP_HDRINCL the kernel writes the header: protocol, source and destination, then the payload", async () => {
    await a!.call("open", { h: "plain", opts: { protocol: PROTO, slots: 1 } });
    const payload = pattern(100, 2);
    const s = await a!.call("send", { h: "plain", msgs: [{ b64: b64(payload), to: ADDR_B }] });
    expect(s.sent).toBe(1);
    const m = (await receive("rx", 1)).msgs[0];
    const got = bytes(m);
    expect(got.length).toBe(120);
    expect(got[0]).toBe(0x45);
    expect(got[9]).toBe(PROTO);
    expect(got.readUInt32BE(12)).toBe(ipv4ToUint(ADDR_A));
    expect(got.readUInt32BE(16)).toBe(ipv4ToUint(ADDR_B));
    expect(checksum(got, 0, 20)).toBe(0);
    expect(got.subarray(20).equals(payload)).toBe(true);
    await a!.call("close", { h: "plain" });
  });

  it("a batch of 48 packets sent with one send() arrives in one onBatch, in order, one slot each", async () => {
    await b!.call("stop", { h: "rx" });
    const packets = Array.from({ length: 48 }, (_, i) => ipPacket(ADDR_A, ADDR_B, pattern(200 + i, 10 + i), 0x100 + i));
    const delivered = snmp(NSB)["Ip.InDelivers"];
    const s = await a!.call("send", { h: "tx", msgs: packets.map((p) => ({ b64: b64(p), to: ADDR_B })) });
    expect(s.sent).toBe(48);
    await waitSnmp(NSB, "Ip.InDelivers", delivered, 48); // all 48 queue in B's socket while it is not polled
    const before = (await b!.call("recv", { h: "rx" })).stats;
    await b!.call("start", { h: "rx" });
    const r = await receive("rx", 48);
    expect(r.batches).toEqual([[48, 0]]);
    expect(r.msgs.map((m) => m.slot)).toEqual(packets.map((_, i) => i));
    expect(r.msgs.every((m, i) => bytes(m).equals(packets[i]))).toBe(true);
    expect(r.stats.batches - before.batches).toBe(1);
    expect(r.stats.rxMessages - before.rxMessages).toBe(48);
  });

  it("drops a packet longer than its slot as truncated, tells onBatch (count 0), and keeps the others", async () => {
    await b!.call("open", { h: "small", opts: { protocol: PROTO, slots: 4, slotSize: 256, rxOffset: 56, bindAddr: ADDR_B } });
    await b!.call("stop", { h: "rx" }); // (its batches would only add noise; stopped handles still queue)
    const fits = ipPacket(ADDR_A, ADDR_B, pattern(180, 30)); // 200 bytes = 256 - 56
    const long = ipPacket(ADDR_A, ADDR_B, pattern(181, 31));
    await a!.call("send", { h: "tx", msgs: [{ b64: b64(long), to: ADDR_B }] });
    await b!.call("start", { h: "small" });
    await until("the truncation", async () => (await b!.call("recv", { h: "small" })).stats.rxTruncated === 1);
    let r = await b!.call("recv", { h: "small", take: true });
    expect(r.batches).toEqual([[0, 1]]);
    expect(r.stats).toMatchObject({ rxTruncated: 1, rxMessages: 0, batches: 0 });
    await a!.call("send", { h: "tx", msgs: [{ b64: b64(fits), to: ADDR_B }] });
    r = await receive("small", 1);
    expect(bytes(r.msgs[0]).equals(fits)).toBe(true);
    expect(r.stats).toMatchObject({ rxTruncated: 1, rxMessages: 1, batches: 1 });
    await b!.call("close", { h: "small" });
    // The unbound handle got copies of both while stopped: let them arrive and drop them.
    await b!.call("start", { h: "rx" });
    expect((await receive("rx", 2)).msgs.map((m) => m.len)).toEqual([long.length, fits.length]);
  });

  it("counts what the kernel refuses, per packet, without throwing: no route, longer than the MTU; segs refused", async () => {
    const good = ipPacket(ADDR_A, ADDR_B, pattern(64, 40));
    const s = await a!.call("send", {
      h: "tx",
      msgs: [
        { b64: b64(good), to: ADDR_B },
        { b64: b64(ipPacket(ADDR_A, UNREACHABLE, pattern(64, 41))), to: UNREACHABLE },
        { b64: b64(good), to: ADDR_B },
        { b64: b64(ipPacket(ADDR_A, ADDR_B, pattern(1481, 42))), to: ADDR_B }, // 1501 bytes > MTU 1500: no fragmenting
        { b64: b64(good), to: ADDR_B },
      ],
    });
    expect(s.sent).toBe(3);
    expect(s.lengths).toEqual([good.length, 0, good.length, 0, good.length]);
    expect(s.stats.txErrors).toBe(2);
    expect(errnoName(s.stats.lastTxErrno)).toBe("EMSGSIZE");
    const r = await receive("rx", 3);
    expect(r.msgs.every((m) => bytes(m).equals(good))).toBe(true);
    const u = await a!.call("send", { h: "tx", msgs: [{ b64: b64(ipPacket(ADDR_A, UNREACHABLE, pattern(8, 43))), to: UNREACHABLE }] });
    expect(u.sent).toBe(0);
    expect(errnoName(u.stats.lastTxErrno)).toBe("ENETUNREACH");
    // A raw socket has no GSO: segs must be null.
    const g = await a!.call("trySend", { h: "tx", segs: true, msgs: [{ b64: b64(good), to: ADDR_B }] });
    expect(g).toMatchObject({ threw: true, name: "TypeError" });
    expect(g.message).toMatch(/segs must be null for a raw socket/);
  });

  it("bad options throw clear errors before any socket is made", async () => {
    const bad = async (opts: Record<string, unknown>): Promise<Reply> => {
      const r = await a!.call("tryOpen", { opts: { protocol: PROTO, ...opts } });
      expect(r.threw, JSON.stringify(opts)).toBe(true);
      expect(r.fdsAfter).toBe(r.fdsBefore); // no socket left behind
      return r;
    };
    expect((await bad({ protocol: 0 })).message).toMatch(/openRaw: option 'protocol' must be an IP protocol number in 1\.\.255/);
    expect(await bad({ protocol: 256 })).toMatchObject({ name: "RangeError", message: "openRaw: option 'protocol' must be an integer in 0..255, got 256" });
    expect((await bad({ noProtocol: true })).message).toMatch(/openRaw: option 'protocol' .*\(it is required\)/);
    expect((await bad({ hdrIncl: "yes" })).message).toBe("openRaw: option 'hdrIncl' must be a boolean");
    expect((await bad({ slotSize: 100, rxOffset: 100 })).message).toMatch(/'rxOffset' \(100\) must be less than 'slotSize' \(100\)/);
    expect((await bad({ rxBase: 100, slots: 4, slotSize: 1000, poolSize: 4000 })).message).toMatch(
      /openRaw: the receive region rxBase \+ slots\*slotSize = 100 \+ 4\*1000 = 4100 does not fit in the pool of 4000 bytes/,
    );
    expect((await bad({ slots: 8, arrLen: 4 })).message).toMatch(/openRaw: option 'offsets' has 4 entries; it must hold at least slots = 8/);
    expect(await bad({ badPool: true })).toMatchObject({ name: "TypeError", message: "openRaw: option 'pool' must be a Buffer" });
    expect((await bad({ badOnBatch: true })).message).toMatch(/openRaw: option 'onBatch' must be a function \(count: number, truncated: number\)/);
    const na = await bad({ bindAddr: "10.9.9.9" });
    expect(na).toMatchObject({ name: "Error", code: "EADDRNOTAVAIL", syscall: "bind" });
    expect(na.message).toMatch(/protocol 253 on 10\.9\.9\.9.*not on any interface/);
    const good = await a!.call("tryOpen", { opts: { protocol: PROTO, bindAddr: ADDR_A } });
    expect(good).toMatchObject({ threw: false });
    expect(good.fdsAfter).toBe(good.fdsBefore);
  });

  it("close() is idempotent and a closed handle delivers nothing more", async () => {
    await b!.call("open", { h: "cl", opts: { protocol: PROTO, slots: 8 }, start: true });
    const p = ipPacket(ADDR_A, ADDR_B, pattern(50, 50));
    await a!.call("send", { h: "tx", msgs: [{ b64: b64(p), to: ADDR_B }] });
    expect((await receive("cl", 1)).msgs).toHaveLength(1);
    const c = await b!.call("close", { h: "cl" }); // closes twice
    expect(c.stats.fd).toBe(-1);
    await a!.call("send", { h: "tx", msgs: [{ b64: b64(p), to: ADDR_B }] });
    await receive("rx", 2); // the still-open handle gets both packets: the closed one nothing
    const r = await b!.call("recv", { h: "cl" });
    expect(r.msgs).toHaveLength(0);
    expect(r.stats.rxMessages).toBe(1);
    for (const method of ["start", "send"]) {
      const t = await b!.call(method === "send" ? "trySend" : "tryCall", { h: "cl", method, msgs: [{ b64: b64(p), to: ADDR_A }] });
      expect(t).toMatchObject({ threw: true, code: "ERR_RAW_CLOSED" });
      expect(t.message).toMatch(/raw IPv4 socket \(protocol 253 on 0\.0\.0\.0\) is closed: (start|send)\(\) is not possible after close\(\)/);
    }
    expect(await b!.call("tryCall", { h: "cl", method: "stop" })).toMatchObject({ threw: false });
    expect(await b!.call("tryCall", { h: "cl", method: "close" })).toMatchObject({ threw: false });
  });
});
