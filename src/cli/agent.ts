/**
 * `tapnet agent …`: flanneld's job for one tapnet node (src/agent/flannel.ts), and
 * `tapnet show agent`: what a lab node's agent holds (its lease, the peers it programmed,
 * its etcd connection).
 *
 *   tapnet agent --node N --etcd-endpoints http://A:2379[,…] --socket NODE.sock --public-ip ADDR
 *                [--etcd-prefix /coreos.com/network] [--ttl S] [--subnet-file F] [--status-socket S]
 *
 * A lab starts one per `agent: flannel` node (src/lab/etcd.ts); outside a lab it runs the
 * same way beside any tapnet node that has a control socket.
 */
import type { Command } from "commander";
import { request } from "../control/client.js";
import { findLab } from "../lab/lab.js";
import { table } from "./format.js";

interface AgentCliOpts {
  node: string;
  etcdEndpoints: string;
  etcdPrefix: string;
  socket: string;
  publicIp: string;
  ttl: string;
  subnetFile: string;
  statusSocket?: string;
  vtep: string;
  vxlanPort: string;
  podIface: string;
  underlayIface: string;
}

interface AgentView {
  node: string;
  publicIp: string;
  network: string | null;
  backend: { type: string; vni: number; port: number } | null;
  lease: { subnet: string; key: string; etcdLease: string; ttl: number; renewedAt: string } | null;
  peers: Array<{ subnet: string; publicIp: string; vtepMac: string | null; since: string }>;
  etcd: { endpoint: string | null; reachable: boolean; lastError: string | null; watching: boolean; revision: number };
  changes: number;
  resyncs: number;
  badValues: number;
}

export function renderAgent(v: AgentView): string {
  const lines = [
    `lease   ${v.lease ? `${v.lease.subnet} (${v.lease.key}, etcd lease ${v.lease.etcdLease}, TTL ${v.lease.ttl} s, renewed ${v.lease.renewedAt})` : "none"}`,
    `public  ${v.publicIp}   network ${v.network ?? "?"}   backend ${v.backend ? `${v.backend.type}${v.backend.type === "vxlan" ? ` VNI ${v.backend.vni} port ${v.backend.port}` : ""}` : "?"}`,
    `etcd    ${v.etcd.reachable ? `reachable at ${v.etcd.endpoint}` : `UNREACHABLE (${v.etcd.lastError ?? "no answer yet"})`}, ${v.etcd.watching ? "watching" : "not watching"} from revision ${v.etcd.revision}`,
    `changes ${v.changes} programmed, ${v.resyncs} listings, ${v.badValues} bad lease values ignored`,
  ];
  if (v.peers.length) {
    lines.push(
      table(
        ["PEER SUBNET", "PUBLIC IP", "VTEP MAC", "SINCE"],
        v.peers.map((p) => [p.subnet, p.publicIp, p.vtepMac ?? "-", p.since]),
      ),
    );
  } else lines.push("(no peers)");
  return lines.join("\n");
}

