// The etcd scenario's lease writer (scripts/bench/etcd.mjs runs it in the lab's etcd1
// namespace, where the members' client addresses are reachable). It writes what a joining
// flanneld writes, through the agent's own client (dist/agent/etcd.js, the v3 JSON gateway),
// and says when: one JSON command per stdin line, one JSON answer per stdout line.
//
//   {"op":"grant","ttl":S}                       -> {"lease":"ID"}
//   {"op":"put","kvs":[[key,value],…],"lease":ID} -> {"t":[ms before each put was sent], "done":ms}
//   {"op":"del","keys":[…]}                       -> {"t":[ms before each delete was sent], "done":ms}
//   {"op":"revoke","lease":ID}                    -> {"t":[ms before the revoke was sent], "done":ms}
//
// Every put of one command is sent at once (one connection each): "written at once".
// Times are wall-clock ms with a fraction (performance.timeOrigin + performance.now()), the
// clock the agents stamp their peers with (`sinceMs` in `show agent`).
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { EtcdClient } = await import(pathToFileURL(path.join(ROOT, "dist/agent/etcd.js")).href);
const endpoints = (process.argv[2] ?? "").split(",").filter(Boolean);
const etcd = new EtcdClient(endpoints, 10_000);
const b64 = (s) => Buffer.from(s).toString("base64");

const now = () => performance.timeOrigin + performance.now();
const answer = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function handle(cmd) {
  if (cmd.op === "grant") return { lease: await etcd.grant(cmd.ttl) };
  const t = [];
  let calls;
  if (cmd.op === "put") {
    calls = cmd.kvs.map(([k, v]) => {
      t.push(now());
      return etcd.put(k, v, cmd.lease);
    });
  } else if (cmd.op === "del") {
    calls = cmd.keys.map((k) => {
      t.push(now());
      return etcd.call("/v3/kv/deleterange", { key: b64(k) });
    });
  } else if (cmd.op === "revoke") {
    t.push(now());
    calls = [etcd.revoke(cmd.lease)];
  } else {
    throw new Error(`unknown op ${cmd.op}`);
  }
  await Promise.all(calls);
  return { t, done: now() };
}

const rl = readline.createInterface({ input: process.stdin });
// One command at a time, in order.
let chain = Promise.resolve();
rl.on("line", (line) => {
  chain = chain.then(async () => {
    try {
      answer(await handle(JSON.parse(line)));
    } catch (e) {
      answer({ error: e instanceof Error ? e.message : String(e) });
    }
  });
});
rl.on("close", () => chain.then(() => process.exit(0)));
