/**
 * The tapnet CNI plugin driven exactly as a container runtime drives it: the CNI_*
 * environment, the network configuration on stdin, the result or error object on stdout,
 * the exit code. Its ADD result is compared field by field with the reference `bridge`
 * plugin's (containernetworking-plugins) for the same host-local IPAM config; the
 * containers ping their gateway (the node's router) and each other; CHECK, DEL (twice, and
 * after the lab went down and came back) and the spec's error objects.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { portName } from "../../src/cni/plugin.js";
import { canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = `name: cni
nodes:
  n1:
    standby: true
    interfaces:
      cni0: { vlan: 1, address: 10.88.0.1/24 }
      vlan20: { vlan: 20, address: 10.88.20.1/24 }
hosts:
  h1: { node: n1, ip: 10.88.0.200/24, gateway: 10.88.0.1 }
  h20: { node: n1, ip: 10.88.20.200/24, gateway: 10.88.20.1, vlan: 20 }
`;

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-cni-"));
const BIN = path.join(TMP, "bin");
const DATA = path.join(TMP, "data");
const REF_DATA = path.join(TMP, "ref-data");
const CNI_PATH = `${BIN}:/usr/lib/cni`;
const NS = ["c1", "c2", "c3", "ref1"].map((n) => `tncni-${n}`);
const REF_BRIDGE = "tncnibr0";

/** SPEC.md 1.0.0, "Success": the result's shape. */
const RESULT_1_0 = z
  .object({
    cniVersion: z.literal("1.0.0"),
    interfaces: z.array(
      z.object({ name: z.string().min(1), mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/), sandbox: z.string().optional() }).strict(),
    ),
    ips: z.array(
      z
        .object({
          address: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/),
          gateway: z.string().optional(),
          interface: z.number().int().nonnegative().optional(),
        })
        .strict(),
    ),
    routes: z.array(z.object({ dst: z.string(), gw: z.string().optional() }).strict()).optional(),
    dns: z
      .object({
        nameservers: z.array(z.string()).optional(),
        domain: z.string().optional(),
        search: z.array(z.string()).optional(),
        options: z.array(z.string()).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const ERROR = z.object({ cniVersion: z.string().optional(), code: z.number().int(), msg: z.string().min(1), details: z.string().optional() }).strict();

function ipam(dataDir: string): Record<string, unknown> {
  return { type: "host-local", subnet: "10.88.0.0/24", gateway: "10.88.0.1", routes: [{ dst: "10.99.0.0/16" }], dataDir };
}

const DNS = { nameservers: ["10.96.0.10"], search: ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"] };

function conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: "1.0.0", name: "pods", type: "tapnet", lab: "cni", node: "n1", isDefaultGateway: true, ipam: ipam(DATA), dns: DNS, ...extra };
}

interface Call {
  code: number | null;
  out: string;
  json: Record<string, unknown> | null;
  stderr: string;
}

/** One plugin call, as a runtime makes it (the executable `tapnet cni install` wrote). */
function cni(command: string, config: Record<string, unknown> | string, env: Record<string, string>, plugin = path.join(BIN, "tapnet")): Call {
  const r = spawnSync(plugin, [], {
    input: typeof config === "string" ? config : JSON.stringify(config),
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", CNI_COMMAND: command, CNI_PATH, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // DEL and CHECK print nothing on success
  }
  return { code: r.status, out: r.stdout, json, stderr: r.stderr };
}

function env(id: string, ns: string, ifname = "eth0"): Record<string, string> {
  return { CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: ifname };
}

function nodePorts(): string[] {
  return (JSON.parse(tapnetOk(["show", "ports", "--node", "n1", "--lab", "cni", "--json"])) as Array<{ name: string }>).map((p) => p.name);
}

const allocated = (dir: string): string[] =>
  fs.existsSync(path.join(dir, "pods")) ? fs.readdirSync(path.join(dir, "pods")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];

describe.skipIf(!canRunLabs())("CNI plugin, driven as a runtime drives it", () => {
  const file = writeLabFile("cni", LAB);
  let r1: Record<string, unknown>;

  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
    tapnetOk(["cni", "install", "--bin-dir", BIN, "--conf-dir", path.join(TMP, "net.d"), "--lab", "cni", "--node", "n1", "--subnet", "10.88.0.0/24"]);
    for (const ns of NS) {
      if (netnsList().includes(ns)) spawnSync("ip", ["netns", "del", ns]);
      spawnSync("ip", ["netns", "add", ns]);
    }
  });

  afterAll(() => {
    const ref = { cniVersion: "1.0.0", name: "pods", type: "bridge", bridge: REF_BRIDGE, isDefaultGateway: true, ipam: ipam(REF_DATA), dns: DNS };
    cni("DEL", ref, env("ref-1", NS[3]), "/usr/lib/cni/bridge");
    spawnSync("ip", ["link", "del", REF_BRIDGE]);
    for (const ns of NS) spawnSync("ip", ["netns", "del", ns]);
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    fs.rmSync(TMP, { recursive: true, force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.cni.") || n.startsWith("tncni-"))).toEqual([]);
  });

  it("install writes an executable named tapnet and a conflist naming the lab and node", () => {
    expect(fs.statSync(path.join(BIN, "tapnet")).mode & 0o111).not.toBe(0);
    const list = JSON.parse(fs.readFileSync(path.join(TMP, "net.d", "50-tapnet.conflist"), "utf8")) as { plugins: Array<Record<string, unknown>> };
    expect(list.plugins[0]).toMatchObject({ type: "tapnet", lab: "cni", node: "n1", ipam: { type: "host-local", ranges: [[{ subnet: "10.88.0.0/24" }]] } });
    const v = cni("VERSION", {}, {});
    expect(v.code).toBe(0);
    expect(v.json).toEqual({ cniVersion: "1.0.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] });
  });

  it("ADD gives a result of the spec's shape, field by field what the reference bridge plugin gives for the same IPAM config", () => {
    const before = nodePorts();
    const ours = cni("ADD", conf(), env("pod-1", NS[0]));
    expect(ours.code, ours.out + ours.stderr).toBe(0);
    r1 = RESULT_1_0.parse(ours.json);
    const ref = cni(
      "ADD",
      { cniVersion: "1.0.0", name: "pods", type: "bridge", bridge: REF_BRIDGE, isDefaultGateway: true, ipam: ipam(REF_DATA), dns: DNS },
      env("ref-1", NS[3]),
      "/usr/lib/cni/bridge",
    );
    expect(ref.code, ref.out).toBe(0);
    const theirs = RESULT_1_0.parse(ref.json);
    const mine = RESULT_1_0.parse(r1);
    // Addresses, gateway, routes and DNS: the same. Each IP points at the container's interface.
    expect(mine.ips.map(({ address, gateway }) => ({ address, gateway }))).toEqual(theirs.ips.map(({ address, gateway }) => ({ address, gateway })));
    expect(mine.ips[0].address).toBe("10.88.0.2/24");
    expect(mine.routes).toEqual(theirs.routes);
    expect(mine.dns).toEqual(theirs.dns);
    const sandboxOf = (r: z.infer<typeof RESULT_1_0>): unknown => r.interfaces[r.ips[0].interface as number];
    expect(sandboxOf(mine)).toMatchObject({ name: "eth0", sandbox: `/run/netns/${NS[0]}` });
    expect(sandboxOf(theirs)).toMatchObject({ name: "eth0", sandbox: `/run/netns/${NS[3]}` });
    // The interface really is as the result says, in the container.
    const link = JSON.parse(inNs(NS[0], ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout) as Array<{
      address: string;
      addr_info: Array<{ family: string; local: string; prefixlen: number }>;
    }>;
    expect(link[0].address).toBe(mine.interfaces[0].mac);
    expect(link[0].addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`)).toEqual(["10.88.0.2/24"]);
    expect(inNs(NS[0], ["ip", "route"]).stdout).toMatch(/^default via 10\.88\.0\.1 dev eth0/m);
    expect(inNs(NS[0], ["ip", "route"]).stdout).toMatch(/^10\.99\.0\.0\/16 via 10\.88\.0\.1 dev eth0/m);
    expect(nodePorts().filter((p) => !before.includes(p))).toHaveLength(1);
    expect(allocated(DATA)).toEqual(["10.88.0.2"]);
  });

  it("a 0.4.0 config (as podman writes) gets a 0.4.0 result; the pods ping their gateway, each other and the lab's hosts", () => {
    const r = cni("ADD", conf({ cniVersion: "0.4.0" }), env("pod-2", NS[1]));
    expect(r.code, r.out).toBe(0);
    expect(r.json).toMatchObject({ cniVersion: "0.4.0", ips: [{ version: "4", interface: 0, address: "10.88.0.3/24", gateway: "10.88.0.1" }] });
    expect(ping(NS[0], "10.88.0.1", 2).stdout).toMatch(/2 received/);
    expect(ping(NS[0], "10.88.0.3", 2).stdout).toMatch(/2 received/);
    expect(ping(NS[1], "10.88.0.2", 2).stdout).toMatch(/2 received/);
    // The lab's own hosts: one on the pods' VLAN, one routed to on VLAN 20 (and back).
    expect(ping(NS[0], "10.88.0.200", 2).stdout).toMatch(/2 received/);
    expect(ping(NS[0], "10.88.20.200", 2).stdout).toMatch(/2 received/);
    expect(ping("tn.cni.h20", "10.88.0.3", 2).stdout).toMatch(/2 received/);
  });

  it("a pod on VLAN 20 with isGateway reaches the other VLAN's pods through the node's router", () => {
    const vlanConf = conf({
      vlan: 20,
      isGateway: true,
      ipam: { type: "host-local", subnet: "10.88.20.0/24", gateway: "10.88.20.1", dataDir: DATA },
    });
    const r = cni("ADD", vlanConf, env("pod-3", NS[2]));
    expect(r.code, r.out).toBe(0);
    expect(r.json).toMatchObject({ ips: [{ address: "10.88.20.2/24", gateway: "10.88.20.1" }], routes: [{ dst: "0.0.0.0/0", gw: "10.88.20.1" }] });
    expect(ping(NS[2], "10.88.0.2", 2).stdout).toMatch(/2 received/);
    expect(cni("DEL", vlanConf, env("pod-3", NS[2])).code).toBe(0);
    // A gateway that is no router address of the node: refused, nothing kept.
    const before = nodePorts();
    const bad = cni("ADD", conf({ isGateway: true, ipam: { ...ipam(DATA), gateway: "10.88.0.254" } }), env("pod-4", NS[2]));
    expect(bad.code).not.toBe(0);
    expect(ERROR.parse(bad.json)).toMatchObject({ code: 7, msg: expect.stringMatching(/isGateway: gateway 10\.88\.0\.254 is not an address of node n1/) });
    expect(nodePorts()).toEqual(before);
    expect(allocated(DATA).sort()).toEqual(["10.88.0.2", "10.88.0.3"]);
  });

  it("CHECK passes, then fails with an error object once the address is removed by hand", () => {
    const withPrev = { ...conf(), prevResult: r1 };
    const ok = cni("CHECK", withPrev, env("pod-1", NS[0]));
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toBe("");
    expect(inNs(NS[0], ["ip", "addr", "del", "10.88.0.2/24", "dev", "eth0"]).status).toBe(0);
    const bad = cni("CHECK", withPrev, env("pod-1", NS[0]));
    expect(bad.code).toBe(1);
    expect(ERROR.parse(bad.json)).toMatchObject({ code: 101, msg: "eth0 lacks address 10.88.0.2/24 (has none)" });
    expect(inNs(NS[0], ["ip", "addr", "add", "10.88.0.2/24", "dev", "eth0"]).status).toBe(0);
  });

  it("DEL frees the address (host-local's files) and the port; a second DEL succeeds too", () => {
    const before = nodePorts();
    const d1 = cni("DEL", conf(), env("pod-1", NS[0]));
    expect(d1.code, d1.out).toBe(0);
    expect(d1.out).toBe("");
    expect(allocated(DATA)).toEqual(["10.88.0.3"]);
    expect(before.length - nodePorts().length).toBe(1);
    expect(inNs(NS[0], ["ip", "link", "show", "eth0"]).status).not.toBe(0);
    // No TAP left behind anywhere: not in the container, not in the node's namespace.
    const tap = portName("pod-1", "eth0");
    expect(inNs("tn.cni.n1", ["ip", "link", "show", tap]).status).not.toBe(0);
    expect(spawnSync("ip", ["link", "show", tap]).status).not.toBe(0);
    expect(fs.existsSync(`/run/tapnet/cni/cni/${tap}.json`)).toBe(false);
    const d2 = cni("DEL", conf(), env("pod-1", NS[0]));
    expect(d2.code, d2.out).toBe(0);
    expect(d2.out).toBe("");
    // The freed address is handed out again (host-local goes round its range first).
    const again = cni("ADD", conf(), env("pod-5", NS[0]));
    expect(again.code, again.out).toBe(0);
    expect(cni("DEL", conf(), env("pod-5", NS[0])).code).toBe(0);
  });

  it("ADD with a bad config, an unknown node or a missing IPAM plugin prints the spec's error object and keeps nothing", () => {
    const before = nodePorts();
    const held = allocated(DATA);
    const cases: Array<[Record<string, unknown> | string, Record<string, string>, number, RegExp]> = [
      ['{"cniVersion": "1.0.0", "name": ', env("e1", NS[2]), 6, /not JSON/],
      [conf({ ipam: undefined }), env("e2", NS[2]), 7, /ipam: missing/],
      [conf({ cniVersion: "9.9.9" }), env("e3", NS[2]), 1, /incompatible CNI versions/],
      [conf({ vlan: 5000 }), env("e4", NS[2]), 7, /vlan: 5000 is not an integer 1-4094/],
      [conf({ ipMasq: true }), env("e5", NS[2]), 2, /ipMasq/],
      [conf({ node: "nowhere" }), env("e6", NS[2]), 7, /lab cni has no node 'nowhere'/],
      [conf({ lab: "nolab" }), env("e7", NS[2]), 7, /no lab named 'nolab' is up/],
      [conf({ ipam: { type: "no-such-ipam" } }), env("e8", NS[2]), 7, /failed to find IPAM plugin "no-such-ipam"/],
      // host-local's own error object, its code kept (999: its generic failure)
      [conf({ ipam: { type: "host-local" } }), env("e9", NS[2]), 999, /IPAM plugin host-local \(ADD\): no IP ranges specified/],
      [conf(), { CNI_CONTAINERID: "e10", CNI_IFNAME: "eth0" }, 4, /\[CNI_NETNS\] missing/],
      [conf(), env("e11", "tncni-none"), 3, /no such network namespace/],
    ];
    for (const [c, e, code, msg] of cases) {
      const r = cni("ADD", c, e);
      expect(r.code, `${JSON.stringify(c)}: ${r.out}`).toBe(1);
      const err = ERROR.parse(r.json);
      expect(err.code, r.out).toBe(code);
      expect(err.msg, r.out).toMatch(msg);
    }
    expect(nodePorts()).toEqual(before);
    expect(allocated(DATA)).toEqual(held);
  });

  it("a pod keeps its port when the node is killed with -9: the supervisor hands the pod's TAP to the new node", async () => {
    type Row = {
      name: string;
      pid: number | null;
      running: boolean;
      restarts: number;
      supervisor: { standby?: number | null; lastRestart?: string };
    };
    const row = (): Row => {
      // Exit status 1 while a node is down: the JSON is printed all the same.
      const labs = JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{ lab: string; nodes: Row[] }>;
      return labs.find((l) => l.lab === "cni")?.nodes.find((n) => n.name === "n1") as Row;
    };
    const port = portName("pod-2", "eth0");
    expect(fs.existsSync(`/run/tapnet/cni/cni/${port}.json`)).toBe(true);
    // n1 keeps a standby (src/node/standby.ts): the pod's TAP goes to it.
    const before = await waitFor(
      "n1's standby to be parked",
      () => {
        const n = row();
        return typeof n.supervisor.standby === "number" ? n : undefined;
      },
      30_000,
    );
    expect(before.running).toBe(true);
    process.kill(before.pid as number, "SIGKILL");
    const after = await waitFor(
      "n1 to be restarted",
      () => {
        const n = row();
        return n.running && n.restarts === before.restarts + 1 && n.pid !== before.pid ? n : undefined;
      },
      30_000,
    );
    expect(after.pid).toBe(before.supervisor.standby);
    expect(after.supervisor.lastRestart).toBe("standby");
    expect(fs.readFileSync("/run/tapnet/cni/n1.supervisor.json", "utf8")).toContain(`"${port}"`);
    expect(nodePorts()).toContain(port);
    expect(ping(NS[1], "10.88.0.200", 2).stdout).toMatch(/2 received/);
  });

  it("DEL after the lab went down, and after it came back with a fresh node, succeeds and frees the address", () => {
    expect(allocated(DATA)).toEqual(["10.88.0.3"]);
    tapnetOk(["lab", "down", file]);
    // The pod's TAP is persistent and outside the lab's namespaces: still in the container.
    expect(inNs(NS[1], ["ip", "link", "show", "eth0"]).status).toBe(0);
    const whileDown = cni("DEL", conf(), env("pod-2", NS[1]));
    expect(whileDown.code, whileDown.out).toBe(0);
    expect(allocated(DATA)).toEqual([]);
    // DEL removed it without the node.
    expect(inNs(NS[1], ["ip", "link", "show", "eth0"]).status).not.toBe(0);
    tapnetOk(["lab", "up", file]);
    const afterUp = cni("DEL", conf(), env("pod-2", NS[1]));
    expect(afterUp.code, afterUp.out).toBe(0);
  });
});
