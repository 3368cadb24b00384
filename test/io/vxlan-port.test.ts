/**
 * VxlanPort: construction and the pure parts in process; the data path against the
 * Linux kernel's own VXLAN device, in namespaces this test makes.
 *
 *   t1 (TAP 10.250.0.1/24) ── agent in A: TapPort <-> VxlanPort ── underlay veth ── B
 *                                         192.168.77.1/24        192.168.77.2 (+ .3)/24
 *                                                                 vx0: kernel vxlan id 42,
 *                                                                 10.250.0.2/24
 *
 * The port needs a raw socket and a UDP socket in the node's namespace, and a Node
 * process cannot change its own namespace, so it runs in a child process started with
 * `ip netns exec A` (as in pcap-port.test.ts): a small agent that imports the real
 * engine and ports, transpiled into a temporary directory, and answers JSON lines on
 * stdin. Nothing in this file opens a socket in the test runner's own namespace.
 * Deleting the four namespaces removes every interface the test made; the TAP goes
 * when its agent exits. VXDEBUG=1 prints the decoded captures and the agent's counters.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent as AgentBase, transpileTree } from "./agent.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FrameSink } from "../../src/core/element.js";
import { Engine } from "../../src/core/engine.js";
import { HEADROOM } from "../../src/core/port.js";
import { SimSocket } from "../fuzz/harness.js";
import { VXLAN_COUNTERS } from "../../src/io/vxlan-counters.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import { VxlanPort, type VxlanPortOptions } from "../../src/io/vxlan-port.js";
import { ipToString, parseIp } from "../../src/wire/ipv4addr.js";
import { parseMac } from "../../src/wire/mac.js";
import { vxlanSourcePort } from "../../src/wire/vxlan.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

// ---------------------------------------------------------------------------------
// In process: nothing here opens a socket.

describe("VxlanPort without a network", () => {
  it("validates its options with clear errors", () => {
    const ok = { vni: 42, localAddr: "192.168.77.1" };
    expect(() => new VxlanPort("v", { ...ok, vni: 0 })).toThrow(/vni 0 is not 1..16777215/);
    expect(() => new VxlanPort("v", { ...ok, vni: 1 << 24 })).toThrow(/24 bits/);
    expect(() => new VxlanPort("v", { ...ok, vni: 1.5 })).toThrow(/vni/);
    expect(() => new VxlanPort("v", { ...ok, dstPort: 0 })).toThrow(/dstPort/);
    expect(() => new VxlanPort("v", { ...ok, localAddr: "192.168.77" })).toThrow(/localAddr: invalid IPv4/);
    expect(() => new VxlanPort("v", { ...ok, remotes: ["10.0.0.300"] })).toThrow(/remotes: invalid IPv4/);
    expect(() => new VxlanPort("v", { ...ok, fdb: [{ mac: "02:00:00:00:00", remote: "10.0.0.1" }] })).toThrow(/fdb mac: invalid MAC/);
    expect(() => new VxlanPort("v", { ...ok, fdb: [{ mac: "01:00:5e:00:00:01", remote: "10.0.0.1" }] })).toThrow(/group address/);
    expect(() => new VxlanPort("v", { ...ok, arpSuppress: [{ ip: "10.0.0.1", mac: "ff:ff:ff:ff:ff:ff" }] })).toThrow(/not a unicast MAC/);
    expect(() => new VxlanPort("v", { ...ok, underlayMtu: 100 })).toThrow(/underlayMtu/);
    expect(() => new VxlanPort("v", { ...ok, ageingTime: 0 })).toThrow(/ageingTime/);
    expect(() => new VxlanPort("v", { ...ok, slotSize: HEADROOM + 14 })).toThrow(/slotSize/);
  });

  it("reports its tunnel, MTU, static FDB and counters", () => {
    const p = new VxlanPort("flannel.1", {
      vni: 1,
      dstPort: 8472,
      localAddr: "192.168.77.1",
      remotes: ["192.168.77.2", "192.168.77.2"],
      // An all-zeros entry is a flood remote, as `bridge fdb append 00:00:00:00:00:00`.
      fdb: [
        { mac: "02:00:00:00:00:02", remote: "192.168.77.2" },
        { mac: "00:00:00:00:00:00", remote: "192.168.77.3" },
      ],
      underlayMtu: 9000,
      learning: false,
    });
    expect(p.kind).toBe("vxlan");
    expect(p.info()).toEqual({ mac: 0, mtu: 8950, ifname: "flannel.1" });
    expect(p.tunnelInfo()).toEqual({
      kind: "vxlan",
      vni: 1,
      local: "192.168.77.1",
      dstPort: 8472,
      remotes: ["192.168.77.2", "192.168.77.3"],
      sourcePorts: [], // no send sockets until open()
      mtu: 8950,
      learning: false,
      txPath: "closed",
    });
    expect(p.fdb.entries(1e9)).toEqual([{ mac: "02:00:00:00:00:02", remote: "192.168.77.2", static: true, age: null }]);
    expect(Object.keys(p.tunnelCounters())).toEqual([...VXLAN_COUNTERS.names]);
    expect(Object.values(p.tunnelCounters()).every((v) => v === 0)).toBe(true);
    expect(new VxlanPort("v", { vni: 42, localAddr: "10.0.0.1" }).info().mtu).toBe(1450);
    // Landing slots for recvmmsg (64 of 64 KiB + 128), output slots, 32 reply slots of
    // HEADROOM + 64 bytes, the segmentation staging area (512 KiB).
    expect(p.rxRegionBytes()).toBe(64 * (65536 + 128) + p.batchSize * p.slotSize + 32 * (HEADROOM + 64) + 512 * 1024);
  });

  it("refuses to send while closed: lengths 0, counted, nothing thrown", () => {
    const p = new VxlanPort("v", { vni: 42, localAddr: "10.0.0.1", remotes: ["10.0.0.2"] });
    p.txq.push(0, 60);
    p.txq.push(100, 60);
    p.flush(Buffer.alloc(4096));
    expect(p.counters()).toMatchObject({ txFrames: 0, txDrops: 2 });
    expect(p.tunnelCounters().txErrors).toBe(2);
    expect(p.lastTxError).toBe("port is closed");
    expect(p.isOpen).toBe(false);
    p.close();
    p.close();
    return expect(p.ready()).rejects.toThrow(/not listening/);
  });

  it("delivers a UDP GRO message of more datagrams than it has output slots, one by one, none lost", () => {
    // No socket: a simulated kernel (test/fuzz/harness.ts) lands the message as recvmmsg would.
    const socks: SimSocket[] = [];
    const vx = new VxlanPort("v", {
      vni: 42,
      localAddr: "10.0.0.1",
      openSocket: (o) => {
        const s = new SimSocket(o, null);
        socks.push(s);
        return s;
      },
    });
    const engine = new Engine();
    engine.offload = true; // with offloads the port has 64 output slots
    engine.addPort(vx);
    let delivered = 0;
    const sink: FrameSink = { process: (_p, f) => void (delivered += f.count) };
    for (const port of engine.ports) engine.connect(port, sink);
    engine.start();
    try {
      const inner = Buffer.alloc(60, 0x33);
      inner.writeUIntBE(0x020000000001, 0, 6);
      inner.writeUIntBE(0x020000000002, 6, 6);
      inner.writeUInt16BE(0x88b5, 12);
      const dgram = Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 42, 0]), inner]);
      const rx = socks.find((s) => s.udp?.onBatch !== undefined) as SimSocket;
      rx.land([{ data: Buffer.concat(Array.from({ length: 65 }, () => dgram)), from: 0x0a000002, segs: dgram.length }]);
      expect(vx.tunnelCounters().decapsulated).toBe(65);
      expect(vx.rxDrops).toBe(0);
      expect(vx.rxFrames).toBe(65);
      expect(delivered).toBe(65);
    } finally {
      engine.stop();
    }
  });

  it("hashes the inner flow into 49152..65535, stable per flow", () => {
    const f = Buffer.from(echoRequest(MAC_T1, MAC_VX0, "10.250.0.1", "10.250.0.2", 0x1111, 1), "hex");
    const port = vxlanSourcePort(f, 0, f.length);
    expect(port).toBeGreaterThanOrEqual(49152);
    expect(port).toBeLessThanOrEqual(65535);
    // Another sequence number (and payload checksum) is the same flow.
    const g = Buffer.from(echoRequest(MAC_T1, MAC_VX0, "10.250.0.1", "10.250.0.2", 0x1111, 2), "hex");
    expect(vxlanSourcePort(g, 0, g.length)).toBe(port);
    // Over many identifiers the ports spread out.
    const ports = new Set<number>();
    for (let id = 0; id < 200; id++) {
      const h = Buffer.from(echoRequest(MAC_T1, MAC_VX0, "10.250.0.1", "10.250.0.2", id, 1), "hex");
      const p = vxlanSourcePort(h, 0, h.length);
      expect(p >= 49152 && p <= 65535).toBe(true);
      ports.add(p);
    }
    expect(ports.size).toBeGreaterThan(190);
    // A frame with no IPv4 (ARP), and truncated ones, still hash without reading past the end.
    const a = Buffer.from(arpRequest(MAC_T1, "10.250.0.1", "10.250.0.2"), "hex");
    expect(vxlanSourcePort(a, 0, a.length)).toBeGreaterThanOrEqual(49152);
    expect(vxlanSourcePort(f, 0, 14)).toBeGreaterThanOrEqual(49152);
    expect(vxlanSourcePort(f, 0, 36)).toBeGreaterThanOrEqual(49152);
  });
});

// ---------------------------------------------------------------------------------
// The FDB changed at run time, as flanneld changes a kernel vxlan device's.

/** A simulated kernel socket that also records where each sent message went. */
class RecordingSocket extends SimSocket {
  readonly to: number[] = [];
  override send(pool: Buffer, o: Uint32Array, l: Uint32Array, a: Uint32Array, port: number, s: Uint32Array | null, count: number): number {
    for (let i = 0; i < count; i++) this.to.push(a[i]);
    return super.send(pool, o, l, a, port, s, count);
  }
}

