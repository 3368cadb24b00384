/**
 * MemoryPort (in process) and PcapPort (on a veth, in namespaces this test makes).
 *
 * cap opens an interface by name in the network namespace of the calling process, and
 * a Node process cannot change its own namespace. Rather than put a veth end in the
 * root namespace for the test's duration (the root kernel would see the lab's frames,
 * and a crashed run would leave the veth behind there), the PcapPort runs in a child
 * process started with `ip netns exec` inside the test's namespace. The child is a
 * small agent driven by JSON lines on stdin; it imports the real port and engine code,
 * transpiled (without type checking: tsc does that) into a temporary directory.
 * Deleting the two namespaces removes every interface the test made.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent as AgentBase, transpileTree } from "./agent.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Batch } from "../../src/core/batch.js";
import type { FrameSink } from "../../src/core/element.js";
import { Engine } from "../../src/core/engine.js";
import { HEADROOM, type Port } from "../../src/core/port.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import { PcapPort, formatMac, parseMac } from "../../src/io/pcap-port.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Forwards every frame from each port to the other one. */
function crossConnect(a: Port, b: Port): FrameSink & { batches: Array<[string, number]> } {
  const batches: Array<[string, number]> = [];
  return {
    batches,
    process(port: Port, batch: Batch): void {
      batches.push([port.name, batch.count]);
      const out = port === a ? b : a;
      for (let i = 0; i < batch.count; i++) out.txq.push(batch.offsets[i], batch.lengths[i]);
    },
  };
}

function frame(n: number, len: number): Buffer {
  const f = Buffer.alloc(len, n & 0xff);
  f.writeUInt16BE(0x88b5, 12);
  f.writeUInt32BE(n, 14);
  return f;
}

