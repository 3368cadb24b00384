/**
 * ClusterDns — the cluster DNS a node's router answers on one address (the `kube-dns`
 * ClusterIP, `clusterDns: { address, domain }` in the topology), from the node's service
 * table as it is at the moment of the query (services added or removed at runtime are
 * answered at once):
 *
 *   SERVICE.default.svc.DOMAIN, A (or ANY)  -> the service's VIP (TTL 5 s), authoritative;
 *   the same name, another type             -> NOERROR with no answer (RFC 2308 §2.2, NODATA);
 *   any other name in DOMAIN                -> NXDOMAIN (RFC 1035 §4.1.1 RCODE 3);
 *   a name outside DOMAIN                   -> REFUSED (RCODE 5): nothing is forwarded out
 *                                              of the lab.
 * tapnet's services have no namespace of their own: they are all in `default`.
 * Messages are decoded and encoded with the `dns-packet` library; a message it cannot
 * decode, a response, or one without a question is counted as malformed and not answered.
 */
import dnsPacket from "dns-packet";
import { ipToString, parseIp } from "../../wire/ipv4addr.js";

export const DNS_PORT = 53;
/** Seconds a client may keep an answer: short, since services change at runtime. */
const TTL = 5;
const RCODE_NXDOMAIN = 3;
const RCODE_REFUSED = 5;

export interface ClusterDnsOptions {
  address: string;
  domain: string;
}

export class ClusterDns {
  readonly addr: number;
  readonly domain: string;
  readonly stats = { queries: 0, answered: 0, nodata: 0, nxdomain: 0, refused: 0, malformed: 0 };

  /** `lookup`: a service's VIP by name (undefined when there is none). */
  constructor(
    o: ClusterDnsOptions,
    private readonly lookup: (service: string) => number | undefined,
  ) {
    this.addr = parseIp(o.address) >>> 0;
    this.domain = o.domain.toLowerCase().replace(/\.$/, "");
  }

  /** The reply to the DNS message `query`, or null when it gets none. */
  answer(query: Buffer): Buffer | null {
    this.stats.queries++;
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(query);
    } catch {
      this.stats.malformed++;
      return null;
    }
    const question = q.questions?.[0];
    if (q.type !== "query" || question === undefined) {
      this.stats.malformed++;
      return null;
    }
    const name = question.name.toLowerCase().replace(/\.$/, "");
    const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    const reply = (rcode: number, answers: dnsPacket.Answer[]): Buffer =>
      dnsPacket.encode({
        type: "response",
        id: q.id,
        flags: dnsPacket.AUTHORITATIVE_ANSWER | rd | rcode,
        questions: [question],
        answers,
      });
    if (name !== this.domain && !name.endsWith(`.${this.domain}`)) {
      this.stats.refused++;
      return dnsPacket.encode({ type: "response", id: q.id, flags: rd | RCODE_REFUSED, questions: [question] });
    }
    const labels = name === this.domain ? [] : name.slice(0, -this.domain.length - 1).split(".");
    const vip = labels.length === 3 && labels[1] === "default" && labels[2] === "svc" ? this.lookup(labels[0]) : undefined;
    if (vip === undefined) {
      this.stats.nxdomain++;
      return reply(RCODE_NXDOMAIN, []);
    }
    if (question.type !== "A" && (question.type as string) !== "ANY") {
      this.stats.nodata++;
      return reply(0, []);
    }
    this.stats.answered++;
    return reply(0, [{ type: "A", class: "IN", name: question.name, ttl: TTL, data: ipToString(vip) }]);
  }
}
