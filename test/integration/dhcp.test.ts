/**
 * The router's DHCP server against real clients: busybox's udhcpc in namespaces whose
 * eth0 is a port of the lab's node gets an address, mask, router, DNS server and lease
 * time from it (what udhcpc hands its script), uses the address, and releases it; and the
 * CNI `dhcp` IPAM plugin (containernetworking-plugins' daemon) gets a pod its address
 * through the tapnet CNI plugin. `tapnet show dhcp` shows the leases.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { background, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = `name: dhcp
nodes:
  n1:
    interfaces:
      cni0: { vlan: 1, address: 10.90.0.1/24, dhcp: { range: 10.90.0.100-10.90.0.110, leaseTime: 600, dns: [10.96.0.10] } }
hosts:
  h1: { node: n1, ip: 10.90.0.200/24, gateway: 10.90.0.1 }
`;

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-dhcp-"));
const SCRIPT = path.join(TMP, "udhcpc.script");
const NS = ["a", "b", "pod"].map((n) => `tndhcp-${n}`);
const haveBusybox = fs.existsSync("/bin/busybox");

interface Lease {
  interface: string;
  mac: string;
  ip: string;
  state: string;
}

function leases(): Lease[] {
  return (JSON.parse(tapnetOk(["show", "dhcp", "--node", "n1", "--lab", "dhcp", "--json"])) as { leases: Lease[] }).leases;
}

/** A namespace whose eth0 is a new TAP port of n1 (as `lab host add` makes one, without an address). */
async function attach(ns: string, port: string): Promise<void> {
  const state = JSON.parse(fs.readFileSync("/run/tapnet/dhcp/state.json", "utf8")) as { nodes: Record<string, { socket: string; namespace: string }> };
  const n1 = state.nodes.n1;
  await request(n1.socket, { cmd: "change", op: "port.add", args: { name: port, kind: "tap", vlan: 1 } } as never);
  spawnSync("ip", ["-n", n1.namespace, "link", "set", port, "netns", ns]);
  for (const c of [
    ["link", "set", port, "name", "eth0"],
    ["link", "set", "eth0", "up"],
  ])
    expect(spawnSync("ip", ["-n", ns, ...c]).status).toBe(0);
}

