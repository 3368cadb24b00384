/**
 * A node's BGP speaker, as Calico's BIRD is on each node: it announces the node's pod
 * block, learns the other nodes' (and any other peer's) routes, and writes the best
 * ones into the node's FIB with protocol "bgp" through the same runtime changes the
 * control socket takes (src/node/changes.ts route.replace / route.del).
 *
 *   sessions    src/bgp/session.ts, one Peer per configured neighbour; a kernel TCP
 *               listener on port 179 of the node's underlay address takes the peers'
 *               connections (an address not configured is refused: RFC 4271 §8.2.1.3)
 *   RIBs        src/bgp/rib.ts; an UPDATE changes Adj-RIB-In, the prefixes it touched
 *               are decided again, the FIB follows the Loc-RIB, and what changed goes
 *               out to the Established peers (Adj-RIB-Out), coalesced per event-loop turn
 *   RFC 7606    an UPDATE with treat-as-withdraw withdraws what it announced, discarded
 *               attributes are counted; the session stays up (session-reset errors
 *               never get here: session.ts sends their NOTIFICATION)
 *   next hops   a learned path is usable when its NEXT_HOP resolves (the FIB adapter
 *               says: a connected subnet, or the tunnel rule of the install mode)
 *
 * The config comes from the node's JSON (NodeConfig.bgp), written by the lab from
 * the topology's `overlay:` (src/lab/bgp.ts).
 */
import net from "node:net";
import { BGP_PORT, encodeRouteRefresh, encodeUpdate, type PathAttributes, type Prefix, type UpdateMessage, updatesFor } from "../wire/bgp.js";
import { ipToString, parseCidr, parseIp } from "../wire/ipv4addr.js";
import { attrsKey, best, exportFor, type Path, type PeerRef, prefixKey, type SpeakerIdentity, unusable } from "./rib.js";
import { Peer, type PeerConfig, type PeerEvents } from "./session.js";

export interface BgpConfig {
  asn: number;
  routerId: string;
  /** The underlay address: sessions listen and connect from here; NEXT_HOP of our routes. */
  localAddress: string;
  /** TCP port (179; tests may use another). */
  port?: number;
  /** Proposed hold time, seconds (RFC 4271 §10 suggests 90; 0 or >= 3). */
  holdTime: number;
  /** Seconds between connection attempts (RFC 4271 §10 suggests 120). */
  connectRetryTime: number;
  /** RFC 4456 cluster id when this speaker reflects (default: the router id). */
  clusterId?: string;
  peers: Array<{ name: string; address: string; asn: number; rrClient?: boolean }>;
  /** Prefixes this node originates (its pod block). */
  announce: string[];
}

/** How learned routes reach the FIB; the node implements it over its runtime changes. */
export interface FibAdapter {
  /** Whether a next hop can be used (RFC 4271 §9.1.2.1 resolvability). */
  resolves(nextHop: number): boolean;
  /** Installs or replaces the route; returns why it was refused, or null. */
  install(prefix: string, nextHop: string): string | null;
  remove(prefix: string): void;
}

interface PeerStats {
  treatAsWithdraw: number;
  discardedAttributes: number;
  lastUpdateError: string;
}

export class BgpSpeaker {
  private readonly me: SpeakerIdentity;
  private readonly peers = new Map<number, Peer>();
  private readonly stats = new Map<number, PeerStats>();
  /** Adj-RIB-In: peer address -> prefix -> path. */
  private readonly adjIn = new Map<number, Map<string, Path>>();
  /** Locally originated paths. */
  private readonly local = new Map<string, Path>();
  /** Loc-RIB: prefix -> best path. */
  private readonly loc = new Map<string, Path>();
  /** Adj-RIB-Out: peer address -> prefix -> attrsKey sent. */
  private readonly adjOut = new Map<number, Map<string, string>>();
  /** Prefixes whose route this speaker put in the FIB, with the next hop. */
  private readonly installed = new Map<string, string>();
  private readonly fibRefused = new Map<string, string>();
  /** Prefixes decided again since the last flush (sent to the peers then). */
  private dirty = new Set<string>();
  private flushQueued = false;
  private server: net.Server | null = null;
  listenError = "";

