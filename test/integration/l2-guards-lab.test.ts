/**
 * Storm control, port security and dynamic ARP inspection with the real tools, on one
 * lab: a switch sw1 with
 *   h1 (broadcast limit 200/s)  h2  h3  h4 (port security: 3 MACs)
 *   h5 (port security: 1 MAC, violation shuts the port)     all in VLAN 1, inspected
 *   v1  v2  v3                                              VLAN 2, not inspected
 * Floods are bounded (trafgen --num, under timeout) and stay inside the lab.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { background, canRunLabs, inNs, macOf, netnsList, ping, sendRaw, tapnet, tapnetOk, tcpdump, waitFor, writeLabFile } from "./harness.js";

const LAB = "tguard";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const LIMIT = 200;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  sw1:
    arpInspection: { vlans: [1], bindings: [{ ip: 10.0.0.99, mac: "02:00:00:00:00:99" }] }
hosts:
  h1: { node: sw1, ip: 10.0.0.1/24, stormControl: { broadcast: ${LIMIT} } }
  h2: { node: sw1, ip: 10.0.0.2/24 }
  h3: { node: sw1, ip: 10.0.0.3/24 }
  h4: { node: sw1, ip: 10.0.0.4/24, portSecurity: { maxMacs: 3 } }
  h5: { node: sw1, ip: 10.0.0.5/24, portSecurity: { maxMacs: 1, violation: shutdown } }
  v1: { node: sw1, ip: 10.0.2.1/24, vlan: 2 }
  v2: { node: sw1, ip: 10.0.2.2/24, vlan: 2 }
  v3: { node: sw1, ip: 10.0.2.3/24, vlan: 2 }
`,
);

type Stats = {
  clockMs: number;
  switch: Record<string, number>;
  ports: Record<string, { rxFrames: number; txFrames: number }>;
  drops: Array<{ counter: string; value: number }>;
};
const stats = (): Stats => JSON.parse(tapnetOk(["show", "stats", "--node", "sw1", "--lab", LAB, "--json"])) as Stats;
interface SecurityPort {
  port: string;
  state: string;
  security: { macs: number; maxMacs: number; violations: number; shut: boolean } | null;
}
interface Security {
  ports: SecurityPort[];
  arpInspection: { bindings: Array<{ ip: string; mac: string; source: string }>; lastDrop: { reason: string; ip: string; mac: string } | null };
}
const security = (): Security => JSON.parse(tapnetOk(["show", "security", "--node", "sw1", "--lab", LAB, "--json"])) as Security;
const fdb = (): Array<{ mac: string; port: string }> => JSON.parse(tapnetOk(["show", "fdb", "--node", "sw1", "--lab", LAB, "--json"]));

/** A trafgen run in `host`: `count` frames from `cfg`, at `pps`, bounded by a timeout. */
function trafgen(host: string, cfg: string, count: number, pps?: number) {
  return background(ns(host), [
    "timeout",
    "-k",
    "2",
    "30",
    "trafgen",
    "--dev",
    "eth0",
    "--conf",
    cfg,
    "--num",
    String(count),
    // A steady `pps` (an inter-frame gap): trafgen's --rate sends each second's frames
    // at once and then sleeps out the second.
    ...(pps ? ["--gap", `${Math.round(1e6 / pps)}us`] : []),
    "--cpus",
    "1",
    "--no-sock-mem",
    "--notouch-irq",
    "--no-cpu-stats",
  ]);
}

/** The neighbour entry of `ip` in `host` (lladdr), or null. */
function neigh(host: string, ip: string): string | null {
  const m = /lladdr ([0-9a-f:]{17})/.exec(inNs(ns(host), ["ip", "neigh", "show", ip, "dev", "eth0"]).stdout);
  return m ? m[1] : null;
}

/** Spoofed ARP from `attacker`: a reply to `victim` and a gratuitous broadcast, both claiming `ip`. */
function spoof(attacker: string, victim: string, ip: string, victimIp: string): void {
  const me = macOf(ns(attacker));
  const them = macOf(ns(victim));
  const py = [
    "from scapy.all import Ether, ARP, sendp",
    `sendp(Ether(dst="${them}", src="${me}")/ARP(op=2, hwsrc="${me}", psrc="${ip}", hwdst="${them}", pdst="${victimIp}"), iface="eth0", count=3, verbose=False)`,
    `sendp(Ether(dst="ff:ff:ff:ff:ff:ff", src="${me}")/ARP(op=1, hwsrc="${me}", psrc="${ip}", hwdst="00:00:00:00:00:00", pdst="${ip}"), iface="eth0", verbose=False)`,
  ].join("\n");
  // Debian's python3 with python3-scapy (the PATH may lead to another python).
  const r = inNs(ns(attacker), ["/usr/bin/python3", "-c", py]);
  if (r.status !== 0) throw new Error(`scapy in ${attacker}: ${r.stderr}`);
}

