#!/usr/bin/env node
/**
 * The entry point of the processes `tapnet lab up` starts: `node-main.js node supervise
 * CONFIG` (a node's supervisor) and `node-main.js node run CONFIG` (the node), the same
 * words as the `tapnet` command's (src/cli/main.ts), without loading the CLI (commander
 * and every verb's module): a lab's supervisors and nodes start that much sooner, and so
 * does a node restarted after a crash.
 */
const [verb, sub, config, ...rest] = process.argv.slice(2);
if (verb !== "node" || (sub !== "run" && sub !== "supervise") || config === undefined || rest.length > 0) {
  console.error("usage: node-main.js node run|supervise CONFIG (the tapnet command has the same verbs)");
  process.exit(2);
}
try {
  // A standby (src/node/standby.ts) loads the node's modules now and runs the node later.
  const standby = process.env.TAPNET_STANDBY_FD; // STANDBY_FD_ENV (src/node/sandbox.ts)
  if (sub === "run" && standby !== undefined) await (await import("../node/standby.js")).runStandby(config, standby);
  else if (sub === "run") await (await import("../node/node.js")).runNode(config);
  else (await import("../lab/supervisor.js")).runSupervisor(config);
} catch (e) {
  console.error(`tapnet: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
