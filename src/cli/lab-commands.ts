/** `tapnet lab …`: build, inspect and remove labs described by topology files. */
import { spawnSync } from "node:child_process";
import type { Command } from "commander";
import fs from "node:fs";
import { findLab, labDown, labStatus, labUp, type NodeStatus } from "../lab/lab.js";
import { sandboxLine } from "../node/sandbox.js";
import { indentedTable } from "./format.js";
import { readState } from "../lab/state.js";
import { request } from "../control/client.js";
import type { LiveCounters } from "../lab/graph.js";

/** Each running node's port counters (its `stats`); a node that does not answer is left out. */
async function liveCounters(labName: string): Promise<LiveCounters> {
  const s = readState(labName);
  if (!s) throw new Error(`--live: lab ${labName} is not up`);
  const out: LiveCounters = {};
  for (const [n, st] of Object.entries(s.nodes)) {
    try {
      out[n] = ((await request(st.socket, { cmd: "stats" })) as { ports: LiveCounters[string] }).ports;
    } catch {
      // A kernel node has no control socket; a restarting node answers later.
    }
  }
  return out;
}

/** running, restarting (its supervisor is starting it again) or NOT RUNNING; "unsupervised" when its supervisor is gone. */
function nodeState(n: NodeStatus): string {
  const st = n.running ? "running" : n.supervisor.running && n.supervisor.state !== "stopped" ? "NOT RUNNING (restarting)" : "NOT RUNNING";
  return n.supervisor.running ? st : `${st}, unsupervised`;
}

/** "SIGKILL at 12:03:04", "status 1 at …", or nothing. */
function lastExit(e: NodeStatus["lastExit"]): string | undefined {
  if (!e) return undefined;
  const at = new Date(e.at).toISOString().slice(11, 19);
  return `${e.signal ?? `status ${e.code}`} at ${at}`;
}

