/**
 * Runtime changes in iproute2's words, so a person's habits carry over:
 *
 *   tapnet route add|replace PREFIX [via ADDR] [dev IF] [onlink] [proto NAME]
 *   tapnet route del PREFIX            tapnet route get ADDR
 *   tapnet neigh add|replace IP lladdr MAC dev IF      tapnet neigh del IP dev IF
 *   tapnet neigh flush [dev IF]
 *   tapnet fdb add|del MAC dev PORT [vlan N] [dst ADDR]      tapnet fdb flush
 *   tapnet addr add|del CIDR dev IF
 *   tapnet link set PORT [up|down] [mtu N] [vlan N | trunk V,V… [native N]]
 *                   [dir out|in|both] [clear] [delay T [jitter T]] [loss P%] [rate R]
 *                   [duplicate P%] [reorder P%] [limit N]           (netem's words: docs/impairments.md)
 *   tapnet service add NAME --vip ADDR --port N [--protocol tcp|udp] [--backend IP:PORT…]
 *   tapnet service set NAME --backend IP:PORT…         tapnet service del NAME
 *   tapnet masquerade add|del --source CIDR… --interface IF
 *   tapnet conntrack flush             tapnet conntrack delete -p PROTO -s ADDR -d ADDR [--sport N] [--dport N]
 *   tapnet tunnel peer add|del PORT ADDR
 *   tapnet mesh rmpeer NAME            (a gone peer's address ranges become this node's)
 *   tapnet mesh launch --peer ADDR…    (the node becomes a mesh peer: src/cli/mesh.ts)
 *   tapnet router set [dev IF [send_redirects 0|1] [accept_source_route 0|1]] [icmp_ratelimit MS] [icmp_ratemask MASK]
 *
 * Each takes --node (needed when the lab has several nodes; a path: a node's control
 * socket, for a node outside any lab), --lab and --json, exits
 * non-zero with a one-line reason when the node refuses, and changes nothing then.
 */
import type { Command } from "commander";
import { request } from "../control/client.js";
import { IMPAIR_FIELDS } from "../core/impair.js";
import { findLab } from "../lab/lab.js";
import { registerMeshLaunch } from "./mesh.js";

interface Target {
  node?: string;
  lab?: string;
  json?: boolean;
}

/** The one node a change goes to. */
export function changeSocket(o: Target): { node: string; socket: string } {
  // A node outside any lab, by its control socket (src/cli/nodes.ts).
  if (o.node?.includes("/")) return { node: o.node, socket: o.node };
  const s = findLab(o.node, "node", o.lab);
  const names = o.node ? [o.node] : Object.keys(s.nodes);
  if (names.length !== 1) throw new Error(`lab ${s.lab} has several nodes (${names.join(", ")}): say which with --node`);
  return { node: names[0], socket: s.nodes[names[0]].socket };
}

/** Sends a change to a node; prints what it gives back. */
export async function sendChange(o: Target, op: string, args: Record<string, unknown>, print?: (r: unknown) => string): Promise<unknown> {
  const { socket } = changeSocket(o);
  const r = await request(socket, { cmd: "change", op, args });
  if (o.json) console.log(JSON.stringify(r ?? { ok: true }, null, 2));
  else if (print) console.log(print(r));
  return r;
}

/**
 * Reads iproute2-style words: KEY VALUE pairs and lone flags. `keys` names the words
 * that take a value, `flags` those that stand alone; anything else is an error naming it.
 */
export function words(argv: string[], keys: string[], flags: string[] = []): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i];
    if (flags.includes(w)) out[w] = true;
    else if (keys.includes(w)) {
      if (i + 1 >= argv.length) throw new Error(`'${w}' needs a value`);
      out[w] = argv[++i];
    } else throw new Error(`unexpected '${w}' (expected ${[...keys.map((k) => `${k} VALUE`), ...flags].join(", ")})`);
  }
  return out;
}

function num(v: string | true | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isInteger(n)) throw new Error(`${what}: '${String(v)}' is not a whole number`);
  return n;
}

