/**
 * `tapnet mesh launch` on nodes outside any lab: two nodes started by hand (`tapnet node
 * run CONFIG`) in namespaces the test makes, on one underlay link, each with a pod on
 * a veth; the CLI makes them mesh peers (a `mesh.add` change); the pods take addresses
 * from the ring the peers split and ping each other; a restarted node comes back as
 * the same peer from its journal. No lab file.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import type { MeshView } from "../../src/mesh/agent.js";
import type { NodeConfig } from "../../src/node/config.js";
import { type Background, background, CLI, canRunLabs, ping, tapnet, tapnetOk, waitFor } from "./harness.js";

const ns = (n: string): string => `tn.meshcli.${n}`;
const NAMESPACES = ["a", "b", "pa", "pb"].map(ns);
const UL = { a: "192.168.77.1", b: "192.168.77.2" } as const;

let dir = "";
const procs: Record<string, Background | null> = { a: null, b: null };
const sock = (n: "a" | "b"): string => path.join(dir, `${n}.sock`);
const cfgFile = (n: "a" | "b"): string => path.join(dir, `${n}.json`);
const mesh = (n: "a" | "b"): MeshView => JSON.parse(tapnetOk(["show", "mesh", "--node", sock(n), "--json"])) as MeshView;
const ips: Record<string, string> = {};

function sh(argv: string[]): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
}

function writeConfig(n: "a" | "b"): void {
  const cfg: NodeConfig = {
    lab: "meshcli",
    node: n,
    controlSocket: sock(n),
    journal: path.join(dir, `${n}.journal`),
    // The pod's veth, opened with libpcap in the node's namespace (reopened by name after a restart).
    ports: [{ name: `p${n}`, kind: "pcap", ifname: `p${n}`, vlan: { mode: "access", vlan: 1 } }],
    switch: { ageingTime: 300, maxEntries: 8192, static: [] },
  };
  fs.writeFileSync(cfgFile(n), JSON.stringify(cfg));
}

async function startNode(n: "a" | "b"): Promise<Background> {
  const p = background(ns(n), [process.execPath, CLI, "node", "run", cfgFile(n)]);
  procs[n] = p;
  await p.waitFor(new RegExp(`tapnet node ${n} \\(lab meshcli\\) up`), 30_000);
  return p;
}

const established = (v: MeshView, peer: string): boolean => v.connections.some((c) => c.peer === peer && c.state === "established");

describe.skipIf(!canRunLabs())("tapnet mesh launch on nodes outside a lab", () => {
  beforeAll(async () => {
    for (const n of NAMESPACES) spawnSync("ip", ["netns", "del", n]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tn-meshcli-"));
    fs.chmodSync(dir, 0o700);
    fs.writeFileSync(path.join(dir, "password"), "a mesh password\n", { mode: 0o600 });
    for (const n of NAMESPACES) {
      sh(["ip", "netns", "add", n]);
      sh(["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    sh(["ip", "link", "add", "ul0", "netns", ns("a"), "type", "veth", "peer", "name", "ul0", "netns", ns("b")]);
    for (const n of ["a", "b"] as const) {
      sh(["ip", "-n", ns(n), "addr", "add", `${UL[n]}/24`, "dev", "ul0"]);
      sh(["ip", "-n", ns(n), "link", "set", "ul0", "up"]);
      // The pod: eth0 in its namespace, pN in the node's (segmenting itself: the node's
      // packet socket would see its TCP super-frames otherwise).
      sh(["ip", "link", "add", `p${n}`, "netns", ns(n), "type", "veth", "peer", "name", "eth0", "netns", ns(`p${n}`)]);
      sh(["ip", "-n", ns(n), "link", "set", `p${n}`, "up"]);
      sh(["ip", "-n", ns(`p${n}`), "link", "set", "eth0", "up"]);
      sh(["ip", "netns", "exec", ns(`p${n}`), "ethtool", "-K", "eth0", "tso", "off", "gso", "off"]);
      writeConfig(n);
    }
    await Promise.all([startNode("a"), startNode("b")]);
  }, 60_000);

  afterAll(async () => {
    for (const p of Object.values(procs)) if (p?.running()) await p.stop("SIGTERM");
    for (const n of NAMESPACES) spawnSync("ip", ["netns", "del", n]);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it("`tapnet mesh launch` joins the two nodes; their pods take addresses from the ring and ping each other", async () => {
    const pw = path.join(dir, "password");
    const outA = tapnetOk(["mesh", "launch", "--node", sock("a"), "--peer", UL.b, "--password-file", pw, "--ipam-range", "10.32.0.0/12", "--seed", "a"]);
    // The peer is named after the node, announces the namespace's address, probes up to its interface's MTU.
    expect(outA).toContain(`node a: mesh peer a on port 6783, password set, announcing ${UL.a}, connecting to ${UL.b}`);
    tapnetOk(["mesh", "launch", "--node", sock("b"), "--peer", UL.a, "--password-file", pw, "--ipam-range", "10.32.0.0/12", "--seed", "a"]);
    // Added at runtime, under the node's seccomp filter (sockets, the ring's file made at start).
    expect((await request<{ sandbox: { seccomp: string } }>(sock("a"), { cmd: "status" })).sandbox.seccomp).toBe("filter");
    await waitFor("a and b to hold an established connection", () => established(mesh("a"), "b") && established(mesh("b"), "a"), 20_000, 100);
    const va = mesh("a");
    expect(va.peers.map((p) => [p.name, p.via])).toEqual([
      ["a", "self"],
      ["b", "direct"],
    ]);
    expect(va.password).toBe(true);
    expect(va.mtu).toBe(1440);
    expect(tapnetOk(["show", "mesh", "--node", sock("b")])).toMatch(/peer b \(uid [0-9a-f]{16}\) port 6783, password set/);
    // a is the seed; b asks it for space.
    for (const n of ["a", "b"] as const) {
      const ip = tapnetOk(["mesh", "allocate", `p${n}`, "--node", sock(n)]).trim();
      expect(ip).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
      sh(["ip", "-n", ns(`p${n}`), "addr", "add", ip, "dev", "eth0"]);
      ips[n] = ip.split("/")[0];
    }
    expect(ips.a).not.toBe(ips.b);
    expect(mesh("b").ipam?.allocations).toEqual({ pb: ips.b });
    for (const [from, to] of [
      ["pa", ips.b],
      ["pb", ips.a],
    ]) {
      const r = ping(ns(from), to, 2);
      expect(r.status, `${from} -> ${to}: ${r.stdout}`).toBe(0);
    }
  }, 60_000);

  it("what is wrong is refused with the reason, and nothing changes", async () => {
    const again = tapnet(["mesh", "launch", "--node", sock("a"), "--peer", UL.b]);
    expect(again.status).not.toBe(0);
    expect(again.stderr).toMatch(/node a is a mesh peer already \(port weave, peer a\)/);
    const bad = tapnet(["mesh", "launch", "--node", sock("a"), "--peer", "192.168.77.300"]);
    expect(bad.stderr).toMatch(/peers: '192\.168\.77\.300' is not an IPv4 address/);
    const seedless = tapnet(["mesh", "launch", "--node", sock("a"), "--ipam-range", "10.32.0.0/12"]);
    expect(seedless.stderr).toMatch(/--ipam-range needs --seed/);
    await expect(request(sock("a"), { cmd: "change", op: "port.del", args: { name: "weave" } })).rejects.toThrow(/port weave is the node's mesh peer/);
    expect(established(mesh("a"), "b")).toBe(true);
  });

  it("a restarted node is the same peer again (its journal adds the mesh back, its ring keeps the pod's address)", async () => {
    const old = mesh("a").uid;
    await procs.a?.stop("SIGTERM");
    const p = await startNode("a");
    expect(p.out()).toMatch(/journal: replayed \d+ change\(s\)/);
    await waitFor("a's new life to be established with b", () => established(mesh("a"), "b") && established(mesh("b"), "a"), 20_000, 100);
    const va = mesh("a");
    expect(va.uid).not.toBe(old);
    expect(mesh("b").peers.find((x) => x.name === "a")?.uid).toBe(va.uid);
    expect(va.ipam?.allocations).toEqual({ pa: ips.a });
    const r = ping(ns("pa"), ips.b, 2);
    expect(r.status, r.stdout).toBe(0);
  }, 60_000);
});