  constructor(
    readonly cfg: BgpConfig,
    private readonly fib: FibAdapter,
    private readonly log: (line: string) => void = (l) => console.log(l),
  ) {
    const routerId = parseIp(cfg.routerId) >>> 0;
    this.me = {
      asn: cfg.asn,
      routerId,
      clusterId: cfg.clusterId ? parseIp(cfg.clusterId) >>> 0 : routerId,
      localAddr: parseIp(cfg.localAddress) >>> 0,
    };
    const local = {
      asn: cfg.asn,
      routerId,
      localAddress: cfg.localAddress,
      port: cfg.port ?? BGP_PORT,
      holdTime: cfg.holdTime,
      connectRetryTime: cfg.connectRetryTime,
    };
    const events: PeerEvents = {
      established: (p) => this.established(p),
      update: (p, u) => this.update(p, u),
      routeRefresh: (p) => this.refresh(p),
      down: (p) => this.down(p),
    };
    for (const pc of cfg.peers) {
      const peerCfg: PeerConfig = { name: pc.name, address: pc.address, asn: pc.asn, rrClient: pc.rrClient ?? false };
      const peer = new Peer(peerCfg, local, events, this.log);
      this.peers.set(peer.addr, peer);
      this.stats.set(peer.addr, { treatAsWithdraw: 0, discardedAttributes: 0, lastUpdateError: "" });
    }
    for (const c of cfg.announce) {
      const p = parseCidr(c);
      const prefix = { addr: p.network >>> 0, len: p.prefixLen };
      const path: Path = { prefix, attrs: { origin: 0, asPath: [], unknown: [] }, from: null };
      this.local.set(prefixKey(prefix), path);
      this.loc.set(prefixKey(prefix), path);
    }
  }

  /** Listens on port 179 of the local address, then starts every session. */
  async start(): Promise<void> {
    const server = net.createServer((sock) => this.incoming(sock));
    this.server = server;
    await new Promise<void>((resolve) => {
      server.once("error", (e: Error) => {
        // Without the listener the sessions still come up from our side.
        this.listenError = e.message;
        this.log(`bgp: cannot listen on ${this.cfg.localAddress}:${this.cfg.port ?? BGP_PORT}: ${e.message}`);
        resolve();
      });
      server.listen({ host: this.cfg.localAddress, port: this.cfg.port ?? BGP_PORT }, () => resolve());
    });
    server.on("error", (e: Error) => this.log(`bgp: listener: ${e.message}`));
    this.log(`bgp: AS ${this.cfg.asn} router id ${this.cfg.routerId} on ${this.cfg.localAddress}, ${this.peers.size} peer(s)`);
    for (const p of this.peers.values()) p.start();
  }

  stop(): void {
    for (const p of this.peers.values()) p.stop();
    this.server?.close();
  }

  /** RFC 4271 §8.2.1.3: a connection from an address that is not a configured peer is refused. */
  private incoming(sock: net.Socket): void {
    const ra = sock.remoteAddress ?? "";
    let addr = -1;
    try {
      addr = parseIp(ra.replace(/^::ffff:/, "")) >>> 0;
    } catch {
      // not IPv4
    }
    const peer = this.peers.get(addr);
    if (!peer) {
      this.log(`bgp: refused a connection from ${ra}: not a configured peer`);
      sock.destroy();
      return;
    }
    peer.accept(sock);
  }

  private ref(p: Peer): PeerRef {
    return { addr: p.addr, asn: p.cfg.asn, bgpId: p.remoteOpen?.bgpId ?? 0, ibgp: p.ibgp, rrClient: p.cfg.rrClient };
  }

