/** The cluster DNS responder (src/elements/router/cluster-dns.ts), query by query. */
import dnsPacket from "dns-packet";
import { describe, expect, it } from "vitest";
import { ClusterDns } from "../../src/elements/router/cluster-dns.js";
import { parseIp } from "../../src/wire/ipv4addr.js";

const services: Record<string, string> = { web: "10.96.0.20" };
const dns = new ClusterDns({ address: "10.96.0.10", domain: "cluster.local" }, (n) => (services[n] ? parseIp(services[n]) >>> 0 : undefined));

/** The decoded reply; dns-packet's types leave out the `rcode` it decodes. */
type Reply = dnsPacket.DecodedPacket & { rcode: string };

function ask(name: string, type: "A" | "AAAA" = "A"): Reply {
  const r = dns.answer(dnsPacket.encode({ type: "query", id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }));
  expect(r).not.toBeNull();
  return dnsPacket.decode(r as Buffer) as Reply;
}

describe("cluster DNS", () => {
  it("answers a service's FQDN with its VIP, authoritatively, echoing the id and question", () => {
    const r = ask("Web.default.svc.cluster.local.");
    expect(r).toMatchObject({
      type: "response",
      id: 4242,
      rcode: "NOERROR",
      flag_aa: true,
      flag_rd: true,
      questions: [{ name: "Web.default.svc.cluster.local", type: "A" }],
    });
    expect(r.answers).toMatchObject([{ type: "A", name: "Web.default.svc.cluster.local", ttl: 5, data: "10.96.0.20" }]);
  });

  it("NODATA for another type, NXDOMAIN inside the domain, REFUSED outside it", () => {
    expect(ask("web.default.svc.cluster.local", "AAAA")).toMatchObject({ rcode: "NOERROR", answers: [] });
    for (const n of ["db.default.svc.cluster.local", "web.other.svc.cluster.local", "web.cluster.local", "cluster.local"])
      expect(ask(n).rcode, n).toBe("NXDOMAIN");
    expect(ask("example.com")).toMatchObject({ rcode: "REFUSED", answers: [] });
    // A service added later is answered at once.
    services.db = "10.96.0.21";
    expect(ask("db.default.svc.cluster.local").answers?.[0]).toMatchObject({ data: "10.96.0.21" });
  });

  it("garbage, a response and a message without a question get no answer and are counted", () => {
    const before = dns.stats.malformed;
    expect(dns.answer(Buffer.from([1, 2, 3]))).toBeNull();
    expect(dns.answer(Buffer.alloc(0))).toBeNull();
    expect(dns.answer(dnsPacket.encode({ type: "response", id: 1, questions: [{ type: "A", name: "web.default.svc.cluster.local" }] }))).toBeNull();
    expect(dns.answer(dnsPacket.encode({ type: "query", id: 1, questions: [] }))).toBeNull();
    expect(dns.stats.malformed - before).toBe(4);
  });
});