/**
 * The words of `tapnet router set`, in the names of Linux's sysctls (conf.DEV.send_redirects,
 * conf.DEV.accept_source_route,
 * icmp_ratelimit, icmp_ratemask), as the router.set change's arguments. The mask may be
 * written in hex (0x…), as people copy it from /proc/sys.
 */
export function routerSetArgs(argv: string[]): Record<string, unknown> {
  const w = words(argv, ["dev", "send_redirects", "accept_source_route", "icmp_ratelimit", "icmp_ratemask"]);
  const r = w.send_redirects;
  if (r !== undefined && r !== "0" && r !== "1") throw new Error(`send_redirects: '${String(r)}' is not 0 or 1`);
  const sr = w.accept_source_route;
  if (sr !== undefined && sr !== "0" && sr !== "1") throw new Error(`accept_source_route: '${String(sr)}' is not 0 or 1`);
  const m = w.icmp_ratemask;
  let mask: number | undefined;
  if (m !== undefined) {
    mask = /^(0x[0-9a-f]+|[0-9]+)$/i.test(String(m)) ? Number(m) : Number.NaN;
    if (Number.isNaN(mask)) throw new Error(`icmp_ratemask: '${String(m)}' is not a number (decimal or 0x hex)`);
  }
  if (r === undefined && sr === undefined && w.icmp_ratelimit === undefined && m === undefined)
    throw new Error("router set: say send_redirects (with dev), icmp_ratelimit or icmp_ratemask, or accept_source_route (with dev)");
  return {
    dev: w.dev,
    sendRedirects: r === undefined ? undefined : r === "1",
    acceptSourceRoute: sr === undefined ? undefined : sr === "1",
    icmpRatelimit: num(w.icmp_ratelimit, "icmp_ratelimit"),
    icmpRatemask: mask,
  };
}

