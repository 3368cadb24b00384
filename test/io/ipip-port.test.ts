/**
 * IpipPort: unit checks in process, then two tapnet "nodes" joined by IPIP on real
 * packets, in network namespaces this test makes.
 *
 *   h1 (10.244.1.2/24, eth0 = TAP)          h2 (10.244.2.2/24, eth0 = TAP)
 *        |                                        |
 *   N1: agent [tap | tiny router | ipip]     N2: agent [tap | tiny router | ipip]
 *        192.168.78.1/24 ---- underlay veth ---- 192.168.78.2/24
 *
 * Each node's agent (test/io/ipip-agent.ts, transpiled with the source tree into a
 * temporary directory) runs in its node namespace, because a raw socket belongs to
 * the namespace of the process that opens it; its TAP is created there and moved by
 * the test into the pod namespace. The kernel here has no ipip module, so the far end
 * of each tunnel is the other IpipPort. Pods use MTU 1480 (the tunnel MTU, as Calico
 * sets on pod interfaces): the tiny router sends no ICMP frag-needed, so PMTU
 * discovery cannot be relied on. Underlay packets are crafted with python3 raw
 * sockets in N2 and watched with tcpdump/tshark. Deleting the four namespaces (and
 * ending the agents, whose TAPs vanish with them) removes everything the test made.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent as AgentBase, transpileTree } from "./agent.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../src/core/engine.js";
import { DEFAULT_SLOT, HEADROOM } from "../../src/core/port.js";
import { IpipPort, type IpipUnderlayStats, ipipMacRemote, ipipNeighbourMac } from "../../src/io/ipip-port.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import { SimSocket } from "../fuzz/harness.js";
import { captureFields, inNs, iperf, ping, sleep, snmp, waitFor, waitSnmp } from "../integration/harness.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function ip4(s: string): number {
  return s.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}

function checksum(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

interface IpOpts {
  src: string;
  dst: string;
  proto: number;
  payload: Buffer;
  tos?: number;
  ttl?: number;
  df?: boolean;
  /** The whole flags + fragment offset word (overrides df). */
  frag?: number;
  ident?: number;
  options?: Buffer;
}

/** An IPv4 packet (RFC 791) with a correct header checksum. */
function ipPacket(o: IpOpts): Buffer {
  const opt = o.options ?? Buffer.alloc(0);
  const hlen = 20 + opt.length;
  const b = Buffer.alloc(hlen + o.payload.length);
  b[0] = 0x40 | (hlen >> 2);
  b[1] = o.tos ?? 0;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(o.ident ?? 0x1234, 4);
  b.writeUInt16BE(o.frag ?? (o.df === false ? 0 : 0x4000), 6);
  b[8] = o.ttl ?? 64;
  b[9] = o.proto;
  b.writeUInt32BE(ip4(o.src), 12);
  b.writeUInt32BE(ip4(o.dst), 16);
  opt.copy(b, 20);
  b.writeUInt16BE(checksum(b, 0, hlen), 10);
  o.payload.copy(b, hlen);
  return b;
}

/** ICMP echo request (RFC 792) with `size` bytes of data. */
function echo(id: number, seq: number, size = 32): Buffer {
  const b = Buffer.alloc(8 + size);
  b[0] = 8;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  for (let i = 0; i < size; i++) b[8 + i] = i;
  b.writeUInt16BE(checksum(b, 0, b.length), 2);
  return b;
}

function ethernet(dst: number, src: number, type: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(14 + payload.length);
  b.writeUIntBE(dst, 0, 6);
  b.writeUIntBE(src, 6, 6);
  b.writeUInt16BE(type, 12);
  payload.copy(b, 14);
  return b;
}

// ---------------------------------------------------------------------------------

