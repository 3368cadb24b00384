#!/usr/bin/env node
/**
 * The `tapnet` command.
 *   tapnet lab up|down|status|exec   build and use labs (network namespaces + nodes)
 *   tapnet show …                    inspect a running node (src/cli/show.ts)
 *   tapnet capture NODE PORT…        pcapng of what crosses ports (to Wireshark)
 *   tapnet trace NODE --in P --packet S  what-if: each decision of the graph, nothing sent
 *   tapnet cni install               the CNI plugin for container runtimes (src/cni/)
 *   tapnet stp on|off, security reset  layer-2 safety on a running lab (src/cli/l2.ts)
 *   tapnet node run CONFIG           the node process itself (started by its supervisor)
 *   tapnet node supervise CONFIG     a lab node's supervisor (started by lab up): restarts it
 *   tapnet agent …                   flanneld's job for a node: subnet leases in etcd (src/cli/agent.ts)
 *   tapnet metrics --lab LAB         Prometheus metrics of a running lab (src/cli/metrics.ts)
 *   tapnet demo                      a guided tour on scripts/labs/switch.yaml
 */
import { Command } from "commander";
import { loadCommandGroups } from "./groups.js";

const program = new Command();
program.name("tapnet").description("A userspace network dataplane on Linux TAP devices: labs, inspection, capture").showHelpAfterError();

// Only the commands of the word given (src/cli/groups.ts).
await loadCommandGroups(
  program,
  process.argv.slice(2).find((a) => !a.startsWith("-")),
);

const nodeCmd = program.command("node").description("the node process (started by 'tapnet lab up')");
nodeCmd
  .command("run")
  .argument("<config>", "node configuration (JSON)")
  .description("run a node in the foreground")
  .action(async (config: string) => {
    const { runNode } = await import("../node/node.js");
    await runNode(config);
  });
nodeCmd
  .command("supervise")
  .argument("<config>", "node configuration (JSON) of a lab node")
  .description("run a lab node and restart it when it dies (started by 'tapnet lab up')")
  .action(async (config: string) => {
    const { runSupervisor } = await import("../lab/supervisor.js");
    runSupervisor(config);
  });

program
  .command("demo")
  .description("bring up scripts/labs/switch.yaml, ping, show the table, capture, tear down")
  .action(async () => {
    const { runDemo } = await import("./demo.js");
    await runDemo();
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  // A TopologyError's message already lists every problem with its place in the file.
  console.error(`tapnet: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