/** udhcpc in `ns` until it has a lease (or gives up): what its script saw, one line per event. */
function udhcpc(ns: string, extra: string[] = []): { status: number | null; events: string[] } {
  const log = path.join(TMP, `${ns}.events`);
  fs.rmSync(log, { force: true });
  const r = spawnSync(
    "timeout",
    ["-k", "2", "60", "ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "2", "-s", SCRIPT, ...extra],
    {
      encoding: "utf8",
      env: { ...process.env, EVENTS: log },
    },
  );
  return { status: r.status, events: fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n") : [] };
}

describe.skipIf(!canRunLabs() || !haveBusybox)("the router's DHCP server", () => {
  const file = writeLabFile("dhcp", LAB);

  beforeAll(async () => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
    // udhcpc runs this on each event with the lease in its environment (busybox udhcpc(8)).
    fs.writeFileSync(
      SCRIPT,
      '#!/bin/sh\necho "$1 ip=$ip mask=$mask router=$router dns=$dns lease=$lease serverid=$serverid" >> "$EVENTS"\n[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"\nexit 0\n',
      { mode: 0o755 },
    );
    for (const ns of NS) {
      if (netnsList().includes(ns)) spawnSync("ip", ["netns", "del", ns]);
      spawnSync("ip", ["netns", "add", ns]);
    }
    await attach(NS[0], "dhca");
    await attach(NS[1], "dhcb");
  });

  afterAll(() => {
    for (const ns of NS) spawnSync("ip", ["netns", "del", ns]);
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    fs.rmSync(TMP, { recursive: true, force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.dhcp.") || n.startsWith("tndhcp-"))).toEqual([]);
  });

  it("udhcpc gets the first address of the range with mask, router, DNS server and lease time, and uses it", () => {
    const r = udhcpc(NS[0]);
    expect(r.status, r.events.join("\n")).toBe(0);
    expect(r.events).toContain("bound ip=10.90.0.100 mask=24 router=10.90.0.1 dns=10.96.0.10 lease=600 serverid=10.90.0.1");
    const mac = JSON.parse(inNs(NS[0], ["ip", "-j", "link", "show", "eth0"]).stdout)[0].address as string;
    expect(leases()).toEqual([{ interface: "cni0", mac, ip: "10.90.0.100", state: "bound", expiresInS: expect.any(Number) }]);
    expect(ping(NS[0], "10.90.0.200", 2).stdout).toMatch(/2 received/);
  });

  it("a second client gets the next address; the first asking again keeps its own; RELEASE frees it", async () => {
    const b = udhcpc(NS[1]);
    expect(b.events).toContain("bound ip=10.90.0.101 mask=24 router=10.90.0.1 dns=10.96.0.10 lease=600 serverid=10.90.0.1");
    expect(ping(NS[1], "10.90.0.100", 2).stdout).toMatch(/2 received/);
    // A udhcpc that stays: it asks again (INIT-REBOOT or DISCOVER) and gets its own
    // address back; SIGUSR2 makes it release the lease (busybox udhcpc(8); RFC 2131 §4.4.6).
    const events = path.join(TMP, "stay.events");
    const stay = background(NS[0], ["sh", "-c", `EVENTS=${events} exec busybox udhcpc -i eth0 -f -t 10 -T 2 -s ${SCRIPT} 2>&1`]);
    try {
      await stay.waitFor(/lease of 10\.90\.0\.100 obtained from 10\.90\.0\.1/, 30_000);
      process.kill(stay.pid, "SIGUSR2");
      await stay.waitFor(/sending release/, 10_000);
      // The RELEASE is a datagram: wait for the node to take it.
      await waitFor("the lease of 10.90.0.100 to be released", () => leases().every((l) => l.ip !== "10.90.0.100"), 15_000);
    } finally {
      await stay.stop();
    }
    expect(leases().map((l) => [l.ip, l.state])).toEqual([["10.90.0.101", "bound"]]);
    expect(tapnetOk(["show", "dhcp", "--node", "n1", "--lab", "dhcp"])).toMatch(
      /cni0 10\.90\.0\.100-10\.90\.0\.110: \d+ received, \d+ offers, 3 acks, 0 naks, 1 releases/,
    );
  });

  it("the CNI dhcp IPAM plugin, through the tapnet CNI plugin, gets a pod its address and releases it on DEL", async () => {
    const bin = path.join(TMP, "bin");
    tapnetOk(["cni", "install", "--bin-dir", bin]);
    const sock = path.join(TMP, "dhcp.sock");
    // containernetworking-plugins' lease daemon: it runs the DHCP client inside the pod.
    const daemon = spawn("/usr/lib/cni/dhcp", ["daemon", "-socketpath", sock, "-pidfile", path.join(TMP, "dhcp.pid")], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    daemon.stdout?.on("data", (d: Buffer) => (log += d.toString()));
    daemon.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    try {
      await waitFor("the dhcp daemon's socket", () => fs.existsSync(sock), 15_000);
      const conf = JSON.stringify({
        cniVersion: "1.0.0",
        name: "dhnet",
        type: "tapnet",
        lab: "dhcp",
        node: "n1",
        isDefaultGateway: true,
        ipam: { type: "dhcp", daemonSocketPath: sock },
      });
      const call = (command: string) =>
        spawnSync(path.join(bin, "tapnet"), [], {
          input: conf,
          encoding: "utf8",
          timeout: 120_000,
          env: {
            PATH: process.env.PATH,
            CNI_COMMAND: command,
            CNI_CONTAINERID: "dhcp-pod",
            CNI_NETNS: `/run/netns/${NS[2]}`,
            CNI_IFNAME: "eth0",
            CNI_PATH: `${bin}:/usr/lib/cni`,
          },
        });
      const add = call("ADD");
      expect(add.status, add.stdout + add.stderr + log).toBe(0);
      const r = JSON.parse(add.stdout) as { ips: Array<{ address: string; gateway: string }>; interfaces: Array<{ mac: string }>; routes: unknown[] };
      expect(r.ips).toEqual([{ interface: 0, address: "10.90.0.100/24", gateway: "10.90.0.1" }]);
      expect(r.routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.90.0.1" }]);
      expect(leases()).toContainEqual({ interface: "cni0", mac: r.interfaces[0].mac, ip: "10.90.0.100", state: "bound", expiresInS: expect.any(Number) });
      expect(ping(NS[2], "10.90.0.200", 2).stdout).toMatch(/2 received/);
      const del = call("DEL");
      expect(del.status, del.stdout + del.stderr + log).toBe(0);
      await waitFor("the pod's lease to be released", () => leases().every((l) => l.ip !== "10.90.0.100"), 15_000);
      expect(inNs(NS[2], ["ip", "link", "show", "eth0"]).status).not.toBe(0);
    } finally {
      if (daemon.pid !== undefined && daemon.exitCode === null) {
        const gone = new Promise((res) => daemon.on("exit", res));
        process.kill(daemon.pid, "SIGTERM");
        await gone;
      }
    }
  });

  it("lab save writes the interface's DHCP server back into the topology", () => {
    expect(tapnetOk(["lab", "save", "dhcp"])).toMatch(/dhcp:[\s\S]*range: 10\.90\.0\.100-10\.90\.0\.110[\s\S]*leaseTime: 600/);
  });
});
