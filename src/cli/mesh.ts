/**
 * A mesh peer on a running node, outside a topology's `overlay: { backend: mesh }`
 * (Weave's `weave launch PEER…`):
 *
 *   tapnet mesh launch --node SOCKET|NAME --peer ADDR… [--name PEER] [--password-file F]
 *                      [--port 6783] [--address ADDR…] [--underlay-mtu N]
 *                      [--ipam-range CIDR --seed PEER…] [--vlan N]
 *   tapnet mesh allocate OWNER --node SOCKET|NAME      (an address from the node's share of the ring)
 *
 * `launch` sends the node a `mesh.add` change (src/mesh/mesh-add.ts): the sleeve port
 * `weave` on its switch and the agent in its process, as a lab's mesh node has them,
 * journaled so a restarted node comes back as the same peer. Left out: the peer is
 * named after the node, it announces the IPv4 addresses of the node's network
 * namespace (read from outside it, through /proc/PID/ns/net: the node's sandbox opens no
 * netlink socket) and probes paths up to the largest MTU of their interfaces.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import type { Command } from "commander";
import { request } from "../control/client.js";

interface Target {
  node?: string;
  lab?: string;
  json?: boolean;
}

interface LaunchOpts extends Target {
  peer?: string[];
  name?: string;
  passwordFile?: string;
  port?: string;
  address?: string[];
  underlayMtu?: string;
  ipamRange?: string;
  seed?: string[];
  vlan?: string;
}

function whole(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`${what}: '${v}' is not a whole number`);
  return Number(v);
}

/** The IPv4 addresses (not loopback) of the namespace process `pid` is in, each with its interface's MTU. */
export function namespaceAddresses(pid: number): Array<{ address: string; mtu: number }> {
  const r = spawnSync("nsenter", [`--net=/proc/${pid}/ns/net`, "ip", "-j", "-4", "address", "show"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cannot read the node's addresses (nsenter into pid ${pid}'s namespace): ${r.stderr.trim() || r.error?.message}`);
  const links = JSON.parse(r.stdout) as Array<{ ifname: string; mtu: number; addr_info?: Array<{ local: string; scope: string }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope !== "host").map((a) => ({ address: a.local, mtu: l.mtu })));
}

export function registerMeshLaunch(launch: Command, allocate: Command, socketOf: (o: Target) => { node: string; socket: string }): void {
  launch
    .option("--peer <address...>", "peers to connect to (their underlay addresses); the rest of the mesh comes by gossip")
    .option("--name <peer>", "the peer's name (default: the node's)")
    .option("--password-file <file>", "a file holding the mesh's password (its first line)")
    .option("--port <n>", "TCP and UDP port of the mesh (default 6783)")
    .option("--address <address...>", "this peer's underlay addresses, announced to the others (default: the node namespace's)")
    .option("--underlay-mtu <n>", "the largest path MTU probed (default: the largest MTU of the node's addressed interfaces)")
    .option("--ipam-range <cidr>", "the pod range the peers split (the address ring), e.g. 10.32.0.0/12")
    .option("--seed <peer...>", "with --ipam-range: the peers that own the range at first (the same list on every peer)")
    .option("--vlan <n>", "the switch VLAN the mesh port is an access port of (default 1)")
    .description("make the node a mesh peer (the sleeve port and the agent), connecting to --peer addresses")
    .action(async (o: LaunchOpts) => {
      const { socket } = socketOf(o);
      if (o.ipamRange !== undefined && !o.seed?.length)
        throw new Error("--ipam-range needs --seed PEER… (the peers that own the range at first, the same on every peer)");
      if (o.seed !== undefined && o.ipamRange === undefined) throw new Error("--seed goes with --ipam-range");
      let password: string | undefined;
      if (o.passwordFile !== undefined) {
        let text: string;
        try {
          text = fs.readFileSync(o.passwordFile, "utf8");
        } catch (e) {
          throw new Error(`--password-file ${o.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        password = text.split("\n")[0];
        if (password === "") throw new Error(`--password-file ${o.passwordFile}: the first line (the password) is empty`);
      }
      const status = await request<{ node: string; pid: number }>(socket, { cmd: "status" });
      const own = o.address === undefined || o.underlayMtu === undefined ? namespaceAddresses(status.pid) : [];
      const addresses = o.address ?? own.map((a) => a.address);
      const mtus = own.filter((a) => addresses.includes(a.address)).map((a) => a.mtu);
      const underlayMtu = whole(o.underlayMtu, "--underlay-mtu") ?? (mtus.length ? Math.min(Math.max(...mtus, 576), 9000) : undefined);
      const args = {
        name: o.name ?? status.node,
        peers: o.peer ?? [],
        addresses,
        port: whole(o.port, "--port"),
        password,
        underlayMtu,
        ipam: o.ipamRange === undefined ? undefined : { range: o.ipamRange, seed: o.seed },
        vlan: whole(o.vlan, "--vlan"),
      };
      const r = await request(socket, { cmd: "change", op: "mesh.add", args }, 30_000);
      if (o.json) console.log(JSON.stringify(r, null, 2));
      else
        console.log(
          `node ${status.node}: mesh peer ${args.name} on port ${args.port ?? 6783}${password ? ", password set" : ""}, announcing ${addresses.join(" ") || "no address"}, connecting to ${args.peers.join(" ") || "nobody yet"} (tapnet show mesh --node ${o.node ?? status.node})`,
        );
    });

  allocate
    .argument("<owner>", "who the address is for (a pod's name)")
    .description("an address for OWNER from the node's share of the mesh's address ring (waits while the node asks for space)")
    .action(async (owner: string, o: Target) => {
      const { socket } = socketOf(o);
      const r = await request<{ ip: string }>(socket, { cmd: "mesh-ipam", op: "allocate", owner, timeoutMs: 30_000 }, 35_000);
      console.log(o.json ? JSON.stringify(r, null, 2) : r.ip);
    });
}