export function registerLab(program: Command): Command {
  const lab = program.command("lab").description("build, inspect and remove labs described by topology files");

  lab
    .command("up")
    .argument("<file>", "topology file (YAML), e.g. scripts/labs/switch.yaml")
    .option("-q, --quiet", "print nothing but errors")
    .description("create the lab's namespaces and node processes; returns when the lab is ready")
    .action(async (file: string, o: { quiet?: boolean }) => {
      const say = o.quiet ? () => undefined : (m: string) => console.log(m);
      // Ctrl-C (or a SIGTERM/SIGHUP) during the build: stop at the next step and remove
      // what was made, rather than die and leave a half-built lab behind.
      const abort = new AbortController();
      const stop = (sig: NodeJS.Signals): void => {
        if (!abort.signal.aborted) console.error(`tapnet: ${sig}: stopping lab up and removing what it made…`);
        abort.abort();
      };
      const sigs = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
      for (const sig of sigs) process.on(sig, stop);
      let s: Awaited<ReturnType<typeof labUp>>;
      try {
        s = await labUp(file, say, abort.signal);
      } finally {
        for (const sig of sigs) process.off(sig, stop);
      }
      if (!o.quiet) {
        console.log(`lab ${s.lab} is up: ${Object.keys(s.nodes).length} node(s), ${Object.keys(s.hosts).length} host(s)`);
        console.log(`  try: tapnet lab exec ${Object.keys(s.hosts)[0] ?? "HOST"} -- ping -c 3 ADDRESS`);
      }
    });

  lab
    .command("down")
    .argument("<file|name>", "the topology file the lab came from, or the lab's name")
    .option("-q, --quiet", "print nothing but errors")
    .description("stop the lab's node processes and remove every namespace, TAP and veth it created")
    .action(async (file: string, o: { quiet?: boolean }) => {
      const r = await labDown(file);
      if (!o.quiet) {
        console.log(r.removed.length ? `lab ${r.lab} is down (removed ${r.removed.join(" ")})` : `lab ${r.lab} was not up; nothing to remove`);
      }
    });

  lab
    .command("status")
    .option("--json", "machine-readable output")
    .description("list the labs that are up, their nodes and hosts (exit status 1 when a node is not running)")
    .action(async (o: { json?: boolean }) => {
      const labs = await labStatus();
      // Non-zero when any node of a lab is not running, so scripts can check a lab.
      if (labs.some((l) => l.nodes.some((n) => !n.running))) process.exitCode = 1;
      if (o.json) return console.log(JSON.stringify(labs, null, 2));
      if (labs.length === 0) return console.log("no lab is up");
      for (const l of labs) {
        console.log(`lab ${l.lab} (${l.file})`);
        console.log(
          indentedTable(
            ["NODE", "PID", "STATE", "RESTARTS", "LAST EXIT", "PORTS", "RUNS WITH"],
            l.nodes.map((n) => [
              n.name,
              n.pid,
              nodeState(n),
              n.restarts,
              lastExit(n.lastExit),
              n.ports?.join(","),
              n.sandbox ? sandboxLine(n.sandbox) : undefined,
            ]),
            "  ",
          ).join("\n"),
        );
        console.log(
          indentedTable(
            ["HOST", "NODE", "ADDRESS", "GATEWAY", "VLAN", "LINK"],
            Object.entries(l.hosts).map(([h, s]) => [h, s.node, s.ip, s.gateway, s.vlan, s.link]),
            "  ",
          ).join("\n"),
        );
      }
    });

  lab
    .command("exec")
    .argument("<host>", "host name")
    .argument("<command...>", "command and arguments (put -- before them)")
    .option("--lab <name>", "the lab, when several are up")
    .description("run a command inside a host's network namespace")
    .action((host: string, argv: string[], o: { lab?: string }) => {
      const s = findLab(host, "host", o.lab);
      const r = spawnSync("ip", ["netns", "exec", s.hosts[host].namespace, ...argv], { stdio: "inherit" });
      if (r.error) throw r.error;
      process.exitCode = r.status ?? (r.signal ? 128 : 1);
    });

  lab
    .command("save")
    .argument("<lab>", "the lab")
    .option("-o, --output <file>", "write the topology here (default: stdout)")
    .description("write the running lab (runtime changes included) as a topology file that lab up reproduces")
    .action(async (labName: string, o: { output?: string }) => {
      const { labSave } = await import("../lab/save.js");
      const text = await labSave(labName);
      if (o.output) fs.writeFileSync(o.output, text);
      else process.stdout.write(text);
    });
  lab
    .command("graph")
    .argument("<file>", "topology file (YAML)")
    .option("-o, --output <file>", "FILE.svg, FILE.dot or FILE.png (default: SVG on stdout)")
    .option("--live", "add the port counters of the running lab made from this file")
    .description("draw the topology: nodes, hosts, links, VLANs, addresses, underlay, tunnels (Graphviz)")
    .action(async (file: string, o: { output?: string; live?: boolean }) => {
      const [{ formatOf, renderTopology }, { loadTopology }] = await Promise.all([import("../lab/graph.js"), import("../lab/topology.js")]);
      const format = o.output ? formatOf(o.output) : "svg";
      const t = loadTopology(file);
      const live = o.live ? await liveCounters(t.name) : undefined;
      const drawing = await renderTopology(t, format, live);
      if (o.output) fs.writeFileSync(o.output, drawing);
      else process.stdout.write(drawing);
    });
  const host = lab.command("host").description("hosts that join or leave a running lab");
  host
    .command("add")
    .argument("<lab>", "the lab")
    .argument("<host>", "the new host's name")
    .requiredOption("--node <name>", "the node whose port it gets")
    .option("--ip <cidr>", "its address, e.g. 10.0.0.9/24 (left out on a mesh node: one from the node's share of the address ring)")
    .option("--gateway <address>", "its default route")
    .option("--vlan <n>", "the access VLAN of its port", (v) => intArg(v, "--vlan"))
    .option("--mtu <n>", "its eth0's MTU (left out: 1500; on a mesh node the mesh MTU, which it then follows)", (v) => intArg(v, "--mtu"))
    .option("-q, --quiet", "print nothing but errors")
    .description("a new host (namespace with eth0) on a node of a running lab")
    .action(async (labName: string, name: string, o: { node: string; ip?: string; gateway?: string; vlan?: number; mtu?: number; quiet?: boolean }) => {
      const { hostAdd } = await import("../lab/hosts.js");
      await hostAdd(labName, name, { node: o.node, ip: o.ip, gateway: o.gateway, vlan: o.vlan, mtu: o.mtu }, o.quiet ? () => undefined : (m) => console.log(m));
    });
  host
    .command("del")
    .argument("<lab>", "the lab")
    .argument("<host>", "the host")
    .option("-q, --quiet", "print nothing but errors")
    .description("a host leaves: its port, namespace and TAP go")
    .action(async (labName: string, name: string, o: { quiet?: boolean }) => {
      const { hostDel } = await import("../lab/hosts.js");
      await hostDel(labName, name, o.quiet ? () => undefined : (m) => console.log(m));
    });
  return lab;
}

function intArg(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${what}: '${v}' is not a whole number`);
  return n;
}
