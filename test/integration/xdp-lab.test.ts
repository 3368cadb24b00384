/**
 * `link: veth-xdp` hosts: a veth whose node end is an AF_XDP socket (src/io/xdp-port.ts,
 * native/xsk.c), on one shared lab:
 *   xsw1: x1 x2 (veth-xdp hosts) and t1 (a TAP host with offloads)
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canRunLabs, inNs, iperf, netnsList, ping, tapnet, tapnetOk, tcpdump, waitFor, writeLabFile } from "./harness.js";

const LAB = "txdp";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  xsw1: { offload: true }
hosts:
  x1: { node: xsw1, ip: 10.0.0.1/24, link: veth-xdp }
  x2: { node: xsw1, ip: 10.0.0.2/24, link: veth-xdp }
  t1: { node: xsw1, ip: 10.0.0.3/24 }
`,
);

interface XdpRow {
  mode: string;
  frameSize: number;
  rxMessages: number;
  batches: number;
  txErrors: number;
  rxBadDescs: number;
  rxInvalidDescs: number;
  txInvalidDescs: number;
  txKicks: number;
}
interface PortRow {
  name: string;
  kind: string;
  rxFrames: number;
  txFrames: number;
  xdp?: XdpRow;
}

const ports = (): PortRow[] => JSON.parse(tapnetOk(["show", "ports", "--node", "xsw1", "--lab", LAB, "--json"])) as PortRow[];
const port = (name: string): PortRow => {
  const p = ports().find((r) => r.name === name);
  if (!p) throw new Error(`show ports has no ${name}`);
  return p;
};
/** The XDP programs attached to an interface of the node's namespace, by name. */
const xdpProgs = (ifname: string): string[] => {
  const r = inNs(ns("xsw1"), ["ip", "-d", "link", "show", "dev", ifname]);
  expect(r.status, r.stderr).toBe(0);
  return [...r.stdout.matchAll(/prog\/xdp\S* id \d+ name (\S+)/g)].map((m) => m[1]);
};
/** The node's row of `lab status` (which exits 1 while a node is down: its output is what counts). */
const nodePid = (): { pid: number | null; running: boolean; restarts: number } => {
  const labs = JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{
    lab: string;
    nodes: Array<{ name: string; pid: number | null; running: boolean; restarts: number }>;
  }>;
  const n = labs.find((l) => l.lab === LAB)?.nodes.find((x) => x.name === "xsw1");
  if (!n) throw new Error("lab status has no node xsw1");
  return n;
};

describe.skipIf(!canRunLabs())("veth-xdp hosts: AF_XDP ports", () => {
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

  it("each veth-xdp host's port is an AF_XDP socket, with tapnet's XDP program on its veth in native mode", () => {
    for (const h of ["x1", "x2"]) {
      const p = port(h);
      expect(p.kind).toBe("xdp");
      expect(p.xdp?.mode).toBe("native");
      expect(p.xdp?.frameSize).toBe(2048);
      expect(xdpProgs(h)).toEqual(["tapnet_xsk"]);
      // The host finishes its own checksums: AF_XDP carries no offload metadata.
      const k = inNs(ns(h), ["ethtool", "-k", "eth0"]);
      expect(k.stdout).toMatch(/^tx-checksumming: off/m);
    }
    expect(port("t1").kind).toBe("tap");
    expect(port("t1").xdp).toBeUndefined();
  });

  it("pings between the veth-xdp hosts and the TAP host, frames counted by the sockets", () => {
    const before = port("x1").xdp as XdpRow;
    for (const [from, to] of [
      ["x1", "10.0.0.2"],
      ["x2", "10.0.0.3"],
      ["t1", "10.0.0.1"],
    ]) {
      const r = ping(ns(from), to, 3);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/3 received/);
    }
    const after = port("x1").xdp as XdpRow;
    // x1 sent 3 requests to x2 and answered 3 from t1 (ARP besides).
    expect(after.rxMessages - before.rxMessages).toBeGreaterThanOrEqual(6);
    expect(after.batches).toBeGreaterThan(before.batches);
    expect(after.txKicks).toBeGreaterThan(before.txKicks);
  });

  it("tcpdump on a veth-xdp host sees what the switch sends it", async () => {
    const cap = await tcpdump(ns("x2"), "eth0", ["icmp"]);
    expect(ping(ns("t1"), "10.0.0.2", 2).status).toBe(0);
    const text = (await cap.stop()).join("\n");
    expect(text).toMatch(/10\.0\.0\.3 > 10\.0\.0\.2: ICMP echo request/);
    expect(text).toMatch(/10\.0\.0\.2 > 10\.0\.0\.3: ICMP echo reply/);
  });

  it("carries TCP between veth-xdp hosts, and from a TAP host's TSO super-frames (segmented by the node) to a veth-xdp host", async () => {
    const xx = await iperf(ns("x2"), ns("x1"), "10.0.0.2", 2);
    expect(xx).toBeGreaterThan(10e6);
    const tx = await iperf(ns("x1"), ns("t1"), "10.0.0.1", 2);
    expect(tx).toBeGreaterThan(10e6);
    for (const h of ["x1", "x2"]) {
      const x = port(h).xdp as XdpRow;
      expect(x.rxBadDescs).toBe(0);
      expect(x.rxInvalidDescs).toBe(0);
      expect(x.txInvalidDescs).toBe(0);
      // A frame longer than a chunk would be refused (EMSGSIZE): the node segmented t1's.
      expect(x.txErrors).toBe(0);
    }
  });

  it("a node killed with -9 takes its XDP program with it; the restarted node attaches again and forwards", async () => {
    const before = nodePid();
    expect(before.running).toBe(true);
    process.kill(before.pid as number, "SIGKILL");
    await waitFor(
      "xsw1 to be restarted",
      () => {
        const n = nodePid();
        return n.running && n.restarts === before.restarts + 1 && n.pid !== before.pid ? n : undefined;
      },
      20_000,
    );
    // One program per interface: the dead node's link went with its process.
    expect(xdpProgs("x1")).toEqual(["tapnet_xsk"]);
    const r = ping(ns("x1"), "10.0.0.2", 2);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(port("x1").xdp?.rxMessages).toBeGreaterThan(0);
  });
});