describe("VxlanPort: remotes, FDB entries and ARP suppression change at run time", () => {
  const A = "02:aa:00:00:00:01"; // behind the memory port
  const B = "02:bb:00:00:00:02"; // behind the tunnel
  const C = "02:cc:00:00:00:03";
  const D = "02:dd:00:00:00:04";

  /** A VXLAN port and a memory port, every frame crossed over; sockets simulated. */
  function rig(extra: Partial<VxlanPortOptions> = {}) {
    const socks: RecordingSocket[] = [];
    const vx = new VxlanPort("vx", {
      vni: 42,
      localAddr: "10.0.0.1",
      ...extra,
      openSocket: (o) => {
        const s = new RecordingSocket(o, null);
        socks.push(s);
        return s;
      },
    });
    const m = new MemoryPort("m");
    const engine = new Engine();
    engine.addPort(m);
    engine.addPort(vx);
    const cross: FrameSink = {
      process(port, f) {
        const o = port === m ? vx : m;
        for (let i = 0; i < f.count; i++) o.txq.push(f.offsets[i], f.lengths[i]);
      },
    };
    engine.connect(m, cross);
    engine.connect(vx, cross);
    engine.start();
    const frame = (dst: string, src = A): Buffer => {
      const b = Buffer.alloc(60, 0x5a);
      b.writeUIntBE(parseMac(dst), 0, 6);
      b.writeUIntBE(parseMac(src), 6, 6);
      b.writeUInt16BE(0x88b5, 12);
      return b;
    };
    /** Sends one frame from the memory port into the tunnel; returns where its messages went. */
    const send = (f: Buffer): string[] => {
      m.inject([f]);
      return socks
        .flatMap((s) => s.to.splice(0))
        .map(ipToString)
        .sort();
    };
    /** A datagram from `from` whose inner frame has source MAC `src` (learned). */
    const receive = (src: string, from: string): void => {
      const rx = socks.find((s) => s.udp?.onBatch !== undefined) as RecordingSocket;
      const dgram = Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 42, 0]), frame(A, src)]);
      rx.land([{ data: dgram, from: parseIp(from), segs: 0 }]);
    };
    return { vx, m, engine, frame, send, receive };
  }

  it("adds and removes flood remotes and static entries (bridge fdb append/replace/del)", () => {
    const { vx, engine, frame, send } = rig({ learning: false });
    try {
      expect(send(frame(B))).toEqual([]);
      expect(vx.tunnelCounters().unknownDst).toBe(1);
      // `bridge fdb append 00:00:00:00:00:00 dst 10.0.0.2`, then a second flood remote.
      expect(vx.fdb.add("00:00:00:00:00:00", "10.0.0.2")).toBe(true);
      expect(vx.fdb.add("00:00:00:00:00:00", "10.0.0.2")).toBe(false);
      expect(send(frame(B))).toEqual(["10.0.0.2"]);
      expect(vx.fdb.addRemote("10.0.0.3")).toBe(true);
      expect(send(frame(B))).toEqual(["10.0.0.2", "10.0.0.3"]);
      expect(vx.tunnelInfo().remotes).toEqual(["10.0.0.2", "10.0.0.3"]);
      expect(vx.tunnelCounters().flooded).toBe(2);
      // `bridge fdb replace B dst 10.0.0.4`: unicast to B goes there only.
      expect(vx.fdb.add(B, "10.0.0.4")).toBe(true);
      expect(send(frame(B))).toEqual(["10.0.0.4"]);
      expect(send(frame(C))).toEqual(["10.0.0.2", "10.0.0.3"]);
      expect(vx.fdb.entries(performance.now())).toEqual([{ mac: B, remote: "10.0.0.4", static: true, age: null }]);
      // `bridge fdb del B dst 10.0.0.9` does not match; `bridge fdb del B` does.
      expect(vx.fdb.remove(B, "10.0.0.9")).toBe(false);
      expect(vx.fdb.remove(B)).toBe(true);
      expect(vx.fdb.remove(B)).toBe(false);
      expect(send(frame(B))).toEqual(["10.0.0.2", "10.0.0.3"]);
      // The flood remotes go one by one.
      expect(vx.fdb.remove("00:00:00:00:00:00", "10.0.0.2")).toBe(true);
      expect(send(frame(B))).toEqual(["10.0.0.3"]);
      expect(vx.fdb.removeRemote("10.0.0.3")).toBe(true);
      expect(vx.fdb.removeRemote("10.0.0.3")).toBe(false);
      expect(send(frame(B))).toEqual([]);
      expect(vx.tunnelCounters().unknownDst).toBe(2);
      expect(vx.tunnelInfo().remotes).toEqual([]);
      // Bad input says what and where, and changes nothing.
      expect(() => vx.fdb.add("01:00:5e:00:00:01", "10.0.0.2")).toThrow(/vxlan port 'vx': fdb entry 01:00:5e:00:00:01 is a group address/);
      expect(() => vx.fdb.add(B, "10.0.0")).toThrow(/vxlan port 'vx': fdb entry 02:bb:00:00:00:02: invalid IPv4/);
      expect(() => vx.fdb.removeRemote("nonsense")).toThrow(/vxlan port 'vx': remotes: invalid IPv4/);
      expect(vx.fdb.entries(performance.now())).toEqual([]);
    } finally {
      engine.stop();
    }
  });

  it("a static entry replaces a learned one and frees its place in the learned table", () => {
    const { vx, engine, frame, send, receive } = rig({ maxEntries: 1, remotes: ["10.0.0.2"] });
    try {
      receive(C, "10.0.0.7");
      expect(vx.fdb.entries(performance.now())).toMatchObject([{ mac: C, remote: "10.0.0.7", static: false }]);
      receive(D, "10.0.0.8"); // the table holds one learned MAC
      expect(vx.tunnelCounters()).toMatchObject({ learned: 1, learnLimit: 1 });
      expect(vx.fdb.add(C, "10.0.0.9")).toBe(true);
      receive(C, "10.0.0.7"); // static: not moved by learning
      expect(send(frame(C))).toEqual(["10.0.0.9"]);
      receive(D, "10.0.0.8"); // C's place is free now
      expect(vx.tunnelCounters()).toMatchObject({ learned: 2, learnLimit: 1 });
      expect(send(frame(D))).toEqual(["10.0.0.8"]);
      // Removing a learned entry frees its place too, and unicast to it floods again.
      expect(vx.fdb.remove(D)).toBe(true);
      expect(send(frame(D))).toEqual(["10.0.0.2"]);
      receive(B, "10.0.0.6");
      expect(vx.tunnelCounters()).toMatchObject({ learned: 3, learnLimit: 1 });
      expect(
        vx.fdb
          .entries(performance.now())
          .map((e) => `${e.mac} ${e.remote} ${e.static}`)
          .sort(),
      ).toEqual([`${B} 10.0.0.6 false`, `${C} 10.0.0.9 true`]);
    } finally {
      engine.stop();
    }
  });

  it("answers ARP for an address while it is suppressed, and lets the request through after", async () => {
    const { vx, m, engine, send } = rig({ remotes: ["10.0.0.2"] });
    try {
      const req = Buffer.from(arpRequest(A, "10.250.0.1", "10.250.0.9"), "hex");
      vx.fdb.addArpSuppress("10.250.0.9", D);
      expect(send(req)).toEqual([]); // answered in the port: nothing crosses the tunnel
      expect(vx.tunnelCounters().arpSuppressed).toBe(1);
      await new Promise<void>((res) => setImmediate(res)); // the reply comes on the next turn
      expect(m.sent).toHaveLength(1);
      const reply = m.sent[0];
      expect(reply.readUIntBE(0, 6)).toBe(parseMac(A));
      expect(reply.readUInt16BE(14 + 6)).toBe(2); // ARP reply
      expect(reply.readUIntBE(14 + 8, 6)).toBe(parseMac(D)); // sender: the suppressed address's MAC
      expect(reply.readUInt32BE(14 + 14)).toBe(parseIp("10.250.0.9"));
      expect(vx.fdb.removeArpSuppress("10.250.0.9")).toBe(true);
      expect(vx.fdb.removeArpSuppress("10.250.0.9")).toBe(false);
      expect(send(req)).toEqual(["10.0.0.2"]);
      expect(vx.tunnelCounters().arpSuppressed).toBe(1);
      expect(() => vx.fdb.addArpSuppress("10.250.0.9", "ff:ff:ff:ff:ff:ff")).toThrow(
        /vxlan port 'vx': arpSuppress 10.250.0.9: ff:ff:ff:ff:ff:ff is not a unicast MAC/,
      );
    } finally {
      engine.stop();
    }
  });
});

