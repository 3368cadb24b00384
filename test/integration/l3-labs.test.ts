/**
 * The router with the real tools, on the shipped L3 labs: router.yaml (one router),
 * routers-chain.yaml (three routers, an MTU 1400 link), inter-vlan.yaml (a layer-3
 * switch).
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, ROOT, canRunLabs, inNs, iperf, macOf, netnsList, ping, sendRaw, snmp, tapnet, tapnetOk, tcpdump, sleep, waitFor, waitOutput } from "./harness.js";

const labFile = (n: string): string => path.join(ROOT, "scripts/labs", n);

function useLab(file: string, lab: string): void {
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${lab}.`))).toEqual([]);
  });
}

const show = <T>(what: string, node: string, lab: string): T => JSON.parse(tapnetOk(["show", what, "--node", node, "--lab", lab, "--json"])) as T;

interface Stats {
  router: Record<string, number>;
  engine: { internalErrors: number };
}

/** Runs `fn` while tcpdump writes a pcap in `ns`; returns tshark's field lines with checksum checks on. */
async function captureChecked(ns: string, fn: () => void, fields: string[]): Promise<string[]> {
  const file = path.join(os.tmpdir(), `tn-l3-${process.pid}-${Date.now()}.pcap`);
  const { spawn } = await import("node:child_process");
  const child = spawn("ip", ["netns", "exec", ns, "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n", "-w", file], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
    child.stderr.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("listening on")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  try {
    fn();
  } finally {
    await new Promise<void>((r) => {
      child.on("exit", () => r());
      child.kill("SIGINT");
    });
  }
  const r = spawnSync(
    "tshark",
    // tshark 4 always verifies ICMP checksums; IP and UDP need the preference.
    ["-r", file, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|", ...fields.flatMap((f) => ["-e", f])],
    { encoding: "utf8" },
  );
  fs.rmSync(file, { force: true });
  if (r.status !== 0) throw new Error(`tshark: ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean);
}

describe.skipIf(!canRunLabs())("router.yaml: one router", () => {
  const ns = (n: string): string => `tn.router.${n}`;
  useLab(labFile("router.yaml"), "router");

  it("h1 pings h2 across the router, with TTL 63 on arrival", () => {
    const r = ping(ns("h1"), "10.0.2.10", 3);
    expect(r.status, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ttl=63/);
  });

  it("routes TSO super-frames whole (offloads on a node of TAP hosts), and TCP flows", async () => {
    type P = { name: string; rxFrames: number; rxBytes: number };
    const port = (): P => show<P[]>("ports", "r1", "router").find((p) => p.name === "h1") as P;
    const before = port();
    const bps = await iperf(ns("h2"), ns("h1"), "10.0.2.10", 2);
    const after = port();
    expect(bps).toBeGreaterThan(1e8);
    expect((after.rxBytes - before.rxBytes) / (after.rxFrames - before.rxFrames)).toBeGreaterThan(3000);
    const st = show<Stats>("stats", "r1", "router").router;
    expect(st.fragNeeded).toBe(0);
    expect(st.gsoDropped).toBe(0);
  });

  it("the gateway answers ping and arping", () => {
    const p = ping(ns("h1"), "10.0.1.1", 2);
    expect(p.status, p.stdout).toBe(0);
    expect(p.stdout).toMatch(/from 10\.0\.1\.1: icmp_seq=1 ttl=64/);
    const a = inNs(ns("h2"), ["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.0.2.1"]);
    expect(a.status, a.stdout + a.stderr).toBe(0);
    const ifaces = show<Array<{ name: string; mac: string }>>("interfaces", "r1", "router");
    const eth2 = ifaces.find((i) => i.name === "eth2")?.mac.toUpperCase();
    expect(a.stdout).toContain(`reply from 10.0.2.1 [${eth2}]`);
    expect(a.stdout).toMatch(/Received 2 response/);
  });

  it("show neigh and show route match what the hosts' kernels see", () => {
    ping(ns("h1"), "10.0.2.10", 1);
    const neigh = show<Array<{ address: string; dev: string; mac: string; state: string }>>("neigh", "r1", "router");
    const h1 = neigh.find((n) => n.address === "10.0.1.10");
    const h2 = neigh.find((n) => n.address === "10.0.2.10");
    expect(h1).toMatchObject({ dev: "eth1", mac: macOf(ns("h1")) });
    expect(h2).toMatchObject({ dev: "eth2", mac: macOf(ns("h2")) });
    expect(["REACHABLE", "STALE"]).toContain(h1?.state);
    // The hosts' kernels hold the router's interface MACs for their gateways.
    const ifaces = show<Array<{ name: string; mac: string; addresses: string[] }>>("interfaces", "r1", "router");
    for (const [host, gw, ifn] of [
      ["h1", "10.0.1.1", "eth1"],
      ["h2", "10.0.2.1", "eth2"],
    ]) {
      const k = inNs(ns(host), ["ip", "neigh", "show", gw]).stdout;
      expect(k).toContain(`lladdr ${ifaces.find((i) => i.name === ifn)?.mac}`);
    }
    // Connected routes = the hosts' own subnets, on the right interfaces.
    const routes = show<Array<{ prefix: string; dev: string; kind: string; src: string }>>("route", "r1", "router");
    for (const [host, ifn] of [
      ["h1", "eth1"],
      ["h2", "eth2"],
    ]) {
      const kernel = inNs(ns(host), ["ip", "-4", "route", "show", "proto", "kernel"]).stdout.trim().split(/\s+/)[0];
      expect(routes).toContainEqual(expect.objectContaining({ prefix: kernel, dev: ifn, kind: "connected" }));
    }
    expect(tapnetOk(["show", "route", "--node", "r1", "--lab", "router"])).toMatch(/10\.0\.1\.0\/24 dev eth1 proto kernel scope link src 10\.0\.1\.1/);
  });

  it("show graph names the node's ports, its switch and router, and prints as a table", () => {
    type G = { node: string; ports: Array<{ name: string; kind: string }>; elements: Array<{ name: string; kind: string }>; edges: unknown[] };
    const g = show<G>("graph", "r1", "router");
    expect(g.node).toBe("r1");
    expect(g.ports.map((p) => p.name)).toEqual(expect.arrayContaining(["h1", "h2"]));
    expect(g.elements.map((e) => e.kind)).toEqual(expect.arrayContaining(["LearningSwitch", "Ipv4Router"]));
    const text = tapnetOk(["show", "graph", "--node", "r1", "--lab", "router"]);
    expect(text).toMatch(/elements/);
    expect(text).toMatch(/edges/);
  });

  it("a TCP connection to the router itself is refused with a reset", () => {
    const t0 = Date.now();
    const r = inNs(ns("h1"), ["curl", "-s", "--max-time", "5", "http://10.0.1.1/"]);
    expect(r.status).toBe(7); // curl: connection refused
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(show<Stats>("stats", "r1", "router").router.tcpResets).toBeGreaterThanOrEqual(1);
  });

  it("a silent address on a connected subnet gets Destination Host Unreachable", () => {
    const r = inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "6", "10.0.2.99"]);
    expect(r.stdout).toMatch(/From 10\.0\.1\.1 icmp_seq=1 Destination Host Unreachable/);
    expect(show<Stats>("stats", "r1", "router").router.hostUnreachable).toBeGreaterThanOrEqual(1);
  });

  it("drops frames with a bad IPv4 checksum or a lying length, counts them, and forwards on", () => {
    ping(ns("h1"), "10.0.2.10", 1);
    const before = show<Stats>("stats", "r1", "router").router;
    const gw = inNs(ns("h1"), ["ip", "neigh", "show", "10.0.1.1"])
      .stdout.match(/lladdr (\S+)/)?.[1]
      .replace(/:/g, "");
    const me = macOf(ns("h1")).replace(/:/g, "");
    expect(gw).toBeDefined();
    // 10.0.1.10 -> 10.0.2.10 ICMP echo, header checksum deliberately wrong (0x0000).
    const hdr = (totalLen: string, csum: string): string => `4500${totalLen}1234000040 01${csum}0a00010a0a00020a`.replace(/ /g, "");
    const icmp = `0800f7ff0000000000000000000000000000000000000000000000000000000000000000`;
    const bad = sendRaw(ns("h1"), "eth0", [
      `${gw}${me}0800${hdr("0030", "0000")}${icmp}`,
      `${gw}${me}0800${hdr("05dc", "0000")}${icmp}`, // says 1500 bytes, carries 48
    ]);
    expect(bad.status, bad.stderr).toBe(0);
    const after = show<Stats>("stats", "r1", "router");
    expect(after.router.badChecksum - before.badChecksum).toBe(1);
    expect(after.router.badTotalLen - before.badTotalLen).toBe(1);
    expect(after.router.forwarded - before.forwarded).toBe(0);
    expect(after.engine.internalErrors).toBe(0);
    expect(ping(ns("h1"), "10.0.2.10", 2).status).toBe(0);
  });
});

describe.skipIf(!canRunLabs())("routers-chain.yaml: three routers and an MTU 1400 link", () => {
  const ns = (n: string): string => `tn.chain.${n}`;
  useLab(labFile("routers-chain.yaml"), "chain");

  it("h1 pings h2 across three routers", () => {
    const r = ping(ns("h1"), "10.0.2.10", 3);
    expect(r.status, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ttl=61/);
  });

  it("tracepath reports pmtu 1400", () => {
    inNs(ns("h1"), ["ip", "route", "flush", "cache"]);
    const r = inNs(ns("h1"), ["tracepath", "-n", "10.0.2.10"], 60_000);
    expect(r.stdout, r.stderr).toMatch(/pmtu 1400/);
    expect(r.stdout).toMatch(/Resume: pmtu 1400 hops 4 back 4/);
  });

  it("traceroute lists the three routers in order; tshark finds every checksum the routers wrote good", async () => {
    let out = "";
    const lines = await captureChecked(ns("h1"), () => {
      out = inNs(ns("h1"), ["traceroute", "-n", "-q", "1", "-w", "2", "10.0.2.10"], 60_000).stdout;
      // And one of each other kind the routers write: echo reply, net unreachable, frag-needed.
      inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "10.1.23.1"]);
      inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "10.99.0.1"]);
      inNs(ns("h1"), ["ip", "route", "flush", "cache"]); // forget the path MTU tracepath learnt
      inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1450", "10.0.2.10"]);
      inNs(ns("h1"), ["ip", "route", "flush", "cache"]);
    }, ["ip.src", "ip.checksum.status", "icmp.type", "icmp.checksum.status"]);
    const hops = out
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/)[1])
      .filter(Boolean);
    expect(hops).toEqual(["10.0.1.1", "10.1.12.2", "10.1.23.2", "10.0.2.10"]);
    // ip.src lists the outer source, then the quoted packet's: "10.0.1.1,10.0.1.10|…".
    const fromRouters = lines.filter((l) => /^(10\.0\.1\.1|10\.1\.12\.2|10\.1\.23\.[12])[,|]/.test(l));
    // 3 time-exceeded, 1 echo reply, 1 net unreachable, 1 frag-needed.
    expect(fromRouters.map((l) => l.split("|")[2].split(",")[0]).sort()).toEqual(["0", "11", "11", "11", "3", "3"]);
    for (const l of fromRouters) {
      const [, ipStatus, , icmpStatus] = l.split("|");
      // Status 1 = good (2 = unverified). The quoted inner header is checked too.
      expect(
        ipStatus.split(",").every((s) => s === "1"),
        l,
      ).toBe(true);
      // The router's own ICMP header is first; a quoted, truncated echo is "unverified".
      expect(icmpStatus.split(",")[0], l).toBe("1");
    }
  });

  it("ping -M do gets frag-needed with the next-hop MTU; ping -s 3000 without DF crosses fragmented", async () => {
    inNs(ns("h1"), ["ip", "route", "flush", "cache"]);
    const df = inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1450", "10.0.2.10"]);
    expect(df.stdout).toMatch(/From 10\.1\.12\.2 icmp_seq=1 Frag needed and DF set \(mtu = 1400\)/);
    inNs(ns("h1"), ["ip", "route", "flush", "cache"]);
    const h2 = await tcpdump(ns("h2"), "eth0", ["src", "host", "10.0.1.10"]);
    const big = inNs(ns("h1"), ["ping", "-n", "-c", "2", "-W", "2", "-M", "dont", "-s", "3000", "10.0.2.10"]);
    const seen = await h2.stop();
    expect(big.status, big.stdout).toBe(0);
    expect(big.stdout).toMatch(/3008 bytes from 10\.0\.2\.10/);
    // What reached h2 was cut to fit the 1400 link: no frame above 1400 + 14.
    const lengths = seen.map((l) => Number(l.match(/length (\d+):/)?.[1] ?? 0)).filter((n) => n > 0);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(1414);
    // 2 pings x 3008 bytes of ICMP: at most 1376 bytes of data per fragment -> 3 each.
    expect(lengths.length).toBeGreaterThanOrEqual(6);
    const st = show<Stats>("stats", "r2", "chain");
    expect(st.router.fragmented).toBeGreaterThanOrEqual(2);
    expect(st.router.fragNeeded).toBeGreaterThanOrEqual(1);
  });

  it("show drops names the TTL, no-route and VLAN drops with the time of the last one", async () => {
    interface Drops {
      total: number;
      drops: Array<{ element: string; reason: string; frames: number; help: string; last: string | null; agoMs: number | null }>;
    }
    const frames = (d: Drops, element: string, reason: string): number => d.drops.find((x) => x.element === element && x.reason === reason)?.frames ?? 0;
    const before = { r1: show<Drops>("drops", "r1", "chain"), r2: show<Drops>("drops", "r2", "chain") };
    const t0 = Date.now();
    // TTL 1 ends at r1 (time exceeded); 10.99.0.1 has no route at r2.
    expect(inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "-t", "1", "10.0.2.10"]).stdout).toMatch(/Time to live exceeded/);
    expect(inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "10.99.0.1"]).stdout).toMatch(/Destination Net Unreachable/);
    // A VLAN-tagged frame on h1's access port: the switch drops it (vlanFiltered).
    const src = macOf(ns("h1")).replaceAll(":", "");
    expect(sendRaw(ns("h1"), "eth0", [`ffffffffffff${src}8100006408060001080006040001${src}0a00010a0000000000000a000101${"00".repeat(18)}`]).status).toBe(0);
    const r1 = await waitFor("r1's vlanFiltered drop", () => {
      const d = show<Drops>("drops", "r1", "chain");
      return frames(d, "switch", "vlanFiltered") > frames(before.r1, "switch", "vlanFiltered") ? d : undefined;
    });
    expect(frames(r1, "router", "ttlExpired")).toBe(frames(before.r1, "router", "ttlExpired") + 1);
    const r2 = show<Drops>("drops", "r2", "chain");
    expect(frames(r2, "router", "noRoute")).toBe(frames(before.r2, "router", "noRoute") + 1);
    for (const [d, element, reason] of [
      [r1, "router", "ttlExpired"],
      [r1, "switch", "vlanFiltered"],
      [r2, "router", "noRoute"],
    ] as const) {
      const row = d.drops.find((x) => x.element === element && x.reason === reason);
      expect(row?.help).toBeTruthy();
      // The last drop happened during this test (the clock is the node's, a second of slack).
      const at = Date.parse(row?.last ?? "");
      expect(at).toBeGreaterThanOrEqual(t0 - 1000);
      expect(at).toBeLessThanOrEqual(Date.now() + 1000);
    }
    expect(r1.total).toBe(r1.drops.reduce((s, x) => s + x.frames, 0));
    const text = tapnetOk(["show", "drops", "--node", "r1", "--lab", "chain"]);
    expect(text).toMatch(/frames? dropped for \d+ reasons?/);
    expect(text).toMatch(/router\.ttlExpired\s+\d+\s+\d{4}-\d\d-\d\dT\S+\s+TTL 1 or 0/);
    expect(text).toMatch(/switch\.vlanFiltered\s+\d+/);
  });

  it("capture --drops writes the dropped frames with their reason as the pcapng comment (tshark frame.comment)", async () => {
    const files = { r1: path.join(os.tmpdir(), `tn-drops-r1-${process.pid}.pcapng`), r2: path.join(os.tmpdir(), `tn-drops-r2-${process.pid}.pcapng`) };
    const caps: Array<ReturnType<typeof spawn>> = [];
    const comments = (file: string): string[] => {
      // Read while the capture still writes: tshark may complain of a cut last block; its lines stand.
      const r = spawnSync("tshark", ["-r", file, "-T", "fields", "-e", "frame.comment", "-e", "ip.ttl", "-e", "ip.dst", "-e", "vlan.id"], { encoding: "utf8" });
      return r.stdout.split("\n").filter(Boolean);
    };
    try {
      for (const node of ["r1", "r2"] as const) {
        const cap = spawn(process.execPath, [CLI, "capture", node, "--drops", "--lab", "chain", "-w", files[node]], { stdio: ["ignore", "ignore", "pipe"] });
        caps.push(cap);
        await waitOutput(cap.stderr as NodeJS.ReadableStream, /capturing on/, `tapnet capture ${node} --drops to attach`);
      }
      expect(inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "-t", "1", "10.0.2.10"]).stdout).toMatch(/Time to live exceeded/);
      expect(inNs(ns("h1"), ["ping", "-n", "-c", "1", "-W", "2", "10.99.0.1"]).stdout).toMatch(/Destination Net Unreachable/);
      const src = macOf(ns("h1")).replaceAll(":", "");
      sendRaw(ns("h1"), "eth0", [`ffffffffffff${src}8100006408060001080006040001${src}0a00010a0000000000000a000101${"00".repeat(18)}`]);
      const r1 = await waitFor("r1's TTL and VLAN drops in the capture", () => {
        const l = comments(files.r1);
        return l.some((x) => x.startsWith("router.ttlExpired")) && l.some((x) => x.startsWith("switch.vlanFiltered")) ? l : undefined;
      });
      const r2 = await waitFor("r2's no-route drop in the capture", () => {
        const l = comments(files.r2);
        return l.some((x) => x.startsWith("router.noRoute")) ? l : undefined;
      });
      // The packet as it was dropped: TTL 1 to h2; 10.99.0.1 at r2 (TTL already down by r1); the tag of VLAN 100.
      expect(r1).toContainEqual(expect.stringMatching(/^router\.ttlExpired: TTL 1 or 0[^\t]*\t1\t10\.0\.2\.10\t$/));
      expect(r1).toContainEqual(expect.stringMatching(/^switch\.vlanFiltered: VLAN not allowed[^\t]*\t\t\t100$/));
      expect(r2).toContainEqual(expect.stringMatching(/^router\.noRoute: no route to the destination[^\t]*\t63\t10\.99\.0\.1\t$/));
    } finally {
      for (const cap of caps) {
        const exited = new Promise<void>((r) => (cap.exitCode !== null ? r() : cap.on("exit", () => r())));
        cap.kill("SIGINT");
        await Promise.race([exited, sleep(10_000).then(() => cap.kill("SIGKILL"))]);
      }
      for (const f of Object.values(files)) fs.rmSync(f, { force: true });
    }
  });

  it("a live trace of a ping shows the three routers' route matches and TTLs 64 -> 61 in order", async () => {
    const procs: Array<ReturnType<typeof spawn>> = [];
    try {
      const outs: Array<Promise<string>> = [];
      for (const node of ["r1", "r2", "r3"]) {
        const p = spawn(process.execPath, [CLI, "trace", node, "icmp", "and", "dst", "10.0.2.10", "-c", "1", "--json", "--lab", "chain"], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        procs.push(p);
        let out = "";
        p.stdout?.on("data", (c: Buffer) => {
          out += c.toString();
        });
        outs.push(new Promise<string>((r) => p.on("exit", () => r(out))));
        await waitOutput(p.stderr as NodeJS.ReadableStream, /tracing on/, `tapnet trace ${node} to arm`);
      }
      expect(ping(ns("h1"), "10.0.2.10", 1).status).toBe(0);
      const recs = (await Promise.race([Promise.all(outs), sleep(20_000).then(() => [] as string[])])).map(
        (o) =>
          JSON.parse(o.trim()) as {
            time: string;
            node: string;
            in: string;
            steps: Array<{ element: string; what: string }>;
            out: Array<{ port: string; frame: string }>;
          },
      );
      expect(recs.map((r) => r.node)).toEqual(["r1", "r2", "r3"]);
      const routes = recs.map((r) => r.steps.filter((x) => x.element === "router" && / route /.test(x.what)).map((x) => x.what));
      expect(routes).toEqual([
        ["10.0.1.10 > 10.0.2.10: route 0.0.0.0/0 via 10.1.12.2 dev to-r2 (static), next hop 10.1.12.2, TTL 64 -> 63"],
        ["10.0.1.10 > 10.0.2.10: route 10.0.2.0/24 via 10.1.23.2 dev to-r3 (static), next hop 10.1.23.2, TTL 63 -> 62"],
        ["10.0.1.10 > 10.0.2.10: route 10.0.2.0/24 dev eth1 (connected), next hop 10.0.2.10, TTL 62 -> 61"],
      ]);
      expect(recs.map((r) => r.in)).toEqual(["h1", "r1", "r2"]);
      expect(recs.map((r) => r.out.map((o) => o.port))).toEqual([["r2"], ["r3"], ["h2"]]);
      expect(recs[2].out[0].frame).toMatch(/IPv4 10\.0\.1\.10 > 10\.0\.2\.10 ttl 61, ICMP echo request$/);
      const t = recs.map((r) => Date.parse(r.time));
      expect(t[0]).toBeLessThanOrEqual(t[1]);
      expect(t[1]).toBeLessThanOrEqual(t[2]);
    } finally {
      for (const p of procs) if (p.exitCode === null) p.kill("SIGINT");
    }
    const bad = tapnet(["trace", "r1", "icmp", "and", "bogus", "--lab", "chain"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/filter 'icmp and bogus': unknown word 'bogus'/);
  });

  it("trace --lab merges the routers' traces of a ping in time order", async () => {
    const p = spawn(process.execPath, [CLI, "trace", "--lab", "chain", "icmp", "and", "dst", "10.0.2.10", "-c", "1", "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let out = "";
      p.stdout?.on("data", (c: Buffer) => {
        out += c.toString();
      });
      const exited = new Promise<void>((r) => p.on("exit", () => r()));
      await waitOutput(p.stderr as NodeJS.ReadableStream, /tracing on r3/, "tapnet trace --lab chain to arm on every node");
      expect(ping(ns("h1"), "10.0.2.10", 1).status).toBe(0);
      await Promise.race([exited, sleep(20_000)]);
      const recs = out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { node: string; at: number; steps: Array<{ what: string }> });
      expect(recs.map((r) => r.node)).toEqual(["r1", "r2", "r3"]);
      expect(recs.map((r) => r.steps.find((x) => / route /.test(x.what))?.what.replace(/^.*TTL /, ""))).toEqual(["64 -> 63", "63 -> 62", "62 -> 61"]);
      expect(recs[0].at).toBeLessThan(recs[1].at);
      expect(recs[1].at).toBeLessThan(recs[2].at);
    } finally {
      if (p.exitCode === null) p.kill("SIGINT");
    }
  });

  it("a what-if trace with TTL 1 ends in time exceeded at r1 and sends nothing; TTL 64 shows the route and 64 -> 63", () => {
    interface WhatIf {
      steps: Array<{ element: string; what: string }>;
      out: Array<{ port: string; frame: string }>;
    }
    // IPv4 packets the hosts received (the kernels' own ARP probes may come and go meanwhile).
    const hostCounters = (): number[] => ["h1", "h2"].map((h) => snmp(ns(h))["Ip.InReceives"]);
    const before = hostCounters();
    const trace = (node: string, port: string, packet: string): WhatIf =>
      JSON.parse(tapnetOk(["trace", node, "--in", port, "--packet", packet, "--lab", "chain", "--json"])) as WhatIf;
    const ttl1 = trace("r1", "h1", "icmp 10.0.1.10 > 10.0.2.10 ttl 1");
    const drop = ttl1.steps.findIndex((x) => x.element === "router" && x.what.startsWith("drop ttlExpired"));
    expect(drop, JSON.stringify(ttl1.steps)).toBeGreaterThan(0);
    expect(ttl1.steps[0]).toEqual({ element: "switch", what: expect.stringMatching(/^in h1,/) });
    expect(ttl1.steps.some((x) => x.what.startsWith("route "))).toBe(false);
    // The time exceeded would go back out of h1, and is not sent.
    expect(ttl1.out).toEqual([{ port: "h1", frame: expect.stringMatching(/IPv4 10\.0\.1\.1 > 10\.0\.1\.10 ttl 64, ICMP time exceeded code 0$/) }]);
    const ttl64 = trace("r1", "h1", "icmp 10.0.1.10 > 10.0.2.10");
    expect(ttl64.steps.map((x) => x.what)).toContainEqual(
      expect.stringMatching(/^10\.0\.1\.10 > 10\.0\.2\.10: route 0\.0\.0\.0\/0 via 10\.1\.12\.2 dev to-r2 \(static\), next hop 10\.1\.12\.2, TTL 64 -> 63$/),
    );
    expect(ttl64.steps.map((x) => x.what)).toContainEqual(expect.stringMatching(/^neighbour 10\.1\.12\.2 dev to-r2: (REACHABLE|STALE|DELAY|PROBE|PERMANENT) /));
    expect(ttl64.out).toEqual([{ port: "r2", frame: expect.stringMatching(/IPv4 10\.0\.1\.10 > 10\.0\.2\.10 ttl 63, ICMP echo request$/) }]);
    // r2, a packet from r1 with no route: the drop and the net unreachable that would go back.
    // (From 10.0.1.99: a what-if's ICMP error counts against the per-destination ICMP limit.)
    const noRoute = trace("r2", "r1", "udp 10.0.1.99 > 10.99.0.1:53 ttl 63");
    expect(noRoute.steps.map((x) => x.what)).toContainEqual(expect.stringMatching(/^drop noRoute: /));
    expect(noRoute.out).toEqual([{ port: "r1", frame: expect.stringMatching(/ICMP destination unreachable code 0$/) }]);
    // A tagged frame on an access port ends at the switch.
    const tagged = trace("r1", "h1", "icmp 10.0.1.10 > 10.0.2.10 vlan 100");
    expect(tagged.steps.map((x) => x.what)).toEqual([expect.stringMatching(/^in h1/), expect.stringMatching(/^drop vlanFiltered: /)]);
    expect(tagged.out).toEqual([]);
    expect(hostCounters(), "the hosts' IPv4 packets received").toEqual(before);
    const bad = tapnet(["trace", "r1", "--in", "h1", "--packet", "icmp 10.0.1.10 > nowhere", "--lab", "chain"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--packet 'icmp 10\.0\.1\.10 > nowhere': destination 'nowhere' is not an IPv4 address/);
  });

  it("no route gets Destination Net Unreachable from the router that has none", () => {
    // The tests above drew on r2's bucket for h1 (src/elements/router/icmp-peers.ts). As
    // in Linux, a no-route error is paid twice from that one bucket (ip_error's 1 s, then
    // icmp_send's 1 s), and a request that passes the first but not the second still
    // pays the first: requests 1 s apart can starve for good. Two requests 2.1 s apart:
    // whatever the first leaves, the second finds at least 2.1 s of tokens.
    const r = inNs(ns("h1"), ["ping", "-n", "-c", "2", "-i", "2.1", "-W", "2", "10.99.0.1"]);
    expect(r.stdout).toMatch(/From 10\.1\.12\.2 icmp_seq=\d Destination Net Unreachable/);
  });

  it("show route of r2 lists its static and connected routes", () => {
    const routes = show<Array<{ prefix: string; via: string | null; dev: string; kind: string }>>("route", "r2", "chain");
    expect(routes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ prefix: "10.0.1.0/24", via: "10.1.12.1", dev: "to-r1", kind: "static" }),
        expect.objectContaining({ prefix: "10.0.2.0/24", via: "10.1.23.2", dev: "to-r3", kind: "static" }),
        expect.objectContaining({ prefix: "10.1.12.0/30", via: null, dev: "to-r1", kind: "connected" }),
        expect.objectContaining({ prefix: "10.1.23.0/30", via: null, dev: "to-r3", kind: "connected" }),
      ]),
    );
    const r1 = tapnetOk(["show", "route", "--node", "r1", "--lab", "chain"]);
    expect(r1).toMatch(/^default via 10\.1\.12\.2 dev to-r2 proto static$/m);
  });
});

describe.skipIf(!canRunLabs())("inter-vlan.yaml: a layer-3 switch", () => {
  const ns = (n: string): string => `tn.inter-vlan.${n}`;
  useLab(labFile("inter-vlan.yaml"), "inter-vlan");

  it("routes between VLANs and decrements the TTL by one", async () => {
    let r = { status: 1 as number | null, stdout: "" };
    const atH3 = await captureChecked(ns("h3"), () => {
      r = ping(ns("h1"), "10.0.20.13", 2);
    }, ["ip.src", "ip.dst", "ip.ttl", "icmp.type", "ip.checksum.status", "icmp.checksum.status"]);
    expect(r.status, r.stdout).toBe(0);
    // h1 sends with TTL 64; the echo requests arrive at h3 with 63, checksums good.
    const requests = atH3.filter((l) => l.startsWith("10.0.10.11|10.0.20.13|"));
    expect(requests.length).toBe(2);
    for (const l of requests) expect(l).toBe("10.0.10.11|10.0.20.13|63|8|1|1");
    expect(r.stdout).toMatch(/ttl=63/);
  });

  it("bridges inside a VLAN without routing (TTL untouched)", () => {
    const r = ping(ns("h1"), "10.0.10.12", 2);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ttl=64/);
  });
});
