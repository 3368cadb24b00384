/**
 * flannel from etcd across a routed underlay (scripts/labs/flannel-etcd-routed.yaml): node2's
 * agent reaches etcd and node1's VTEP only through the kernel router, as on another machine.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, captureFields, inNs, netnsList, ping, tapnet, tapnetOk } from "./harness.js";

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
    expect(publicIps).toEqual(["192.168.1.2", "192.168.2.2"]);
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
});
