/**
 * The mesh agent: the control plane of a node's mesh peer, in the node process.
 *
 *   Peer       a stable name (the node's) and a UID drawn at every start.
 *   Listener   TCP on the mesh port (all addresses of the node's namespace: its
 *              underlay addresses), accepting peers.
 *   Targets    addresses to connect to: the configured peers, and the addresses of
 *              every peer gossip tells us of that we hold no connection with. A failed
 *              attempt is retried after 1, 2, 4, then every 5 s.
 *   Handshake  both ends send HELLO (protocol, version, name, UID, a nonce, whether a
 *              password is set); with a password both then send AUTH, a proof over the
 *              nonces (auth.ts). A version, name or password mismatch is refused with an
 *              ERROR message the other end logs, a log line here, and no connection.
 *              Two connections to the same peer: the one opened by the peer with the
 *              lower name stays (both ends decide alike).
 *   UDP        once the handshake is done, heartbeats go every 500 ms to the peer's
 *              address on the mesh port (the sleeve socket); the connection is
 *              *established* while acks come back (within 2.5 s), *pending* otherwise.
 *              Only established connections are announced, so a pair that cannot
 *              exchange UDP is routed around, through a peer both reach (a relay).
 *   PMTU       each established connection's path MTU is probed (pmtu.ts) and announced
 *              with the connection; the mesh MTU follows the smallest in the view.
 *   Gossip     our entry (topology.ts) is re-announced with a new version when our
 *              established connections change; what merge() takes from a neighbour
 *              goes on to the others; the whole view goes to every neighbour every 5 s
 *              and to a new neighbour at once.
 *   Routes     recomputed after every change and programmed into the sleeve port
 *              (next hop per peer, broadcast tree children per origin); unreachable
 *              peers are collected every second.
 * Everything a peer sends is checked; what fails is dropped and counted (COUNTER_NAMES in agent-types.ts),
 * never thrown.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { parseIp } from "../wire/ipv4addr.js";
import { deriveKey, newNonce, proof, verify } from "./auth.js";
import { type IpamLinks, MeshIpam } from "./ipam.js";
import { MeshPmtu } from "./pmtu.js";
import type { SleevePort } from "./sleeve-port.js";
import { checkEntry, MeshTopology, PEER_NAME, type PeerEntry, type Routes } from "./topology.js";
import { portTables } from "./port-tables.js";
import { type MeshView, meshView } from "./view.js";
import { encodeMessage, MESH_PROTOCOL, MessageReader, MSG, SLEEVE_ACK, SLEEVE_HEARTBEAT, shortId } from "./wire.js";
import { type AgentCounter, COUNTER_NAMES, type Conn, type MeshAgentConfig, type Target } from "./agent-types.js";

export type { Conn, MeshAgentConfig, MeshView, Target };

export class MeshAgent {
  readonly uid = randomBytes(8).toString("hex");
  readonly short: number;
  readonly topology: MeshTopology;
  readonly counters: Record<AgentCounter, number> = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Record<AgentCounter, number>;
  readonly key: Buffer | null;
  private server: net.Server | null = null;
  readonly conns = new Set<Conn>();
  readonly targets = new Map<string, Target>();
  private timers: NodeJS.Timeout[] = [];
  routes: Routes = { nextHop: new Map(), children: new Map(), reachable: new Set() };
  private readonly slots = new Map<string, number>();
  private readonly log: (line: string) => void;
  private readonly heartbeatMs: number;
  private readonly deadMs: number;
  private readonly gossipMs: number;
  private stopped = false;
  readonly ipam: MeshIpam | null;
  readonly pmtu: MeshPmtu;
  /** Told the mesh MTU whenever it changes (the node passes it on to whoever watches: mtu-watch.ts). */
  onMtu: ((mtu: number) => void) | null = null;
  private lastMtu: number;

  constructor(
    readonly config: MeshAgentConfig,
    readonly port: SleevePort,
  ) {
    if (!PEER_NAME.test(config.name)) throw new Error(`mesh: peer name '${config.name}' must be a-z, 0-9 and '-' (at most 63)`);
    this.short = shortId(config.name);
    this.topology = new MeshTopology(config.name, this.uid, config.addresses);
    // scrypt once, at start (before the node's seccomp filter; it needs nothing after).
    this.key = config.password ? deriveKey(config.password) : null;
    this.log = config.log ?? ((l) => console.log(l));
    this.heartbeatMs = config.heartbeatMs ?? 500;
    this.deadMs = config.deadMs ?? 2500;
    this.gossipMs = config.gossipMs ?? 5000;
    for (const a of config.peers) this.target(a, true);
    this.ipam = config.ipam ? new MeshIpam(config.name, config.ipam, this.ipamLinks()) : null;
    this.pmtu = new MeshPmtu(port, config.port, config.pmtu ?? {}, () => this.ownChanged());
    this.lastMtu = port.mtu;
    port.listener = {
      heartbeat: (from, addr, p) => this.onHeartbeat(from, addr, p),
      ack: (from) => this.onAck(from),
      probe: (from, addr, p, seq, size) => {
        if ([...this.conns].some((c) => c.peer?.short === from && c.state !== "handshake")) port.sendProbeAck(addr, p, from, seq, size);
        else this.counters.unknownHeartbeats++;
      },
      probeAck: (from, seq, size) => {
        if (!this.pmtu.ack(from, seq, size, Date.now())) this.counters.strayProbeAcks++;
      },
    };
  }

  /** Listens on the mesh port and starts connecting. */
  async start(): Promise<void> {
    await this.port.ready();
    this.reprogram();
    const server = net.createServer((sock) => this.accept(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) => reject(new Error(`mesh: cannot listen on TCP ${this.config.port}: ${e.message}`)));
      server.listen({ host: "0.0.0.0", port: this.config.port }, () => resolve());
    });
    server.on("error", (e) => this.log(`mesh: listener error: ${e.message}`));
    this.log(`mesh: peer ${this.config.name} (uid ${this.uid}) listening on TCP/UDP ${this.config.port}${this.key ? ", password set" : ""}`);
    this.timers.push(
      setInterval(() => this.tick(), this.heartbeatMs),
      setInterval(() => this.gossipAll(), this.gossipMs),
      setInterval(() => {
        this.collect();
        this.ipam?.pump();
      }, 1000),
    );
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const c of this.conns) c.sock.destroy();
    this.conns.clear();
    this.server?.close();
    this.server = null;
    this.ipam?.stop();
  }

  private target(addr: string, configured: boolean): Target {
    let t = this.targets.get(addr);
    if (t === undefined) {
      t = { addr, configured, conn: null, state: "idle", lastError: "", failures: 0, retryAt: 0 };
      this.targets.set(addr, t);
    }
    if (configured) t.configured = true;
    return t;
  }

  /** Connects to the targets that need it, sends heartbeats, notices lost UDP. */
  private tick(): void {
    if (this.stopped) return;
    const now = Date.now();
    // Addresses of peers we hear of but hold no connection with.
    const connected = new Set<string>();
    for (const c of this.conns) if (c.peer) connected.add(c.peer.name);
    for (const p of this.topology.peers.values()) {
      if (p.name === this.config.name || connected.has(p.name)) continue;
      for (const a of p.addresses) if (!this.config.addresses.includes(a)) this.target(a, false);
    }
    for (const t of this.targets.values()) {
      if (t.conn !== null || now < t.retryAt) continue;
      // A gossip-learned address of a peer we are connected to by another address: no need.
      const owner = [...this.topology.peers.values()].find((p) => p.addresses.includes(t.addr));
      if (!t.configured && (owner === undefined || connected.has(owner.name))) continue;
      if (owner !== undefined && connected.has(owner.name)) continue;
      this.dial(t);
    }
    let changed = false;
    for (const c of this.conns) {
      if (c.state === "handshake") {
        if (now - c.since > 10_000) this.refuse(c, "handshake timed out", false);
        continue;
      }
      if (c.peer === null) continue;
      this.port.sendControl(SLEEVE_HEARTBEAT, c.addr, this.config.port, c.peer.short);
      if (c.state === "established" && now - c.lastAck > this.deadMs) {
        c.state = "pending";
        // A dead path's probes would all be lost and its PMTU end at the floor: no probe
        // until the connection is established again (which starts a new search).
        this.pmtu.stop(c.peer.name);
        this.log(`mesh: no UDP from ${c.peer.name} (${c.addr}) for ${this.deadMs} ms: connection pending, traffic goes around it`);
        changed = true;
      }
    }
    if (changed) this.ownChanged();
    this.pmtu.tick(now);
  }

  private dial(t: Target): void {
    t.state = "connecting";
    const sock = net.connect({ host: t.addr, port: this.config.port, timeout: 3000 });
    const c = this.newConn(sock, true, t.addr, this.config.port);
    c.target = t;
    t.conn = c;
    sock.once("connect", () => {
      sock.setTimeout(0);
      this.counters.connected++;
      this.hello(c);
    });
    sock.once("timeout", () => sock.destroy(new Error("connect timed out")));
  }

  private accept(sock: net.Socket): void {
    this.counters.accepted++;
    const addr = (sock.remoteAddress ?? "").replace(/^::ffff:/, "");
    const c = this.newConn(sock, false, addr, sock.remotePort ?? 0);
    this.hello(c);
  }

  private newConn(sock: net.Socket, outbound: boolean, addr: string, remotePort: number): Conn {
    const c: Conn = {
      sock,
      outbound,
      addr,
      remotePort,
      state: "handshake",
      nonce: newNonce(),
      peerNonce: "",
      peer: null,
      helloSeen: false,
      reader: new MessageReader(),
      since: Date.now(),
      lastAck: 0,
      target: null,
      closed: false,
      duplicate: false,
    };
    this.conns.add(c);
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => this.onData(c, d));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (c.target && c.state === "handshake") c.target.lastError = e.code ?? e.message;
    });
    sock.on("close", () => this.closed(c));
    return c;
  }

  private send(c: Conn, type: number, body: unknown): void {
    if (!c.closed && !c.sock.destroyed) c.sock.write(encodeMessage(type, body));
  }

  private hello(c: Conn): void {
    this.send(c, MSG.HELLO, {
      proto: "tapnet-mesh",
      version: MESH_PROTOCOL,
      name: this.config.name,
      uid: this.uid,
      nonce: c.nonce,
      password: this.key !== null,
    });
  }

  /** Refuses a connection: ERROR to the peer (it logs the reason), a log line here, close. */
  private refuse(c: Conn, reason: string, tell = true): void {
    this.counters.refused++;
    this.log(`mesh: refused connection ${c.outbound ? "to" : "from"} ${c.addr}${c.peer ? ` (peer ${c.peer.name})` : ""}: ${reason}`);
    if (tell) this.send(c, MSG.ERROR, { reason });
    c.closed = true;
    c.sock.end();
    // The peer closes on ERROR; one that does not is cut off a second later.
    setTimeout(() => c.sock.destroy(), 1000).unref();
    if (c.target) {
      c.target.lastError = `refused: ${reason}`;
      c.target.state = "failed";
    }
  }

  private onData(c: Conn, d: Buffer): void {
    if (c.closed) return;
    const msgs = c.reader.push(d);
    for (const m of msgs) {
      if (c.closed || c.sock.destroyed) return;
      try {
        this.onMessage(c, m.type, m.body);
      } catch (e) {
        // A bug, not the peer's fault; count it and keep the node.
        this.counters.badMessages++;
        this.log(`mesh: internal error on a message from ${c.addr}: ${(e as Error).message}`);
      }
    }
    if (c.reader.tooLong && !c.closed) {
      this.counters.tooLong++;
      this.refuse(c, "message longer than 1 MiB");
    }
  }

  private onMessage(c: Conn, type: number, body: unknown): void {
    const b = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : null;
    if (type === MSG.ERROR) {
      const reason = b && typeof b.reason === "string" ? b.reason.slice(0, 200) : "(no reason)";
      if (reason !== "duplicate connection") this.log(`mesh: ${c.addr}${c.peer ? ` (peer ${c.peer.name})` : ""} refused the connection: ${reason}`);
      if (c.target) {
        c.target.lastError = `refused by peer: ${reason}`;
        c.target.state = "failed";
      }
      c.sock.destroy();
      return;
    }
    if (b === null) {
      this.counters.badMessages++;
      return;
    }
    if (type === MSG.HELLO) return this.onHello(c, b);
    if (type === MSG.AUTH) return this.onAuth(c, b);
    if (type === MSG.GOSSIP && c.state !== "handshake") return this.onGossip(c, b);
    if ((type === MSG.RING || type === MSG.IPAM_REQUEST) && c.state !== "handshake" && c.peer !== null && this.ipam !== null) {
      return type === MSG.RING ? this.ipam.onRing(c.peer.name, b) : this.ipam.onRequest(c.peer.name, b);
    }
    this.counters.badMessages++;
  }

  private onHello(c: Conn, b: Record<string, unknown>): void {
    if (c.helloSeen) {
      this.counters.badMessages++;
      return;
    }
    if (b.proto !== "tapnet-mesh") {
      this.counters.badMessages++;
      return this.refuse(c, "not a tapnet mesh peer");
    }
    if (b.version !== MESH_PROTOCOL) return this.refuse(c, `protocol version ${String(b.version)}, this peer speaks ${MESH_PROTOCOL}`);
    if (typeof b.name !== "string" || !PEER_NAME.test(b.name) || typeof b.uid !== "string" || !/^[0-9a-f]{16}$/.test(b.uid)) {
      this.counters.badMessages++;
      return this.refuse(c, "malformed HELLO");
    }
    if (typeof b.nonce !== "string" || !/^[0-9a-f]{64}$/.test(b.nonce)) {
      this.counters.badMessages++;
      return this.refuse(c, "malformed HELLO nonce");
    }
    c.helloSeen = true;
    c.peer = { name: b.name, uid: b.uid, short: shortId(b.name) };
    c.peerNonce = b.nonce;
    if (b.name === this.config.name) return this.refuse(c, `the peer calls itself ${b.name}, our own name`);
    for (const p of this.topology.peers.keys()) {
      if (p !== b.name && shortId(p) === c.peer.short) return this.refuse(c, `peer name ${b.name} has the same short id as ${p}`);
    }
    const theirs = b.password === true;
    if (theirs !== (this.key !== null)) {
      return this.refuse(c, this.key ? "the peer has no password and this mesh needs one" : "the peer wants a password and this peer has none");
    }
    if (this.key !== null) {
      this.send(c, MSG.AUTH, { proof: proof(this.key, this.config.name, this.uid, c.nonce, c.peerNonce) });
      return;
    }
    this.up(c);
  }

  private onAuth(c: Conn, b: Record<string, unknown>): void {
    if (!c.helloSeen || c.state !== "handshake" || this.key === null || c.peer === null) {
      this.counters.badMessages++;
      return;
    }
    if (!verify(this.key, c.peer.name, c.peer.uid, c.peerNonce, c.nonce, b.proof)) {
      this.counters.authFailures++;
      return this.refuse(c, "authentication failed (wrong password?)");
    }
    this.up(c);
  }

  /** The handshake is done: keep one connection per peer, then gossip and heartbeats. */
  private up(c: Conn): void {
    const peer = c.peer as NonNullable<Conn["peer"]>;
    for (const o of this.conns) {
      if (o === c || o.peer?.name !== peer.name || o.state === "handshake" || o.closed) continue;
      // Keep the connection opened by the peer with the lower name (both ends agree).
      const keepOutbound = this.config.name < peer.name;
      const drop = c.outbound === o.outbound ? c : c.outbound === keepOutbound ? o : c;
      this.send(drop, MSG.ERROR, { reason: "duplicate connection" });
      drop.closed = true;
      drop.duplicate = true;
      drop.sock.end();
      if (drop.target) {
        drop.target.conn = null;
        drop.target.state = "idle";
        drop.target.retryAt = Date.now() + 5000;
      }
      this.conns.delete(drop);
      if (drop === c) return;
    }
    this.counters.handshakes++;
    c.state = "pending";
    c.lastAck = 0;
    if (c.target) {
      c.target.state = "connected";
      c.target.failures = 0;
      c.target.lastError = "";
    }
    this.log(`mesh: connected ${c.outbound ? "to" : "from"} ${peer.name} (${c.addr}, uid ${peer.uid})`);
    this.send(c, MSG.GOSSIP, { peers: this.topology.all() });
    this.counters.gossipSent++;
    this.ipam?.sendRing(peer.name);
    this.port.sendControl(SLEEVE_HEARTBEAT, c.addr, this.config.port, peer.short);
  }

  private closed(c: Conn): void {
    const was = c.state;
    c.closed = true;
    this.conns.delete(c);
    const t = c.target;
    if (t !== null && t.conn === c) {
      t.conn = null;
      if (was === "handshake" || t.state === "failed") {
        t.failures++;
        t.state = "failed";
        if (t.lastError === "") t.lastError = "closed during the handshake";
      } else t.state = "idle";
      t.retryAt = Date.now() + Math.min(1000 * 2 ** Math.max(0, t.failures - 1), 5000);
    }
    if (c.peer !== null && was !== "handshake" && !c.duplicate) {
      this.log(`mesh: connection with ${c.peer.name} (${c.addr}) closed`);
      this.pmtu.stop(c.peer.name);
      if (was === "established") this.ownChanged();
    }
  }

  private onGossip(c: Conn, b: Record<string, unknown>): void {
    this.counters.gossipReceived++;
    if (!Array.isArray(b.peers)) {
      this.counters.badMessages++;
      return;
    }
    const good: PeerEntry[] = [];
    for (const x of b.peers as unknown[]) {
      const e = checkEntry(x);
      if (e === null) this.counters.malformedEntries++;
      else good.push(e);
    }
    const taken = this.topology.merge(good);
    if (taken.length === 0) return;
    this.reprogram();
    for (const o of this.conns) {
      if (o === c || o.state === "handshake") continue;
      this.send(o, MSG.GOSSIP, { peers: taken });
      this.counters.gossipSent++;
    }
  }

  private gossipAll(): void {
    const all = this.topology.all();
    for (const c of this.conns) {
      if (c.state === "handshake") continue;
      this.send(c, MSG.GOSSIP, { peers: all });
      this.counters.gossipSent++;
    }
    this.ipam?.sendRing();
  }

  /** Our established connections changed: a new version of our entry, to everyone. */
  private ownChanged(): void {
    const conns = [...this.conns]
      .filter((c) => c.state === "established" && c.peer !== null)
      .map((c) => {
        const peer = (c.peer as { name: string }).name;
        const pmtu = this.pmtu.pmtuOf(peer);
        return pmtu === null ? { peer, addr: c.addr } : { peer, addr: c.addr, pmtu };
      });
    const me = this.topology.setConnections(conns);
    this.reprogram();
    for (const c of this.conns) {
      if (c.state === "handshake") continue;
      this.send(c, MSG.GOSSIP, { peers: [me] });
      this.counters.gossipSent++;
    }
  }

  private collect(): void {
    const removed = this.topology.collect();
    if (removed.length === 0) return;
    for (const n of removed) this.log(`mesh: peer ${n} removed: no path reaches it any more`);
    this.reprogram();
  }

  /** What the address ring needs of the connections and routes. */
  private ipamLinks(): IpamLinks {
    const live = (name: string): Conn | undefined => [...this.conns].find((c) => c.peer?.name === name && c.state !== "handshake" && !c.closed);
    return {
      neighbours: () => [
        ...new Set([...this.conns].filter((c) => c.peer !== null && c.state !== "handshake" && !c.closed).map((c) => (c.peer as { name: string }).name)),
      ],
      send: (peer, type, body) => {
        const c = live(peer);
        if (c !== undefined) this.send(c, type, body);
        return c !== undefined;
      },
      nextHop: (peer) => this.routes.nextHop.get(peer),
      reachable: () => [...this.routes.reachable].filter((n) => n !== this.config.name),
      log: (l) => this.log(l),
    };
  }

  private connTo(name: string): Conn | undefined {
    for (const c of this.conns) if (c.peer?.name === name && c.state === "established") return c;
    return undefined;
  }

  /** Routes from the view, into the sleeve port's tables. */
  private reprogram(): void {
    this.routes = this.topology.routes();
    const addrOf = (n: string): number => {
      const c = this.connTo(n);
      return c === undefined ? 0 : parseIp(c.addr);
    };
    const announced: number[] = [];
    for (const p of this.topology.peers.values()) for (const c of p.conns) if (c.pmtu !== undefined) announced.push(c.pmtu);
    this.pmtu.apply(announced);
    if (this.port.mtu !== this.lastMtu) {
      this.lastMtu = this.port.mtu;
      this.onMtu?.(this.lastMtu);
    }
    this.port.program(portTables(this.config.name, this.topology, this.routes, this.slots, addrOf));
  }

  private onHeartbeat(from: number, addr: number, port: number): void {
    for (const c of this.conns) {
      if (c.peer?.short === from && c.state !== "handshake") {
        this.port.sendControl(SLEEVE_ACK, addr, port, from);
        return;
      }
    }
    this.counters.unknownHeartbeats++;
  }

  private onAck(from: number): void {
    for (const c of this.conns) {
      if (c.peer?.short !== from || c.state === "handshake") continue;
      c.lastAck = Date.now();
      if (c.state === "pending") {
        c.state = "established";
        this.log(`mesh: UDP with ${c.peer.name} (${c.addr}) works: connection established`);
        this.pmtu.start(c.peer.name, c.peer.short, c.addr, c.lastAck);
        this.ownChanged();
      }
      return;
    }
    this.counters.unknownHeartbeats++;
  }

  /** `tapnet show mesh`: our view (view.ts). */
  show(): MeshView {
    return meshView(this);
  }
}
