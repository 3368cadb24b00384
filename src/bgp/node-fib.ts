/**
 * The speaker's routes in a node's FIB: what Calico's BIRD does with its kernel
 * protocol, done through the node's runtime changes (route.replace / route.del with
 * proto "bgp", src/node/changes.ts) in the node's own process. These are not
 * journaled: after a restart the speaker learns them again.
 *
 *   direct   (Calico BGP mode) "PREFIX via NEXT-HOP": the next hop must be on a
 *            connected subnet (RFC 4271 §5.1.3: the next hop of an iBGP route from a
 *            peer on a shared subnet is that subnet's address);
 *   ipip     (Calico IPIP mode) "PREFIX via NEXT-HOP dev tunl0 onlink"; with
 *            crossSubnet, a next hop on a connected subnet goes direct as above
 *            (Calico's CrossSubnet: encapsulate only across subnets).
 * A prefix that already has a route of another protocol (static, connected) is left
 * alone: the speaker reports it as refused, as BIRD's kernel protocol would not
 * overwrite a route it does not own.
 */
import type { NodeGraph } from "../node/graph.js";
import { applyChange } from "../node/changes.js";
import { ipipNeighbourMac } from "../io/ipip-port.js";
import { parseCidr } from "../wire/ipv4addr.js";
import { macToString } from "../wire/mac.js";
import type { BgpConfig, FibAdapter } from "./speaker.js";

export interface NodeBgpConfig extends BgpConfig {
  install: { mode: "direct" } | { mode: "ipip"; dev: string; port: string; crossSubnet: boolean };
}

export class NodeFib implements FibAdapter {
  constructor(
    private readonly g: NodeGraph,
    private readonly install_: NodeBgpConfig["install"],
  ) {}

  private direct(nextHop: number): boolean {
    return this.g.router !== null && this.g.router.state.connectedIf(nextHop) >= 0;
  }

  resolves(nextHop: number): boolean {
    if (this.install_.mode === "ipip") return true;
    return this.direct(nextHop);
  }

  private ours(prefix: string): boolean | null {
    const r = this.g.router;
    if (!r) return false;
    const c = parseCidr(prefix);
    const id = r.state.fib.get(c.network, c.prefixLen);
    if (id < 0) return null;
    return r.state.routeKind[id] === "bgp";
  }

  install(prefix: string, nextHop: string): string | null {
    const owner = this.ours(prefix);
    if (owner === false) return `${prefix} has a route of another protocol`;
    const m = this.install_;
    const args: Record<string, unknown> = { to: prefix, via: nextHop, proto: "bgp" };
    const nh = parseCidr(`${nextHop}/32`).addr;
    if (m.mode === "ipip" && !(m.crossSubnet && this.direct(nh))) {
      args.dev = m.dev;
      args.onlink = true;
    }
    try {
      // The IPIP port only takes packets from and to its peers: the next hop is one.
      if (args.dev !== undefined && m.mode === "ipip") {
        try {
          applyChange(this.g, "tunnel.peer.add", { port: m.port, peer: nextHop });
        } catch {
          // already a peer
        }
      }
      applyChange(this.g, "route.replace", args);
      // An IPIP tunnel has no ARP: the next hop's MAC names the remote node (the static
      // entry the graph builder adds for a configured tunnel route).
      if (args.dev !== undefined && m.mode === "ipip")
        applyChange(this.g, "neigh.replace", { ip: nextHop, lladdr: macToString(ipipNeighbourMac(nh)), dev: m.dev });
      return null;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }

  remove(prefix: string): void {
    if (this.ours(prefix) !== true) return;
    try {
      applyChange(this.g, "route.del", { to: prefix });
    } catch {
      // gone already
    }
  }
}