describe("MemoryPort", () => {
  function setup(opts: { batchSize?: number; refuse?: (i: number) => boolean } = {}) {
    const a = new MemoryPort("a", { batchSize: opts.batchSize ?? 4, mac: 0x020000000001, mtu: 9000 });
    const b = new MemoryPort("b", { refuse: opts.refuse });
    const e = new Engine();
    e.addPort(a);
    e.addPort(b);
    const pipe = crossConnect(a, b);
    const sink = pipe;
    for (const port of e.ports) e.connect(port, sink);
    e.start();
    return { a, b, e, pipe };
  }

  it("delivers injected frames in batches of at most batchSize, one pass each", () => {
    const { a, b, e, pipe } = setup();
    const frames = Array.from({ length: 10 }, (_, i) => frame(i, 60 + i));
    a.inject(frames);
    expect(pipe.batches).toEqual([
      ["a", 4],
      ["a", 4],
      ["a", 2],
    ]);
    expect(e.passes).toBe(3);
    expect(b.sent).toEqual(frames);
    const bytes = frames.reduce((s, f) => s + f.length, 0);
    expect(a.counters()).toMatchObject({ rxFrames: 10, rxBytes: bytes, txFrames: 0 });
    expect(b.counters()).toMatchObject({ txFrames: 10, txBytes: bytes, txDrops: 0, rxFrames: 0 });
  });

  it("puts frame i at rxBase + i*slotSize + HEADROOM (absolute pool offsets)", () => {
    const seen: number[] = [];
    const a = new MemoryPort("a", { batchSize: 3 });
    const b = new MemoryPort("b", { batchSize: 3 });
    const e = new Engine();
    e.addPort(a);
    e.addPort(b);
    const sink: FrameSink = {
      process(_p, batch) {
        for (let i = 0; i < batch.count; i++) seen.push(batch.offsets[i]);
      },
    };
    for (const port of e.ports) e.connect(port, sink);
    e.start();
    a.inject([frame(1, 60), frame(2, 60)]);
    b.inject([frame(3, 60), frame(4, 60), frame(5, 60)]);
    const bBase = a.rxRegionBytes(); // a's region starts at 0, b's at the next 64-byte boundary
    expect(seen).toEqual([HEADROOM, a.slotSize + HEADROOM, bBase + HEADROOM, bBase + b.slotSize + HEADROOM, bBase + 2 * b.slotSize + HEADROOM]);
    const pool = e.pool!.buf;
    expect(pool.readUInt32BE(bBase + 2 * b.slotSize + HEADROOM + 14)).toBe(5);
  });

  it("rejects a frame that does not fit a slot before delivering anything", () => {
    const { a, b } = setup();
    expect(a.room).toBe(a.slotSize - HEADROOM);
    expect(() => a.inject([frame(1, 60), frame(2, a.room + 1)])).toThrow(/frame 1 is .* a slot holds/);
    expect(a.rxFrames).toBe(0);
    a.inject([frame(3, a.room)]);
    expect(b.sent[0].length).toBe(a.room);
  });

  it("refused frames get length 0 and count as txDrops", () => {
    const { a, b } = setup({ refuse: (i) => i % 2 === 1 });
    const frames = [frame(0, 60), frame(1, 61), frame(2, 62), frame(3, 63)];
    a.inject(frames);
    expect(b.sent).toEqual([frames[0], frames[2]]);
    expect(b.counters()).toMatchObject({ txFrames: 2, txBytes: 60 + 62, txDrops: 2 });
  });

  it("with keepSent: false only counts what it transmits", () => {
    const a = new MemoryPort("a");
    const b = new MemoryPort("b", { keepSent: false });
    const e = new Engine();
    e.addPort(a);
    e.addPort(b);
    const sink = crossConnect(a, b);
    for (const port of e.ports) e.connect(port, sink);
    e.start();
    a.inject([frame(0, 60), frame(1, 70)]);
    expect(b.sent).toEqual([]);
    expect(b.counters()).toMatchObject({ txFrames: 2, txBytes: 130 });
  });

  it("reports its configured MAC and MTU, and refuses use while closed", () => {
    const { a, e } = setup();
    expect(a.info()).toEqual({ mac: 0x020000000001, mtu: 9000, ifname: "a" });
    expect(a.kind).toBe("memory");
    e.stop();
    expect(a.isOpen).toBe(false);
    expect(() => a.inject([frame(0, 60)])).toThrow(/not open/);
    const unopened = new MemoryPort("c");
    expect(() => unopened.inject([])).toThrow(/not open/);
  });

  it("refuses to inject into itself from inside a pass over its own frames", () => {
    const a = new MemoryPort("a");
    const e = new Engine();
    e.addPort(a);
    e.connect(a, {
      process() {
        a.inject([frame(9, 60)]);
      },
    });
    e.start();
    a.inject([frame(0, 60)]);
    expect(e.internalErrors).toBe(1);
    expect(e.lastError).toMatch(/inside a pass/);
  });
});

describe("PcapPort without a device", () => {
  it("reserves a bounce slot after its receive slots", () => {
    const p = new PcapPort("p", "eth-none", { batchSize: 8, slotSize: 512 });
    expect(p.rxRegionBytes()).toBe(9 * 512);
    expect(p.room).toBe(512 - HEADROOM);
    expect(p.kind).toBe("pcap");
    expect(() => new PcapPort("q", "x", { slotSize: HEADROOM + 14 })).toThrow(RangeError);
    for (const bad of ["", "../etc", "a/b", "eth0:1", "x".repeat(16), ".."]) {
      expect(() => new PcapPort("q", bad)).toThrow(/not an interface name/);
    }
  });

  it("fails to open a missing interface with a clear error and closes what the engine opened", () => {
    const m = new MemoryPort("m");
    const p = new PcapPort("p", "tnpnosuch0");
    const e = new Engine();
    e.addPort(m);
    e.addPort(p);
    const sink = crossConnect(m, p);
    for (const port of e.ports) e.connect(port, sink);
    expect(() => e.start()).toThrow(/no interface 'tnpnosuch0' in this network namespace/);
    expect(m.isOpen).toBe(false);
    expect(p.isOpen).toBe(false);
    p.close();
    p.close();
  });

  it("a flush on a port that is not open counts drops and does not throw", () => {
    const p = new PcapPort("p", "tnpnosuch0");
    p.txq.push(0, 60);
    p.txq.push(100, 60);
    p.flush(Buffer.alloc(4096));
    expect(p.counters()).toMatchObject({ txFrames: 0, txDrops: 2 });
    expect(p.txRefused).toBe(2);
  });

  it("parses MACs from sysfs text", () => {
    expect(parseMac("02:78:00:00:00:0a\n")).toBe(0x02780000000a);
    expect(parseMac("ff:ff:ff:ff:ff:ff")).toBe(0xffffffffffff);
    expect(parseMac("nonsense")).toBe(0);
    expect(formatMac(0x02780000000a)).toBe("02:78:00:00:00:0a");
    expect(formatMac(parseMac("ff:ff:ff:ff:ff:ff"))).toBe("ff:ff:ff:ff:ff:ff");
  });
});

