/**
 * The learning switch with the real tools, on one shared lab:
 *   sw1: h1 h2 h3 (TAP hosts) and h4 (a kernel veth host, through libpcap)
 *   sw2: a1 a2 with a 2 s ageing time
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLI,
  canRunLabs,
  inNs,
  iperf,
  macOf,
  netnsList,
  ping,
  sendRaw,
  sleep,
  tapnet,
  tapnetOk,
  tcpdump,
  waitFor,
  waitOutput,
  writeLabFile,
} from "./harness.js";

const LAB = "tl2";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  sw1: {}
  sw2: { ageingTime: 2 }
hosts:
  h1: { node: sw1, ip: 10.0.0.1/24 }
  h2: { node: sw1, ip: 10.0.0.2/24 }
  h3: { node: sw1, ip: 10.0.0.3/24 }
  h4: { node: sw1, ip: 10.0.0.4/24, link: veth }
  a1: { node: sw2, ip: 10.9.0.1/24 }
  a2: { node: sw2, ip: 10.9.0.2/24 }
`,
);

interface FdbRow {
  mac: string;
  vlan: number;
  port: string;
  static: boolean;
  age: number | null;
}
interface PortRow {
  name: string;
  rxFrames: number;
  txFrames: number;
  rxDrops: number;
  txDrops: number;
  kind: string;
}

const fdb = (node: string): FdbRow[] => JSON.parse(tapnetOk(["show", "fdb", "--node", node, "--lab", LAB, "--json"])) as FdbRow[];
const stats = (node: string): { switch: Record<string, number>; engine: { internalErrors: number } } =>
  JSON.parse(tapnetOk(["show", "stats", "--node", node, "--lab", LAB, "--json"]));

describe.skipIf(!canRunLabs())("L2 lab: learning switch with real tools", () => {
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("pings h1 <-> h2 <-> h3 and the veth host h4", () => {
    for (const [from, to] of [
      ["h1", "10.0.0.2"],
      ["h2", "10.0.0.3"],
      ["h3", "10.0.0.1"],
      ["h4", "10.0.0.1"],
      ["h2", "10.0.0.4"],
    ]) {
      const r = ping(ns(from), to, 2);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/2 received/);
    }
  });

  it("h2's tcpdump sees h1's ARP request and the ICMP echo", async () => {
    inNs(ns("h1"), ["ip", "neigh", "flush", "dev", "eth0"]);
    const cap = await tcpdump(ns("h2"), "eth0");
    expect(ping(ns("h1"), "10.0.0.2", 1).status).toBe(0);
    const lines = await cap.stop();
    const text = lines.join("\n");
    expect(text).toMatch(/ethertype ARP .*Request who-has 10\.0\.0\.2 tell 10\.0\.0\.1/);
    expect(text).toMatch(/10\.0\.0\.1 > 10\.0\.0\.2: ICMP echo request/);
    expect(text).toMatch(/10\.0\.0\.2 > 10\.0\.0\.1: ICMP echo reply/);
  });

  it("after learning, h3 does not see unicast between h1 and h2", async () => {
    expect(ping(ns("h1"), "10.0.0.2", 1).status).toBe(0); // both learned
    const cap = await tcpdump(ns("h3"), "eth0", ["icmp"]);
    expect(ping(ns("h1"), "10.0.0.2", 5).status).toBe(0);
    // Prove the capture on h3 works: traffic to h3 itself must show.
    expect(ping(ns("h1"), "10.0.0.3", 1).status).toBe(0);
    const lines = await cap.stop();
    expect(lines.filter((l) => l.includes("10.0.0.2"))).toEqual([]);
    expect(lines.some((l) => l.includes("10.0.0.1 > 10.0.0.3"))).toBe(true);
  });

  it("show fdb lists each host's MAC on its own port", () => {
    for (const [from, to] of [
      ["h1", "10.0.0.2"],
      ["h3", "10.0.0.4"],
    ])
      expect(ping(ns(from), to, 1).status).toBe(0);
    const rows = fdb("sw1");
    for (const h of ["h1", "h2", "h3", "h4"]) {
      const mac = macOf(ns(h));
      const row = rows.find((r) => r.mac === mac);
      expect(row, `${h} ${mac} in ${JSON.stringify(rows)}`).toBeDefined();
      expect(row?.port).toBe(h);
      expect(row?.vlan).toBe(1);
    }
    const text = tapnetOk(["show", "fdb", "--node", "sw1", "--lab", LAB]);
    expect(text).toMatch(new RegExp(`${macOf(ns("h1"))}\\s+1\\s+h1\\s+dynamic`));
  });

  it("show ports counts frames per port", () => {
    const ports = JSON.parse(tapnetOk(["show", "ports", "--node", "sw1", "--lab", LAB, "--json"])) as PortRow[];
    expect(ports.map((p) => p.name).sort()).toEqual(["h1", "h2", "h3", "h4"]);
    expect(ports.find((p) => p.name === "h4")?.kind).toBe("pcap");
    for (const p of ports) {
      expect(p.rxFrames).toBeGreaterThan(0);
      expect(p.txFrames).toBeGreaterThan(0);
    }
  });

  it("ages the table out with a short ageing time", async () => {
    const agedBefore = stats("sw2").switch.aged;
    expect(ping(ns("a1"), "10.9.0.2", 1).status).toBe(0);
    expect(fdb("sw2").length).toBe(2);
    // 2 s ageing: show fdb leaves expired entries out at once; the sweep (every 0.5 s)
    // removes and counts them. Both within 6 s.
    await waitFor("sw2's table to age out", () => fdb("sw2").length === 0, 6000, 200);
    await waitFor("sw2's sweep to count the aged entries", () => stats("sw2").switch.aged - agedBefore >= 2, 3000, 100);
  });

  it("passes TSO super-frames whole on a node of TAP hosts (offloads), and TCP flows", async () => {
    const before = (JSON.parse(tapnetOk(["show", "ports", "--node", "sw2", "--lab", LAB, "--json"])) as Array<PortRow & { rxBytes: number }>).find(
      (p) => p.name === "a1",
    ) as PortRow & { rxBytes: number };
    const bps = await iperf(ns("a2"), ns("a1"), "10.9.0.2", 2);
    const after = (JSON.parse(tapnetOk(["show", "ports", "--node", "sw2", "--lab", LAB, "--json"])) as Array<PortRow & { rxBytes: number }>).find(
      (p) => p.name === "a1",
    ) as PortRow & { rxBytes: number };
    expect(bps).toBeGreaterThan(1e8);
    // Frames from a1 averaged far above an Ethernet MTU: the kernel's 64 KiB TSO frames
    // crossed the switch as single units (segmented only by the kernel at a2).
    const avg = (after.rxBytes - before.rxBytes) / (after.rxFrames - before.rxFrames);
    expect(avg).toBeGreaterThan(3000);
    expect(inNs(ns("a1"), ["ethtool", "-k", "eth0"]).stdout).toMatch(/tcp-segmentation-offload: on/);
  });

  it("tapnet capture writes pcapng that tshark reads with the port names", async () => {
    const out = path.join(os.tmpdir(), `tn-cap-${process.pid}.pcapng`);
    try {
      const cap = spawn(process.execPath, [CLI, "capture", "sw1", "h1", "h2", "--lab", LAB, "-w", out, "-c", "8"], { stdio: ["ignore", "ignore", "pipe"] });
      const exited = new Promise<number | null>((r) => cap.on("exit", (c) => r(c)));
      await waitOutput(cap.stderr, /capturing on/, "tapnet capture to attach");
      ping(ns("h1"), "10.0.0.2", 3);
      const code = await Promise.race([exited, sleep(10_000).then(() => "timeout")]);
      if (code === "timeout") cap.kill("SIGKILL");
      expect(code).toBe(0);
      const lines = tshark(["-r", out, "-T", "fields", "-e", "frame.interface_name", "-e", "icmp.type"]).split("\n").filter(Boolean);
      expect(lines.length).toBe(8);
      expect([...new Set(lines.map((l) => l.split("\t")[0]))].sort()).toEqual(["h1", "h2"]);
      // An echo request comes in on h1 and goes out on h2: both show.
      expect(lines).toContain("h1\t8");
      expect(lines).toContain("h2\t8");
    } finally {
      fs.rmSync(out, { force: true });
    }
  });

  it("streams pcapng to stdout: tapnet capture | tshark -r -", async () => {
    // A shell pipeline, as a user types it (tshark wants a real pipe on stdin).
    const sh = spawn(
      "bash",
      [
        "-c",
        `set -o pipefail; '${process.execPath}' '${CLI}' capture sw1 h3 --lab ${LAB} -c 4 | tshark -r - -T fields -e frame.interface_name -e frame.p2p_dir`,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    sh.stdout.on("data", (c: Buffer) => (out += c.toString()));
    sh.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => sh.on("exit", (c) => r(c)));
    await waitOutput(sh.stderr, /capturing on/, "tapnet capture to attach");
    ping(ns("h1"), "10.0.0.3", 2);
    const code = await Promise.race([exited, sleep(10_000).then(() => "timeout")]);
    if (code === "timeout") sh.kill("SIGKILL");
    expect(code, err).toBe(0);
    const lines = out.split("\n").filter(Boolean);
    expect(lines.length).toBe(4);
    // Requests leave the switch through h3 (out), replies come in from h3 (in).
    expect(lines.filter((l) => l === "h3\t0").length).toBe(2);
    expect(lines.filter((l) => l === "h3\t1").length).toBe(2);
  });

  it("drops and counts malformed frames and keeps forwarding", () => {
    const before = stats("sw1").switch;
    const h1 = macOf(ns("h1")).replace(/:/g, "");
    const h2 = macOf(ns("h2")).replace(/:/g, "");
    const r = sendRaw(ns("h1"), "eth0", [
      `${h2}${h1}8100000a`, // 802.1Q header cut short: runt
      `${h2}01005e0000010800${"00".repeat(46)}`, // group (multicast) source address
      `${h2}0000000000000800${"00".repeat(46)}`, // all-zero source address
      `0180c2000000${h1}002742420300000000${"00".repeat(40)}`, // STP BPDU: 802.1D reserved group
      `${h2}${h1}8100000a0800${"00".repeat(46)}`, // tagged frame on an access port
    ]);
    expect(r.status, r.stderr).toBe(0);
    // An oversized frame: raise h1's MTU so its kernel lets it go.
    inNs(ns("h1"), ["ip", "link", "set", "eth0", "mtu", "1800"]);
    const big = sendRaw(ns("h1"), "eth0", [`${h2}${h1}0800${"ab".repeat(1600)}`]);
    inNs(ns("h1"), ["ip", "link", "set", "eth0", "mtu", "1500"]);
    expect(big.status, big.stderr).toBe(0);
    const after = stats("sw1").switch;
    expect(after.runt - before.runt).toBe(1);
    expect(after.badSrcMac - before.badSrcMac).toBe(2);
    expect(after.linkLocal - before.linkLocal).toBe(1);
    expect(after.vlanFiltered - before.vlanFiltered).toBe(1);
    expect(after.oversize - before.oversize).toBe(1);
    expect(stats("sw1").engine.internalErrors).toBe(0);
    const p = ping(ns("h1"), "10.0.0.2", 2);
    expect(p.status, p.stdout).toBe(0);
  });

  it("show fdb streams a table of thousands of MACs: each once in --json, and the text in the header's columns throughout", async () => {
    // 3000 broadcast frames from h3 with source MACs 02:fd:00:00:HH:LL (learned on
    // h3), 100 at a time so the TAP's queue (1000 frames) never overflows.
    const py = [
      "import socket, time",
      "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
      "s.bind(('eth0', 0))",
      "for i in range(3000):",
      "    s.send(b'\\xff' * 6 + bytes([2, 0xfd, 0, 0, i >> 8, i & 255]) + b'\\x88\\xb5' + bytes(46))",
      "    if i % 100 == 99: time.sleep(0.02)",
    ].join("\n");
    expect(inNs(ns("h3"), ["python3", "-c", py]).status).toBe(0);
    const mine = (rows: FdbRow[]): FdbRow[] => rows.filter((r) => r.mac.startsWith("02:fd:00:00:"));
    for (let i = 0; i < 10 && mine(fdb("sw1")).length < 3000; i++) await sleep(200);
    const rows = mine(fdb("sw1"));
    expect(rows).toHaveLength(3000);
    expect(new Set(rows.map((r) => r.mac)).size).toBe(3000);
    expect(rows.every((r) => r.port === "h3" && r.vlan === 1 && !r.static)).toBe(true);
    const text = tapnetOk(["show", "fdb", "--node", "sw1", "--lab", LAB]).split("\n").filter(Boolean);
    expect(text[0]).toBe("node sw1");
    expect(text[1]).toMatch(/^MAC {16}VLAN {2}PORT {2}TYPE {5}AGE +DST$/);
    const lines = text.filter((l) => l.startsWith("02:fd:00:00:"));
    expect(lines).toHaveLength(3000);
    // Every line in the columns of the header, the first 1000 rows and the rest alike.
    for (const l of lines) expect(l).toMatch(/^02:fd:00:00:[0-9a-f]{2}:[0-9a-f]{2} {2}1 {5}h3 {4}dynamic {2}\d+(\.\d)?s +-$/);
    expect(new Set(lines.map((l) => l.slice(0, 17))).size).toBe(3000);
  });
});

function tshark(args: string[], input?: Buffer): string {
  const r = spawnSync("tshark", args, { input, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tshark ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
