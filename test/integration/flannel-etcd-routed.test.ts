/**
 * flannel from etcd across a routed underlay (scripts/labs/flannel-etcd-routed.yaml): node2's
 * agent reaches etcd and node1's VTEP only through the kernel router, as on another machine;
 * with DirectRouting, node1 and node3 (one subnet) route to each other's pods without VXLAN.
 *
 * And docs/etcd.md's procedure for several machines, followed on one: two "machines" are
 * namespaces joined by one LAN veth (10.0.0.0/24); machine A runs etcd (started with the
 * documented command line, no lab); each machine brings up its own lab
 * (scripts/labs/flannel-vm-a.yaml, flannel-vm-b.yaml: one node and a pod, no etcd), joins
 * the lab's underlay bridge with a veth, routes the other machine's node subnet over the LAN,
 * and starts `tapnet agent` by hand with the etcd endpoint and its node's address.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, CLI, ROOT, background, canRunLabs, captureFields, inNs, netnsList, ping, tapnet, tapnetOk, waitFor } from "./harness.js";

const LAB = "flannel-etcd-routed";
const file = path.join(ROOT, "scripts/labs/flannel-etcd-routed.yaml");
const ns = (n: string): string => `tn.${LAB}.${n}`;

describe.skipIf(!canRunLabs())("flannel-etcd-routed.yaml", () => {
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  }, 120_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("leases from both subnets; VXLAN between the nodes crosses the router", async () => {
    const r = inNs(ns("etcd1"), [
      "etcdctl",
      "--endpoints",
      "http://192.168.1.11:2379",
      "get",
      "--prefix",
      "/coreos.com/network/subnets/",
      "--print-value-only",
    ]);
    expect(r.status, r.stderr).toBe(0);
    const publicIps = r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { PublicIP: string }).PublicIP)
      .sort();
    expect(publicIps).toEqual(["192.168.1.2", "192.168.1.3", "192.168.2.2"]);
    expect(tapnetOk(["show", "route", "--lab", LAB, "--node", "node2"])).toContain("10.244.1.0/24 via 10.244.1.0 dev flannel.1 proto flannel");
    let p = { status: 1 as number | null, stdout: "" };
    // On the router's net2 side: VXLAN from node2 to node1's underlay address.
    const lines = await captureFields(
      ns("ur"),
      "net2",
      () => {
        p = ping(ns("pod2a"), "10.244.1.2", 2);
      },
      ["ip.src", "ip.dst", "udp.dstport", "vxlan.vni"],
      ["-d", "udp.port==8472,vxlan"],
    );
    expect(p.status, p.stdout).toBe(0);
    // Outer addresses, then the inner ones (tshark lists both layers' ip.src/ip.dst).
    expect(
      lines.some((l) => /^192\.168\.2\.2,10\.244\.2\.2\|192\.168\.1\.2,10\.244\.1\.2\|8472\|1$/.test(l)),
      lines.join("\n"),
    ).toBe(true);
  });

  it("DirectRouting: node1 and node3 (one underlay subnet) route pods directly, without VXLAN; node2 (across the router) through VXLAN", async () => {
    const cfg = inNs(ns("etcd1"), ["etcdctl", "--endpoints", "http://192.168.1.11:2379", "get", "/coreos.com/network/config", "--print-value-only"]);
    expect(JSON.parse(cfg.stdout)).toMatchObject({ Backend: { Type: "vxlan", DirectRouting: true } });
    const r1 = tapnetOk(["show", "route", "--lab", LAB, "--node", "node1"]);
    expect(r1).toContain("10.244.3.0/24 via 192.168.1.3 dev ul0 proto flannel");
    expect(r1).toContain("10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto flannel");
    expect(tapnetOk(["show", "route", "--lab", LAB, "--node", "node3"])).toContain("10.244.1.0/24 via 192.168.1.2 dev ul0 proto flannel");
    expect(tapnetOk(["show", "route", "--lab", LAB, "--node", "node2"])).toContain("10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto flannel");
    // No FDB entry for node3's VTEP on node1: a direct peer is a route only (flannel's).
    expect(tapnetOk(["show", "fdb", "--lab", LAB, "--node", "node1"])).not.toContain("192.168.1.3");
    // On node3's underlay port: the pods' ICMP itself, no VXLAN.
    let p = { status: 1 as number | null, stdout: "" };
    const lines = await captureFields(
      ns("ul"),
      "node3",
      () => {
        p = ping(ns("pod1a"), "10.244.3.2", 2);
      },
      ["ip.src", "ip.dst", "udp.dstport"],
      ["-Y", "icmp || udp.port==8472"],
    );
    expect(p.status, p.stdout).toBe(0);
    expect(lines, lines.join("\n")).toContain("10.244.1.2|10.244.3.2|");
    expect(lines, lines.join("\n")).toContain("10.244.3.2|10.244.1.2|");
    expect(
      lines.filter((l) => l.endsWith("|8472")),
      lines.join("\n"),
    ).toEqual([]);
    const across = ping(ns("pod2a"), "10.244.3.2", 2);
    expect(across.status, across.stdout).toBe(0);
  });
});

describe.skipIf(!canRunLabs())("several machines (docs/etcd.md): etcd and agents started by hand", () => {
  const A = "tnvm-a";
  const B = "tnvm-b";
  const ETCD = "http://10.0.0.1:2379";
  const labA = path.join(ROOT, "scripts/labs/flannel-vm-a.yaml");
  const labB = path.join(ROOT, "scripts/labs/flannel-vm-b.yaml");
  const dataDir = path.join(os.tmpdir(), `tapnet-test-vm-etcd-${process.pid}`);
  const procs: Background[] = [];
  const made: string[] = [];
  const ok = (argv: string[]): string => {
    const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const etcdctl = (...args: string[]) => inNs(A, ["etcdctl", "--endpoints", ETCD, ...args]);
  /** docs/etcd.md, "On several machines", step 3 on machine `m`: the lab's underlay bridge joined to the machine, which routes. */
  const joinMachine = (m: string, lab: string, gw: string, otherNodes: string, otherMachine: string): void => {
    ok(["ip", "-n", m, "link", "add", "tnul0", "type", "veth", "peer", "name", "machine", "netns", `tn.${lab}.ul`]);
    ok(["ip", "-n", `tn.${lab}.ul`, "link", "set", "machine", "master", "br-net", "up"]);
    ok(["ip", "-n", m, "addr", "add", gw, "dev", "tnul0"]);
    ok(["ip", "-n", m, "link", "set", "tnul0", "up"]);
    ok(["ip", "netns", "exec", m, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ok(["ip", "-n", m, "route", "add", otherNodes, "via", otherMachine]);
  };
  /** docs/etcd.md's `tapnet agent` command line, on machine `m`. */
  const agent = (m: string, lab: string, node: string, publicIp: string): Background => {
    const p = background(m, [
      process.execPath,
      CLI,
      "agent",
      "--node",
      node,
      "--etcd-endpoints",
      ETCD,
      "--socket",
      `/run/tapnet/${lab}/${node}.sock`,
      "--public-ip",
      publicIp,
      "--subnet-file",
      `/run/tapnet/${lab}/${node}.subnet.env`,
      "--status-socket",
      `/run/tapnet/${lab}/${node}.agent.sock`,
    ]);
    procs.push(p);
    return p;
  };

  beforeAll(async () => {
    for (const f of [labA, labB]) tapnet(["lab", "down", f]);
    for (const m of [A, B]) if (netnsList().includes(m)) throw new Error(`namespace ${m} exists already (left by an earlier run?)`);
    // Two machines and the LAN between them: all they share.
    for (const m of [A, B]) {
      made.push(m);
      ok(["ip", "netns", "add", m]);
      ok(["ip", "-n", m, "link", "set", "lo", "up"]);
    }
    ok(["ip", "-n", A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", B]);
    ok(["ip", "-n", A, "addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    ok(["ip", "-n", B, "addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    for (const m of [A, B]) ok(["ip", "-n", m, "link", "set", "eth0", "up"]);
    // Machine A: etcd, and flannel's config in it.
    procs.push(
      background(A, [
        "etcd",
        "--name",
        "vm-a",
        "--data-dir",
        dataDir,
        "--listen-client-urls",
        ETCD,
        "--advertise-client-urls",
        ETCD,
        "--listen-peer-urls",
        "http://10.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:2380",
        "--initial-cluster",
        "vm-a=http://10.0.0.1:2380",
      ]),
    );
    await waitFor("etcd on machine A to be healthy", () => etcdctl("endpoint", "health").status === 0, 60_000, 200);
    const put = etcdctl("put", "/coreos.com/network/config", '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}');
    expect(put.status, put.stderr).toBe(0);
    // Each machine: its lab, its underlay joined and routed, its agent.
    tapnetOk(["lab", "up", labA, "-q"]);
    tapnetOk(["lab", "up", labB, "-q"]);
    joinMachine(A, "flannel-vm-a", "192.168.1.254/24", "192.168.2.0/24", "10.0.0.2");
    joinMachine(B, "flannel-vm-b", "192.168.2.254/24", "192.168.1.0/24", "10.0.0.1");
    const a = agent(A, "flannel-vm-a", "node1", "192.168.1.1");
    const b = agent(B, "flannel-vm-b", "node2", "192.168.2.1");
    await a.waitFor(/peer 10\.244\.2\.0\/24 added/, 60_000);
    await b.waitFor(/peer 10\.244\.1\.0\/24 added/, 60_000);
  }, 180_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    const problems: string[] = [];
    for (const f of [labA, labB]) {
      const r = tapnet(["lab", "down", f]);
      if (r.status !== 0) problems.push(r.stderr);
    }
    for (const m of made) if (netnsList().includes(m)) spawnSync("ip", ["netns", "del", m]);
    fs.rmSync(dataDir, { recursive: true, force: true });
    expect(problems).toEqual([]);
    expect(netnsList().filter((n) => n.startsWith("tn.flannel-vm-") || n === A || n === B)).toEqual([]);
  }, 60_000);

  it("one lease per machine's node in etcd, each node routed to the other, pods ping across the machines' LAN", async () => {
    const r = etcdctl("get", "--prefix", "/coreos.com/network/subnets/");
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n").filter(Boolean);
    const leases = Object.fromEntries(
      Array.from({ length: lines.length / 2 }, (_, i) => [lines[2 * i], JSON.parse(lines[2 * i + 1]) as { PublicIP: string; BackendType: string }]),
    );
    expect(Object.keys(leases).sort()).toEqual(["/coreos.com/network/subnets/10.244.1.0-24", "/coreos.com/network/subnets/10.244.2.0-24"]);
    expect(leases["/coreos.com/network/subnets/10.244.1.0-24"]).toMatchObject({ PublicIP: "192.168.1.1", BackendType: "vxlan" });
    expect(leases["/coreos.com/network/subnets/10.244.2.0-24"]).toMatchObject({ PublicIP: "192.168.2.1", BackendType: "vxlan" });
    expect(tapnetOk(["show", "route", "--lab", "flannel-vm-a", "--node", "node1"])).toContain("10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto flannel");
    expect(tapnetOk(["show", "route", "--lab", "flannel-vm-b", "--node", "node2"])).toContain("10.244.1.0/24 via 10.244.1.0 dev flannel.1 proto flannel");
    const st = JSON.parse(tapnetOk(["show", "agent", "--status-socket", "/run/tapnet/flannel-vm-b/node2.agent.sock", "--json"])) as {
      lease: { subnet: string };
      peers: Array<{ subnet: string; publicIp: string }>;
      etcd: { reachable: boolean; endpoint: string };
    };
    expect(st.lease.subnet).toBe("10.244.2.0/24");
    expect(st.peers.map((p) => [p.subnet, p.publicIp])).toEqual([["10.244.1.0/24", "192.168.1.1"]]);
    expect(st.etcd).toMatchObject({ reachable: true, endpoint: ETCD });
    expect(fs.readFileSync("/run/tapnet/flannel-vm-a/node1.subnet.env", "utf8")).toContain("FLANNEL_SUBNET=10.244.1.1/24");
    // On the LAN between the machines: VXLAN from node2's address to node1's, routed by the machines.
    let p = { status: 1 as number | null, stdout: "" };
    const cap = await captureFields(
      A,
      "eth0",
      () => {
        p = ping("tn.flannel-vm-b.pod2a", "10.244.1.2", 2);
      },
      ["ip.src", "ip.dst", "udp.dstport", "vxlan.vni"],
      ["-d", "udp.port==8472,vxlan"],
    );
    expect(p.status, p.stdout).toBe(0);
    expect(
      cap.some((l) => /^192\.168\.2\.1,10\.244\.2\.2\|192\.168\.1\.1,10\.244\.1\.2\|8472\|1$/.test(l)),
      cap.join("\n"),
    ).toBe(true);
    const back = ping("tn.flannel-vm-a.pod1a", "10.244.2.2", 2);
    expect(back.status, back.stdout).toBe(0);
  });
});