// ---------------------------------------------------------------------------------
// PcapPort on a veth pair: port namespace (A) <-> host namespace (B, 10.78.0.1/24).

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
function haveCmd(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}
const canLab = isRoot && haveCmd("ip") && haveCmd("ping");

const PID = process.pid;
const NSP = `tnpc-p-${PID}`; // where the port runs
const NSH = `tnpc-h-${PID}`; // the "host"
const IFA = `tnpa${PID}`; // ≤ 15 characters for any pid
const IFB = `tnpb${PID}`;
const MAC_A = "02:78:00:00:00:0a";
const MAC_B = "02:78:00:00:00:01";
const MAC_DP = "02:78:00:00:00:02"; // the pipeline's responder, 10.78.0.2
const MAC_C = "02:78:00:00:00:03"; // frames injected into the memory port, 10.78.0.3
const SLOT = 512; // room for 448-byte frames
const BATCH = 4;

const macHex = (m: string): string => m.replace(/:/g, "");

/** The agent: an Engine with a MemoryPort and a PcapPort, driven over stdin. */
const AGENT = String.raw`
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { Engine } from "./core/engine.js";
import { MemoryPort } from "./io/memory-port.js";
import { PcapPort } from "./io/pcap-port.js";

const [ifname, slot, batch] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");
process.on("uncaughtException", (e) => { process.stderr.write("agent: " + e.stack + "\n"); process.exit(3); });

const engine = new Engine();
const mem = new MemoryPort("mem");
const pcap = new PcapPort("pcap", ifname, { slotSize: slot, batchSize: batch });
engine.addPort(mem);
engine.addPort(pcap);

let batches = [];
let rxSrc = {};
let responder = null;
let answered = 0;

function csum(b, off, len) {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

// Answers, in place, an ARP request for responder.ip (RFC 826) or an ICMP echo
// request to it (RFC 792); the frame then goes back out of the pcap port.
function answer(b, off, len) {
  if (responder === null || len < 42) return false;
  const et = b.readUInt16BE(off + 12);
  if (et === 0x0806) {
    if (b.readUInt16BE(off + 20) !== 1 || b.readUInt32BE(off + 38) !== responder.ip) return false;
    b.copy(b, off, off + 6, off + 12);
    responder.mac.copy(b, off + 6);
    b.writeUInt16BE(2, off + 20);
    b.copy(b, off + 32, off + 22, off + 32);
    responder.mac.copy(b, off + 22);
    b.writeUInt32BE(responder.ip, off + 28);
    return true;
  }
  if (et === 0x0800 && b[off + 23] === 1 && b.readUInt32BE(off + 30) === responder.ip) {
    const ihl = (b[off + 14] & 15) * 4;
    const icmp = off + 14 + ihl;
    if (b[icmp] !== 8) return false;
    const totalLen = b.readUInt16BE(off + 16);
    b.copy(b, off, off + 6, off + 12);
    responder.mac.copy(b, off + 6);
    const src = b.readUInt32BE(off + 26);
    b.writeUInt32BE(b.readUInt32BE(off + 30), off + 26);
    b.writeUInt32BE(src, off + 30);
    b[icmp] = 0;
    b.writeUInt16BE(0, icmp + 2);
    b.writeUInt16BE(csum(b, icmp, totalLen - ihl), icmp + 2);
    return true;
  }
  return false;
}

const relay = {
  process(port, bt, pool) {
    if (port === pcap) batches.push(bt.count);
    for (let i = 0; i < bt.count; i++) {
      const off = bt.offsets[i];
      const len = bt.lengths[i];
      if (port === pcap) {
        const src = pool.toString("hex", off + 6, off + 12);
        rxSrc[src] = (rxSrc[src] || 0) + 1;
        if (answer(pool, off, len)) { answered++; pcap.txq.push(off, len); continue; }
        mem.txq.push(off, len);
      } else {
        pcap.txq.push(off, len);
      }
    }
  },
};
engine.connect(mem, relay);
engine.connect(pcap, relay);

// A witness that sees both directions (no filter), and a second sender on the same
// interface, both plain cap handles in this process. cap keeps only a raw pointer to
// its receive buffer: the buffers stay referenced from here (keep) for as long as the
// handles are open, or the next frame is written into freed memory.
const { Cap } = createRequire(import.meta.url)("cap");
const wbuf = Buffer.alloc(65536);
const witness = new Cap();
let seen = [];
const other = new Cap();
const obuf = Buffer.alloc(65536);
const keep = [wbuf, obuf, witness, other];

function state() {
  return {
    batches, rxSrc, answered, witness: seen,
    sent: mem.sent.map((b) => b.toString("hex")),
    pcap: { ...pcap.counters(), rxTooBig: pcap.rxTooBig, txRefused: pcap.txRefused,
            lastTxError: pcap.lastTxError, isOpen: pcap.isOpen, filter: pcap.filter },
    mem: mem.counters(),
    passes: engine.passes, internalErrors: engine.internalErrors, lastError: engine.lastError,
    info: pcap.info(), kind: pcap.kind,
  };
}

try {
  engine.start();
  witness.open(ifname, "", 1 << 20, wbuf);
  witness.on("packet", (n) => seen.push({ src: wbuf.toString("hex", 6, 12), type: wbuf.readUInt16BE(12), len: n }));
  other.open(ifname, "inbound", 1 << 20, obuf);
} catch (e) {
  out({ ready: false, error: String(e && e.stack || e) });
  process.exit(2);
}
out({ ready: true, ...state() });

// If the test process dies, stdin closes: do not linger in the namespace.
const rl = createInterface({ input: process.stdin });
rl.on("close", () => process.exit(0));
rl.on("line", (line) => {
  const m = JSON.parse(line);
  const reply = (x) => out({ id: m.id, ok: true, ...x });
  try {
    switch (m.op) {
      case "state": return reply(state());
      case "clear": batches = []; rxSrc = {}; seen = []; mem.sent.length = 0; answered = 0; return reply({});
      case "respond":
        responder = m.ip === null ? null : { ip: m.ip >>> 0, mac: Buffer.from(m.mac, "hex") };
        return reply({});
      case "inject": mem.inject(m.frames.map((h) => Buffer.from(h, "hex"))); return reply({});
      case "other": for (const h of m.frames) { const f = Buffer.from(h, "hex"); other.send(f, f.length); } return reply({});
      case "stall":
        reply({});
        setImmediate(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, m.ms));
        return;
      case "close":
        engine.stop();
        engine.stop();
        pcap.close();
        globalThis.gc?.();
        return reply(state());
      case "exit":
        witness.close(); other.close();
        keep.length = 0;
        reply({});
        setTimeout(() => { globalThis.gc?.(); process.exit(0); }, 50);
        return;
      default: throw new Error("unknown op " + m.op);
    }
  } catch (e) {
    out({ id: m.id, ok: false, error: String(e && e.stack || e) });
  }
});
`;