describe.skipIf(!canRunLabs())("L2 guards lab: storm control, port security, ARP inspection", () => {
  const cfg = path.join(os.tmpdir(), `tn-guard-${process.pid}`);
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    for (const x of ["bcast", "macs"]) fs.rmSync(`${cfg}.${x}`, { force: true });
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("storm control holds a broadcast flood at its limit while unicast between other hosts flows", async () => {
    expect(ping(ns("h2"), "10.0.0.3", 1).status).toBe(0);
    // 2000 broadcasts/s from h1, ten times its port's limit, for up to 10 s: well past the
    // window measured below, then stopped.
    fs.writeFileSync(`${cfg}.bcast`, `{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, c16(0x88b5), fill(0x00, 46) }\n`);
    const s00 = stats();
    const flood = trafgen("h1", `${cfg}.bcast`, 20000, 2000);
    const pinger = background(ns("h2"), ["ping", "-n", "-c", "40", "-i", "0.05", "-W", "1", "10.0.0.3"]);
    try {
      // A window in the middle of the flood, on the switch's own counters and clock.
      await waitFor("the flood to reach the switch", () => stats().ports.h1.rxFrames - s00.ports.h1.rxFrames > 500, 10_000, 50);
      const s0 = stats();
      const t0 = Date.now();
      await waitFor("a 1.5 s window", () => Date.now() - t0 >= 1500, 5_000, 50);
      const s1 = stats();
      const secs = (s1.clockMs - s0.clockMs) / 1000;
      const offered = s1.ports.h1.rxFrames - s0.ports.h1.rxFrames;
      const passed = offered - (s1.switch.stormBroadcast - s0.switch.stormBroadcast);
      console.log(`storm control: offered ${(offered / secs).toFixed(0)} broadcasts/s on h1, passed ${(passed / secs).toFixed(0)}/s (limit ${LIMIT}/s)`);
      expect(offered / secs).toBeGreaterThan(3 * LIMIT);
      expect(passed).toBeLessThanOrEqual(LIMIT * secs * 1.25 + LIMIT);
      expect(passed).toBeGreaterThanOrEqual(LIMIT * secs * 0.6);
      expect(await pinger.exited).toBe(0);
      expect(pinger.out()).toMatch(/40 received/);
    } finally {
      await flood.stop();
      await pinger.stop();
    }
    // Every broadcast the switch passed reached h2, no more: the rest were dropped and counted.
    const s = stats();
    expect(s.switch.stormBroadcast).toBeGreaterThan(3000);
    expect(s.drops.find((d) => d.counter === "switch.stormBroadcast")?.value).toBe(s.switch.stormBroadcast);
    expect(tapnetOk(["show", "stats", "--node", "sw1", "--lab", LAB])).toMatch(
      /switch\.stormBroadcast\s+\d+\s+broadcast over the ingress port's storm control limit/,
    );
  });

  it("port security stops a MAC flood at the port's limit; a shutdown port comes back with security reset", async () => {
    expect(ping(ns("h4"), "10.0.0.2", 1).status).toBe(0);
    const h4 = macOf(ns("h4"));
    const others = fdb()
      .filter((r) => r.port !== "h4")
      .map((r) => `${r.mac} ${r.port}`);
    const v0 = stats().switch.secViolation;
    // 5000 frames from random locally administered sources.
    fs.writeFileSync(`${cfg}.macs`, `{ 0x02, 0xff, 0xff, 0xff, 0xff, 0xfe, 0x06, drnd(5), c16(0x88b5), fill(0x00, 46) }\n`);
    const tg = trafgen("h4", `${cfg}.macs`, 5000);
    expect(await tg.exited, tg.err()).toBe(0);
    const v = await waitFor(
      "the flood's violations",
      () => {
        const n = stats().switch.secViolation - v0;
        return n >= 4900 ? n : undefined;
      },
      15_000,
      100,
    );
    const rows = fdb();
    const onH4 = rows.filter((r) => r.port === "h4");
    expect(onH4.length).toBeLessThanOrEqual(3);
    expect(onH4.map((r) => r.mac)).toContain(h4);
    expect(rows.filter((r) => r.port !== "h4").map((r) => `${r.mac} ${r.port}`)).toEqual(expect.arrayContaining(others));
    const p = security().ports.find((x) => x.port === "h4") as SecurityPort;
    expect(p.security).toMatchObject({ maxMacs: 3, shut: false });
    expect(p.security?.macs).toBeLessThanOrEqual(3);
    console.log(`port security: ${v} frames from new MACs dropped, ${onH4.length} MACs on h4's port`);
    expect(ping(ns("h4"), "10.0.0.2", 1).status).toBe(0);

    // h5 may have one MAC: a frame from a second shuts its port.
    expect(ping(ns("h5"), "10.0.0.2", 1).status).toBe(0);
    expect(sendRaw(ns("h5"), "eth0", [`02fffffffffe06aabbccddee88b5${"00".repeat(46)}`]).status).toBe(0);
    await waitFor("h5's port to be shut", () => security().ports.find((x) => x.port === "h5")?.state === "shutdown", 5_000, 50);
    expect(ping(ns("h5"), "10.0.0.2", 1).status).not.toBe(0);
    expect(stats().switch.portShutdown).toBeGreaterThan(0);
    expect(tapnetOk(["show", "security", "--node", "sw1", "--lab", LAB])).toMatch(/h5\s+shutdown\s+-\s+\d\/1 MACs, shutdown, 1 violations, SHUT/);
    expect(tapnetOk(["security", "reset", "sw1", "h5", "--lab", LAB])).toMatch(/was shut down; up again/);
    expect(ping(ns("h5"), "10.0.0.2", 2).status).toBe(0);
  });

  it("ARP inspection drops a spoofed ARP reply claiming another host's address: no neighbour cache is poisoned", async () => {
    const h2 = macOf(ns("h2"));
    const h3 = macOf(ns("h3"));
    // The bindings: the lab's hosts of VLAN 1 (their eth0 MACs) and the static one.
    const b = security().arpInspection.bindings;
    expect(b).toContainEqual({ vlan: 1, ip: "10.0.0.2", mac: h2, source: "lab" });
    expect(b).toContainEqual({ vlan: 1, ip: "10.0.0.99", mac: "02:00:00:00:00:99", source: "static" });
    expect(b.some((x) => x.ip.startsWith("10.0.2."))).toBe(false);
    // The victims take every ARP update at once (no locktime): only inspection can stop it.
    for (const h of ["h1", "h4", "v1"]) inNs(ns(h), ["sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0"]);
    expect(ping(ns("h1"), "10.0.0.2", 1).status).toBe(0);
    expect(ping(ns("h4"), "10.0.0.2", 1).status).toBe(0);
    expect(neigh("h1", "10.0.0.2")).toBe(h2);

    // The attack works where nothing inspects: VLAN 2, v3 claims v2's address to v1.
    expect(ping(ns("v1"), "10.0.2.2", 1).status).toBe(0);
    const v2 = macOf(ns("v2"));
    const v3 = macOf(ns("v3"));
    expect(neigh("v1", "10.0.2.2")).toBe(v2);
    spoof("v3", "v1", "10.0.2.2", "10.0.2.1");
    await waitFor("v1's cache to be poisoned (VLAN 2 is not inspected)", () => neigh("v1", "10.0.2.2") === v3, 5_000, 50);

    // The same attack in VLAN 1: h3 claims h2's address to h1, and to everyone.
    const cap = await tcpdump(ns("h1"), "eth0", ["arp", "and", "ether", "src", h3]);
    const d0 = stats().switch.arpSpoofed;
    spoof("h3", "h1", "10.0.0.2", "10.0.0.1");
    await waitFor("the switch to drop the four spoofed packets", () => stats().switch.arpSpoofed - d0 >= 4, 5_000, 50);
    // h3's own ARP (its true address) still passes: the capture works.
    inNs(ns("h3"), ["ip", "neigh", "flush", "dev", "eth0"]);
    expect(ping(ns("h3"), "10.0.0.1", 1).status).toBe(0);
    const seen = await cap.stop();
    expect(
      seen.filter((l) => l.includes("10.0.0.2 is-at") || l.includes("tell 10.0.0.2")),
      seen.join("\n"),
    ).toEqual([]);
    expect(seen.some((l) => l.includes("tell 10.0.0.3") || l.includes("10.0.0.3 is-at"))).toBe(true);
    expect(neigh("h1", "10.0.0.2")).toBe(h2);
    expect(neigh("h4", "10.0.0.2")).toBe(h2);
    expect(ping(ns("h1"), "10.0.0.2", 1).status).toBe(0);
    expect(security().arpInspection.lastDrop).toMatchObject({ reason: "spoofed", ip: "10.0.0.2", mac: h3 });
    expect(tapnetOk(["show", "security", "--node", "sw1", "--lab", LAB])).toMatch(/last ARP dropped: spoofed, 10\.0\.0\.2 claimed by/);
  });
});