describe("IpipPort without a socket", () => {
  it("names a remote node in a 02:50 MAC and reads it back", () => {
    expect(ipipNeighbourMac(ip4("192.168.78.2"))).toBe(0x0250c0a84e02);
    expect(ipipNeighbourMac(0xffffffff)).toBe(0x0250ffffffff);
    expect(ipipNeighbourMac(0)).toBe(0x025000000000);
    expect(ipipMacRemote(0x0250c0a84e02)).toBe(ip4("192.168.78.2"));
    expect(ipipMacRemote(0x0251c0a84e02)).toBe(-1);
    expect(ipipMacRemote(0x0050c0a84e02)).toBe(-1);
  });

  it("reports its configuration: MTU is the underlay's minus 20", () => {
    const p = new IpipPort("tunl0", { localAddr: "192.168.78.1", peers: ["192.168.78.2", "192.168.78.3"], mac: 0x02aa00000101 });
    expect(p.kind).toBe("ipip");
    expect(p.info()).toEqual({ mac: 0x02aa00000101, mtu: 1480, ifname: "tunl0" });
    expect(p.tunnelInfo()).toEqual({
      kind: "ipip",
      local: "192.168.78.1",
      peers: ["192.168.78.2", "192.168.78.3"],
      mtu: 1480,
      underlayMtu: 1500,
    });
    expect(Object.values(p.tunnelCounters()).every((v) => v === 0)).toBe(true);
    expect(Object.keys(p.tunnelCounters())).toEqual(
      expect.arrayContaining(["encapsulated", "decapsulated", "unknownPeer", "badOuter", "badInner", "notIpv4", "noTunnelDst", "tooBig", "txErrors"]),
    );
    expect(new IpipPort("t", { localAddr: "10.0.0.1", peers: [], mtu: 9000 }).info().mtu).toBe(8980);
    expect(new IpipPort("t", { localAddr: "10.0.0.1", peers: [] }).info().mac).toBe(0);
  });

  it("sizes slots for a whole underlay packet after the headroom, plus a staging area", () => {
    const p = new IpipPort("t", { localAddr: "10.0.0.1", peers: [], batchSize: 4 });
    expect(p.slotSize).toBe(DEFAULT_SLOT);
    expect(p.rxRegionBytes()).toBe(4 * DEFAULT_SLOT + 1536);
    const big = new IpipPort("t", { localAddr: "10.0.0.1", peers: [], mtu: 9000, batchSize: 2 });
    expect(big.slotSize).toBeGreaterThanOrEqual(HEADROOM - 6 + 9000);
    expect(big.slotSize % 64).toBe(0);
    expect(() => new IpipPort("t", { localAddr: "10.0.0.1", peers: [], slotSize: 1024 })).toThrow(/slotSize 1024 cannot hold/);
  });

  it("rejects bad configuration with clear errors", () => {
    expect(() => new IpipPort("t", { localAddr: "10.0.0", peers: [] })).toThrow(/ipip port 't': localAddr: invalid IPv4 address/);
    expect(() => new IpipPort("t", { localAddr: "10.0.0.1", peers: ["10.0.0.300"] })).toThrow(/ipip port 't': peer: invalid IPv4/);
    expect(() => new IpipPort("t", { localAddr: "10.0.0.1", peers: [], mtu: 80 })).toThrow(RangeError);
    expect(() => new IpipPort("t", { localAddr: "10.0.0.1", peers: [], mtu: 1500.5 })).toThrow(RangeError);
    expect(() => new IpipPort("t", { localAddr: "10.0.0.1", peers: [], mac: -1 })).toThrow(/48-bit/);
  });

  it("a flush while closed refuses every frame (length 0, txDrops) and close is idempotent", () => {
    const p = new IpipPort("t", { localAddr: "10.0.0.1", peers: [] });
    p.close();
    p.txq.push(0, 60);
    p.txq.push(100, 98);
    p.flush(Buffer.alloc(4096));
    expect(p.counters()).toMatchObject({ txFrames: 0, txBytes: 0, txDrops: 2 });
    expect(p.tunnelCounters().txErrors).toBe(2);
    expect(p.lastTxError).toBe("port is closed");
    expect(p.isOpen).toBe(false);
    p.close();
  });

  it("accepts packets from peers added at run time, and none from removed ones", () => {
    const socks: SimSocket[] = [];
    const p = new IpipPort("t", {
      localAddr: "10.0.0.1",
      peers: ["10.0.0.2"],
      mac: 0x02aa00000101,
      openSocket: (o) => {
        const s = new SimSocket(null, o);
        socks.push(s);
        return s;
      },
    });
    const e = new Engine();
    e.addPort(p);
    let delivered = 0;
    e.connect(p, { process: (_p, f) => void (delivered += f.count) });
    e.start();
    try {
      const inner = ipPacket({ src: "10.244.2.2", dst: "10.244.1.2", proto: 1, payload: echo(7, 1) });
      const land = (from: string): void =>
        void socks[0].land([{ data: ipPacket({ src: from, dst: "10.0.0.1", proto: 4, payload: inner }), from: ip4(from), segs: 0 }]);
      land("10.0.0.3");
      expect(p.tunnelCounters()).toMatchObject({ unknownPeer: 1, decapsulated: 0 });
      expect(p.addPeer("10.0.0.3")).toBe(true);
      expect(p.addPeer("10.0.0.3")).toBe(false);
      land("10.0.0.3");
      expect(p.tunnelCounters()).toMatchObject({ unknownPeer: 1, decapsulated: 1 });
      expect(delivered).toBe(1);
      expect(p.tunnelInfo().peers).toEqual(["10.0.0.2", "10.0.0.3"]);
      land("10.0.0.2");
      expect(p.removePeer("10.0.0.2")).toBe(true);
      expect(p.removePeer("10.0.0.2")).toBe(false);
      land("10.0.0.2");
      expect(p.tunnelCounters()).toMatchObject({ unknownPeer: 2, decapsulated: 2 });
      expect(delivered).toBe(2);
      expect(p.tunnelInfo().peers).toEqual(["10.0.0.3"]);
      expect(() => p.addPeer("10.0.0")).toThrow(/ipip port 't': peer: invalid IPv4/);
    } finally {
      e.stop();
    }
  });

  it("needs root for its socket: an engine that cannot open it says why and closes the rest", () => {
    if (process.getuid?.() === 0) return; // as root the socket opens; the lab below covers it
    const m = new MemoryPort("m");
    const p = new IpipPort("t", { localAddr: "10.0.0.1", peers: [] });
    const e = new Engine();
    e.addPort(m);
    e.addPort(p);
    const sink = { process() {} };
    for (const port of e.ports) e.connect(port, sink);
    expect(() => e.start()).toThrow(/raw IPv4 socket of protocol 4/);
    expect(m.isOpen).toBe(false);
  });
});

