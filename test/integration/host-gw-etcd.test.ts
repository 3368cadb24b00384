/**
 * flannel's host-gw backend from etcd leases: scripts/labs/host-gw-etcd.yaml (one real etcd
 * member, two nodes whose agents reach it from their ctl0), lease TTL shortened to 5 s.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = "hg-etcd-test";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const PREFIX = "/coreos.com/network";

function etcdctl(args: string[]): string {
  const r = inNs(ns("etcd1"), ["etcdctl", "--endpoints", "http://192.168.0.11:2379", "--dial-timeout", "3s", "--command-timeout", "5s", ...args]);
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}
const routes = (node: string): string => tapnetOk(["show", "route", "--lab", LAB, "--node", node]);
const agentLog = (node: string): string => fs.readFileSync(`/run/tapnet/${LAB}/${node}.agent.log`, "utf8");

describe.skipIf(!canRunLabs())("host-gw-etcd.yaml: host-gw routes from etcd leases", () => {
  const text = fs
    .readFileSync(path.join(ROOT, "scripts/labs/host-gw-etcd.yaml"), "utf8")
    .replace(/^name: host-gw-etcd$/m, `name: ${LAB}`)
    .replace(/leaseTtl: 15/, "leaseTtl: 5");
  const file = writeLabFile(LAB, text);

  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  }, 120_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("leases carry flanneld's host-gw value; each node routes to the other's subnet via its PublicIP; pods ping", () => {
    const out = etcdctl(["get", "--prefix", `${PREFIX}/subnets/`]);
    expect(out).toBe(
      `${PREFIX}/subnets/10.244.1.0-24\n{"PublicIP":"192.168.0.1","BackendType":"host-gw"}\n` +
        `${PREFIX}/subnets/10.244.2.0-24\n{"PublicIP":"192.168.0.2","BackendType":"host-gw"}\n`,
    );
    expect(routes("node1")).toContain("10.244.2.0/24 via 192.168.0.2 dev ul0 proto flannel");
    expect(routes("node2")).toContain("10.244.1.0/24 via 192.168.0.1 dev ul0 proto flannel");
    const r = ping(ns("pod1a"), "10.244.2.2", 2);
    expect(r.status, r.stdout).toBe(0);
  });

  it("a lease whose PublicIP is off the underlay subnet gets no route (flannel's host-gw rule)", async () => {
    const key = `${PREFIX}/subnets/10.244.60.0-24`;
    etcdctl(["put", key, '{"PublicIP":"10.9.9.9","BackendType":"host-gw"}']);
    await waitFor(
      "node1's agent to note the off-subnet peer",
      () => /10\.244\.60\.0\/24's node 10\.9\.9\.9 is not on this node's underlay subnet/.test(agentLog("node1")),
      10_000,
      200,
    );
    expect(routes("node1")).not.toContain("10.244.60.0/24");
    etcdctl(["del", key]);
  });

  it("a node's own lease deleted by hand: the others withdraw the route, the agent writes its lease again, the route returns", async () => {
    const key = `${PREFIX}/subnets/10.244.2.0-24`;
    const before = agentLog("node2").split("\n").length;
    etcdctl(["del", key]);
    // node2's agent writes it back (the same subnet, under a new etcd lease) …
    await waitFor("node2's lease back in etcd", () => etcdctl(["get", key, "--print-value-only"]).includes('"PublicIP":"192.168.0.2"'), 15_000, 200);
    expect(
      agentLog("node2")
        .split("\n")
        .slice(before - 1)
        .join("\n"),
    ).toMatch(/own lease 10\.244\.2\.0\/24 was deleted from etcd: leasing again/);
    // … node1 saw the DELETE (route withdrawn) and the PUT (route back).
    await waitFor("node1: the route to 10.244.2.0/24 back", () => routes("node1").includes("10.244.2.0/24 via 192.168.0.2 dev ul0 proto flannel"), 15_000, 200);
    expect(agentLog("node1")).toMatch(/peer 10\.244\.2\.0\/24 removed \(its lease was deleted or expired\): route\.del/);
    expect(ping(ns("pod1a"), "10.244.2.2").status).toBe(0);
  });
});
