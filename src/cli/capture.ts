/**
 * `tapnet capture NODE PORT…`: pcapng of what crosses ports, to a file or to Wireshark;
 * `tapnet capture NODE --drops`: the frames the node drops, the reason in each packet's comment.
 */
import fs from "node:fs";
import type { Command } from "commander";
import { stream } from "../control/client.js";
import { nodeSocket } from "./nodes.js";
import { parseCount } from "./format.js";

export function registerCapture(program: Command): void {
  program
    .command("capture")
    .argument("<node>", "node name")
    .argument("[ports...]", "port names (see tapnet show ports)")
    .option("--drops", "capture the frames the node's switch and router drop, each with its reason as the packet comment (no ports)")
    .option("-w, --write <file>", "write pcapng to this file (default: stdout, for 'wireshark -k -i -')")
    .option("-c, --count <n>", "stop after n frames", parseCount)
    .option("--lab <name>", "the lab, when several are up")
    .description("capture what crosses ports of a node as pcapng (one interface per port)")
    .action(async (node: string, ports: string[], o: { write?: string; count?: number; lab?: string; drops?: boolean }) => {
      if (o.drops && ports.length > 0) throw new Error("capture --drops takes no ports: it captures what the node's elements drop");
      if (!o.drops && ports.length === 0) throw new Error("capture needs at least one port (see tapnet show ports), or --drops");
      const [{ socket }] = nodeSocket(node, o.lab);
      if (!o.write && process.stdout.isTTY) {
        throw new Error("refusing to write pcapng to a terminal: use -w FILE, or pipe into wireshark -k -i - / tshark -r -");
      }
      const out = o.write ? fs.createWriteStream(o.write) : process.stdout;
      let bytes = 0;
      const s = await stream(
        socket,
        o.drops ? { cmd: "capture", drops: true, count: o.count ?? 0 } : { cmd: "capture", ports, count: o.count ?? 0 },
        (chunk) => {
          bytes += chunk.length;
          out.write(chunk);
        },
      );
      // The node has attached the capture when it answers: from here on nothing is missed.
      process.stderr.write(`tapnet: capturing on ${node}: ${o.drops ? "dropped frames" : ports.join(", ")}${o.count ? ` (${o.count} frames)` : ""}\n`);
      const stop = (): void => s.abort();
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      // A reader that goes away (wireshark closed, `| head`) ends the capture.
      out.on("error", stop);
      if (!o.write) process.stdout.on("close", stop);
      await s.done;
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      if (o.write) {
        await new Promise<void>((r) => (out as fs.WriteStream).end(r));
        process.stderr.write(`wrote ${bytes} bytes of pcapng to ${o.write}\n`);
      }
    });
}
