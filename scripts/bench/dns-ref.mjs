// The reference DNS responder of the `cni` scenario of scripts/bench.mjs: the same answers
// as tapnet's cluster DNS (src/elements/router/cluster-dns.ts) for one service, from the
// same library (dns-packet), on a kernel UDP socket in a namespace of the bench's own:
//   node dns-ref.mjs ADDRESS NAME IP
// A for NAME -> IP (TTL 5, authoritative); another type of NAME -> NOERROR, no answer;
// anything else -> NXDOMAIN. Prints "ready" once bound; stops on SIGTERM.
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

const [address, name, ip] = process.argv.slice(2);
const sock = dgram.createSocket("udp4");
sock.on("message", (m, rinfo) => {
  let q;
  try {
    q = dnsPacket.decode(m);
  } catch {
    return;
  }
  const question = q.questions?.[0];
  if (q.type !== "query" || question === undefined) return;
  const qname = question.name.toLowerCase().replace(/\.$/, "");
  const hit = qname === name;
  const reply = dnsPacket.encode({
    type: "response",
    id: q.id,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | (hit ? 0 : 3),
    questions: [question],
    answers: hit && (question.type === "A" || question.type === "ANY") ? [{ type: "A", name: question.name, ttl: 5, data: ip }] : [],
  });
  sock.send(reply, rinfo.port, rinfo.address);
});
sock.bind(53, address, () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => process.exit(0));