  private established(p: Peer): void {
    this.adjIn.set(p.addr, new Map());
    this.adjOut.set(p.addr, new Map());
    // Everything in the Loc-RIB goes to the new peer, then End-of-RIB (RFC 4724 §2).
    this.sendTo(p, [...this.loc.keys()]);
    p.send(encodeUpdate({ withdrawn: [], nlri: [] }, p.as4));
    if (p.remoteOpen?.routeRefresh) p.send(encodeRouteRefresh());
  }

  private refresh(p: Peer): void {
    // RFC 2918 §4: send the Adj-RIB-Out again, whole.
    this.adjOut.set(p.addr, new Map());
    this.sendTo(p, [...this.loc.keys()]);
  }

  private down(p: Peer): void {
    const rib = this.adjIn.get(p.addr);
    this.adjIn.delete(p.addr);
    this.adjOut.delete(p.addr);
    if (rib) for (const k of rib.keys()) this.decide(k);
    this.queueFlush();
  }

  private update(p: Peer, u: UpdateMessage): void {
    const rib = this.adjIn.get(p.addr);
    if (!rib) return;
    const st = this.stats.get(p.addr) as PeerStats;
    const touched: string[] = [];
    for (const w of u.withdrawn) {
      const k = prefixKey(w);
      if (rib.delete(k)) touched.push(k);
    }
    if (u.discarded.length) {
      st.discardedAttributes += u.discarded.length;
      st.lastUpdateError = `attribute discarded: ${u.discarded[0].reason}`;
    }
    if (u.treatAsWithdraw) {
      // RFC 7606 §2: the NLRI of a malformed UPDATE are withdrawn, the session stays.
      st.treatAsWithdraw++;
      st.lastUpdateError = `treat-as-withdraw (${u.treatAsWithdraw.code}/${u.treatAsWithdraw.subcode}): ${u.treatAsWithdraw.reason}`;
      this.log(`bgp: ${p.cfg.name}: ${st.lastUpdateError}`);
      for (const n of u.nlri) {
        const k = prefixKey(n);
        if (rib.delete(k)) touched.push(k);
      }
    } else {
      const from = this.ref(p);
      for (const n of u.nlri) {
        const k = prefixKey(n);
        rib.set(k, { prefix: n, attrs: u.attrs, from });
        touched.push(k);
      }
    }
    for (const k of touched) this.decide(k);
    this.queueFlush();
  }

  /** Paths of a peer, and those usable (counted when asked: an UPDATE must not walk the table). */
  private counted(addr: number): { received: number; accepted: number } {
    const rib = this.adjIn.get(addr);
    let ok = 0;
    for (const path of rib?.values() ?? []) if (this.why(path) === null) ok++;
    return { received: rib?.size ?? 0, accepted: ok };
  }

  private why(path: Path): string | null {
    return unusable(path, this.me, (nh) => this.fib.resolves(nh));
  }

