/**
 * `tapnet trace NODE [FILTER…] [-c N] [--port P]`: the next N matching packets' way through
 * the node, live; `tapnet trace NODE --in PORT --packet SPEC`: what the node would do with
 * a packet, nothing sent (docs/trace.md).
 */
import type { Command } from "commander";
import { request, stream } from "../control/client.js";
import type { LiveTraceRecord } from "../node/live-trace.js";
import { renderWhatIf, type WhatIfResult } from "../node/trace.js";
import { compileFilter } from "../node/trace-filter.js";
import { findLab } from "../lab/lab.js";
import { parseCount } from "./format.js";

export function registerTrace(program: Command): void {
  program
    .command("trace")
    .argument("[node]", "node name (live: leave it out, with --lab, to trace every node of the lab)")
    .argument("[filter...]", "live: which packets (host, src, dst, net, icmp, tcp, udp, arp, proto, port, vlan, and, or, not)")
    .option("-c, --count <n>", "live: stop after n packets (per node; default 1)", parseCount)
    .option("--port <port>", "live: only packets received on this port")
    .option("--in <port>", "what-if: the port the packet comes in on (see tapnet show ports)")
    .option("--packet <spec>", "what-if: 'icmp|udp|tcp SRC[:PORT] > DST[:PORT] [ttl N] [len N] [vlan N] [from MAC] [to MAC]', or 'hex HEX'")
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output (live: one JSON line per packet)")
    .description("a packet's way through a node's graph: live (the next matching packets) or what-if (--in, --packet; nothing is sent)")
    .action(
      async (
        nodeArg: string | undefined,
        filter: string[],
        o: { in?: string; packet?: string; count?: number; port?: string; lab?: string; json?: boolean },
      ) => {
        const lab = findLab(nodeArg, "node", o.lab);
        let nodes: string[];
        if (nodeArg !== undefined && lab.nodes[nodeArg]) nodes = [nodeArg];
        else if (o.lab !== undefined && o.packet === undefined && o.in === undefined) {
          // `tapnet trace --lab LAB FILTER`: every node, the first word being the filter's.
          nodes = Object.keys(lab.nodes).sort();
          if (nodeArg !== undefined) filter.unshift(nodeArg);
        } else throw new Error(nodeArg === undefined ? "trace needs a node, or --lab LAB for every node of a lab" : `lab ${lab.lab} has no node '${nodeArg}'`);
        if (o.packet !== undefined || o.in !== undefined) {
          if (o.packet === undefined || o.in === undefined) throw new Error("a what-if trace needs both --in PORT and --packet SPEC");
          if (filter.length > 0) throw new Error("a what-if trace takes no filter");
          const r = (await request(lab.nodes[nodes[0]].socket, { cmd: "trace", in: o.in, packet: o.packet })) as WhatIfResult;
          console.log(o.json ? JSON.stringify(r, null, 2) : `node ${nodes[0]}\n${renderWhatIf(r)}`);
          return;
        }
        const text = filter.join(" ");
        compileFilter(text); // a bad filter fails here, with its word named
        // Records from several nodes are held for a moment and printed in time order.
        const pending: LiveTraceRecord[] = [];
        let timer: NodeJS.Timeout | null = null;
        const flush = (): void => {
          timer = null;
          pending.sort((a, b) => a.at - b.at);
          for (const r of pending.splice(0)) console.log(o.json ? JSON.stringify(r) : renderLive(r));
        };
        const streams: Array<Awaited<ReturnType<typeof stream>>> = [];
        for (const node of nodes) {
          let rest = "";
          const s = await stream(lab.nodes[node].socket, { cmd: "trace", live: true, filter: text, count: o.count ?? 1, port: o.port }, (chunk) => {
            rest += chunk.toString();
            let nl = rest.indexOf("\n");
            while (nl >= 0) {
              const line = rest.slice(0, nl);
              rest = rest.slice(nl + 1);
              if (line !== "") pending.push(JSON.parse(line) as LiveTraceRecord);
              nl = rest.indexOf("\n");
            }
            if (nodes.length === 1) flush();
            else if (timer === null) timer = setTimeout(flush, 200);
          });
          streams.push(s);
          // The node has armed the trace when it answers: from here on nothing is missed.
          process.stderr.write(`tapnet: tracing on ${node}${text ? `: ${text}` : ""} (${o.count ?? 1} packet${(o.count ?? 1) === 1 ? "" : "s"})\n`);
        }
        const stop = (): void => {
          for (const s of streams) s.abort();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        await Promise.all(streams.map((s) => s.done));
        if (timer !== null) clearTimeout(timer);
        flush();
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      },
    );
}

function renderLive(r: LiveTraceRecord): string {
  const lines = [`${r.time} ${r.node} in ${r.in}: ${r.packet}`];
  for (const s of r.steps) lines.push(`  ${s.element.padEnd(8)} ${s.what}`);
  if (r.out.length === 0) lines.push("  (nothing left the node)");
  for (const o of r.out) lines.push(`  out ${o.port}: ${o.frame}${o.encap ? `, in ${o.encap}` : ""}`);
  return lines.join("\n");
}