interface AgentState {
  batches: number[];
  rxSrc: Record<string, number>;
  answered: number;
  witness: Array<{ src: string; type: number; len: number }>;
  sent: string[];
  pcap: {
    rxFrames: number;
    rxBytes: number;
    rxDrops: number;
    txFrames: number;
    txBytes: number;
    txDrops: number;
    rxTooBig: number;
    txRefused: number;
    lastTxError: string;
    isOpen: boolean;
    filter: string;
  };
  mem: { rxFrames: number; txFrames: number; txDrops: number };
  passes: number;
  internalErrors: number;
  lastError: string;
  info: { mac: number; mtu: number; ifname: string };
  kind: string;
}

class Agent extends AgentBase<AgentState> {}

function ip4(s: string): number {
  return s.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}

/** An ARP request from (sha, spa) for tpa, broadcast (RFC 826). */
function arpRequest(sha: string, spa: string, tpa: string): string {
  const b = Buffer.alloc(42);
  b.fill(0xff, 0, 6);
  Buffer.from(macHex(sha), "hex").copy(b, 6);
  b.writeUInt16BE(0x0806, 12);
  b.writeUInt16BE(1, 14);
  b.writeUInt16BE(0x0800, 16);
  b[18] = 6;
  b[19] = 4;
  b.writeUInt16BE(1, 20);
  Buffer.from(macHex(sha), "hex").copy(b, 22);
  b.writeUInt32BE(ip4(spa), 28);
  b.writeUInt32BE(ip4(tpa), 38);
  return b.toString("hex");
}

