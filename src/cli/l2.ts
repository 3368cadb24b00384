/**
 * Layer-2 safety on the command line: `show stp` and `show security` output, the kernel
 * bridges' spanning tree read from sysfs (so `show stp` puts a lab's Linux bridges beside
 * its tapnet switches, in the same form), and the commands that change a running lab:
 *   tapnet stp on|off [--node N] [--lab L]     spanning tree on every bridge of the lab
 *   tapnet security reset NODE PORT            bring a port back from a port security shutdown
 */
import { spawnSync } from "node:child_process";
import type { Command } from "commander";
import { request } from "../control/client.js";
import { findLab } from "../lab/lab.js";
import type { StpView } from "../elements/stp-view.js";
import { table } from "./format.js";

/** Port priority in 802.1D-2004's scale (0-240): the Linux bridge's (0-63) is a quarter of it. */
const KERNEL_PRIO_SCALE = 4;
const KERNEL_STATES = ["disabled", "listening", "learning", "forwarding", "blocking"] as const;

/** A kernel bridge's spanning tree as `show stp` shows a tapnet switch's (from /sys/class/net/br0). */
export function kernelStpView(namespace: string): StpView & { kernel: true } {
  const r = spawnSync("ip", ["netns", "exec", namespace, "sh", "-c", "grep -r . /sys/class/net/br0/bridge/ /sys/class/net/br0/brif/*/ 2>/dev/null"], {
    encoding: "utf8",
  });
  if (!r.stdout) throw new Error(`no bridge br0 in ${namespace}: ${r.stderr}`);
  const br: Record<string, string> = {};
  const ports: Record<string, Record<string, string>> = {};
  for (const line of r.stdout.split("\n")) {
    const m = /^\/sys\/class\/net\/br0\/(bridge|brif\/([^/]+))\/([^:]+):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "bridge") br[m[3]] = m[4];
    else {
      ports[m[2]] ??= {};
      ports[m[2]][m[3]] = m[4];
    }
  }
  const cs = (v: string): number => Number(v) / 100;
  const on = br.stp_state !== "0";
  return {
    kernel: true,
    enabled: on,
    bridgeId: br.bridge_id,
    priority: Number(br.priority),
    rootId: br.root_id,
    isRoot: br.root_id === br.bridge_id,
    rootPort: Object.entries(ports).find(([, p]) => Number(p.port_no) === Number(br.root_port) && Number(br.root_port) !== 0)?.[0] ?? null,
    rootPathCost: Number(br.root_path_cost),
    helloTime: cs(br.hello_time),
    maxAge: cs(br.max_age),
    forwardDelay: cs(br.forward_delay),
    bridgeHelloTime: cs(br.hello_time),
    bridgeMaxAge: cs(br.max_age),
    bridgeForwardDelay: cs(br.forward_delay),
    topologyChange: br.topology_change === "1",
    topologyChangeDetected: br.topology_change_detected === "1",
    sinceTopologyChange: null,
    ports: Object.entries(ports)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, p]) => {
        const state = KERNEL_STATES[Number(p.state)] ?? "disabled";
        const id = Number(p.port_id);
        const designated = p.designated_bridge === br.bridge_id && Number(p.designated_port) === id;
        const role = !on || state === "disabled" ? "disabled" : Number(p.port_no) === Number(br.root_port) ? "root" : designated ? "designated" : "alternate";
        const pid = (v: number): string => `${(v >> 12).toString(16)}.${(v & 0xfff).toString(16).padStart(3, "0")}`;
        return {
          name,
          portId: pid(id),
          priority: Number(p.priority) * KERNEL_PRIO_SCALE,
          cost: Number(p.path_cost),
          role,
          state,
          designatedRoot: p.designated_root,
          designatedBridge: p.designated_bridge,
          designatedPort: pid(Number(p.designated_port)),
          designatedCost: Number(p.designated_cost),
          rx: 0,
          tx: 0,
          forwardTransitions: 0,
        };
      }),
  };
}

/** The ports of a kernel node's bridge br0. */
function kernelPorts(namespace: string): string[] {
  const r = spawnSync("ip", ["netns", "exec", namespace, "ls", "/sys/class/net/br0/brif"], { encoding: "utf8" });
  return r.stdout.split("\n").filter((x) => x !== "");
}

/** `show stp` text for one bridge. */
export function renderStp(v: (StpView & { kernel?: boolean }) | null): string {
  if (v === null) return "  spanning tree: not configured (nodes.NAME.stp)";
  const lines = [
    `  bridge ${v.bridgeId}  priority ${v.priority}${v.kernel ? "  (Linux bridge br0)" : ""}${v.enabled ? "" : "  STP OFF: every port forwards"}`,
    `  root   ${v.rootId}${v.isRoot ? "  (this bridge)" : `  cost ${v.rootPathCost}  via port ${v.rootPort}`}`,
    `  timers hello ${v.helloTime}s  max age ${v.maxAge}s  forward delay ${v.forwardDelay}s` +
      `  topology change ${v.topologyChange ? "yes" : "no"}${v.sinceTopologyChange !== null ? ` (last ${v.sinceTopologyChange}s ago)` : ""}`,
  ];
  const rows = v.ports.map((p) => [p.name, p.role, p.state, p.cost, p.priority, p.portId, p.designatedBridge, p.designatedPort, p.designatedCost]);
  lines.push(
    ...table(["PORT", "ROLE", "STATE", "COST", "PRIO", "PORT-ID", "DESIGNATED-BRIDGE", "D-PORT", "D-COST"], rows)
      .split("\n")
      .map((l) => `  ${l}`),
  );
  return lines.join("\n");
}