export function registerAgent(program: Command): void {
  program
    .command("agent")
    .description("flanneld's job for a tapnet node: lease a pod subnet in etcd, program the node's routes to the other nodes' subnets")
    .requiredOption("--node <name>", "the node's name (for messages)")
    .requiredOption("--etcd-endpoints <urls>", "etcd client URLs, comma-separated (http://192.168.0.11:2379,…)")
    .option("--etcd-prefix <key>", "flannel's key prefix", "/coreos.com/network")
    .requiredOption("--socket <path>", "the node's control socket")
    .requiredOption("--public-ip <addr>", "the node's underlay address (PublicIP in its lease)")
    .option("--ttl <seconds>", "seconds a lease lives without renewal", "60")
    .option("--subnet-file <path>", "where subnet.env is written", "/run/flannel/subnet.env")
    .option("--status-socket <path>", "a Unix socket answering 'show agent'")
    .option("--vtep <name>", "the node's VXLAN interface (vxlan backend)", "flannel.1")
    .option("--vxlan-port <name>", "the node's VXLAN port (vxlan backend)", "vxlan0")
    .option("--pod-iface <name>", "the node's interface for its pods", "cni0")
    .option("--underlay-iface <name>", "the node's underlay interface (host-gw backend)", "ul0")
    .action(async (o: AgentCliOpts) => {
      const ttl = Number(o.ttl);
      if (!Number.isInteger(ttl) || ttl < 2) throw new Error(`--ttl: '${o.ttl}' is not a whole number of seconds ≥ 2`);
      const { FlannelAgent } = await import("../agent/flannel.js");
      const agent = new FlannelAgent({
        node: o.node,
        endpoints: o.etcdEndpoints.split(",").filter((e) => e !== ""),
        prefix: o.etcdPrefix.replace(/\/+$/, ""),
        socket: o.socket,
        publicIp: o.publicIp,
        ttl,
        subnetFile: o.subnetFile,
        statusSocket: o.statusSocket,
        vtepIface: o.vtep,
        vxlanPort: o.vxlanPort,
        podIface: o.podIface,
        underlayIface: o.underlayIface,
        log: (m) => console.log(`${new Date().toISOString()} ${o.node}: ${m}`),
      });
      const stop = (): void => {
        agent.stop();
        process.exit(0);
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
      await agent.run();
    });

  const lab = program.commands.find((c) => c.name() === "lab");
  const node = lab?.command("node").description("nodes (with their flannel agents) that join or leave a running lab with an etcd cluster");
  node
    ?.command("add")
    .argument("<lab>", "the running lab")
    .argument("<node>", "the new node's name")
    .requiredOption("--address <cidr>", "its underlay address (its lease's PublicIP), e.g. 192.168.0.4/24")
    .requiredOption("--pod-cidr <cidr>", "the pod subnet it asks etcd for, e.g. 10.244.4.0/24")
    .option("--segment <name>", "its underlay segment (default: the etcd cluster's)")
    .option("-q, --quiet", "print nothing on success")
    .description("a node joins: namespace, node process, agent; the other agents program their routes to it from etcd")
    .action(async (labName: string, name: string, o: { address: string; podCidr: string; segment?: string; quiet?: boolean }) => {
      const { nodeAdd } = await import("../lab/node-join.js");
      await nodeAdd(labName, name, { address: o.address, podCidr: o.podCidr, segment: o.segment }, o.quiet ? () => undefined : (m) => console.log(m));
    });
  node
    ?.command("del")
    .argument("<lab>", "the running lab")
    .argument("<node>", "the node (without hosts)")
    .option("-q, --quiet", "print nothing on success")
    .description("a node leaves: its agent and node stopped, its lease deleted from etcd, its namespace removed")
    .action(async (labName: string, name: string, o: { quiet?: boolean }) => {
      const { nodeDel } = await import("../lab/node-join.js");
      await nodeDel(labName, name, o.quiet ? () => undefined : (m) => console.log(m));
    });

  const show = program.commands.find((c) => c.name() === "show");
  show
    ?.command("agent")
    .description("a lab node's flannel agent: its lease, the peers it programmed, its etcd connection")
    .option("--node <name>", "only this node")
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output")
    .option("--status-socket <path>", "an agent started by hand (tapnet agent --status-socket): ask it, no lab needed")
    .action(async (o: { node?: string; lab?: string; json?: boolean; statusSocket?: string }, cmd: Command) => {
      const opts = { ...(cmd.parent?.opts() as typeof o), ...o };
      if (opts.statusSocket) {
        const v = await request<AgentView>(opts.statusSocket, { cmd: "status" });
        return console.log(opts.json ? JSON.stringify(v, null, 2) : `node ${v.node}\n${renderAgent(v)}`);
      }
      const s = findLab(opts.node, "node", opts.lab) as ReturnType<typeof findLab> & { agents?: Record<string, { statusSocket: string }> };
      const agents = s.agents ?? {};
      const names = opts.node ? [opts.node] : Object.keys(agents);
      if (names.length === 0) throw new Error(`lab ${s.lab} runs no agents (nodes with agent: flannel and an etcd: section)`);
      const results: Record<string, AgentView> = {};
      for (const n of names) {
        const a = agents[n];
        if (!a) throw new Error(`node ${n} of lab ${s.lab} runs no agent`);
        results[n] = await request<AgentView>(a.statusSocket, { cmd: "status" });
      }
      if (opts.json) return console.log(JSON.stringify(opts.node ? results[names[0]] : results, null, 2));
      console.log(
        Object.entries(results)
          .map(([n, v]) => `node ${n}\n${renderAgent(v)}`)
          .join("\n\n"),
      );
    });
}
