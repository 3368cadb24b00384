/** `tapnet trace NODE --in PORT --packet SPEC`: what the node would do with a packet (docs/trace.md). */
import type { Command } from "commander";
import { request } from "../control/client.js";
import { renderWhatIf, type WhatIfResult } from "../node/trace.js";
import { nodeSocket } from "./nodes.js";

export function registerTrace(program: Command): void {
  program
    .command("trace")
    .argument("<node>", "node name")
    .requiredOption("--in <port>", "the port the packet comes in on (see tapnet show ports)")
    .requiredOption("--packet <spec>", "'icmp|udp|tcp SRC[:PORT] > DST[:PORT] [ttl N] [len N] [vlan N] [from MAC] [to MAC]', or 'hex HEX'")
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output")
    .description("what-if: push a synthetic packet through a node's graph and print each decision; nothing is sent")
    .action(async (node: string, o: { in: string; packet: string; lab?: string; json?: boolean }) => {
      const [{ socket }] = nodeSocket(node, o.lab);
      const r = (await request(socket, { cmd: "trace", in: o.in, packet: o.packet })) as WhatIfResult;
      console.log(o.json ? JSON.stringify(r, null, 2) : `node ${node}\n${renderWhatIf(r)}`);
    });
}