// ---------------------------------------------------------------------------------
// Against the kernel's VXLAN device.

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
function haveCmd(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}
const canLab =
  isRoot && ["ip", "ping", "tcpdump", "tshark", "python3", "ethtool", "ss"].every(haveCmd) && spawnSync("sh", ["-c", "test -c /dev/net/tun"]).status === 0;

const PID = process.pid;
const NSA = `tnvx-a-${PID}`; // the node: the agent runs here
const NSB = `tnvx-b-${PID}`; // the kernel VTEP
const NST = `tnvx-t-${PID}`; // the host behind the TAP
const IFA = `tnvxa${PID}`; // ≤ 15 characters for any pid
const IFB = `tnvxb${PID}`;
const TAP = `tnvxt${PID}`;
const UL_A = "192.168.77.1";
const UL_B = "192.168.77.2";
const UL_B2 = "192.168.77.3"; // a second address of B: a second flood remote
const MAC_IFA = "02:77:00:00:00:01";
const MAC_IFB = "02:77:00:00:00:02";
const MAC_T1 = "02:25:00:00:00:01";
const MAC_VX0 = "02:25:00:00:00:02";
const OV_T1 = "10.250.0.1";
const OV_B = "10.250.0.2";
const VNI = 42;

const macHex = (m: string): string => m.replace(/:/g, "");

