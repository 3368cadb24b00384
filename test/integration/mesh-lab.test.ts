/**
 * The mesh (Weave's design, tapnet's implementation) on scripts/labs/weave-mesh.yaml:
 * node1 and node3 on underlay segments that cannot reach each other, node2 on both.
 * One lab for the whole file; the tests run in order (a fourth node joins, a direct path
 * heals, a peer is killed last).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { readState } from "../../src/lab/state.js";
import type { MeshView } from "../../src/mesh/agent.js";
import { shortId } from "../../src/mesh/wire.js";
import type { NodeConfig } from "../../src/node/config.js";
import { type Background, background, CLI, canRunLabs, inNs, macOf, netnsList, ping, ROOT, sendRaw, tapnet, tapnetOk, tcpdump, waitFor } from "./harness.js";

const LAB = "weave-mesh";
const FILE = path.join(ROOT, "scripts/labs/weave-mesh.yaml");
const PASSWORD = "tapnet-mesh-lab";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const runDir = path.join(process.env.TAPNET_RUN_DIR ?? "/run/tapnet", LAB);

const mesh = (node: string): MeshView => JSON.parse(tapnetOk(["show", "mesh", "--node", node, "--lab", LAB, "--json"])) as MeshView;
const peerNames = (v: MeshView): string[] => v.peers.map((p) => p.name);
const via = (v: MeshView, peer: string): string | undefined => v.peers.find((p) => p.name === peer)?.via;
/** A pod's address, as its node's share of the ring gave it (lab state). */
const ipOf = (pod: string): string => (readState(LAB)?.hosts[pod]?.ip ?? "").split("/")[0];
const u32 = (ip: string): number => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
/** The peer whose range holds `ip`, in a peer's view of the ring. */
const ringOwner = (v: MeshView, ip: string): string | undefined =>
  v.ipam?.peers.find((p) => p.ranges.some((r) => u32(r.start) <= u32(ip) && u32(ip) <= u32(r.end)))?.peer;
/** The probed path MTU of a peer's established connection with another. */
const pmtuOf = (v: MeshView, peer: string): number | null | undefined => v.connections.find((c) => c.peer === peer && c.state === "established")?.pmtu;
const nodeLog = (node: string): string => fs.readFileSync(path.join(runDir, `${node}.log`), "utf8");
/** A pod's eth0 MTU, as its kernel has it. */
const podMtu = (pod: string): number => (JSON.parse(inNs(ns(pod), ["ip", "-j", "link", "show", "eth0"]).stdout) as Array<{ mtu: number }>)[0].mtu;
/** The pods that set no MTU (all but pod1b, which keeps its 1376): they follow the mesh MTU. */
const FOLLOWING = ["pod1a", "pod2a", "pod3a"];
const podMtus = (): Record<string, number> => Object.fromEntries([...FOLLOWING, "pod1b"].map((p) => [p, podMtu(p)]));

function sh(argv: string[]): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
}

/** Python in a namespace; throws with its stderr when it fails; returns stdout. */
function py(n: string, code: string): string {
  const r = inNs(ns(n), ["python3", "-c", code], 30_000);
  if (r.status !== 0) throw new Error(`python in ${n}: ${r.stderr}`);
  return r.stdout;
}

/** A fourth node started by hand (tapnet node run) in namespaces the test makes and removes. */
interface Extra {
  proc: Background | null;
  dir: string;
  socket: string;
}
const extra: Extra = { proc: null, dir: "", socket: "" };
/** pod4a's address, from node4's share of the ring. */
let pod4ip = "";

function node4Config(password: string, withPod: boolean): string {
  const cfg: NodeConfig = {
    lab: LAB,
    node: "node4",
    controlSocket: extra.socket,
    ports: [
      ...(withPod ? [{ name: "pod4a", kind: "tap" as const, ifname: "pod4a", vlan: { mode: "access" as const, vlan: 1 } }] : []),
      {
        name: "weave",
        kind: "mesh",
        ifname: "weave",
        vlan: { mode: "access", vlan: 1 },
        mesh: {
          name: "node4",
          port: 6783,
          password,
          peers: ["192.168.1.2"],
          addresses: ["192.168.1.4"],
          underlayMtu: 1500,
          ipam: { range: "10.32.0.0/12", seed: ["node1"] },
        },
      },
    ],
    offload: true,
    switch: { ageingTime: 300, maxEntries: 8192, static: [] },
  };
  const file = path.join(extra.dir, "node4.json");
  fs.writeFileSync(file, JSON.stringify(cfg));
  return file;
}