interface SecurityReply {
  ports: Array<{
    port: string;
    state: string;
    arpInspected: boolean;
    storm: { limits: Record<string, number>; dropped: Record<string, number> } | null;
    security: { maxMacs: number; violation: string; sticky: boolean; macs: number; violations: number; shut: boolean } | null;
  }>;
  arpInspection: {
    vlans: number[];
    bindings: Array<{ vlan: number; ip: string; mac: string; source: string }>;
    lastDrop: Record<string, unknown> | null;
  } | null;
}

/** `show security` text for one node. */
export function renderSecurity(d: unknown): string {
  const s = d as SecurityReply;
  const lines: string[] = [];
  const rows = s.ports.map((p) => [
    p.port,
    p.state,
    p.storm
      ? Object.entries(p.storm.limits)
          .map(([k, v]) => `${k} ${v}/s (dropped ${p.storm?.dropped[k] ?? 0})`)
          .join(", ")
      : "-",
    p.security
      ? `${p.security.macs}/${p.security.maxMacs} MACs, ${p.security.violation}${p.security.sticky ? ", sticky" : ""}, ${p.security.violations} violations${p.security.shut ? ", SHUT" : ""}`
      : "-",
    p.arpInspected ? "untrusted" : "trusted",
  ]);
  lines.push(
    ...(rows.length
      ? table(["PORT", "STATE", "STORM CONTROL", "PORT SECURITY", "ARP"], rows)
          .split("\n")
          .map((l) => `  ${l}`)
      : ["  (no port has a guard)"]),
  );
  const ai = s.arpInspection;
  if (ai) {
    lines.push(`  ARP inspection on VLAN ${ai.vlans.join(",")}: ${ai.bindings.length} bindings`);
    lines.push(
      ...table(
        ["VLAN", "IP", "MAC", "SOURCE"],
        ai.bindings.map((b) => [b.vlan, b.ip, b.mac, b.source]),
      )
        .split("\n")
        .map((l) => `    ${l}`),
    );
    const l = ai.lastDrop;
    if (l) lines.push(`  last ARP dropped: ${String(l.reason)}, ${String(l.ip)} claimed by ${String(l.mac)} (VLAN ${String(l.vlan)}, ${String(l.ago)}s ago)`);
  }
  return lines.join("\n");
}

export function registerL2(program: Command): void {
  program
    .command("stp")
    .argument("<on|off>", "turn spanning tree on or off")
    .option("--node <name>", "only this node (default: every bridge of the lab, kernel ones included)")
    .option("--lab <name>", "the lab, when several are up")
    .description("turn spanning tree on or off on a running lab's bridges (like 'ip link set br0 type bridge stp_state 1|0')")
    .action(async (what: string, o: { node?: string; lab?: string }) => {
      if (what !== "on" && what !== "off") throw new Error(`tapnet stp: say on or off, not '${what}'`);
      const s = findLab(undefined, "node", o.lab);
      const kernel = s.kernel ?? {};
      if (o.node !== undefined && !s.nodes[o.node] && !kernel[o.node]) throw new Error(`lab ${s.lab} has no node '${o.node}'`);
      for (const [n, k] of Object.entries(kernel)) {
        if (o.node !== undefined && o.node !== n) continue;
        const cmds = [`link set br0 type bridge stp_state ${what === "on" ? 1 : 0}`];
        // With STP stopped the Linux bridge leaves its ports in the state they had (a blocked
        // port stays blocked): a bridge without STP forwards on every port, so say so.
        if (what === "off") for (const p of kernelPorts(k.namespace)) cmds.push(`link set dev ${p} type bridge_slave state 3`);
        const r = spawnSync("ip", ["-n", k.namespace, "-batch", "-"], { encoding: "utf8", input: `${cmds.join("\n")}\n` });
        if (r.status !== 0) throw new Error(`${n}: ${r.stderr}`);
        console.log(`${n}: spanning tree ${what} (Linux bridge)`);
      }
      for (const [n, node] of Object.entries(s.nodes)) {
        if (o.node !== undefined && o.node !== n) continue;
        const v = await request<StpView | null>(node.socket, { cmd: "stp" });
        if (v === null) {
          console.log(`${n}: no spanning tree configured`);
          continue;
        }
        await request(node.socket, { cmd: "stp-set", enabled: what === "on" });
        console.log(`${n}: spanning tree ${what}`);
      }
    });
  program
    .command("security")
    .description("port security")
    .command("reset")
    .argument("<node>", "the node")
    .argument("<port>", "the port (a host's or a linked node's name)")
    .option("--lab <name>", "the lab, when several are up")
    .description("clear a port's violations and bring it back from a port security shutdown")
    .action(async (node: string, port: string, o: { lab?: string }) => {
      const s = findLab(node, "node", o.lab);
      const r = await request<{ port: string; wasShut: boolean }>(s.nodes[node].socket, { cmd: "security-reset", port });
      console.log(r.wasShut ? `${node}/${r.port}: was shut down; up again` : `${node}/${r.port}: violations cleared (it was not shut down)`);
    });
}