function target(c: Command): Command {
  return c
    .option("--node <name>", "the node (needed when the lab has several)")
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output");
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function registerVerbs(program: Command): void {
  const route = program.command("route").description("a node's routes, as 'ip route' changes them");
  for (const verb of ["add", "replace"] as const) {
    target(route.command(verb).argument("<prefix>", "CIDR or default").argument("[words...]", "via ADDR, dev IF, onlink, proto NAME"))
      .description(`${verb} a route`)
      .action(async (to: string, argv: string[], o: Target) => {
        const w = words(argv, ["via", "dev", "proto"], ["onlink"]);
        await sendChange(o, `route.${verb}`, { to, via: w.via, dev: w.dev, proto: w.proto, onlink: w.onlink === true ? true : undefined });
      });
  }
  target(route.command("del").argument("<prefix>", "CIDR or default"))
    .description("delete a route")
    .action(async (to: string, o: Target) => void (await sendChange(o, "route.del", { to })));
  target(route.command("get").argument("<address>", "a destination"))
    .description("the route a destination takes")
    .action(async (to: string, o: Target) => {
      await sendChange(o, "route.get", { to }, (r) => {
        const a = r as { prefix: string; via: string | null; dev: string; src: string | null; proto: string };
        return `${to}${a.via ? ` via ${a.via}` : ""} dev ${a.dev}${a.src ? ` src ${a.src}` : ""} (${a.proto === "local" ? "local" : `${a.prefix === "0.0.0.0/0" ? "default" : a.prefix} proto ${a.proto}`})`;
      });
    });

  const neigh = program.command("neigh").description("a node's neighbour (ARP) entries, as 'ip neigh' changes them");
  for (const verb of ["add", "replace"] as const) {
    target(neigh.command(verb).argument("<ip>").argument("[words...]", "lladdr MAC dev IF"))
      .description(`${verb} a static (PERMANENT) entry`)
      .action(async (ip: string, argv: string[], o: Target) => {
        const w = words(argv, ["lladdr", "dev"]);
        await sendChange(o, `neigh.${verb}`, { ip, lladdr: w.lladdr, dev: w.dev });
      });
  }
  target(neigh.command("del").argument("<ip>").argument("[words...]", "dev IF"))
    .description("delete an entry")
    .action(async (ip: string, argv: string[], o: Target) => void (await sendChange(o, "neigh.del", { ip, dev: words(argv, ["dev"]).dev })));
  target(neigh.command("flush").argument("[words...]", "dev IF"))
    .description("remove the learned entries (static ones stay)")
    .action(async (argv: string[], o: Target) => void (await sendChange(o, "neigh.flush", { dev: words(argv, ["dev"]).dev })));

  const fdb = program.command("fdb").description("a node's forwarding table, as 'bridge fdb' changes it");
  for (const verb of ["add", "del"] as const) {
    target(fdb.command(verb).argument("<mac>").argument("[words...]", "dev PORT, vlan N, dst ADDR (VXLAN)"))
      .description(verb === "add" ? "a static entry on a switch port, or MAC -> remote VTEP on a VXLAN port" : "remove one")
      .action(async (mac: string, argv: string[], o: Target) => {
        const w = words(argv, ["dev", "vlan", "dst"]);
        await sendChange(o, `fdb.${verb}`, { mac, port: w.dev, vlan: num(w.vlan, "vlan"), dst: w.dst });
      });
  }
  target(fdb.command("flush"))
    .description("remove the learned entries")
    .action(async (o: Target) => void (await sendChange(o, "fdb.flush", {})));

  const addr = program.command("addr").description("a router interface's addresses, as 'ip addr' changes them");
  for (const verb of ["add", "del"] as const) {
    target(addr.command(verb).argument("<cidr>").argument("[words...]", "dev IF"))
      .description(`${verb} an address (its connected route follows)`)
      .action(async (address: string, argv: string[], o: Target) => void (await sendChange(o, `addr.${verb}`, { address, dev: words(argv, ["dev"]).dev })));
  }

  target(
    program
      .command("link")
      .argument("<set>", "set")
      .argument("<port>")
      .argument(
        "[words...]",
        "up | down | mtu N | vlan N | trunk V,V… [native N] | delay T [jitter T] | loss P% | rate R | duplicate P% | reorder P% | limit N | dir out|in|both | clear",
      ),
  )
    .description("a port's state, MTU, VLANs or impairments, as 'ip link set' and 'tc qdisc … netem' change them")
    .action(async (set: string, port: string, argv: string[], o: Target) => {
      if (set !== "set") throw new Error(`'tapnet link ${set}': say 'tapnet link set PORT …'`);
      // netem's "delay 20ms 5ms": the second time is the jitter.
      const k = argv.indexOf("delay");
      if (k >= 0 && k + 2 < argv.length && /^\d+(\.\d+)?(us|ms|s)$/.test(argv[k + 2])) argv.splice(k + 2, 0, "jitter");
      const w = words(argv, ["mtu", "vlan", "trunk", "native", "dir", ...IMPAIR_FIELDS], ["up", "down", "clear"]);
      const fields = Object.fromEntries(IMPAIR_FIELDS.filter((f) => w[f] !== undefined).map((f) => [f, w[f]]));
      const impair = Object.keys(fields).length || w.clear || w.dir ? { ...fields, dir: w.dir, clear: w.clear === true ? true : undefined } : undefined;
      if (w.up && w.down) throw new Error("up or down, not both");
      const trunk =
        w.trunk === undefined
          ? undefined
          : String(w.trunk)
              .split(",")
              .map((v) => num(v, "trunk"));
      await sendChange(o, "link.set", {
        port,
        up: w.up ? true : w.down ? false : undefined,
        mtu: num(w.mtu, "mtu"),
        vlan: num(w.vlan, "vlan"),
        trunk,
        native: num(w.native, "native"),
        impair,
      });
    });

  const service = program.command("service").description("a node's services (VIP:port -> backends), as kube-proxy changes them");
  target(
    service
      .command("add")
      .argument("<name>")
      .requiredOption("--vip <address>", "the virtual IP")
      .requiredOption("--port <n>", "the service port")
      .option("--protocol <tcp|udp>", "tcp or udp", "tcp")
      .option("--backend <ip:port>", "a backend (repeat for more)", collect)
      .option("--algorithm <random|roundrobin>", "how a backend is chosen", "random"),
  )
    .description("add a service")
    .action(async (name: string, o: Target & { vip: string; port: string; protocol: string; backend?: string[]; algorithm: string }) => {
      await sendChange(o, "service.add", {
        name,
        vip: o.vip,
        port: num(o.port, "--port"),
        protocol: o.protocol,
        backends: o.backend ?? [],
        algorithm: o.algorithm,
      });
    });
  target(service.command("set").argument("<name>").option("--backend <ip:port>", "a backend (repeat for more; none: the service refuses)", collect))
    .description("replace a service's backends (existing connections keep theirs)")
    .action(async (name: string, o: Target & { backend?: string[] }) => void (await sendChange(o, "service.set", { name, backends: o.backend ?? [] })));
  target(service.command("del").argument("<name>"))
    .description("delete a service")
    .action(async (name: string, o: Target) => void (await sendChange(o, "service.del", { name })));

  const masq = program.command("masquerade").description("a node's MASQUERADE rules");
  for (const verb of ["add", "del"] as const) {
    target(
      masq
        .command(verb)
        .requiredOption("--source <cidr>", "a source prefix (repeat for more)", collect)
        .requiredOption("--interface <if>", "the out interface"),
    )
      .description(`${verb} a rule`)
      .action(
        async (o: Target & { source: string[]; interface: string }) =>
          void (await sendChange(o, `masquerade.${verb}`, { sources: o.source, interface: o.interface })),
      );
  }

  const ct = program.command("conntrack").description("a node's tracked connections, as 'conntrack -F/-D' changes them");
  target(ct.command("flush"))
    .description("forget every tracked connection")
    .action(
      async (o: Target) =>
        void (await sendChange(o, "conntrack.flush", {}, (r) => `conntrack: ${(r as { flushed: number }).flushed} flow entries have been deleted`)),
    );
  target(
    ct
      .command("delete")
      .requiredOption("-p, --proto <proto>", "tcp, udp or icmp")
      .requiredOption("-s, --src <address>", "original source")
      .requiredOption("-d, --dst <address>", "original destination")
      .option("--sport <n>", "original source port")
      .option("--dport <n>", "original destination port"),
  )
    .description("forget one connection (by its original or reply tuple)")
    .action(async (o: Target & { proto: string; src: string; dst: string; sport?: string; dport?: string }) => {
      await sendChange(o, "conntrack.del", { proto: o.proto, src: o.src, dst: o.dst, sport: num(o.sport, "--sport"), dport: num(o.dport, "--dport") });
    });

  const tunnel = program.command("tunnel").description("a node's tunnel endpoints");
  const peer = tunnel.command("peer").description("VXLAN flood remotes and IPIP peers");
  for (const verb of ["add", "del"] as const) {
    target(peer.command(verb).argument("<port>", "the VXLAN or IPIP port").argument("<address>", "the peer's underlay address"))
      .description(`${verb} a peer`)
      .action(async (port: string, address: string, o: Target) => void (await sendChange(o, `tunnel.peer.${verb}`, { port, peer: address })));
  }

  const router = program.command("router").description("a router's ICMP and redirect settings, as Linux's sysctls set them");
  target(router.command("set").argument("<words...>", "dev IF, send_redirects 0|1, accept_source_route 0|1, icmp_ratelimit MS, icmp_ratemask MASK"))
    .description("change send_redirects, accept_source_route (per interface), icmp_ratelimit or icmp_ratemask")
    .action(async (argv: string[], o: Target) => void (await sendChange(o, "router.set", routerSetArgs(argv))));

  const mesh = program.command("mesh").description("a node's mesh peer (src/mesh/)");
  target(mesh.command("rmpeer").argument("<name>", "a peer that is gone for good"))
    .description("the address ranges of a gone peer become this node's (gossiped to all; refused while the peer is reachable)")
    .action(async (name: string, o: Target) => {
      const { node, socket } = changeSocket(o);
      const r = await request<{ ranges: number }>(socket, { cmd: "mesh-ipam", op: "rmpeer", peer: name });
      console.log(o.json ? JSON.stringify(r, null, 2) : `${node} took over ${r.ranges} range(s) of ${name}`);
    });
  registerMeshLaunch(target(mesh.command("launch")), target(mesh.command("allocate")), changeSocket);
}
