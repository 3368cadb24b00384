// DNS load for the `cni` scenario of scripts/bench.mjs, run inside the client's namespace:
//   node dns-load.mjs SERVER NAME EXPECT_IP WARMUP_S DURATION_S WINDOW
// keeps WINDOW A queries for NAME outstanding on one UDP socket (a reply sends the next
// query; a query unanswered for 1 s is written off as lost and replaced), for WARMUP_S
// and then DURATION_S seconds, and prints one JSON line about the measured window:
// { qps (correct answers/s), sent, answered, correct, lost, p50Us, p99Us }. An answer is
// correct when it carries the query's ID, RCODE 0 and one A record with EXPECT_IP; the
// check reads the header and the last 4 bytes only, so the generator stays cheap next to
// the server it loads (they share the machine's cores).
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

const [server, name, expect, warmupS, durationS, windowArg] = process.argv.slice(2);
const WINDOW = Number(windowArg);
const LOST_MS = 1000;
const want = Buffer.from(expect.split(".").map(Number));
const query = dnsPacket.encode({ type: "query", id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] });

/** Send time (ms, performance.now()) per query ID; 0 when none is outstanding. */
const sentAt = new Float64Array(65536);
let nextId = 1;
let measuring = false;
let done = false;
const s = { sent: 0, answered: 0, correct: 0, lost: 0 };
const lat = [];

const sock = dgram.createSocket("udp4");

function send() {
  // Skip IDs still outstanding (after a wrap at 65536 with slow answers).
  for (let i = 0; i < 65536 && sentAt[nextId] !== 0; i++) nextId = (nextId + 1) & 0xffff || 1;
  const id = nextId;
  nextId = (nextId + 1) & 0xffff || 1;
  // A copy per query: send() is asynchronous and reads the buffer later.
  const q = Buffer.from(query);
  q.writeUInt16BE(id, 0);
  sentAt[id] = performance.now();
  if (measuring) s.sent++;
  sock.send(q, 53, server);
}

sock.on("message", (m) => {
  if (m.length < 12) return;
  const id = m.readUInt16BE(0);
  const t = sentAt[id];
  if (t === 0) return; // written off already, or not ours
  sentAt[id] = 0;
  if (measuring) {
    s.answered++;
    const ok = (m[3] & 0x0f) === 0 && m.readUInt16BE(6) === 1 && m.subarray(m.length - 4).equals(want);
    if (ok) {
      s.correct++;
      lat.push((performance.now() - t) * 1000);
    }
  }
  if (!done) send();
});

sock.bind(0, () => {
  for (let i = 0; i < WINDOW; i++) send();
  const reaper = setInterval(() => {
    const now = performance.now();
    for (let id = 1; id < 65536; id++) {
      if (sentAt[id] !== 0 && now - sentAt[id] > LOST_MS) {
        sentAt[id] = 0;
        if (measuring) s.lost++;
        if (!done) send();
      }
    }
  }, 50);
  let t0 = 0;
  setTimeout(() => {
    measuring = true;
    t0 = performance.now();
    setTimeout(() => {
      measuring = false;
      done = true;
      const secs = (performance.now() - t0) / 1000;
      clearInterval(reaper);
      lat.sort((a, b) => a - b);
      const pct = (p) => (lat.length ? lat[Math.min(lat.length, Math.max(1, Math.ceil((p / 100) * lat.length))) - 1] : null);
      process.stdout.write(`${JSON.stringify({ qps: s.correct / secs, seconds: secs, window: WINDOW, ...s, p50Us: pct(50), p99Us: pct(99) })}\n`);
      sock.close();
    }, Number(durationS) * 1000);
  }, Number(warmupS) * 1000);
});
