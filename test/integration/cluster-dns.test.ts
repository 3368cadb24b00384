/**
 * The cluster DNS a node's router answers (src/elements/router/cluster-dns.ts), asked by
 * real resolvers in a lab host: busybox `nslookup` for a service's FQDN, an unknown name
 * (NXDOMAIN) and a name outside the cluster domain (REFUSED); glibc's `getent hosts` for a
 * short name through the resolv.conf search path a pod gets; services added and removed
 * at runtime.
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canRunLabs, inNs, netnsList, tapnet, tapnetOk, writeLabFile } from "./harness.js";

const LAB = `name: cdns
nodes:
  n1:
    interfaces:
      cni0: { vlan: 1, address: 10.92.0.1/24 }
    services:
      web: { vip: 10.96.0.20, port: 80, backends: ["10.92.0.3:80"] }
    clusterDns: { address: 10.96.0.10 }
hosts:
  h1: { node: n1, ip: 10.92.0.2/24, gateway: 10.92.0.1 }
`;

const H1 = "tn.cdns.h1";
/** `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf. */
const ETC = `/etc/netns/${H1}`;
const haveBusybox = fs.existsSync("/bin/busybox");

const nslookup = (name: string) => inNs(H1, ["busybox", "nslookup", name, "10.96.0.10"]);

describe.skipIf(!canRunLabs() || !haveBusybox)("cluster DNS", () => {
  const file = writeLabFile("cdns", LAB);

  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
    fs.mkdirSync(ETC, { recursive: true });
    fs.writeFileSync(`${ETC}/resolv.conf`, "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
  });

  afterAll(() => {
    fs.rmSync(ETC, { recursive: true, force: true });
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.cdns."))).toEqual([]);
  });

  it("nslookup: a service's FQDN gets its VIP, an unknown service NXDOMAIN, a name outside the cluster REFUSED", () => {
    const ok = nslookup("web.default.svc.cluster.local");
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/Name:\s+web\.default\.svc\.cluster\.local\s+Address: 10\.96\.0\.20/);
    const nx = nslookup("nope.default.svc.cluster.local");
    expect(nx.status).not.toBe(0);
    expect(nx.stdout + nx.stderr).toMatch(/can't find nope\.default\.svc\.cluster\.local: NXDOMAIN/);
    const out = nslookup("example.com");
    expect(out.status).not.toBe(0);
    expect(out.stdout + out.stderr).toMatch(/can't find example\.com: REFUSED/);
  });

  it("getent hosts: the short name through the search path; a service added at runtime resolves, one deleted does not", () => {
    expect(inNs(H1, ["getent", "hosts", "web"]).stdout).toMatch(/^10\.96\.0\.20\s+web\.default\.svc\.cluster\.local$/m);
    expect(inNs(H1, ["getent", "hosts", "db"]).status).not.toBe(0);
    tapnetOk(["service", "add", "db", "--vip", "10.96.0.21", "--port", "5432", "--lab", "cdns"]);
    expect(inNs(H1, ["getent", "hosts", "db"]).stdout).toMatch(/^10\.96\.0\.21\s+db\.default\.svc\.cluster\.local$/m);
    tapnetOk(["service", "del", "db", "--lab", "cdns"]);
    expect(inNs(H1, ["getent", "hosts", "db"]).status).not.toBe(0);
  });

  it("lab save writes the cluster DNS back into the topology", () => {
    expect(tapnetOk(["lab", "save", "cdns"])).toMatch(/clusterDns:[\s\S]*address: 10\.96\.0\.10[\s\S]*domain: cluster\.local/);
  });
});