// ---------------------------------------------------------------------------------
// The lab.

const isRoot = process.getuid?.() === 0;
function haveCmd(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}
const canLab =
  isRoot &&
  existsSync("/dev/net/tun") &&
  existsSync(join(REPO, "native/build/Release/tapnet.node")) &&
  ["ip", "ping", "tcpdump", "tshark", "python3", "iperf3", "timeout"].every(haveCmd);

const PID = process.pid;
const NS = { n1: `tnip-n1-${PID}`, n2: `tnip-n2-${PID}`, h1: `tnip-h1-${PID}`, h2: `tnip-h2-${PID}` };
const U1 = `tnipu1-${PID}`.slice(0, 15); // underlay veth ends
const U2 = `tnipu2-${PID}`.slice(0, 15);
const T1 = `tnipt1-${PID}`.slice(0, 15); // TAPs, created by the agents
const T2 = `tnipt2-${PID}`.slice(0, 15);
const NODE1 = "192.168.78.1";
const NODE2 = "192.168.78.2";
const STRANGER = "192.168.78.9"; // a secondary address of N2 that is not a peer of N1
const N1_OTHER = "192.168.78.7"; // a secondary address of N1 that is not its tunnel address
const H1 = "10.244.1.2";
const H2 = "10.244.2.2";
const GW1_MAC = 0x02aa00000101;
const GW2_MAC = 0x02aa00000201;
const macHex = (m: number): string => m.toString(16).padStart(12, "0");

interface NodeState {
  kind: string;
  isOpen: boolean;
  info: { mac: number; mtu: number; ifname: string };
  tunnelInfo: Record<string, unknown>;
  ipip: Record<string, number>;
  lastTxError: string;
  lastRxError: string;
  rcvBuf: number;
  tap: Record<string, number>;
  router: Record<string, number>;
  ipipBatches: Record<string, number>;
  underlay: IpipUnderlayStats;
  lastFromTunnel: string;
  framesIntact?: boolean;
  passes: number;
  internalErrors: number;
  lastError: string;
}

class Agent extends AgentBase<NodeState> {}