  /** Decides one prefix again (§9.1.2) and keeps the FIB in step. */
  private decide(k: string): void {
    const candidates: Path[] = [];
    const own = this.local.get(k);
    if (own) candidates.push(own);
    for (const rib of this.adjIn.values()) {
      const path = rib.get(k);
      if (path && this.why(path) === null) candidates.push(path);
    }
    const b = best(candidates);
    const old = this.loc.get(k);
    if (b === old) return;
    if (b) this.loc.set(k, b);
    else this.loc.delete(k);
    this.dirty.add(k);
    // The FIB: a learned best path is a route via its next hop; our own prefix or none removes ours.
    if (b && b.from !== null) {
      const nh = ipToString(b.attrs.nextHop as number);
      if (this.installed.get(k) !== nh) {
        const refused = this.fib.install(k, nh);
        if (refused === null) {
          this.installed.set(k, nh);
          this.fibRefused.delete(k);
        } else {
          this.fibRefused.set(k, refused);
          if (this.installed.has(k)) {
            this.fib.remove(k);
            this.installed.delete(k);
          }
        }
      }
    } else if (this.installed.has(k)) {
      this.fib.remove(k);
      this.installed.delete(k);
    } else this.fibRefused.delete(k);
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      const keys = [...this.dirty];
      this.dirty = new Set();
      for (const p of this.peers.values()) if (p.state === "Established") this.sendTo(p, keys);
    });
  }

  /** Sends `to` what changed among `keys` relative to its Adj-RIB-Out. */
  private sendTo(to: Peer, keys: string[]): void {
    const out = this.adjOut.get(to.addr);
    if (!out) return;
    const ref = this.ref(to);
    const withdraw: Prefix[] = [];
    const groups = new Map<string, { attrs: PathAttributes; nlri: Prefix[] }>();
    for (const k of keys) {
      const path = this.loc.get(k);
      const attrs = path ? exportFor(path, ref, this.me) : null;
      const sent = out.get(k);
      if (attrs === null) {
        if (sent !== undefined) {
          out.delete(k);
          const c = parseCidr(k);
          withdraw.push({ addr: c.network >>> 0, len: c.prefixLen });
        }
        continue;
      }
      const key = attrsKey(attrs);
      if (sent === key) continue;
      out.set(k, key);
      const g = groups.get(key);
      if (g) g.nlri.push((path as Path).prefix);
      else groups.set(key, { attrs, nlri: [(path as Path).prefix] });
    }
    const as4 = to.as4;
    if (withdraw.length) for (const m of updatesFor(withdraw, undefined, [], as4)) to.send(m);
    for (const g of groups.values()) for (const m of updatesFor([], g.attrs, g.nlri, as4)) to.send(m);
  }

  /** `tapnet show bgp`: the speaker and its sessions, as birdc show protocols / calicoctl node status. */
  status(): unknown {
    const now = Date.now();
    return {
      asn: this.cfg.asn,
      routerId: this.cfg.routerId,
      localAddress: this.cfg.localAddress,
      port: this.cfg.port ?? BGP_PORT,
      listening: this.listenError === "" ? true : this.listenError,
      announced: [...this.local.keys()],
      locRib: this.loc.size,
      installed: this.installed.size,
      fibRefused: Object.fromEntries(this.fibRefused),
      peers: [...this.peers.values()].map((p) => {
        const st = this.stats.get(p.addr) as PeerStats;
        const est = p.state === "Established";
        return {
          name: p.cfg.name,
          address: p.cfg.address,
          asn: p.cfg.asn,
          type: p.ibgp ? (p.cfg.rrClient ? "iBGP rr-client" : "iBGP") : "eBGP",
          state: p.state,
          since: est ? new Date(p.establishedAt).toISOString() : null,
          uptime: est ? Math.round((now - p.establishedAt) / 1000) : null,
          bgpId: p.remoteOpen ? ipToString(p.remoteOpen.bgpId) : null,
          holdTime: est ? p.negotiatedHold : null,
          ...this.counted(p.addr),
          best: [...this.loc.values()].filter((x) => x.from?.addr === p.addr).length,
          sent: this.adjOut.get(p.addr)?.size ?? 0,
          ...p.counts,
          treatAsWithdraw: st.treatAsWithdraw,
          discardedAttributes: st.discardedAttributes,
          lastError: p.lastError || null,
          lastUpdateError: st.lastUpdateError || null,
        };
      }),
    };
  }

  /** The Loc-RIB, for `show bgp --routes`. */
  routes(): Array<{ prefix: string; nextHop: string; from: string; asPath: string; localPref: number | null; installed: boolean }> {
    return [...this.loc.entries()].map(([k, p]) => ({
      prefix: k,
      nextHop: p.from === null ? "self" : ipToString(p.attrs.nextHop as number),
      from: p.from === null ? "local" : ipToString(p.from.addr),
      asPath: (p.attrs.asPath ?? []).map((s) => (s.type === 1 ? `{${s.asns.join(",")}}` : s.asns.join(" "))).join(" "),
      localPref: p.attrs.localPref ?? null,
      installed: this.installed.has(k),
    }));
  }
}