async function startNode4(password: string, withPod: boolean): Promise<Background> {
  const p = background(ns("node4"), [process.execPath, CLI, "node", "run", node4Config(password, withPod)]);
  extra.proc = p;
  await p.waitFor(/tapnet node node4 \(lab weave-mesh\) up/, 30_000);
  return p;
}

async function stopNode4(): Promise<void> {
  const p = extra.proc;
  extra.proc = null;
  if (p?.running()) await p.stop("SIGTERM");
}

describe.skipIf(!canRunLabs())("weave-mesh.yaml", () => {
  beforeAll(async () => {
    tapnet(["lab", "down", FILE]);
    tapnetOk(["lab", "up", FILE, "-q"]);
    // Converged: every peer knows all three and has routes to the other two.
    await waitFor("the mesh to converge", () => ["node1", "node2", "node3"].every((n) => mesh(n).peers.filter((p) => p.reachable).length === 3), 30_000, 200);
  }, 120_000);

  afterAll(async () => {
    await stopNode4();
    for (const n of ["node4", "pod4a"]) spawnSync("ip", ["netns", "del", ns(n)]);
    if (extra.dir) fs.rmSync(extra.dir, { recursive: true, force: true });
    const r = tapnet(["lab", "down", FILE]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  }, 60_000);

  it("every peer sees the whole mesh; node1 and node3 reach each other through node2 (show mesh names the relay)", () => {
    const v1 = mesh("node1");
    expect(peerNames(v1)).toEqual(["node1", "node2", "node3"]);
    expect(via(v1, "node2")).toBe("direct");
    expect(via(v1, "node3")).toBe("relay node2");
    expect(via(mesh("node3"), "node1")).toBe("relay node2");
    // node1's attempt at node3's address fails (no route): shown as a failed connection.
    expect(v1.connections.find((c) => c.address === "192.168.2.3")?.state).toBe("failed");
    const v2 = mesh("node2");
    expect(
      v2.connections
        .filter((c) => c.state === "established")
        .map((c) => c.peer)
        .sort(),
    ).toEqual(["node1", "node3"]);
    // node2 forwards node1's broadcasts to node3 and node3's to node1.
    expect(v2.broadcast).toMatchObject({ node1: ["node3"], node3: ["node1"], node2: ["node1", "node3"] });
    expect(v1.password).toBe(true);
  });

  it("the pods' addresses come from their nodes' shares of the ring, and every peer sees the same ring", async () => {
    const pods = ["pod1a", "pod1b", "pod2a", "pod3a"];
    const ips = pods.map(ipOf);
    for (const ip of ips) expect(ip).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+$/);
    expect(new Set(ips).size).toBe(4);
    expect(readState(LAB)?.hosts.pod1a.ip).toMatch(/\/12$/);
    // The views agree once the last allocation's gossip has gone round.
    const rings = (): string[] => ["node1", "node2", "node3"].map((n) => JSON.stringify(mesh(n).ipam?.peers));
    await waitFor("every peer to hold the same ring", () => new Set(rings()).size === 1, 10_000, 200);
    const v = mesh("node2");
    expect(v.ipam?.ready).toBe(true);
    // node1 owned the range at first (the seed) and gave node2 and node3 space when they asked.
    expect(v.ipam?.peers.map((p) => p.peer)).toEqual(["node1", "node2", "node3"]);
    expect(v.ipam?.peers.reduce((n, p) => n + p.size, 0)).toBe(2 ** 20);
    for (const [pod, node] of [
      ["pod1a", "node1"],
      ["pod1b", "node1"],
      ["pod2a", "node2"],
      ["pod3a", "node3"],
    ])
      expect(ringOwner(v, ipOf(pod)), pod).toBe(node);
    expect(mesh("node3").ipam?.allocations).toEqual({ pod3a: ipOf("pod3a") });
    expect(tapnetOk(["show", "mesh", "--node", "node1", "--lab", LAB])).toMatch(/address ring 10\.32\.0\.0\/12: \d+ free here/);
  });

  it("all pods ping each other", () => {
    const pods: Record<string, string> = Object.fromEntries(["pod1a", "pod1b", "pod2a", "pod3a"].map((p) => [p, ipOf(p)]));
    for (const [from] of Object.entries(pods)) {
      for (const [to, ip] of Object.entries(pods)) {
        if (from === to) continue;
        const r = ping(ns(from), ip, 2);
        expect(r.status, `${from} -> ${to}: ${r.stdout}`).toBe(0);
      }
    }
  });

  it("a trace shows the mesh's outer headers: to node3's pod through the relay node2, a broadcast along node1's tree", () => {
    const mac = (pod: string): string => macOf(ns(pod));
    // node1 learns pod3a's MAC behind node3 from the reply.
    expect(ping(ns("pod1a"), ipOf("pod3a"), 1).status).toBe(0);
    type WhatIf = { out: Array<{ port: string; frame: string; encap?: string }> };
    const trace = (to: string): WhatIf =>
      JSON.parse(
        tapnetOk([
          "trace",
          "node1",
          "--in",
          "pod1a",
          "--packet",
          `icmp ${ipOf("pod1a")} > ${ipOf("pod3a")} from ${mac("pod1a")} to ${to}`,
          "--lab",
          LAB,
          "--json",
        ]),
      ) as WhatIf;
    // node3 is reached through node2; short ids are the peers' (src/mesh/wire.ts shortId).
    const hex = (x: number): string => `0x${x.toString(16)}`;
    const short = (name: string): string => hex(shortId(name));
    const uni = trace(mac("pod3a"));
    expect(uni.out).toEqual([
      expect.objectContaining({
        port: "weave",
        encap: `mesh: outer IPv4 > 192.168.1.2, UDP > 6783, sleeve header origin ${short("node1")} dest ${short("node3")}`,
      }),
    ]);
    const flood = trace("ff:ff:ff:ff:ff:ff");
    expect(flood.out.find((o) => o.port === "weave")?.encap).toBe(
      `mesh: outer IPv4 > {192.168.1.2} (our broadcast tree), UDP > 6783, sleeve header origin ${short("node1")} dest broadcast`,
    );
  });
  it("each connection's path MTU is probed; net2 lowered to 1300 lowers the mesh MTU everywhere, and a pod gets ICMP frag-needed above it", async () => {
    const nodes = ["node1", "node2", "node3"];
    const pod3a = ipOf("pod3a");
    expect(pod3a).toMatch(/^10\./);
    // At first every established connection carries the configured 1500.
    await waitFor(
      "every connection's PMTU to be probed",
      () =>
        nodes.every((n) =>
          mesh(n)
            .connections.filter((c) => c.state === "established")
            .every((c) => c.pmtu === 1500),
        ),
      20_000,
      200,
    );
    expect(nodes.map((n) => [mesh(n).pathMtu, mesh(n).mtu])).toEqual(nodes.map(() => [1500, 1440]));
    // The pods without an MTU of their own have the mesh MTU; pod1b keeps the 1376 it sets.
    expect(podMtus()).toEqual({ pod1a: 1440, pod2a: 1440, pod3a: 1440, pod1b: 1376 });
    expect(FOLLOWING.map((p) => readState(LAB)?.hosts[p]?.mtuFromMesh)).toEqual([true, true, true]);
    expect(readState(LAB)?.hosts.pod1b.mtuFromMesh).toBeUndefined();
    // pod1a's whole MTU (1440: 1412 bytes of ICMP data) crosses node2's relay.
    const fits = ping(ns("pod1a"), pod3a, 2, ["-M", "do", "-s", "1412"]);
    expect(fits.status, fits.stdout).toBe(0);
    // net2 (node2's ul1, node3's ul0 and the bridge's ports) down to 1300.
    const net2Ports = (): string[] =>
      (JSON.parse(inNs(ns("ul"), ["ip", "-j", "link", "show", "master", "br-net2"]).stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
    const setNet2 = (mtu: number): void => {
      for (const l of net2Ports()) sh(["ip", "-n", ns("ul"), "link", "set", l, "mtu", String(mtu)]);
      sh(["ip", "-n", ns("node2"), "link", "set", "ul1", "mtu", String(mtu)]);
      sh(["ip", "-n", ns("node3"), "link", "set", "ul0", "mtu", String(mtu)]);
    };
    const fragBefore = mesh("node1").counters.fragNeeded ?? 0;
    setNet2(1300);
    try {
      await waitFor(
        "node2 and node3 to find 1300 on their connection",
        () => pmtuOf(mesh("node2"), "node3") === 1300 && pmtuOf(mesh("node3"), "node2") === 1300,
        40_000,
        200,
      );
      // The other connection keeps its own PMTU; the mesh MTU everywhere is 1300 - 60.
      expect(pmtuOf(mesh("node2"), "node1")).toBe(1500);
      await waitFor("every peer to take 1300 as the mesh's path MTU", () => nodes.every((n) => mesh(n).pathMtu === 1300 && mesh(n).mtu === 1240), 20_000, 200);
      // The following pods' eth0 follow it (their supervisors set it), on every node; pod1b keeps 1376.
      await waitFor("the following pods' eth0 to take 1240", () => FOLLOWING.every((p) => podMtu(p) === 1240), 10_000, 100);
      expect(podMtu("pod1b")).toBe(1376);
      // 1240 bytes of IP (1212 of ICMP data) still get through; one byte more does not
      // leave pod1a (its own MTU) ...
      const at = ping(ns("pod1a"), pod3a, 2, ["-M", "do", "-s", "1212"]);
      expect(at.status, at.stdout).toBe(0);
      const above = ping(ns("pod1a"), pod3a, 1, ["-M", "do", "-s", "1213"]);
      expect(above.status).not.toBe(0);
      expect(`${above.stdout}${above.stderr}`).toMatch(/message too long, mtu=1240/);
      // ... and from pod1b (1376) it gets the frag-needed node1's sleeve answers with, naming 1240.
      const pinned = ping(ns("pod1b"), pod3a, 2, ["-M", "do", "-s", "1213"]);
      expect(pinned.status).not.toBe(0);
      expect(`${pinned.stdout}${pinned.stderr}`).toMatch(/Frag needed and DF set \(mtu = 1240\)|message too long, mtu=1240/);
      expect(mesh("node1").counters.fragNeeded - fragBefore).toBeGreaterThanOrEqual(1);
    } finally {
      setNet2(1500);
    }
  }, 120_000);

  it("node1 <-> node3 travels in UDP through node2 (captures on both of node2's underlay links; relayed counter)", async () => {
    const before = mesh("node2").counters.relayed;
    const net1 = await tcpdump(ns("node2"), "ul0", ["udp", "port", "6783", "and", "greater", "100"]);
    const net2 = await tcpdump(ns("node2"), "ul1", ["udp", "port", "6783", "and", "greater", "100"]);
    const r = ping(ns("pod1a"), ipOf("pod3a"), 5);
    const count = (ls: string[], dir: string): number => ls.filter((l) => l.includes(dir)).length;
    // Stop the captures once they hold what they saw (stop() may lose what tcpdump has not read yet).
    await waitFor(
      "both captures to hold the ping",
      () => count(net1.lines(), "192.168.1.2.6783 > 192.168.1.1.6783") >= 5 && count(net2.lines(), "192.168.2.3.6783 > 192.168.2.2.6783") >= 5,
      10_000,
      100,
    ).catch(() => undefined); // the assertions below say what is missing
    const l1 = await net1.stop();
    const l2 = await net2.stop();
    expect(r.status, r.stdout).toBe(0);
    // Requests node1 -> node2 on net1, relayed node2 -> node3 on net2; replies the other way.
    expect(l1.filter((l) => l.includes("192.168.1.1.6783 > 192.168.1.2.6783")).length).toBeGreaterThanOrEqual(5);
    expect(l1.filter((l) => l.includes("192.168.1.2.6783 > 192.168.1.1.6783")).length).toBeGreaterThanOrEqual(5);
    expect(l2.filter((l) => l.includes("192.168.2.2.6783 > 192.168.2.3.6783")).length).toBeGreaterThanOrEqual(5);
    expect(l2.filter((l) => l.includes("192.168.2.3.6783 > 192.168.2.2.6783")).length).toBeGreaterThanOrEqual(5);
    expect(mesh("node2").counters.relayed - before).toBeGreaterThanOrEqual(10);
  });

  it("an ARP broadcast reaches every other pod exactly once", async () => {
    const src = macOf(ns("pod1a"));
    const others = ["pod1b", "pod2a", "pod3a"];
    const caps = await Promise.all(others.map((p) => tcpdump(ns(p), "eth0", ["arp", "and", "ether", "src", src])));
    // Three who-has requests for an address nobody holds (no reply, no cache), 10.47.255.254.
    const mac = src.replaceAll(":", "");
    const spa = u32(ipOf("pod1a")).toString(16).padStart(8, "0");
    const frame = ["ffffffffffff", mac, "0806", "0001", "0800", "06", "04", "0001", mac, spa, "000000000000", "0a2ffffe"].join("");
    const txTo = (): number => {
      const s = JSON.parse(tapnetOk(["show", "ports", "--node", "node3", "--lab", LAB, "--json"])) as Array<{ name: string; txFrames: number }>;
      return s.find((p) => p.name === "pod3a")?.txFrames ?? 0;
    };
    const tx0 = txTo();
    const r = sendRaw(ns("pod1a"), "eth0", [frame, frame, frame]);
    expect(r.status, r.stderr).toBe(0);
    // Wait until the farthest pod (two mesh hops) has seen all three, then count everywhere.
    await waitFor("the three requests to reach pod3a's port", () => txTo() - tx0 >= 3, 10_000, 100);
    const seen = (c: { lines: () => string[] }): number => c.lines().filter((l) => l.includes("Request who-has 10.47.255.254")).length;
    await waitFor("every capture to hold the three requests", () => caps.every((c) => seen(c) >= 3), 10_000, 100).catch(() => undefined);
    const counts = await Promise.all(caps.map(async (c) => (await c.stop()).filter((l) => l.includes("Request who-has 10.47.255.254")).length));
    expect(Object.fromEntries(others.map((p, i) => [p, counts[i]]))).toEqual({ pod1b: 3, pod2a: 3, pod3a: 3 });
  });

  it("malformed data and gossip are dropped and counted, never a crash", async () => {
    const c0 = mesh("node2").counters;
    const wire = await import("../../src/mesh/wire.js");
    const s1 = wire.shortId("node1").toString(16).padStart(8, "0");
    const s2 = wire.shortId("node2").toString(16).padStart(8, "0");
    const udp = [
      "0102030405", // truncated: no header
      `5709010f${s1}${s1}${s2}`, // version 9
      `5701010f00012345${s1}${s2}`, // sender is no peer
      `5701010f${s1}${s1}${s2}0064${"ab".repeat(20)}`, // a frame cut short
    ];
    py(
      "node1",
      ["import socket", "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)", ...udp.map((h) => `s.sendto(bytes.fromhex('${h}'), ('192.168.1.2', 6783))`)].join(
        "\n",
      ),
    );
    // TCP: a message before HELLO, a body that is not JSON, then a length beyond 1 MiB.
    py(
      "node1",
      [
        "import socket, struct, json",
        "def msg(t, body): return struct.pack('>IB', len(body) + 1, t) + body",
        "s=socket.create_connection(('192.168.1.2', 6783), timeout=10)",
        "s.sendall(msg(3, b'{\"peers\": []}') + msg(1, b'not json'))",
        "s.sendall(struct.pack('>IB', 0x7fffffff, 1))",
        "s.settimeout(10)",
        "while s.recv(4096): pass",
      ].join("\n"),
    );
    // Gossip after a real handshake (the password proof computed by Python's hashlib and
    // hmac, as auth.ts documents it): entries that are not entries.
    const out = py(
      "node1",
      [
        "import socket, struct, json, hashlib, hmac, os",
        "def msg(t, o):",
        "  b = json.dumps(o).encode()",
        "  return struct.pack('>IB', len(b) + 1, t) + b",
        "def read(s):",
        "  h = b''",
        "  while len(h) < 5: h += s.recv(5 - len(h))",
        "  n, t = struct.unpack('>IB', h)",
        "  b = b''",
        "  while len(b) < n - 1: b += s.recv(n - 1 - len(b))",
        "  return t, json.loads(b)",
        `key = hashlib.scrypt(b'${PASSWORD}', salt=b'tapnet-mesh v1', n=16384, r=8, p=1, dklen=32)`,
        "nonce = os.urandom(32).hex(); uid = os.urandom(8).hex()",
        "s=socket.create_connection(('192.168.1.2', 6783), timeout=10)",
        "s.sendall(msg(1, {'proto': 'tapnet-mesh', 'version': 1, 'name': 'rogue', 'uid': uid, 'nonce': nonce, 'password': True}))",
        "t, hello = read(s)",
        "p = hmac.new(key, ('tapnet-mesh auth\\0rogue\\0' + uid + '\\0' + nonce + '\\0' + hello['nonce']).encode(), 'sha256').hexdigest()",
        "s.sendall(msg(2, {'proof': p}))",
        "while True:",
        "  t, b = read(s)",
        "  if t == 3: break",
        "  if t == 4: raise SystemExit('refused: ' + b['reason'])",
        "print('gossip from', hello['name'], sorted(e['name'] for e in b['peers']))",
        "s.sendall(msg(3, {'peers': ['x', {'name': 'Bad Name'}, {'name': 'node9', 'uid': 'zz', 'version': 1, 'addresses': [], 'conns': []}]}))",
        "s.sendall(msg(3, {'peers': 7}))",
        "s.sendall(msg(9, {}))",
        // Rings that are not rings, and one for another range.
        "s.sendall(msg(5, {'range': '10.32.0.0/12', 'seed': ['node1'], 'entries': [{'token': 1, 'peer': 'rogue', 'version': 9, 'free': 1}]}))",
        "s.sendall(msg(5, {'range': '10.0.0.0/8', 'seed': ['node1'], 'entries': [{'token': 167772160, 'peer': 'rogue', 'version': 9, 'free': 1}]}))",
        // Our FIN comes after the messages: node2 handles them, then closes its side.
        "s.shutdown(socket.SHUT_WR)",
        "while s.recv(4096): pass",
      ].join("\n"),
    );
    expect(out).toContain("gossip from node2 ['node1', 'node2', 'node3']");
    const c = await waitFor(
      "the drops to be counted",
      () => {
        const x = mesh("node2").counters;
        return x.malformedEntries - c0.malformedEntries >= 3 && x.tooLong > c0.tooLong && x.ringWrongRange > c0.ringWrongRange ? x : undefined;
      },
      10_000,
      100,
    );
    expect(c.badHeader - c0.badHeader).toBe(1);
    expect(c.badVersion - c0.badVersion).toBe(1);
    expect(c.unknownPeer - c0.unknownPeer).toBe(1);
    expect(c.badFrame - c0.badFrame).toBe(1);
    expect(c.malformedEntries - c0.malformedEntries).toBe(3);
    // GOSSIP before HELLO, not JSON, peers not a list, an unknown type.
    expect(c.badMessages - c0.badMessages).toBe(4);
    expect(c.tooLong - c0.tooLong).toBe(1);
    expect(c.ringMalformed - c0.ringMalformed).toBe(1);
    expect(c.ringWrongRange - c0.ringWrongRange).toBe(1);
    expect(mesh("node2").ipam?.peers.map((p) => p.peer)).not.toContain("rogue");
    // node2 is still up and forwarding, and the rogue never became a peer.
    expect(ping(ns("pod1a"), ipOf("pod3a"), 2).status).toBe(0);
    expect(peerNames(mesh("node1"))).not.toContain("node9");
  });

  it("a peer with a wrong password is refused with a clear log line and no connection", async () => {
    extra.dir = fs.mkdtempSync(path.join(os.tmpdir(), "tn-mesh-"));
    fs.chmodSync(extra.dir, 0o700);
    extra.socket = path.join(extra.dir, "node4.sock");
    sh(["ip", "netns", "add", ns("node4")]);
    sh(["ip", "-n", ns("node4"), "link", "set", "lo", "up"]);
    sh(["ip", "link", "add", "ul0", "netns", ns("node4"), "type", "veth", "peer", "name", "node4", "netns", ns("ul")]);
    sh(["ip", "-n", ns("ul"), "link", "set", "node4", "master", "br-net1", "up"]);
    sh(["ip", "-n", ns("node4"), "addr", "add", "192.168.1.4/24", "dev", "ul0"]);
    sh(["ip", "-n", ns("node4"), "link", "set", "ul0", "up"]);
    const p = await startNode4("not-the-password", false);
    await waitFor(
      "node2 to refuse node4",
      () => /refused connection from 192\.168\.1\.4 \(peer node4\): authentication failed \(wrong password\?\)/.test(nodeLog("node2")),
      15_000,
      100,
    );
    // node4 logs node2's refusal, or its own (it checks node2's proof as well).
    await waitFor("node4 to log the refusal", () => /192\.168\.1\.2 \(peer node2\).*authentication failed/.test(p.out()), 15_000, 100);
    expect(mesh("node2").counters.authFailures).toBeGreaterThanOrEqual(1);
    expect(peerNames(mesh("node2"))).not.toContain("node4");
    expect(mesh("node2").connections.map((c) => c.peer)).not.toContain("node4");
    const v4 = (await request(extra.socket, { cmd: "mesh" })) as MeshView;
    expect(peerNames(v4)).toEqual(["node4"]);
    await stopNode4();
  }, 60_000);

  it("a fourth node joins at runtime: within 5 s every peer lists it; its pod takes an address from space node4 asks for, and is reachable", async () => {
    sh(["ip", "netns", "add", ns("pod4a")]);
    await startNode4(PASSWORD, true);
    sh(["ip", "-n", ns("node4"), "link", "set", "pod4a", "netns", ns("pod4a")]);
    sh(["ip", "-n", ns("pod4a"), "link", "set", "pod4a", "name", "eth0"]);
    sh(["ip", "-n", ns("pod4a"), "link", "set", "eth0", "mtu", "1376"]);
    sh(["ip", "-n", ns("pod4a"), "link", "set", "eth0", "up"]);
    const started = Date.now();
    await waitFor(
      "every peer to list node4 as reachable",
      () => ["node1", "node2", "node3"].every((n) => mesh(n).peers.some((p) => p.name === "node4" && p.reachable)),
      5_000,
      100,
    );
    const took = Date.now() - started;
    expect(took).toBeLessThan(5_000);
    expect(via(mesh("node3"), "node4")).toBe("relay node2");
    // node4 owns nothing yet: it asks the peer with the most free addresses, which donates.
    const { ip } = await request<{ ip: string }>(extra.socket, { cmd: "mesh-ipam", op: "allocate", owner: "pod4a", timeoutMs: 20_000 }, 25_000);
    pod4ip = ip.split("/")[0];
    expect(ip).toMatch(/\/12$/);
    sh(["ip", "-n", ns("pod4a"), "addr", "add", ip, "dev", "eth0"]);
    const v4 = (await request(extra.socket, { cmd: "mesh" })) as MeshView;
    expect(ringOwner(v4, pod4ip)).toBe("node4");
    expect(v4.counters.requestsSent).toBeGreaterThanOrEqual(1);
    expect(["node1", "node2", "node3"].map((n) => ipOf(`pod${n.slice(4)}a`))).not.toContain(pod4ip);
    expect(ping(ns("pod4a"), ipOf("pod3a"), 2).status).toBe(0);
    expect(ping(ns("pod1a"), pod4ip, 2).status).toBe(0);
    expect(peerNames(v4)).toEqual(["node1", "node2", "node3", "node4"]);
  }, 60_000);

  it("a direct path that heals takes the traffic back from the relay", async () => {
    // Join the two underlay segments and give node1 and node3 routes to each other.
    sh(["ip", "link", "add", "heal1", "netns", ns("ul"), "type", "veth", "peer", "name", "heal2", "netns", ns("ul")]);
    sh(["ip", "-n", ns("ul"), "link", "set", "heal1", "master", "br-net1", "up"]);
    sh(["ip", "-n", ns("ul"), "link", "set", "heal2", "master", "br-net2", "up"]);
    sh(["ip", "-n", ns("node1"), "route", "add", "192.168.2.0/24", "dev", "ul0"]);
    sh(["ip", "-n", ns("node3"), "route", "add", "192.168.1.0/24", "dev", "ul0"]);
    await waitFor("node1 to route to node3 directly", () => via(mesh("node1"), "node3") === "direct" && via(mesh("node3"), "node1") === "direct", 30_000, 200);
    // The new direct connection gets its own probe: across both bridges and the joining veth, all 1500.
    await waitFor("node1's direct connection to node3 to be probed", () => pmtuOf(mesh("node1"), "node3") === 1500, 15_000, 200);
    const before = mesh("node2").counters.relayed;
    const r = ping(ns("pod1a"), ipOf("pod3a"), 5);
    expect(r.status, r.stdout).toBe(0);
    expect(mesh("node2").counters.relayed).toBe(before);
  }, 60_000);

  it("a peer killed with -9 comes back (its supervisor) under a new UID: every view takes the new life, its pod is reachable again", async () => {
    const old = mesh("node1").peers.find((p) => p.name === "node3")?.uid;
    expect(old).toMatch(/^[0-9a-f]{16}$/);
    const pid = readState(LAB)?.nodes.node3.pid;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid as number, "SIGKILL");
    const views = async (): Promise<MeshView[]> => [mesh("node1"), mesh("node2"), (await request(extra.socket, { cmd: "mesh" })) as MeshView];
    await waitFor(
      "every peer to know node3's new life and reach it",
      async () => {
        try {
          return (await views()).every((v) => v.peers.some((p) => p.name === "node3" && p.uid !== old && p.reachable));
        } catch {
          return false; // node3 restarting: its socket may not answer yet
        }
      },
      30_000,
      200,
    );
    const v3 = mesh("node3");
    expect(v3.uid).not.toBe(old);
    // Its ring and allocations came back from /run/tapnet/LAB/node3.ipam: pod3a's address stays pod3a's.
    expect(v3.ipam?.allocations).toEqual({ pod3a: ipOf("pod3a") });
    expect(ringOwner(v3, ipOf("pod3a"))).toBe("node3");
    expect(nodeLog("node3")).toMatch(/mesh ipam: ring and 1 allocation\(s\) restored from .*node3\.ipam/);
    // No connection of the old life is left: node1 and node2 (node3's direct neighbours
    // since the heal) hold one connection to node3 each, established.
    for (const v of [mesh("node1"), mesh("node2")])
      expect(
        v.connections.filter((c) => c.peer === "node3").map((c) => c.state),
        v.name,
      ).toEqual(["established"]);
    const r = ping(ns("pod3a"), ipOf("pod1a"), 2);
    expect(r.status, r.stdout).toBe(0);
    // net2 is back at 1500 since the path-MTU test, and node3's new connections were probed
    // anew: the mesh MTU is 1440 again everywhere, and the following pods (pod3a through
    // node3's supervisor, which watches the restarted node) go back up with it.
    await waitFor("every peer's mesh MTU to be 1440 again", () => ["node1", "node2", "node3"].every((n) => mesh(n).mtu === 1440), 70_000, 200);
    await waitFor("the following pods' eth0 to be 1440 again", () => FOLLOWING.every((p) => podMtu(p) === 1440), 10_000, 100);
    expect(podMtu("pod1b")).toBe(1376);
  }, 120_000);

  it("a peer removed with -9 (supervisor and node) disappears from every view; the rest route around it", async () => {
    // node3 and node4 cannot exchange UDP (node4 has no route back to net2): they go
    // through a peer both reach. Of node1 and node2 the tree takes node1 (names in order).
    await waitFor("node3 to reach node4 through node1", () => via(mesh("node3"), "node4") === "relay node1", 20_000, 200);
    const n1 = readState(LAB)?.nodes.node1;
    expect(n1?.supervisor).toBeGreaterThan(0);
    process.kill(n1?.supervisor as number, "SIGKILL");
    try {
      process.kill(n1?.pid as number, "SIGKILL");
    } catch {
      // gone with its supervisor
    }
    const others = async (): Promise<MeshView[]> => [mesh("node2"), mesh("node3"), (await request(extra.socket, { cmd: "mesh" })) as MeshView];
    await waitFor(
      "node1 to leave every view",
      async () => (await others()).every((v) => !peerNames(v).includes("node1") && !v.connections.some((c) => c.peer === "node1" && c.state !== "failed")),
      20_000,
      200,
    );
    for (const v of await others()) expect(peerNames(v), `${v.name}'s view`).toEqual(["node2", "node3", "node4"]);
    expect(via(mesh("node3"), "node4")).toBe("relay node2");
    const before = mesh("node2").counters.relayed;
    for (const [from, to] of [
      ["pod3a", pod4ip],
      ["pod4a", ipOf("pod3a")],
      ["pod2a", pod4ip],
      ["pod3a", ipOf("pod2a")],
    ]) {
      const r = ping(ns(from), to, 2);
      expect(r.status, `${from} -> ${to}: ${r.stdout}`).toBe(0);
    }
    expect(mesh("node2").counters.relayed - before).toBeGreaterThanOrEqual(4);
  }, 60_000);

  it("the gone peer's ranges stay its own until `tapnet mesh rmpeer` gives them to node2; a new pod then takes one", async () => {
    const views = async (): Promise<MeshView[]> => [mesh("node2"), mesh("node3"), (await request(extra.socket, { cmd: "mesh" })) as MeshView];
    const node1Size = mesh("node2").ipam?.peers.find((p) => p.peer === "node1")?.size ?? 0;
    expect(node1Size).toBeGreaterThan(0);
    for (const v of await views()) expect(ringOwner(v, ipOf("pod1a")), v.name).toBe("node1");
    const before = mesh("node2");
    // Refused for a peer that is still in the mesh.
    const refused = tapnet(["mesh", "rmpeer", "node3", "--node", "node2", "--lab", LAB]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/node3 is still in the mesh/);
    const size2 = mesh("node2").ipam?.peers.find((p) => p.peer === "node2")?.size ?? 0;
    expect(tapnetOk(["mesh", "rmpeer", "node1", "--node", "node2", "--lab", LAB])).toMatch(/node2 took over \d+ range\(s\) of node1/);
    await waitFor(
      "every peer's ring to give node1's ranges to node2",
      async () => (await views()).every((v) => !v.ipam?.peers.some((p) => p.peer === "node1") && ringOwner(v, ipOf("pod1a")) === "node2"),
      10_000,
      200,
    );
    expect(mesh("node2").ipam?.peers.find((p) => p.peer === "node2")?.size).toBe(size2 + node1Size);
    // A pod added to node2 without an address takes one from node2's share, and answers.
    tapnetOk(["lab", "host", "add", LAB, "pod2b", "--node", "node2", "-q"]);
    const ip = ipOf("pod2b");
    // Without --mtu it has the mesh MTU, and follows it.
    expect(podMtu("pod2b")).toBe(mesh("node2").mtu);
    expect(readState(LAB)?.hosts.pod2b.mtuFromMesh).toBe(true);
    expect(ringOwner(mesh("node2"), ip)).toBe("node2");
    expect(mesh("node2").ipam?.allocations.pod2b).toBe(ip);
    // node2 hands out from its ranges in address order: the first free one was node1's.
    expect(ringOwner(before, ip)).toBe("node1");
    // The address may be pod1a's old one, in pod3a's ARP cache: pod2b speaks first (its
    // ARP request updates pod3a's entry, as Linux does for an entry it holds).
    expect(ping(ns("pod2b"), ipOf("pod3a"), 2).status).toBe(0);
    expect(ping(ns("pod3a"), ip, 2).status).toBe(0);
  }, 60_000);
});