function checksum(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An ICMP echo request (RFC 792) in IPv4 in Ethernet. */
function echoRequest(smac: string, dmac: string, src: string, dst: string, id: number, seq: number): string {
  const payload = 32;
  const b = Buffer.alloc(14 + 20 + 8 + payload);
  Buffer.from(macHex(dmac), "hex").copy(b, 0);
  Buffer.from(macHex(smac), "hex").copy(b, 6);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(20 + 8 + payload, 16);
  b.writeUInt16BE(0x4000, 20);
  b[22] = 64;
  b[23] = 1;
  b.writeUInt32BE(ip4(src), 26);
  b.writeUInt32BE(ip4(dst), 30);
  b.writeUInt16BE(checksum(b, 14, 20), 24);
  b[34] = 8;
  b.writeUInt16BE(id, 38);
  b.writeUInt16BE(seq, 40);
  for (let i = 0; i < payload; i++) b[42 + i] = i;
  b.writeUInt16BE(checksum(b, 34, 8 + payload), 36);
  return b.toString("hex");
}

/** A local-experimental (0x88b5) broadcast frame the host's kernel ignores. */
function probe(smac: string, len: number, tag: number): string {
  const b = Buffer.alloc(len, tag);
  b.fill(0xff, 0, 6);
  Buffer.from(macHex(smac), "hex").copy(b, 6);
  b.writeUInt16BE(0x88b5, 12);
  return b.toString("hex");
}

function sh(cmd: string, args: string[], timeout = 10_000): string {
  return execFileSync(cmd, args, { encoding: "utf8", timeout, stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command in the host namespace; returns exit status and output. */
function inHost(args: string[], timeout = 10_000): { status: number | null; out: string } {
  const r = spawnSync("ip", ["netns", "exec", NSH, ...args], { encoding: "utf8", timeout });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function deleteNamespaces(): void {
  for (const ns of [NSP, NSH]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
}

describe.skipIf(!canLab)("PcapPort on a veth (namespaces made by this test)", () => {
  let agent: Agent | null = null;
  let work = "";

  beforeAll(async () => {
    deleteNamespaces(); // leftovers of an earlier run with the same pid
    work = mkdtempSync(join(tmpdir(), "tapnet-pcap-port-"));
    // Lets the transpiled pcap-port.js find `cap` through its createRequire.
    symlinkSync(join(REPO, "node_modules"), join(work, "node_modules"), "dir");
    writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
    transpileTree(join(REPO, "src"), ["core/engine.ts", "io/memory-port.ts", "io/pcap-port.ts"], work);
    writeFileSync(join(work, "agent.js"), AGENT);

    sh("ip", ["netns", "add", NSP]);
    sh("ip", ["netns", "add", NSH]);
    sh("ip", ["-n", NSP, "link", "add", IFA, "address", MAC_A, "type", "veth", "peer", "name", IFB, "address", MAC_B, "netns", NSH]);
    // No IPv6 on either end: no DAD, MLD or router solicitations, so every frame the
    // port sees is one the test caused. (A's own would be outbound and filtered anyway.)
    sh("ip", ["netns", "exec", NSP, "sysctl", "-qw", `net.ipv6.conf.${IFA}.disable_ipv6=1`]);
    sh("ip", ["netns", "exec", NSH, "sysctl", "-qw", `net.ipv6.conf.${IFB}.disable_ipv6=1`]);
    sh("ip", ["-n", NSP, "link", "set", IFA, "up"]);
    sh("ip", ["-n", NSH, "addr", "add", "10.78.0.1/24", "dev", IFB]);
    sh("ip", ["-n", NSH, "link", "set", IFB, "up"]);

    const child = spawn("ip", ["netns", "exec", NSP, process.execPath, "--expose-gc", join(work, "agent.js"), IFA, String(SLOT), String(BATCH)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    agent = new Agent(child);
    const r = await agent.ready();
    if (r.ready !== true) throw new Error(`agent did not start: ${String(r.error)}\n${agent.stderr}`);
  }, 30_000);

  afterAll(async () => {
    try {
      if (agent !== null && agent.exitCode === undefined && agent.child.pid !== undefined) {
        process.kill(agent.child.pid, "SIGKILL");
        await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 2_000))]);
      }
    } finally {
      deleteNamespaces();
      if (work !== "") rmSync(work, { recursive: true, force: true });
    }
    const left = sh("ip", ["netns", "list"]);
    expect(left).not.toContain(NSP);
    expect(left).not.toContain(NSH);
  }, 20_000);

  it("opens the veth end and reports its MAC and MTU", async () => {
    const s = await agent!.state();
    expect(s.kind).toBe("pcap");
    expect(s.info).toEqual({ mac: parseMac(MAC_A), mtu: 1500, ifname: IFA });
    expect(s.pcap.filter).toBe(`not ether src ${MAC_A}`);
  }, 10_000);

  it("delivers the host's ARP and ICMP; the pipeline's answers reach the host's kernel", async () => {
    const a = agent!;
    await a.call("clear");
    await a.call("respond", { ip: ip4("10.78.0.2"), mac: macHex(MAC_DP) });
    const ping = inHost(["ping", "-n", "-c", "3", "-i", "0.2", "-w", "5", "10.78.0.2"]);
    expect(ping.out).toMatch(/3 packets transmitted, 3 received/);
    expect(ping.status).toBe(0);
    expect(inHost(["ip", "neigh", "show", "10.78.0.2", "dev", IFB]).out).toContain(`lladdr ${MAC_DP}`);

    const s = await a.state();
    // One ARP request and three echo requests, all from the host's MAC, all answered.
    expect(s.rxSrc).toEqual({ [macHex(MAC_B)]: 4 });
    // The host had to ask only once: the first frame after open was not lost (it is
    // with libpcap's `inbound` filter, see pcap-port.ts).
    expect(s.witness.filter((w) => w.src === macHex(MAC_B) && w.type === 0x0806)).toHaveLength(1);
    expect(s.answered).toBe(4);
    expect(s.sent).toEqual([]);
    expect(s.pcap).toMatchObject({ rxFrames: 4, rxBytes: 42 + 3 * 98, rxDrops: 0, txFrames: 4, txDrops: 0 });
    // Answers keep the request's length (42 and 98 bytes).
    expect(s.pcap.txBytes).toBe(42 + 3 * 98);
    // The witness saw each answer leave from the responder's MAC.
    expect(s.witness.filter((w) => w.src === macHex(MAC_DP)).map((w) => w.len)).toEqual([42, 98, 98, 98]);
    expect(s.internalErrors).toBe(0);
  }, 20_000);

  it("delivers frames that arrive while the loop is busy as one batch per turn, split at batchSize", async () => {
    const a = agent!;
    inHost(["ip", "neigh", "replace", "10.78.0.2", "lladdr", MAC_DP, "dev", IFB, "nud", "permanent"]);
    await a.call("respond", { ip: ip4("10.78.0.2"), mac: macHex(MAC_DP) });
    await a.call("clear");
    const before = (await a.state()).pcap;
    // The agent blocks its event loop; ten echo requests queue in the capture ring.
    await a.call("stall", { ms: 1500 });
    // No -w: ping sends exactly ten, then waits (-W) for the late replies.
    const ping = inHost(["ping", "-n", "-c", "10", "-i", "0.01", "-W", "6", "10.78.0.2"]);
    expect(ping.out).toMatch(/10 packets transmitted, 10 received/);
    const s = await a.state();
    expect(s.batches).toEqual([4, 4, 2]);
    expect(s.answered).toBe(10);
    expect(s.pcap.rxFrames - before.rxFrames).toBe(10);
    expect(s.pcap.txFrames - before.txFrames).toBe(10);
  }, 20_000);

  it("sends frames injected into the memory port out of the veth to the host's kernel", async () => {
    const a = agent!;
    await a.call("clear");
    const before = await a.state();
    // Who has 10.78.0.1, tell 10.78.0.3: the host learns 10.78.0.3 and answers.
    await a.call("inject", { frames: [arpRequest(MAC_C, "10.78.0.3", "10.78.0.1")] });
    const reply = await until("the host's ARP reply", async () => {
      const s = await a.state();
      return s.sent.find((h) => h.startsWith(macHex(MAC_C)) && h.slice(24, 28) === "0806");
    });
    expect(reply.slice(12, 24)).toBe(macHex(MAC_B));
    expect(reply.slice(40, 44)).toBe("0002"); // op = reply
    expect(inHost(["ip", "neigh", "show", "10.78.0.3", "dev", IFB]).out).toContain(`lladdr ${MAC_C}`);

    // An echo request from 10.78.0.3 gets the host's echo reply back through the port.
    await a.call("inject", { frames: [echoRequest(MAC_C, MAC_B, "10.78.0.3", "10.78.0.1", 0x4243, 7)] });
    const echo = await until("the host's echo reply", async () => {
      const s = await a.state();
      return s.sent.find((h) => h.slice(24, 28) === "0800" && h.slice(68, 70) === "00");
    });
    expect(echo.slice(0, 12)).toBe(macHex(MAC_C));
    expect(echo.slice(52, 60)).toBe("0a4e0001"); // from 10.78.0.1
    expect(echo.slice(76, 84)).toBe("42430007"); // our id and sequence
    // Keep the host quiet from here on: no reachability probes for 10.78.0.3.
    inHost(["ip", "neigh", "replace", "10.78.0.3", "lladdr", MAC_C, "dev", IFB, "nud", "permanent"]);

    const s = await a.state();
    expect(s.pcap.txFrames - before.pcap.txFrames).toBe(2);
    expect(s.pcap.txBytes - before.pcap.txBytes).toBe(42 + 74);
    expect(s.mem.rxFrames - before.mem.rxFrames).toBe(2);
    expect(s.pcap.rxFrames - before.pcap.rxFrames).toBe(2);
    expect(s.mem.txFrames - before.mem.txFrames).toBe(2);
    expect(s.sent).toHaveLength(2);
  }, 20_000);

  it("does not receive its own frames, nor what the namespace's kernel sends out of the interface", async () => {
    const a = agent!;
    await a.call("clear");
    const before = (await a.state()).pcap;
    // The port's own transmissions.
    await a.call("inject", { frames: [probe(MAC_C, 60, 1), probe(MAC_C, 61, 2), probe(MAC_C, 62, 3)] });
    // The kernel of the port's namespace, sending out of the interface: ARP requests
    // for a neighbour nobody has, from an address added for the purpose.
    sh("ip", ["-n", NSP, "addr", "add", "10.79.0.2/24", "dev", IFA]);
    try {
      spawnSync("ip", ["netns", "exec", NSP, "ping", "-n", "-c", "1", "-W", "1", "10.79.0.9"], { timeout: 5_000 });
    } finally {
      sh("ip", ["-n", NSP, "addr", "flush", "dev", IFA]);
    }
    // Another socket in the namespace sending with the interface's MAC, as the kernel does.
    await a.call("other", { frames: [probe(MAC_A, 63, 4)] });
    // The unfiltered witness sees them all leave...
    const w = await until("the witness to see the frames", async () => {
      const s = await a.state();
      return s.witness.length >= 5 ? s.witness : undefined;
    });
    expect(w.filter((x) => x.src === macHex(MAC_C)).map((x) => x.len)).toEqual([60, 61, 62]);
    expect(w.filter((x) => x.src === macHex(MAC_A) && x.type === 0x0806).length).toBeGreaterThanOrEqual(1);
    expect(w.filter((x) => x.src === macHex(MAC_A) && x.type === 0x88b5).map((x) => x.len)).toEqual([63]);
    await new Promise((r) => setTimeout(r, 300));
    // ...and the port received none of them.
    const s = await a.state();
    expect(s.rxSrc).toEqual({});
    expect(s.sent).toEqual([]);
    expect(s.pcap.rxFrames).toBe(before.rxFrames);
    expect(s.pcap.txFrames - before.txFrames).toBe(3);
  }, 20_000);

  it("drops frames larger than a slot's room and counts them; the kernel's refusals are counted", async () => {
    const a = agent!;
    inHost(["ip", "neigh", "replace", "10.78.0.2", "lladdr", MAC_DP, "dev", IFB, "nud", "permanent"]);
    await a.call("respond", { ip: ip4("10.78.0.2"), mac: macHex(MAC_DP) });
    await a.call("clear");
    const before = (await a.state()).pcap;
    const room = SLOT - HEADROOM; // 448 = 14 + 20 + 8 + 406
    const fits = inHost(["ping", "-n", "-c", "1", "-s", String(room - 42), "-w", "3", "10.78.0.2"]);
    expect(fits.status).toBe(0);
    // One byte over the room, and one over the whole bounce slot (cap reports it truncated).
    const over = inHost(["ping", "-n", "-c", "1", "-s", String(room - 41), "-W", "1", "10.78.0.2"]);
    expect(over.status).not.toBe(0);
    const way = inHost(["ping", "-n", "-c", "1", "-s", "1000", "-W", "1", "10.78.0.2"]);
    expect(way.status).not.toBe(0);
    let s = await a.state();
    expect(s.pcap.rxTooBig - before.rxTooBig).toBe(2);
    expect(s.pcap.rxDrops - before.rxDrops).toBe(2);
    expect(s.pcap.rxFrames - before.rxFrames).toBe(1);
    expect(s.batches).toEqual([1]);

    // Sending: 1000 bytes is more than the bounce slot (sent from a view) but within the
    // MTU; 1600 bytes is more than MTU + header, which the kernel refuses.
    await a.call("clear");
    await a.call("inject", { frames: [probe(MAC_C, 1000, 6), probe(MAC_C, 1600, 7), probe(MAC_C, 60, 8)] });
    s = await until("the witness to see 2 frames", async () => {
      const t = await a.state();
      return t.witness.length >= 2 ? t : undefined;
    });
    expect(s.witness.map((x) => x.len)).toEqual([1000, 60]);
    expect(s.pcap.txRefused - before.txRefused).toBe(1);
    expect(s.pcap.txDrops - before.txDrops).toBe(1);
    expect(s.pcap.lastTxError).toMatch(/too long|message/i);
    expect(s.internalErrors).toBe(0);
  }, 20_000);

  it("close is idempotent and stops delivery; the process exits cleanly", async () => {
    const a = agent!;
    const s = (await a.call("close")) as unknown as AgentState;
    expect(s.pcap.isOpen).toBe(false);
    const ping = inHost(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "10.78.0.2"]);
    expect(ping.status).not.toBe(0);
    const t = await a.state();
    expect(t.pcap.rxFrames).toBe(s.pcap.rxFrames);
    await a.call("exit");
    expect(await Promise.race([a.exited, new Promise((r) => setTimeout(() => r("timeout"), 5_000))])).toBe(0);
  }, 20_000);
});