function must(ns: string, argv: string[], timeout = 10_000): string {
  const r = inNs(ns, argv, timeout);
  if (r.status !== 0) throw new Error(`${argv.join(" ")} in ${ns} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function ipCmd(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

function deleteNamespaces(): void {
  for (const ns of Object.values(NS)) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 10_000 });
}

/** Sends whole IPv4 packets (header included, as written) from a raw socket in `ns`. */
function sendIp(ns: string, packets: Buffer[]): void {
  const py = [
    "import socket,sys",
    "s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)",
    "for h in sys.argv[1:]:",
    "  p=bytes.fromhex(h)",
    "  s.sendto(p,(socket.inet_ntoa(p[16:20]),0))",
  ].join("\n");
  must(ns, ["python3", "-c", py, ...packets.map((p) => p.toString("hex"))]);
}

/** An IPIP packet from `src` to `dst` around `inner`. */
function ipip(src: string, dst: string, inner: Buffer, extra: Partial<IpOpts> = {}): Buffer {
  return ipPacket({ src, dst, proto: 4, payload: inner, ...extra });
}

/** A valid inner echo request from h2 to h1. */
function innerEcho(seq: number, extra: Partial<IpOpts> = {}): Buffer {
  return ipPacket({ src: H2, dst: H1, proto: 1, payload: echo(0x7777, seq), ...extra });
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const k of Object.keys(after)) if (after[k] !== before[k]) d[k] = after[k] - before[k];
  return d;
}

describe.skipIf(!canLab)("IpipPort between two nodes (namespaces made by this test)", () => {
  const agents: { n1: Agent | null; n2: Agent | null } = { n1: null, n2: null };
  let work = "";

  async function startAgent(ns: string, cfg: Record<string, unknown>): Promise<Agent> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, join(work, "test/io/ipip-agent.js"), JSON.stringify(cfg)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const a = new Agent(child);
    const r = await a.ready();
    if (r.ready !== true) throw new Error(`agent in ${ns} did not start: ${String(r.error)}\n${a.stderr}`);
    return a;
  }

  function pod(node: string, host: string, tap: string, addr: string, gw: string): void {
    ipCmd(["-n", node, "link", "set", tap, "netns", host]);
    for (const c of [
      ["link", "set", tap, "name", "eth0"],
      ["link", "set", "eth0", "mtu", "1480"],
      ["addr", "add", `${addr}/24`, "dev", "eth0"],
      ["link", "set", "eth0", "up"],
      ["route", "add", "default", "via", gw],
    ])
      ipCmd(["-n", host, ...c]);
  }

  beforeAll(async () => {
    deleteNamespaces();
    work = mkdtempSync(join(tmpdir(), "tapnet-ipip-port-"));
    symlinkSync(join(REPO, "node_modules"), join(work, "node_modules"), "dir");
    symlinkSync(join(REPO, "native"), join(work, "native"), "dir");
    writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
    transpileTree(REPO, ["test/io/ipip-agent.ts"], work);

    for (const ns of Object.values(NS)) {
      ipCmd(["netns", "add", ns]);
      must(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
      ipCmd(["-n", ns, "link", "set", "lo", "up"]);
    }
    ipCmd(["-n", NS.n1, "link", "add", U1, "type", "veth", "peer", "name", U2, "netns", NS.n2]);
    ipCmd(["-n", NS.n1, "addr", "add", `${NODE1}/24`, "dev", U1]);
    ipCmd(["-n", NS.n2, "addr", "add", `${NODE2}/24`, "dev", U2]);
    ipCmd(["-n", NS.n1, "link", "set", U1, "up"]);
    ipCmd(["-n", NS.n2, "link", "set", U2, "up"]);

    const common = { mtu: 1500 };
    agents.n1 = await startAgent(NS.n1, {
      ...common,
      tap: T1,
      local: NODE1,
      peers: [NODE2],
      gwIp: "10.244.1.1",
      gwMac: GW1_MAC,
      podNet: "10.244.1.0/24",
      routes: [{ to: "10.244.2.0/24", via: NODE2 }],
    });
    agents.n2 = await startAgent(NS.n2, {
      ...common,
      tap: T2,
      local: NODE2,
      peers: [NODE1],
      gwIp: "10.244.2.1",
      gwMac: GW2_MAC,
      podNet: "10.244.2.0/24",
      routes: [{ to: "10.244.1.0/24", via: NODE1 }],
    });
    pod(NS.n1, NS.h1, T1, H1, "10.244.1.1");
    pod(NS.n2, NS.h2, T2, H2, "10.244.2.1");
    // The tiny router learns a pod's MAC from its ARP for the gateway (it never asks
    // itself): make each pod ask once. The ping itself gets no answer.
    inNs(NS.h1, ["ping", "-n", "-c", "1", "-W", "1", "10.244.1.1"]);
    inNs(NS.h2, ["ping", "-n", "-c", "1", "-W", "1", "10.244.2.1"]);
    for (const a of [agents.n1, agents.n2]) expect((await a.state()).router.podMac).not.toBe(0);
  }, 60_000);

  afterAll(async () => {
    try {
      await agents.n1?.kill();
      await agents.n2?.kill();
    } finally {
      deleteNamespaces();
      if (work !== "") rmSync(work, { recursive: true, force: true });
    }
    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    for (const ns of Object.values(NS)) expect(left).not.toContain(ns);
  }, 30_000);

  it("opens a protocol-4 raw socket with a large receive buffer and reports its configuration", async () => {
    const s = await agents.n1!.state();
    expect(s.kind).toBe("ipip");
    expect(s.isOpen).toBe(true);
    expect(s.info).toEqual({ mac: GW1_MAC, mtu: 1480, ifname: "ipip" });
    expect(s.tunnelInfo).toEqual({ kind: "ipip", local: NODE1, peers: [NODE2], mtu: 1480, underlayMtu: 1500 });
    // The kernel reports twice what was set (the doubling covers its bookkeeping).
    expect(s.rcvBuf).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    // The namespace's kernel has no other handler for protocol 4.
    expect(spawnSync("sh", ["-c", "lsmod | grep -w ^ipip"], { encoding: "utf8" }).stdout).toBe("");
  });

  it("ping h1 <-> h2 goes through the tunnel: IPIP on the underlay, outer TTL 64, good checksums, DF and TOS copied", async () => {
    const before1 = (await agents.n1!.state()).ipip;
    const before2 = (await agents.n2!.state()).ipip;
    const results: Record<string, { status: number | null; stdout: string }> = {};
    const lines = await captureFields(
      NS.n1,
      U1,
      () => {
        // -M do sets DF on the inner packets, -M dont clears it; sizes tell them apart.
        results.df = ping(NS.h1, H2, 3, ["-M", "do", "-s", "100"]);
        results.nodf = ping(NS.h1, H2, 3, ["-M", "dont", "-s", "200"]);
        results.back = ping(NS.h2, H1, 2, ["-s", "300", "-Q", "0x28"]);
      },
      ["ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.flags.df", "ip.checksum.status", "ip.len", "icmp.type", "icmp.checksum.status", "ip.dsfield"],
      ["-Y", "ip.proto == 4"],
    );
    for (const [k, r] of Object.entries(results)) expect(r.status, `${k}: ${r.stdout}`).toBe(0);
    expect(results.df.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(results.nodf.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(results.back.stdout).toMatch(/2 packets transmitted, 2 received/);

    // Every field lists the outer header's value first, then the inner one's.
    const rows = lines.map((l) => l.split("|").map((f) => f.split(",")));
    const byInnerLen = (n: number): string[][][] => rows.filter((r) => r[6][1] === String(n));
    // 3 requests and 3 replies of each size.
    expect(byInnerLen(128)).toHaveLength(6);
    expect(byInnerLen(228)).toHaveLength(6);
    expect(byInnerLen(328)).toHaveLength(4);
    expect(rows).toHaveLength(16);
    for (const r of rows) {
      const [src, dst, proto, ttl, df, ck, len, icmpType, icmpCk, tos] = r;
      expect([src[0], dst[0]].sort()).toEqual([NODE1, NODE2]);
      expect(proto).toEqual(["4", "1"]);
      expect(ttl[0]).toBe("64");
      expect(Number(len[0])).toBe(Number(len[1]) + 20);
      // 1 = good in tshark's checksum status (0 bad, 2 unverified), for both headers and the ICMP message.
      expect(ck).toEqual(["1", "1"]);
      expect(icmpCk).toEqual(["1"]);
      expect(["0", "8"]).toContain(icmpType[0]);
      // DF and TOS: the outer copies the inner (RFC 2003 section 3.1).
      expect(df[0]).toBe(df[1]);
      expect(tos[0]).toBe(tos[1]);
    }
    // h2 sent its requests with TOS 0x28; h1's kernel echoes the TOS in its replies.
    expect(byInnerLen(328).map((r) => r[9][0])).toEqual(["0x28", "0x28", "0x28", "0x28"]);
    expect(byInnerLen(128).map((r) => r[9][0])).toEqual(Array(6).fill("0x00"));
    // Echo requests from h1 with -M do carry DF, -M dont do not (replies follow the kernel of h2).
    const requests = (n: number): string[][][] => byInnerLen(n).filter((r) => r[7][0] === "8");
    expect(requests(128).map((r) => r[4][0])).toEqual(["1", "1", "1"]);
    expect(requests(228).map((r) => r[4][0])).toEqual(["0", "0", "0"]);

    const s1 = await agents.n1!.state();
    const s2 = await agents.n2!.state();
    expect(delta(s1.ipip, before1)).toMatchObject({ encapsulated: 8, decapsulated: 8 });
    expect(delta(s2.ipip, before2)).toMatchObject({ encapsulated: 8, decapsulated: 8 });
    for (const s of [s1, s2]) {
      for (const k of ["unknownPeer", "badOuter", "badInner", "badInnerTx", "notIpv4", "noTunnelDst", "tooBig", "txErrors", "rxErrors"]) {
        expect(s.ipip[k], k).toBe(0);
      }
      expect(s.internalErrors).toBe(0);
    }
    // What comes out of the port: to the router's MAC, from the MAC naming the peer node.
    expect(s1.lastFromTunnel).toBe(`${macHex(GW1_MAC)}${macHex(ipipNeighbourMac(ip4(NODE2)))}0800`);
    expect(s2.lastFromTunnel).toBe(`${macHex(GW2_MAC)}${macHex(ipipNeighbourMac(ip4(NODE1)))}0800`);
  }, 30_000);

  it("drops IPIP from an address that is not a peer, and N1's kernel does not answer it", async () => {
    must(NS.n2, ["ip", "addr", "add", `${STRANGER}/24`, "dev", U2]);
    const before = await agents.n1!.state();
    const lines = await captureFields(
      NS.n1,
      U1,
      async () => {
        sendIp(NS.n2, [ipip(STRANGER, NODE1, innerEcho(1)), ipip(STRANGER, NODE1, innerEcho(2))]);
        await waitFor("N1's port to drop both", async () => (await agents.n1!.state()).ipip.unknownPeer - before.ipip.unknownPeer >= 2);
        // Control: a protocol nobody handles in N1 does get its protocol-unreachable,
        // so the capture would have shown one for the packets above.
        const unreach = snmp(NS.n2)["Icmp.InDestUnreachs"];
        sendIp(NS.n2, [ipPacket({ src: STRANGER, dst: NODE1, proto: 253, payload: Buffer.alloc(16) })]);
        // The capture on N1's side has it once N2's kernel has received it.
        await waitSnmp(NS.n2, "Icmp.InDestUnreachs", unreach, 1);
      },
      ["ip.src", "ip.dst", "icmp.type", "icmp.code", "ip.proto"],
      // ICMP messages themselves, not ICMP carried inside IPIP.
      ["-Y", "icmp && !(ip.proto == 4)"],
    );
    const s = await agents.n1!.state();
    expect(delta(s.ipip, before.ipip)).toEqual({ unknownPeer: 2, rxDrops: 2 });
    expect(s.router.fromTunnel).toBe(before.router.fromTunnel);
    // Exactly one ICMP: the control's protocol-unreachable (type 3 code 2), quoting protocol 253.
    expect(lines).toHaveLength(1);
    const [src, dst, type, code, proto] = lines[0].split("|");
    expect(src.split(",")[0]).toBe(NODE1);
    expect(dst.split(",")[0]).toBe(STRANGER);
    expect([type, code]).toEqual(["3", "2"]);
    expect(proto.split(",")).toEqual(["1", "253"]);
    must(NS.n2, ["ip", "addr", "del", `${STRANGER}/24`, "dev", U2]);
  }, 20_000);

  it("counts malformed packets from a peer and drops them: bad inner header, outer CE over not-ECT, wrong outer destination, too big", async () => {
    must(NS.n1, ["ip", "addr", "add", `${N1_OTHER}/24`, "dev", U1]);
    const before = await agents.n1!.state();
    const badCsum = innerEcho(10);
    badCsum.writeUInt16BE(badCsum.readUInt16BE(10) ^ 0x5555, 10);
    const v6 = innerEcho(11);
    v6[0] = 0x65;
    const longer = innerEcho(12);
    longer.writeUInt16BE(longer.length + 40, 2);
    longer.writeUInt16BE(0, 10);
    longer.writeUInt16BE(checksum(longer, 0, 20), 10);
    sendIp(NS.n2, [
      ipip(NODE2, NODE1, badCsum),
      ipip(NODE2, NODE1, v6),
      ipip(NODE2, NODE1, longer),
      ipip(NODE2, NODE1, Buffer.from("0123456789abcdef", "hex")),
      ipip(NODE2, NODE1, Buffer.alloc(0)),
      // RFC 6040 section 4.2: CE on the outer header of a packet that is not ECN-capable.
      ipip(NODE2, NODE1, innerEcho(13, { tos: 0 }), { tos: 0x03 }),
      ipip(NODE2, N1_OTHER, innerEcho(14)),
    ]);
    // Two fragments of a 2100-byte IPIP packet: N1's kernel reassembles it, and it is
    // longer than a slot (2048 - 58 bytes for the whole underlay packet).
    const inner = ipPacket({ src: H2, dst: H1, proto: 1, payload: echo(0x7777, 15, 2100 - 48) });
    sendIp(NS.n2, [
      ipip(NODE2, NODE1, inner.subarray(0, 1480), { frag: 0x2000, ident: 0x4321 }),
      ipip(NODE2, NODE1, inner.subarray(1480), { frag: 1480 / 8, ident: 0x4321 }),
    ]);
    const s = await waitFor("N1's port to drop all 8", async () => {
      const st = await agents.n1!.state();
      return st.ipip.rxDrops - before.ipip.rxDrops >= 8 ? st : undefined;
    });
    expect(delta(s.ipip, before.ipip)).toEqual({ badInner: 5, ecnDrop: 1, wrongDst: 1, rxTooBig: 1, rxDrops: 8 });
    expect(s.router.fromTunnel).toBe(before.router.fromTunnel);
    must(NS.n1, ["ip", "addr", "del", `${N1_OTHER}/24`, "dev", U1]);
  }, 20_000);

  it("accepts an outer header with options, and carries an outer CE into an ECN-capable inner header", async () => {
    const before = await agents.n1!.state();
    const lines = await captureFields(
      NS.h1,
      "eth0",
      async () => {
        const replies = snmp(NS.h1)["Icmp.OutEchoReps"];
        sendIp(NS.n2, [
          ipip(NODE2, NODE1, innerEcho(20), { options: Buffer.from([1, 1, 1, 0]) }),
          ipip(NODE2, NODE1, innerEcho(21, { tos: 0x02 }), { tos: 0x03 }),
        ]);
        // h1 has both once its kernel answered them (the capture is on h1's eth0).
        await waitSnmp(NS.h1, "Icmp.OutEchoReps", replies, 2);
      },
      ["ip.src", "ip.dst", "icmp.type", "icmp.seq", "ip.dsfield.ecn", "ip.checksum.status", "ip.ttl"],
      ["-Y", "icmp.type == 8"],
    );
    const s = await agents.n1!.state();
    expect(delta(s.ipip, before.ipip)).toMatchObject({ decapsulated: 2, rxFrames: 2 });
    expect(s.router.fromTunnel - before.router.fromTunnel).toBe(2);
    // h1 saw both requests; the second with CE (3) and a header checksum still good
    // (1); TTL 63 after the tiny router.
    expect(lines).toEqual([`${H2}|${H1}|8|20|0|1|63`, `${H2}|${H1}|8|21|3|1|63`]);
  }, 20_000);

  it("drops frames it cannot send and counts them: ARP, non-02:50 destinations, oversize, malformed; the kernel's refusals too", async () => {
    const before1 = await agents.n1!.state();
    const before2 = await agents.n2!.state();
    const to2 = ipipNeighbourMac(ip4(NODE2));
    const arp = Buffer.alloc(28);
    arp.writeUInt16BE(1, 0);
    arp.writeUInt16BE(0x0800, 2);
    arp[4] = 6;
    arp[5] = 4;
    arp.writeUInt16BE(1, 6);
    const good = ipPacket({ src: "10.244.1.99", dst: H2, proto: 1, payload: echo(0x4242, 1) });
    const bad = Buffer.from(good);
    bad[0] = 0x55;
    const big = ipPacket({ src: "10.244.1.99", dst: H2, proto: 1, payload: echo(0x4242, 2, 1481 - 28) });
    expect(big.length).toBe(1481);
    const fits = ipPacket({ src: "10.244.1.99", dst: H2, proto: 1, payload: echo(0x4242, 3, 1480 - 28) });
    const frames = [
      ethernet(0xffffffffffff, GW1_MAC, 0x0806, arp),
      ethernet(0x02aa00000201, GW1_MAC, 0x0800, good),
      ethernet(0x0250ffffffff, GW1_MAC, 0x0800, good),
      ethernet(0x0250e0000001, GW1_MAC, 0x0800, good),
      ethernet(to2, GW1_MAC, 0x0800, bad),
      ethernet(to2, GW1_MAC, 0x0800, big),
      ethernet(to2, GW1_MAC, 0x0800, Buffer.concat([fits, Buffer.alloc(4)])),
      // No route to 192.168.99.1 in N1: sendto() fails, nothing leaves the namespace.
      ethernet(ipipNeighbourMac(ip4("192.168.99.1")), GW1_MAC, 0x0800, good),
      ethernet(to2, GW1_MAC, 0x0800, good),
    ];
    const s1 = await agents.n1!.call("inject", { frames: frames.map((f) => f.toString("hex")) });
    expect(delta(s1.ipip, before1.ipip)).toEqual({
      notIpv4: 1,
      noTunnelDst: 3,
      badInnerTx: 1,
      tooBig: 1,
      txErrors: 1,
      encapsulated: 2,
      txFrames: 2,
      txBytes: 14 + 1480 + 4 + 14 + good.length,
      txDrops: 7,
    });
    expect(s1.lastTxError).toMatch(/unreachable/i);
    // Outer headers are written in place over each frame's Ethernet header and the 6
    // bytes before it, and put back after the send (the frame may be queued elsewhere too).
    expect(s1.framesIntact).toBe(true);
    const s2 = await waitFor("both at N2", async () => {
      const st = await agents.n2!.state();
      return st.ipip.decapsulated - before2.ipip.decapsulated >= 2 ? st : undefined;
    });
    // Both arrived whole (the Ethernet padding after the 1480 bytes was not sent).
    expect(delta(s2.ipip, before2.ipip)).toMatchObject({ decapsulated: 2, rxFrames: 2, rxBytes: 14 + 1480 + 14 + good.length });
  }, 20_000);

  it("sends a frame with no room in front of it (pool offset 0) from the staging area, twice in one batch, next to one sent in place", async () => {
    const before1 = await agents.n1!.state();
    const before2 = await agents.n2!.state();
    const to2 = ipipNeighbourMac(ip4(NODE2));
    const f = (seq: number): string =>
      ethernet(to2, GW1_MAC, 0x0800, ipPacket({ src: "10.244.1.99", dst: H2, proto: 1, payload: echo(0x4343, seq) })).toString("hex");
    const s1 = await agents.n1!.call("txAt", {
      at: [
        { hex: f(1), off: 0 },
        { hex: f(2), off: 3000 },
        { hex: f(1), off: 0 },
      ],
    });
    expect(delta(s1.ipip, before1.ipip)).toMatchObject({ encapsulated: 3, txFrames: 3 });
    expect(s1.ipip.txErrors).toBe(before1.ipip.txErrors);
    expect(s1.framesIntact).toBe(true);
    // Two sendmmsg batches: the second staged frame waits until the first has gone.
    expect(s1.underlay.sendBatches - before1.underlay.sendBatches).toBe(2);
    const s2 = await waitFor("all three at N2", async () => {
      const st = await agents.n2!.state();
      return st.ipip.decapsulated - before2.ipip.decapsulated >= 3 ? st : undefined;
    });
    expect(delta(s2.ipip, before2.ipip)).toMatchObject({ decapsulated: 3 });
  }, 20_000);

  it("still carries traffic after all that", async () => {
    const r = ping(NS.h1, H2, 3);
    expect(r.stdout).toMatch(/3 packets transmitted, 3 received/);
    const r2 = ping(NS.h2, H1, 2, ["-s", "1452", "-M", "do"]);
    expect(r2.stdout).toMatch(/2 packets transmitted, 2 received/);
  }, 20_000);

  it("a burst crosses in batches: ping -f -l 64 (2000 packets) goes out with sendmmsg and comes in with recvmmsg batches above 1, without errors", async () => {
    const before1 = await agents.n1!.state();
    const before2 = await agents.n2!.state();
    // -l 64: 64 requests leave at once, then one per reply: the tunnel sees trains, not single packets.
    const r = inNs(NS.h1, ["timeout", "-k", "5", "40", "ping", "-n", "-q", "-f", "-l", "64", "-c", "2000", "-s", "1000", H2], 50_000);
    expect(r.stdout, r.stderr).toMatch(/2000 packets transmitted, 2000 received/);
    const s1 = await agents.n1!.state();
    const s2 = await agents.n2!.state();
    const d = (s: NodeState, b: NodeState, k: keyof IpipUnderlayStats): number => s.underlay[k] - b.underlay[k];
    // Requests h1 -> h2: N1 sends, N2 receives; replies the other way.
    for (const [name, tx, txBefore, rx, rxBefore] of [
      ["requests", s1, before1, s2, before2],
      ["replies", s2, before2, s1, before1],
    ] as const) {
      const sent = d(tx, txBefore, "sendMessages");
      const sendBatches = d(tx, txBefore, "sendBatches");
      const received = d(rx, rxBefore, "rxMessages");
      const rxBatches = d(rx, rxBefore, "batches");
      console.log(
        `ping -f -l 64 ${name}: ${sent} packets in ${sendBatches} sendmmsg batches (mean ${(sent / sendBatches).toFixed(1)}), ` +
          `${received} in ${rxBatches} recvmmsg batches (mean ${(received / rxBatches).toFixed(1)}, ${d(rx, rxBefore, "wakeups")} wake-ups)`,
      );
      expect(sent, name).toBe(2000);
      expect(received, name).toBe(2000);
      expect(sendBatches, name).toBeLessThan(sent); // some sendmmsg carried more than one packet
      expect(rxBatches, name).toBeLessThan(received); // some recvmmsg returned more than one
    }
    // The frames N2 handed to its router came in batches of more than one too.
    const bigger = Object.entries(s2.ipipBatches).some(([size, n]) => Number(size) > 1 && n > (before2.ipipBatches[size] ?? 0));
    expect(bigger).toBe(true);
    expect(delta(s1.ipip, before1.ipip)).toMatchObject({ encapsulated: 2000, decapsulated: 2000 });
    expect(delta(s2.ipip, before2.ipip)).toMatchObject({ encapsulated: 2000, decapsulated: 2000 });
    for (const [s, b] of [
      [s1, before1],
      [s2, before2],
    ]) {
      const dd = delta(s.ipip, b.ipip);
      for (const k of [
        "unknownPeer",
        "badOuter",
        "badInner",
        "badInnerTx",
        "notIpv4",
        "noTunnelDst",
        "tooBig",
        "rxTooBig",
        "txErrors",
        "rxErrors",
        "txDrops",
        "rxDrops",
      ]) {
        expect(dd[k] ?? 0, k).toBe(0);
      }
      expect(s.underlay.rxTruncated - b.underlay.rxTruncated).toBe(0);
      expect(s.internalErrors).toBe(0);
    }
  }, 60_000);

  it("carries an iperf3 TCP run h1 -> h2", async () => {
    const before1 = await agents.n1!.state();
    const before2 = await agents.n2!.state();
    const bps = await iperf(NS.h2, NS.h1, H2, 3);
    const s1 = await agents.n1!.state();
    const s2 = await agents.n2!.state();
    const d1 = delta(s1.ipip, before1.ipip);
    const d2 = delta(s2.ipip, before2.ipip);
    const batches = Object.entries(s2.ipipBatches).map(([size, n]) => [Number(size), n]);
    const nBatches = batches.reduce((a, [, n]) => a + n, 0);
    const nFrames = batches.reduce((a, [size, n]) => a + size * n, 0);
    console.log(
      `iperf3 h1 -> h2 through IPIP: ${(bps / 1e6).toFixed(0)} Mbit/s; N1 ${JSON.stringify(d1)}; N2 ${JSON.stringify(d2)}; ` +
        `N2 received ${nFrames} frames from the tunnel in ${nBatches} batches (mean ${(nFrames / nBatches).toFixed(1)}, ` +
        `${s2.ipipBatches["256"] ?? 0} full ones of 256); N1 sendmmsg: ${s1.underlay.sendMessages - before1.underlay.sendMessages} packets ` +
        `in ${s1.underlay.sendBatches - before1.underlay.sendBatches} batches; N2 recvmmsg: ${s2.underlay.rxMessages - before2.underlay.rxMessages} ` +
        `packets in ${s2.underlay.batches - before2.underlay.batches} batches`,
    );
    expect(bps).toBeGreaterThan(10e6);
    expect(d1.encapsulated).toBeGreaterThan(1000);
    expect(d1.txErrors ?? 0).toBe(0);
    expect(d2.txErrors ?? 0).toBe(0);
    expect(s1.ipip.rxErrors + s2.ipip.rxErrors).toBe(0);
    expect(s1.internalErrors + s2.internalErrors).toBe(0);
  }, 40_000);

  it("close is idempotent; afterwards N1's kernel answers IPIP with protocol-unreachable, as it does with no socket, and N2 shrugs it off", async () => {
    const s = await agents.n1!.call("close");
    expect(s.isOpen).toBe(false);
    const lines = await captureFields(
      NS.n1,
      U1,
      async () => {
        const unreach = snmp(NS.n2)["Icmp.InDestUnreachs"];
        sendIp(NS.n2, [ipip(NODE2, NODE1, innerEcho(30))]);
        await waitSnmp(NS.n2, "Icmp.InDestUnreachs", unreach, 1);
      },
      ["ip.src", "icmp.type", "icmp.code", "ip.proto"],
      // Sent by N1 (the IPIP packet itself has sources N2 and h2 only).
      ["-Y", `icmp && ip.src == ${NODE1}`],
    );
    // Protocol-unreachable (3/2) quoting the IPIP packet (protocols 1, then 4 and the inner 1).
    expect(lines).toEqual([`${NODE1},${NODE2},${H2}|3,8|2,0|1,4,1`]);
    const t = await agents.n1!.state();
    expect(t.ipip.rxFrames).toBe(s.ipip.rxFrames);
    // N2's port keeps working when its peer answers with protocol-unreachable: an
    // unconnected raw socket without IP_RECVERR ignores ICMP errors (raw_err), so no
    // socket error (which libuv would turn into a stopped poll handle) ever reaches it.
    const before2 = await agents.n2!.state();
    const r = ping(NS.h2, H1, 2);
    expect(r.status).not.toBe(0);
    const s2 = await agents.n2!.state();
    expect(s2.isOpen).toBe(true);
    expect(delta(s2.ipip, before2.ipip)).toMatchObject({ encapsulated: 2 });
    expect(s2.ipip.txErrors + s2.ipip.rxErrors).toBe(0);
    await agents.n1!.call("exit");
    expect(await Promise.race([agents.n1!.exited, sleep(5_000).then(() => "timeout")])).toBe(0);
  }, 20_000);
});