/** The agent: an Engine with a TapPort and a VxlanPort, every frame crossed over. */
const AGENT = String.raw`
import { createInterface } from "node:readline";
import { Engine } from "./src/core/engine.js";
import { TapPort } from "./src/io/tap-port.js";
import { VxlanPort } from "./src/io/vxlan-port.js";

const cfg = JSON.parse(process.argv[2]);
const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");
process.on("uncaughtException", (e) => { process.stderr.write("agent: " + (e && e.stack || e) + "\n"); process.exit(3); });

const engine = new Engine();
// offload: the TAP with virtio-net headers, every frame in the pool with one in front.
engine.offload = cfg.offload === true;
const tap = new TapPort("tap", cfg.tap, { offload: cfg.offload === true });
const vx = new VxlanPort("vx", cfg.vxlan);
engine.addPort(tap);
engine.addPort(vx);
const cross = {
  process(port, b) {
    const o = port === tap ? vx : tap;
    for (let i = 0; i < b.count; i++) o.txq.push(b.offsets[i], b.lengths[i]);
  },
};
engine.connect(tap, cross);
engine.connect(vx, cross);

function state() {
  return {
    vx: { ...vx.counters(), ...vx.tunnelCounters(), listening: vx.listening, isOpen: vx.isOpen,
          lastError: vx.lastError, lastTxError: vx.lastTxError, recvBufferGranted: vx.recvBufferGranted },
    fdb: vx.fdb.entries(performance.now()),
    tunnel: vx.tunnelInfo(),
    info: vx.info(),
    tap: tap.counters(),
    passes: engine.passes, internalErrors: engine.internalErrors, lastError: engine.lastError,
  };
}

try {
  engine.start();
  await vx.ready();
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
      case "close":
        vx.close();
        vx.close();
        return reply(state());
      case "exit":
        engine.stop();
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

interface VxState {
  rxFrames: number;
  rxBytes: number;
  rxDrops: number;
  txFrames: number;
  txBytes: number;
  txDrops: number;
  encapsulated: number;
  decapsulated: number;
  flooded: number;
  learned: number;
  aged: number;
  learnLimit: number;
  badHeader: number;
  vniMismatch: number;
  runt: number;
  rxTooBig: number;
  tooBig: number;
  segmented: number;
  coalesced: number;
  badOffload: number;
  arpSuppressed: number;
  txErrors: number;
  unknownDst: number;
  listening: boolean;
  isOpen: boolean;
  lastError: string;
  lastTxError: string;
  recvBufferGranted: number;
}

interface AgentState {
  vx: VxState;
  fdb: Array<{ mac: string; remote: string; static: boolean; age: number | null }>;
  tunnel: Record<string, unknown>;
  info: { mac: number; mtu: number; ifname: string };
  tap: { rxFrames: number; txFrames: number; txDrops: number };
  passes: number;
  internalErrors: number;
  lastError: string;
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

function sh(cmd: string, args: string[], timeout = 10_000): string {
  return execFileSync(cmd, args, { encoding: "utf8", timeout, stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command in a namespace; returns exit status and output. Bounded in time. */
function inNs(ns: string, args: string[], timeout = 10_000): { status: number | null; out: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", timeout });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** A ping that is expected to succeed: every request answered. */
function pingOk(ns: string, dst: string, extra: string[] = [], count = 3): string {
  const r = inNs(ns, ["ping", "-n", "-c", String(count), "-i", "0.2", "-w", "6", ...extra, dst], 10_000);
  expect(r.out, r.out).toMatch(new RegExp(`${count} packets transmitted, ${count} received`));
  expect(r.status).toBe(0);
  return r.out;
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

const children = new Set<ChildProcess>();

/** A tcpdump on B's end of the underlay, written to a file. */
class Capture {
  private readonly child: ChildProcess;
  private err = "";
  private readonly exited: Promise<unknown>;

  constructor(readonly file: string) {
    this.child = spawn("ip", ["netns", "exec", NSB, "tcpdump", "-i", IFB, "-n", "-U", "--immediate-mode", "-w", file], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.add(this.child);
    this.child.stderr!.on("data", (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((r) => this.child.on("exit", r));
    void this.exited.then(() => children.delete(this.child));
  }

  async started(): Promise<void> {
    await until("tcpdump to listen", async () => this.err.includes("listening on"), 5_000);
  }

  async stop(): Promise<void> {
    // tcpdump gets each packet at once (--immediate-mode: no TPACKET_V3 block timeout, which
    // would keep the last second of packets from a tcpdump stopped by a signal) and
    // writes it at once (-U); give the last ones a moment to arrive.
    await new Promise((r) => setTimeout(r, 200));
    this.child.kill("SIGTERM");
    const t = await Promise.race([this.exited, new Promise((r) => setTimeout(() => r("timeout"), 3_000))]);
    if (t === "timeout") this.child.kill("SIGKILL");
  }
}

interface Pkt {
  outerSrc: string;
  outerDst: string;
  srcPort: number;
  dstPort: number;
  vni: string;
  ipCsumStatus: string;
  udpCsumStatus: string;
  udpCsum: string;
  innerSrc: string;
  innerDst: string;
  icmpType: string;
  icmpIdent: string;
  arpOp: string;
  innerEthSrc: string;
  innerEthDst: string;
}

/** The capture as tshark decodes it: one record per VXLAN packet (and one per other packet, vni ''). */
function decode(file: string, dstPort: number): { pkts: Pkt[]; arp: number } {
  const fields = [
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "ip.checksum.status",
    "udp.checksum.status",
    "udp.checksum",
    "icmp.type",
    "icmp.ident",
    "arp.opcode",
    "eth.src",
    "eth.dst",
  ];
  const args = [
    "-r",
    file,
    "-n",
    "-d",
    `udp.port==${dstPort},vxlan`,
    "-o",
    "udp.check_checksum:TRUE",
    "-o",
    "ip.check_checksum:TRUE",
    "-T",
    "fields",
    "-E",
    "separator=/t",
    "-E",
    "occurrence=a",
    "-E",
    "aggregator=,",
  ];
  for (const f of fields) args.push("-e", f);
  const text = sh("tshark", args, 20_000);
  if (process.env.VXDEBUG) console.log(text);
  const pkts: Pkt[] = [];
  let arp = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const c = line.split("\t");
    const [ipSrc, ipDst, sp, dp, vni, ipSt, udpSt, udpCsum, icmpType, icmpIdent, arpOp, ethSrc, ethDst] = c;
    if (arpOp !== "") arp++;
    if (vni === "") continue;
    const two = (s: string): [string, string] => {
      const [a, b] = s.split(",");
      return [a ?? "", b ?? ""];
    };
    pkts.push({
      outerSrc: two(ipSrc)[0],
      outerDst: two(ipDst)[0],
      innerSrc: two(ipSrc)[1],
      innerDst: two(ipDst)[1],
      srcPort: Number(sp),
      dstPort: Number(dp),
      vni,
      ipCsumStatus: ipSt,
      udpCsumStatus: udpSt,
      udpCsum,
      icmpType,
      icmpIdent,
      arpOp,
      innerEthSrc: two(ethSrc)[1],
      innerEthDst: two(ethDst)[1],
    });
  }
  return { pkts, arp };
}

function deleteNamespaces(): void {
  for (const ns of [NSA, NSB, NST]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
}

/** The kernel's VXLAN device on B, (re)made for a destination port. */
function kernelVxlan(dstPort: number): void {
  spawnSync("ip", ["-n", NSB, "link", "del", "vx0"], { stdio: "ignore", timeout: 10_000 });
  sh("ip", [
    "-n",
    NSB,
    "link",
    "add",
    "vx0",
    "address",
    MAC_VX0,
    "type",
    "vxlan",
    "id",
    String(VNI),
    "dstport",
    String(dstPort),
    "local",
    UL_B,
    "remote",
    UL_A,
    "dev",
    IFB,
  ]);
  sh("ip", ["netns", "exec", NSB, "sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1"]);
  sh("ip", ["-n", NSB, "addr", "add", `${OV_B}/24`, "dev", "vx0"]);
  sh("ip", ["-n", NSB, "link", "set", "vx0", "up"]);
}

describe.skipIf(!canLab)("VxlanPort against the kernel's VXLAN device (namespaces made by this test)", () => {
  let work = "";
  let agent: Agent | null = null;

  /** Starts an agent in A with these VxlanPort options and puts its TAP into t1. */
  async function startAgent(vxlan: Record<string, unknown>, offload = false): Promise<Agent> {
    if (agent !== null) await agent.stop();
    agent = null;
    await until("the previous TAP to go", async () => spawnSync("ip", ["-n", NST, "link", "show", TAP]).status !== 0);
    const cfg = { tap: TAP, offload, vxlan: { vni: VNI, localAddr: UL_A, ...vxlan } };
    const child = spawn("ip", ["netns", "exec", NSA, process.execPath, join(work, "agent.js"), JSON.stringify(cfg)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const a = new Agent(child);
    agent = a;
    const r = await a.ready();
    if (r.ready !== true) throw new Error(`agent did not start: ${String(r.error)}\n${a.stderr}`);
    sh("ip", ["-n", NSA, "link", "set", "dev", TAP, "netns", NST]);
    sh("ip", ["netns", "exec", NST, "sysctl", "-qw", `net.ipv6.conf.${TAP}.disable_ipv6=1`]);
    sh("ip", ["-n", NST, "link", "set", "dev", TAP, "address", MAC_T1]);
    sh("ip", ["-n", NST, "addr", "add", `${OV_T1}/24`, "dev", TAP]);
    sh("ip", ["-n", NST, "link", "set", "dev", TAP, "up"]);
    return a;
  }

  beforeAll(() => {
    deleteNamespaces(); // leftovers of an earlier run with the same pid
    work = mkdtempSync(join(tmpdir(), "tapnet-vxlan-port-"));
    // node_modules for the agent's imports, and the addon at ../../native from src/io.
    symlinkSync(join(REPO, "node_modules"), join(work, "node_modules"), "dir");
    symlinkSync(join(REPO, "native"), join(work, "native"), "dir");
    writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
    transpileTree(REPO, ["src/core/engine.ts", "src/io/tap-port.ts", "src/io/vxlan-port.ts"], work);
    writeFileSync(join(work, "agent.js"), AGENT);

    for (const ns of [NSA, NSB, NST]) {
      sh("ip", ["netns", "add", ns]);
      // No IPv6 anywhere: no DAD, MLD or router solicitations crossing the tunnel.
      sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
      sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
      sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
    }
    sh("ip", ["-n", NSA, "link", "add", IFA, "address", MAC_IFA, "type", "veth", "peer", "name", IFB, "address", MAC_IFB, "netns", NSB]);
    sh("ip", ["-n", NSA, "addr", "add", `${UL_A}/24`, "dev", IFA]);
    sh("ip", ["-n", NSB, "addr", "add", `${UL_B}/24`, "dev", IFB]);
    sh("ip", ["-n", NSB, "addr", "add", `${UL_B2}/24`, "dev", IFB]);
    sh("ip", ["-n", NSA, "link", "set", IFA, "up"]);
    sh("ip", ["-n", NSB, "link", "set", IFB, "up"]);
    // The capture is taken on B's end. With the veths' checksum offload on, what the
    // kernels send is captured before its UDP checksum is filled in (CHECKSUM_PARTIAL:
    // the field holds only the pseudo-header sum) and tshark calls it bad. With it off
    // each kernel completes the checksum before the packet leaves its veth, so every
    // checksum in the capture can be checked (A's port sends through a UDP socket: its
    // kernel makes the outer headers).
    sh("ip", ["netns", "exec", NSB, "ethtool", "-K", IFB, "tx", "off"]);
    sh("ip", ["netns", "exec", NSA, "ethtool", "-K", IFA, "tx", "off"]);
    // Underlay neighbours pinned: the only ARP on the underlay is what the tunnel carries.
    sh("ip", ["-n", NSA, "neigh", "replace", UL_B, "lladdr", MAC_IFB, "dev", IFA, "nud", "permanent"]);
    sh("ip", ["-n", NSA, "neigh", "replace", UL_B2, "lladdr", MAC_IFB, "dev", IFA, "nud", "permanent"]);
    sh("ip", ["-n", NSB, "neigh", "replace", UL_A, "lladdr", MAC_IFA, "dev", IFB, "nud", "permanent"]);
  }, 30_000);

  afterAll(async () => {
    try {
      if (agent !== null && agent.exitCode === undefined && agent.child.pid !== undefined) {
        process.kill(agent.child.pid, "SIGKILL");
        await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 2_000))]);
      }
      for (const c of children) c.kill("SIGKILL");
    } finally {
      deleteNamespaces();
      if (work !== "") rmSync(work, { recursive: true, force: true });
    }
    const left = sh("ip", ["netns", "list"]);
    for (const ns of [NSA, NSB, NST]) expect(left).not.toContain(ns);
  }, 20_000);

  it("dstPort 4789, flooding to two remotes, learning: ping both ways, checksums, source ports", async () => {
    kernelVxlan(4789);
    const cap = new Capture(join(work, "4789.pcap"));
    await cap.started();
    const a = await startAgent({ remotes: [UL_B, UL_B2] });
    let s = await a.state();
    expect(s.vx.listening).toBe(true);
    expect(s.info).toEqual({ mac: 0, mtu: 1450, ifname: "vx" });
    expect(s.tunnel).toEqual({
      kind: "vxlan",
      vni: VNI,
      local: UL_A,
      dstPort: 4789,
      remotes: [UL_B, UL_B2],
      mtu: 1450,
      learning: true,
      sourcePorts: expect.any(Array),
      // Super-frames leave as gather lists (header, payload, …) over real sockets.
      txPath: "scatter-gather",
    });
    // Four send sockets, each bound to its own port in 49152..65535.
    const sourcePorts = (s.tunnel as { sourcePorts: number[] }).sourcePorts;
    expect(new Set(sourcePorts).size).toBe(4);
    for (const p of sourcePorts) expect(p >= 49152 && p <= 65535).toBe(true);
    // SO_RCVBUF: Linux reports twice what it granted; 4 MiB asked, capped by net.core.rmem_max.
    expect(s.vx.recvBufferGranted).toBeGreaterThan(200_000);
    expect(inNs(NSA, ["ss", "-Hnlu", "sport = :4789"]).out).toContain(`${UL_A}:4789`);

    pingOk(NST, OV_B, ["-e", "4369"]); // identifier 0x1111
    pingOk(NST, OV_B, ["-e", "8738"]); // identifier 0x2222
    pingOk(NSB, OV_T1);
    // The largest frame that fits: 1422 + 8 + 20 = 1450 bytes of payload, a 1500-byte outer packet.
    pingOk(NST, OV_B, ["-s", "1422", "-M", "do", "-e", "13107"], 1);
    await cap.stop();

    s = await a.state();
    const { pkts } = decode(cap.file, 4789);
    const fromA = pkts.filter((p) => p.outerSrc === UL_A);
    const fromB = pkts.filter((p) => p.outerSrc === UL_B);
    expect(fromA.length + fromB.length).toBe(pkts.length);
    // Every packet the port sent and received is in the capture, and nothing else.
    expect(fromA.length).toBe(s.vx.encapsulated);
    expect(fromB.length).toBe(s.vx.decapsulated);
    for (const p of pkts) {
      expect(p.vni).toBe(String(VNI));
      expect(p.dstPort).toBe(4789);
      expect(p.ipCsumStatus.split(",")[0]).toBe("1"); // outer IPv4 header checksum good
    }
    // Both ends put a UDP checksum on, and both are right.
    for (const p of pkts) expect(p.udpCsumStatus).toBe("1");
    for (const p of fromA) expect(sourcePorts).toContain(p.srcPort);
    // The inner ICMP: the echo requests from t1 and the replies to B's pings.
    const requests = fromA.filter((p) => p.icmpType === "8");
    expect(requests.map((p) => p.icmpIdent)).toEqual(["4369", "4369", "4369", "8738", "8738", "8738", "13107"]);
    expect(fromA.filter((p) => p.icmpType === "0")).toHaveLength(3);
    expect(fromB.filter((p) => p.icmpType === "0")).toHaveLength(7);

    // One source port per inner flow (the send socket its hash picks).
    const flows = new Map<string, Set<number>>();
    for (const p of fromA) {
      const key = p.arpOp !== "" ? `arp ${p.arpOp} ${p.innerEthSrc}>${p.innerEthDst}` : `icmp ${p.icmpType} ${p.icmpIdent}`;
      if (!flows.has(key)) flows.set(key, new Set());
      flows.get(key)!.add(p.srcPort);
    }
    const portOf: Record<string, number> = {};
    for (const [k, ports] of flows) {
      expect([k, ports.size]).toEqual([k, 1]);
      portOf[k] = [...ports][0];
    }
    const arpKey = `arp 1 ${MAC_T1}>ff:ff:ff:ff:ff:ff`;
    expect(portOf[arpKey]).toBeDefined();

    // Head-end replication: t1's broadcast ARP went to both remotes, in one copy each.
    const bcast = fromA.filter((p) => p.innerEthDst === "ff:ff:ff:ff:ff:ff");
    expect(bcast.length).toBeGreaterThanOrEqual(2);
    expect(bcast.filter((p) => p.outerDst === UL_B).length).toBe(bcast.filter((p) => p.outerDst === UL_B2).length);
    expect(s.vx.flooded).toBe(bcast.length / 2);
    // Everything else was unicast to the kernel's VTEP, found in the learned FDB.
    expect(fromA.filter((p) => p.outerDst === UL_B2)).toEqual(bcast.filter((p) => p.outerDst === UL_B2));

    // Learning: the kernel device's MAC, learned against B's underlay address.
    const e = s.fdb.find((x) => x.mac === MAC_VX0);
    expect(e).toMatchObject({ remote: UL_B, static: false });
    expect(e!.age).toBeGreaterThanOrEqual(0);
    expect(e!.age).toBeLessThan(30);
    expect(s.vx.learned).toBe(1);
    expect(s.vx).toMatchObject({ txErrors: 0, unknownDst: 0, tooBig: 0, badHeader: 0, rxDrops: 0, txDrops: 0 });
    expect(s.vx.txFrames).toBe(s.tap.rxFrames);
    expect(s.vx.rxFrames).toBe(s.vx.decapsulated);
    expect(s.internalErrors).toBe(0);
  }, 60_000);

  it("drops and counts what is not VXLAN for this VNI, and keeps working", async () => {
    const a = agent!;
    const before = (await a.state()).vx;
    // A local-experimental EtherType (0x88b5) to t1, which t1's kernel ignores.
    const frame = Buffer.alloc(60, 0x5a);
    Buffer.from(macHex(MAC_T1), "hex").copy(frame, 0);
    Buffer.from("026600000001", "hex").copy(frame, 6);
    frame.writeUInt16BE(0x88b5, 12);
    const hdr = (flags: number, vni: number): Buffer => {
      const h = Buffer.alloc(8);
      h[0] = flags;
      h.writeUIntBE(vni, 4, 3);
      return h;
    };
    const datagrams = [
      Buffer.alloc(0), // empty
      hdr(0x08, VNI).subarray(0, 7), // shorter than the header
      Buffer.concat([hdr(0x00, VNI), frame]), // I flag clear
      Buffer.concat([hdr(0x08, VNI + 1), frame]), // another VNI
      Buffer.concat([hdr(0x08, VNI), frame.subarray(0, 13)]), // inner frame shorter than 14
      Buffer.concat([hdr(0x08, VNI), frame, Buffer.alloc(2100)]), // more than a slot holds (fragmented on the underlay)
      // Reserved bits set are ignored (RFC 7348 section 5): delivered.
      Buffer.concat([hdr(0xff, VNI), frame]),
    ];
    const py = [
      "import socket,sys",
      "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)",
      `s.bind(('${UL_B}',0))`,
      `for h in sys.argv[1:]: s.sendto(bytes.fromhex(h),('${UL_A}',4789))`,
    ].join("\n");
    const r = inNs(NSB, ["python3", "-c", py, ...datagrams.map((d) => d.toString("hex"))]);
    expect(r.status, r.out).toBe(0);
    const s = await until("the agent to count 7 datagrams", async () => {
      const t = await a.state();
      const seen =
        t.vx.badHeader +
        t.vx.vniMismatch +
        t.vx.runt +
        t.vx.rxTooBig +
        t.vx.decapsulated -
        (before.badHeader + before.vniMismatch + before.runt + before.rxTooBig + before.decapsulated);
      return seen >= 7 ? t : undefined;
    });
    expect(s.vx.badHeader - before.badHeader).toBe(3);
    expect(s.vx.vniMismatch - before.vniMismatch).toBe(1);
    expect(s.vx.runt - before.runt).toBe(1);
    expect(s.vx.rxTooBig - before.rxTooBig).toBe(1);
    expect(s.vx.rxDrops - before.rxDrops).toBe(6);
    expect(s.vx.decapsulated - before.decapsulated).toBe(1);
    // The delivered one taught the port where 02:66:00:00:00:01 is.
    expect(s.fdb.find((x) => x.mac === "02:66:00:00:00:01")).toMatchObject({ remote: UL_B, static: false });
    expect(s.internalErrors).toBe(0);
    pingOk(NST, OV_B);
    pingOk(NSB, OV_T1);
  }, 30_000);

  it("drops a frame above the overlay MTU and counts it in tooBig", async () => {
    const a = agent!;
    // A permanent neighbour: t1's stack sends no ARP probe for OV_B in the window, so
    // `encapsulated` staying put says the big frame alone was not sent.
    sh("ip", ["-n", NST, "neigh", "replace", OV_B, "lladdr", MAC_VX0, "dev", TAP, "nud", "permanent"]);
    // And B's for t1: otherwise B's kernel may re-check t1 (a unicast ARP probe once its
    // entry goes stale) inside the window, and t1's answer is encapsulated.
    sh("ip", ["-n", NSB, "neigh", "replace", OV_T1, "lladdr", MAC_T1, "dev", "vx0", "nud", "permanent"]);
    const before = (await a.state()).vx;
    sh("ip", ["-n", NST, "link", "set", "dev", TAP, "mtu", "1600"]);
    try {
      // 1520 + 8 + 20 = 1548 bytes of payload > 1450: the frame would make a 1598-byte outer packet.
      const r = inNs(NST, ["ping", "-n", "-c", "1", "-s", "1520", "-M", "do", "-W", "1", OV_B]);
      expect(r.out).toMatch(/1 packets transmitted, 0 received/);
    } finally {
      sh("ip", ["-n", NST, "link", "set", "dev", TAP, "mtu", "1500"]);
    }
    const s = await a.state();
    sh("ip", ["-n", NST, "neigh", "del", OV_B, "dev", TAP]);
    sh("ip", ["-n", NSB, "neigh", "del", OV_T1, "dev", "vx0"]);
    expect(s.vx.tooBig - before.tooBig).toBe(1);
    expect(s.vx.txDrops - before.txDrops).toBe(1);
    expect(s.vx.encapsulated).toBe(before.encapsulated);
    expect(s.vx.txErrors).toBe(0);
    pingOk(NST, OV_B, [], 1);
  }, 20_000);

  it("dstPort 8472, flannel style (static FDB, no flood list, no learning)", async () => {
    kernelVxlan(8472);
    const cap = new Capture(join(work, "8472.pcap"));
    await cap.started();
    const a = await startAgent({
      dstPort: 8472,
      fdb: [{ mac: MAC_VX0, remote: UL_B }],
      learning: false,
    });
    // With nothing to flood to, t1 cannot ARP: flanneld writes the neighbour instead.
    sh("ip", ["-n", NST, "neigh", "replace", OV_B, "lladdr", MAC_VX0, "dev", TAP, "nud", "permanent"]);
    expect(inNs(NSA, ["ss", "-Hnlu", "sport = :8472"]).out).toContain(`${UL_A}:8472`);
    pingOk(NST, OV_B);
    pingOk(NSB, OV_T1);
    // Unknown unicast and broadcast have nowhere to go.
    sh("ip", ["-n", NST, "neigh", "replace", "10.250.0.99", "lladdr", "02:25:00:00:00:99", "dev", TAP, "nud", "permanent"]);
    expect(inNs(NST, ["ping", "-n", "-c", "1", "-W", "1", "10.250.0.99"]).status).not.toBe(0);
    expect(inNs(NST, ["ping", "-n", "-c", "1", "-W", "1", "10.250.0.98"]).status).not.toBe(0); // ARP, broadcast
    await cap.stop();

    const s = await a.state();
    expect(s.vx.unknownDst).toBeGreaterThanOrEqual(2);
    expect(s.vx.flooded).toBe(0);
    expect(s.vx.learned).toBe(0);
    expect(s.fdb).toEqual([{ mac: MAC_VX0, remote: UL_B, static: true, age: null }]);
    const { pkts, arp } = decode(cap.file, 8472);
    const fromA = pkts.filter((p) => p.outerSrc === UL_A);
    expect(fromA.length).toBe(s.vx.encapsulated);
    expect(pkts.filter((p) => p.outerSrc === UL_B).length).toBe(s.vx.decapsulated);
    for (const p of pkts) {
      expect(p.vni).toBe(String(VNI));
      expect(p.dstPort).toBe(8472);
      expect(p.ipCsumStatus.split(",")[0]).toBe("1");
    }
    for (const p of pkts) expect(p.udpCsumStatus).toBe("1");
    expect(fromA.filter((p) => p.icmpType === "8")).toHaveLength(3);
    expect(fromA.filter((p) => p.icmpType === "0")).toHaveLength(3);
    // No broadcast left A: t1 asked nobody over the tunnel. What ARP A sent are t1's
    // answers to the kernel's requests, unicast through the static entry.
    for (const p of fromA.filter((x) => x.arpOp !== "")) {
      expect(p.arpOp).toBe("2");
      expect(p.innerEthDst).toBe(MAC_VX0);
    }
    expect(fromA.filter((p) => p.innerEthDst === "ff:ff:ff:ff:ff:ff")).toHaveLength(0);
    expect(arp).toBe(pkts.filter((p) => p.arpOp !== "").length);
  }, 60_000);

  it("ARP suppression: t1's request is answered in the port, no ARP on the underlay; UDP checksum off", async () => {
    kernelVxlan(4789);
    // The kernel side knows t1 already (as flanneld would write it).
    sh("ip", ["-n", NSB, "neigh", "replace", OV_T1, "lladdr", MAC_T1, "dev", "vx0", "nud", "permanent"]);
    const cap = new Capture(join(work, "suppress.pcap"));
    await cap.started();
    const a = await startAgent({
      remotes: [UL_B],
      arpSuppress: [{ ip: OV_B, mac: MAC_VX0 }],
      udpChecksum: false,
    });
    pingOk(NST, OV_B);
    pingOk(NSB, OV_T1);
    await cap.stop();

    expect(inNs(NST, ["ip", "neigh", "show", OV_B, "dev", TAP]).out).toContain(`lladdr ${MAC_VX0}`);
    let s = await a.state();
    expect(s.vx.arpSuppressed).toBe(1);
    const { pkts, arp } = decode(cap.file, 4789);
    // No ARP at all on the underlay (its own neighbours are pinned, the kernel knows t1).
    expect(arp).toBe(0);
    const fromA = pkts.filter((p) => p.outerSrc === UL_A);
    expect(fromA.length).toBe(s.vx.encapsulated);
    expect(fromA.filter((p) => p.icmpType === "8")).toHaveLength(3);
    expect(fromA.filter((p) => p.icmpType === "0")).toHaveLength(3);
    // Checksum 0: "no checksum" (tshark: not present), which the kernel accepts (RFC 7348
    // section 5, RFC 768).
    for (const p of fromA) {
      expect(p.udpCsum).toBe("0x0000");
      expect(p.udpCsumStatus).toBe("3");
      expect(p.ipCsumStatus.split(",")[0]).toBe("1");
    }
    // The reply reached t1 as a frame received on the port: 42 bytes, besides six
    // 98-byte ICMP frames from the tunnel.
    expect(s.vx.decapsulated).toBe(6);
    expect(s.vx.rxFrames).toBe(7);
    expect(s.vx.rxBytes).toBe(42 + 6 * 98);
    // Only the first echo request was flooded: unknown unicast until the first reply
    // taught the port where the kernel's MAC is.
    expect(s.vx.flooded).toBe(1);
    expect(s.fdb).toEqual([expect.objectContaining({ mac: MAC_VX0, remote: UL_B, static: false })]);

    // An address not in the list still ARPs over the tunnel, flooded as usual.
    expect(inNs(NST, ["ping", "-n", "-c", "1", "-W", "1", "10.250.0.97"]).status).not.toBe(0);
    s = await a.state();
    expect(s.vx.flooded).toBeGreaterThanOrEqual(2);
    expect(s.vx.arpSuppressed).toBe(1);
    expect(s.internalErrors).toBe(0);
  }, 60_000);

  it("learned entries age out (checked on lookup); unicast to an aged MAC floods again", async () => {
    const a = await startAgent({ remotes: [UL_B], ageingTime: 1 });
    pingOk(NST, OV_B, [], 1);
    const before = await a.state();
    expect(before.fdb).toEqual([expect.objectContaining({ mac: MAC_VX0, remote: UL_B, static: false })]);
    expect(before.vx.learned).toBe(1);
    await new Promise((r) => setTimeout(r, 1_300));
    // t1 still knows the kernel's MAC; the port has forgotten where it is.
    pingOk(NST, OV_B, [], 1);
    const s = await a.state();
    expect(s.vx.aged).toBe(1);
    expect(s.vx.flooded).toBe(before.vx.flooded + 1);
    expect(s.vx.learned).toBe(2);
    expect(s.fdb).toEqual([expect.objectContaining({ mac: MAC_VX0, remote: UL_B, static: false })]);
  }, 20_000);

  it("close is idempotent, unbinds the UDP port and refuses to send", async () => {
    const a = agent!;
    const s = (await a.call("close")) as unknown as AgentState;
    expect(s.vx.isOpen).toBe(false);
    expect(s.vx.listening).toBe(false);
    expect(inNs(NSA, ["ss", "-Hnlu", "sport = :4789"]).out.trim()).toBe("");
    // t1's pings now reach a closed port: refused, counted, nothing thrown.
    expect(inNs(NST, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", OV_B]).status).not.toBe(0);
    const t = await a.state();
    expect(t.vx.txErrors - s.vx.txErrors).toBeGreaterThanOrEqual(2);
    expect(t.vx.lastTxError).toBe("port is closed");
    expect(t.vx.encapsulated).toBe(s.vx.encapsulated);
    expect(t.internalErrors).toBe(0);
    await a.stop();
    expect(a.exitCode).toBe(0);
  }, 20_000);

  it("with offloads: t1's TSO super-frames are cut once into UDP GSO trains; TCP both ways", async () => {
    kernelVxlan(4789);
    const a = await startAgent({ remotes: [UL_B] }, true);
    expect(inNs(NST, ["ethtool", "-k", TAP]).out).toMatch(/tcp-segmentation-offload: on/);
    pingOk(NST, OV_B);
    const srv = spawn("ip", ["netns", "exec", NSB, "iperf3", "-s", "-1", "-B", OV_B], { stdio: "ignore" });
    children.add(srv);
    await until("iperf3 to listen", async () => inNs(NSB, ["ss", "-Hntl", "sport = :5201"]).out.includes("5201"));
    const up = inNs(NST, ["iperf3", "-c", OV_B, "-t", "2", "-J"], 20_000);
    expect(up.status, up.out).toBe(0);
    const upBits = (JSON.parse(up.out) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
    expect(upBits).toBeGreaterThan(1_000_000);
    const s = await a.state();
    // t1 sent super-frames (TSO): the port segmented them; what B got verified (TCP
    // went through), and nothing was refused.
    expect(s.vx.segmented).toBeGreaterThan(0);
    expect(s.vx.encapsulated).toBeGreaterThan(s.vx.segmented);
    expect(s.vx.badOffload).toBe(0);
    expect(s.vx.txErrors, s.vx.lastTxError).toBe(0);
    expect(s.vx.tooBig).toBe(0);
    // B -> t1: the kernel's segments arrive; TCP flows the other way too.
    const srv2 = spawn("ip", ["netns", "exec", NSB, "iperf3", "-s", "-1", "-B", OV_B], { stdio: "ignore" });
    children.add(srv2);
    await until("iperf3 to listen again", async () => inNs(NSB, ["ss", "-Hntl", "sport = :5201"]).out.includes("5201"));
    const down = inNs(NST, ["iperf3", "-c", OV_B, "-t", "2", "-R", "-J"], 20_000);
    expect(down.status, down.out).toBe(0);
    expect((JSON.parse(down.out) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes).toBeGreaterThan(1_000_000);
    const s2 = await a.state();
    expect(s2.vx.rxDrops).toBe(0);
    expect(s2.internalErrors).toBe(0);
  }, 40_000);

  it("a localAddr that is not on the node: ready() rejects with the bind error", async () => {
    const cfg = { tap: TAP, vxlan: { vni: VNI, localAddr: "192.168.77.9", remotes: [UL_B] } };
    const child = spawn("ip", ["netns", "exec", NSA, process.execPath, join(work, "agent.js"), JSON.stringify(cfg)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const a = new Agent(child);
    agent = a;
    const r = await a.ready();
    expect(r.ready).toBe(false);
    expect(String(r.error)).toMatch(/vxlan port 'vx': cannot listen on 192\.168\.77\.9:4789: .*not on any interface.*EADDRNOTAVAIL/);
    expect(await Promise.race([a.exited, new Promise((res) => setTimeout(() => res("timeout"), 5_000))])).toBe(2);
  }, 20_000);
});
