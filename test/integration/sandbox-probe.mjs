// Run by sandbox.test.ts in a child process, started like a node (setpriv, in a network
// namespace of its own): installs the node's seccomp filter, then opens every kind of
// port (as a node adding ports at run time would) and tries what the filter must
// refuse. Prints one JSON object. Usage: node sandbox-probe.mjs CONFIG.json SCRATCH_DIR
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";

const root = process.env.TAPNET_ROOT;
const sb = await import(path.join(root, "dist/node/sandbox.js"));
const { TapnetNode } = await import(path.join(root, "dist/node/node.js"));
const { VxlanPort } = await import(path.join(root, "dist/io/vxlan-port.js"));
const [configPath, scratch] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));

/** "ok", or the error code a call failed with. */
const attempt = (f) => {
  try {
    f();
    return "ok";
  } catch (e) {
    return e.code ?? e.message;
  }
};

const out = {};
// The threads Node.js started before the filter (listed now: the filter refuses getdents64).
const tasks = fs.readdirSync("/proc/self/task");
out.installed = sb.installSeccomp();
out.self = sb.readPrivileges();
out.threads = tasks.map((t) => sb.readPrivileges(`/proc/self/task/${t}/status`).seccomp);

// Every kind of port, opened after the filter.
try {
  const node = new TapnetNode(config);
  node.engine.start();
  for (const p of node.engine.ports) if (p instanceof VxlanPort) await p.ready();
  out.ports = node.ports().map((p) => `${p.name}:${p.kind}`);
  node.engine.stop();
} catch (e) {
  out.ports = `failed: ${e.message}`;
}

// What must be refused.
// No stdio pipes (libuv would ask for a socketpair first): the refusal is the fork itself.
out.spawn = spawnSync("/bin/true", { stdio: "ignore" }).error?.code ?? "ran";
out.mkdir = attempt(() => fs.mkdirSync(path.join(scratch, "dir")));
out.create = attempt(() => fs.writeFileSync(path.join(scratch, "file"), "x"));
out.chmod = attempt(() => fs.chmodSync(scratch, 0o777));
out.netlink = attempt(() => os.networkInterfaces());
out.kill = attempt(() => process.kill(1, 0)); // signal 0: only asks whether it could
// What stays allowed: reading a file.
out.read = attempt(() => fs.readFileSync("/proc/self/status"));

// A thread started after the filter (clone3 -> ENOSYS -> clone with CLONE_THREAD) has it too.
out.worker = await new Promise((resolve) => {
  const w = new Worker(
    `const fs = require("node:fs");
     const { parentPort, workerData } = require("node:worker_threads");
     let mkdir = "ok";
     try { fs.mkdirSync(workerData + "/wdir"); } catch (e) { mkdir = e.code; }
     const seccomp = /^Seccomp:\\s*(\\d+)/m.exec(fs.readFileSync("/proc/thread-self/status", "utf8"))[1];
     parentPort.postMessage({ mkdir, seccomp: Number(seccomp) });`,
    { eval: true, workerData: scratch },
  );
  w.once("message", (m) => {
    resolve(m);
    void w.terminate();
  });
  w.once("error", (e) => resolve({ error: e.message }));
});

console.log(JSON.stringify(out));
