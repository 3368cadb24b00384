/**
 * One BGP peer: the finite state machine of RFC 4271 §8 over kernel TCP connections.
 *
 *   Idle ─start─▶ Connect ─TCP up─▶ OpenSent ─OPEN ok─▶ OpenConfirm ─KEEPALIVE─▶ Established
 *                    │ TCP fails         ▲ an accepted connection starts here too
 *                    ▼                   │
 *                  Active ─ConnectRetryTimer─▶ Connect
 *   any error: NOTIFICATION (when there is something to say), close, routes of the
 *   peer withdrawn, Idle, and an automatic start again after ConnectRetryTime.
 *
 * Both sides connect (the peer's outgoing and ours may cross): a peer has up to two
 * connections at once, each with its own state until one wins. Collision detection is
 * §6.8's: when an OPEN arrives, a connection of the same peer in OpenConfirm is
 * compared with it — the one initiated by the side with the higher BGP identifier
 * stays, the other is closed with Cease / Connection Collision Resolution (RFC 4486);
 * a connection arriving while one is Established is closed the same way.
 *
 * Timers (§10): ConnectRetryTimer (connectRetryTime), HoldTimer (4 minutes while the
 * OPEN is awaited, §8.2.2; then the smaller of both hold times, 0 = none), and the
 * KeepaliveTimer at a third of the hold time. Any KEEPALIVE or UPDATE restarts the
 * HoldTimer; its expiry sends NOTIFICATION Hold Timer Expired.
 *
 * Messages are framed with messageLength and decoded with decodeMessage
 * (src/wire/bgp.ts); a decoding error the RFCs answer with a session reset sends its
 * NOTIFICATION. Nothing a peer sends throws out of here.
 */
import net from "node:net";
import {
  type BgpError,
  CEASE_COLLISION,
  decodeMessage,
  encodeKeepalive,
  encodeNotification,
  encodeOpen,
  ERR_CEASE,
  ERR_FSM,
  ERR_HOLD_TIMER,
  ERR_OPEN,
  MSG_KEEPALIVE,
  MSG_NOTIFICATION,
  MSG_OPEN,
  MSG_ROUTE_REFRESH,
  MSG_UPDATE,
  messageLength,
  OPEN_BAD_BGP_ID,
  OPEN_BAD_PEER_AS,
  type OpenMessage,
  type UpdateMessage,
} from "../wire/bgp.js";
import { ipToString } from "../wire/ipv4addr.js";

export type FsmState = "Idle" | "Connect" | "Active" | "OpenSent" | "OpenConfirm" | "Established";

export interface PeerConfig {
  name: string;
  address: string;
  asn: number;
  rrClient: boolean;
}

export interface LocalConfig {
  asn: number;
  routerId: number;
  localAddress: string;
  port: number;
  holdTime: number;
  connectRetryTime: number;
}

/** What the speaker hears from a session. */
export interface PeerEvents {
  established(peer: Peer): void;
  update(peer: Peer, u: UpdateMessage): void;
  routeRefresh(peer: Peer): void;
  down(peer: Peer): void;
}

/** §8.2.2: the HoldTimer while an OPEN is awaited ("a large value", 4 minutes suggested). */
const OPEN_HOLD_MS = 240_000;

class Conn {
  state: FsmState = "Connect";
  buf: Buffer = Buffer.alloc(0);
  hold: NodeJS.Timeout | null = null;
  keepalive: NodeJS.Timeout | null = null;
  open: OpenMessage | null = null;
  holdTime = 0;
  closed = false;
  constructor(
    readonly sock: net.Socket,
    readonly outgoing: boolean,
  ) {}
}

export class Peer {
  readonly addr: number;
  private conns: Conn[] = [];
  private est: Conn | null = null;
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The peer-level state when no connection is further along. */
  private idleState: FsmState = "Idle";
  establishedAt = 0;
  lastError = "";
  /** Counters for `show bgp`. */
  readonly counts = { updatesIn: 0, updatesOut: 0, notificationsIn: 0, notificationsOut: 0, establishedTransitions: 0 };

  constructor(
    readonly cfg: PeerConfig,
    private readonly local: LocalConfig,
    private readonly events: PeerEvents,
    private readonly log: (line: string) => void,
  ) {
    const p = cfg.address.split(".").map(Number);
    this.addr = ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
  }

  get ibgp(): boolean {
    return this.cfg.asn === this.local.asn;
  }

  get state(): FsmState {
    if (this.est) return "Established";
    const order: FsmState[] = ["Idle", "Active", "Connect", "OpenSent", "OpenConfirm"];
    let s = this.idleState;
    for (const c of this.conns) if (order.indexOf(c.state) > order.indexOf(s)) s = c.state;
    return s;
  }

  get remoteOpen(): OpenMessage | null {
    return this.est?.open ?? null;
  }

  get negotiatedHold(): number {
    return this.est?.holdTime ?? 0;
  }

  get as4(): boolean {
    return this.est?.open?.as4 ?? false;
  }

  /** ManualStart / AutomaticStart (§8.1.2): connect now. */
  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** ManualStop: Cease, close everything, no restart. */
  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    for (const c of [...this.conns]) this.fail(c, { code: ERR_CEASE, subcode: 2, reason: "administrative shutdown" });
  }

  send(msg: Uint8Array): void {
    const c = this.est;
    if (c && !c.closed) {
      c.sock.write(msg);
      if (msg[18] === MSG_UPDATE) this.counts.updatesOut++;
    }
  }

  private connect(): void {
    if (this.stopped) return;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    if (this.conns.some((c) => c.outgoing)) return;
    const sock = net.connect({ host: this.cfg.address, port: this.local.port, localAddress: this.local.localAddress });
    const c = new Conn(sock, true);
    this.conns.push(c);
    sock.once("connect", () => this.opened(c));
    this.wire(c);
  }

  /** A connection the speaker accepted from this peer's address. */
  accept(sock: net.Socket): void {
    if (this.stopped) {
      sock.destroy();
      return;
    }
    const c = new Conn(sock, false);
    this.conns.push(c);
    this.wire(c);
    if (this.est) {
      // §6.8: a connection colliding with an Established one is closed.
      this.fail(c, { code: ERR_CEASE, subcode: CEASE_COLLISION, reason: "connection collision with the established session" }, true);
      return;
    }
    this.opened(c);
  }

  private wire(c: Conn): void {
    c.sock.setNoDelay(true);
    c.sock.on("data", (d: Buffer) => this.data(c, d));
    c.sock.on("error", (e: Error) => {
      // A reset after we closed (a peer answering our NOTIFICATION with RST) says nothing new.
      if (c.closed) return;
      if (c.state === "Connect" && !this.lastError) this.lastError = `connect: ${e.message}`;
      else if (c.state !== "Connect") this.lastError = e.message;
    });
    c.sock.on("close", () => this.closed(c));
  }

  /** TCP is up (either direction): send OPEN, wait for the peer's (§8.2.2 Connect -> OpenSent). */
  private opened(c: Conn): void {
    c.state = "OpenSent";
    c.sock.write(encodeOpen({ asn: this.local.asn, holdTime: this.local.holdTime, bgpId: this.local.routerId }));
    c.hold = setTimeout(() => this.holdExpired(c), OPEN_HOLD_MS);
  }

  private holdExpired(c: Conn): void {
    this.fail(c, { code: ERR_HOLD_TIMER, subcode: 0, reason: `hold timer expired (${c.holdTime || OPEN_HOLD_MS / 1000} s without a message)` });
  }

  private data(c: Conn, d: Buffer): void {
    if (c.closed) return;
    c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
    let off = 0;
    while (!c.closed) {
      const len = messageLength(c.buf, off, c.buf.length - off);
      if (typeof len !== "number") {
        this.fail(c, len);
        return;
      }
      if (len === 0) break;
      const msg = c.buf.subarray(off, off + len);
      off += len;
      this.message(c, msg);
    }
    c.buf = off >= c.buf.length ? Buffer.alloc(0) : Buffer.from(c.buf.subarray(off));
  }

  private message(c: Conn, raw: Uint8Array): void {
    const d = decodeMessage(raw, c.open?.as4 ?? false);
    if (!d.ok) {
      this.fail(c, d.error);
      return;
    }
    const m = d.msg;
    if (m.type === MSG_NOTIFICATION) {
      this.counts.notificationsIn++;
      this.lastError = `received NOTIFICATION ${m.code}/${m.subcode}${m.data.length ? ` (data ${Buffer.from(m.data).toString("hex")})` : ""}`;
      this.close(c);
      return;
    }
    if (c.hold && c.holdTime > 0 && (m.type === MSG_KEEPALIVE || m.type === MSG_UPDATE)) c.hold.refresh();
    switch (c.state) {
      case "OpenSent":
        if (m.type !== MSG_OPEN) return this.fail(c, { code: ERR_FSM, subcode: 1, reason: `message type ${m.type} in OpenSent` });
        return this.gotOpen(c, m);
      case "OpenConfirm":
        if (m.type !== MSG_KEEPALIVE) return this.fail(c, { code: ERR_FSM, subcode: 2, reason: `message type ${m.type} in OpenConfirm` });
        return this.establish(c);
      case "Established":
        if (m.type === MSG_UPDATE) {
          this.counts.updatesIn++;
          this.events.update(this, m);
        } else if (m.type === MSG_ROUTE_REFRESH) {
          if (m.afi === 1 && m.safi === 1) this.events.routeRefresh(this);
        } else if (m.type === MSG_OPEN) this.fail(c, { code: ERR_FSM, subcode: 3, reason: "OPEN in Established" });
        return;
      default:
        return;
    }
  }

  /** §6.2 checks, negotiation, collision detection (§6.8); then KEEPALIVE and OpenConfirm. */
  private gotOpen(c: Conn, o: OpenMessage): void {
    if (o.asn !== this.cfg.asn) return this.fail(c, { code: ERR_OPEN, subcode: OPEN_BAD_PEER_AS, reason: `peer says AS ${o.asn}, configured ${this.cfg.asn}` });
    if (this.ibgp && o.bgpId === this.local.routerId)
      return this.fail(c, { code: ERR_OPEN, subcode: OPEN_BAD_BGP_ID, reason: `peer's BGP identifier ${ipToString(o.bgpId)} is ours` });
    c.open = o;
    c.holdTime = Math.min(o.holdTime, this.local.holdTime);
    for (const other of this.conns) {
      if (other === c || other.state !== "OpenConfirm") continue;
      // The connection initiated by the higher BGP identifier survives.
      const keepOutgoing = this.local.routerId >>> 0 > o.bgpId >>> 0;
      const loser = c.outgoing === keepOutgoing ? other : c;
      this.fail(loser, { code: ERR_CEASE, subcode: CEASE_COLLISION, reason: "connection collision resolution" }, true);
      if (loser === c) return;
    }
    c.state = "OpenConfirm";
    c.sock.write(encodeKeepalive());
    if (c.hold) clearTimeout(c.hold);
    c.hold = null;
    if (c.holdTime > 0) {
      c.hold = setTimeout(() => this.holdExpired(c), c.holdTime * 1000);
      const every = Math.max(1, Math.floor(c.holdTime / 3)) * 1000;
      c.keepalive = setInterval(() => {
        if (!c.closed) c.sock.write(encodeKeepalive());
      }, every);
    }
  }

  private establish(c: Conn): void {
    for (const other of [...this.conns]) {
      if (other !== c) this.fail(other, { code: ERR_CEASE, subcode: CEASE_COLLISION, reason: "connection collision resolution" }, true);
    }
    c.state = "Established";
    this.est = c;
    this.establishedAt = Date.now();
    this.counts.establishedTransitions++;
    this.lastError = "";
    this.log(`bgp: ${this.cfg.name} (${this.cfg.address} AS ${this.cfg.asn}) Established, hold time ${c.holdTime} s`);
    this.events.established(this);
  }

  /** Sends the NOTIFICATION for `e` and closes `c` (a collision loser does not touch lastError). */
  private fail(c: Conn, e: Pick<BgpError, "code" | "subcode" | "reason"> & { data?: Uint8Array }, quiet = false): void {
    if (c.closed) return;
    if (!quiet) {
      this.lastError = `sent NOTIFICATION ${e.code}/${e.subcode}: ${e.reason}`;
      this.log(`bgp: ${this.cfg.name}: ${this.lastError}`);
    }
    if (c.state !== "Connect") {
      c.sock.write(encodeNotification(e.code, e.subcode, e.data));
      this.counts.notificationsOut++;
    }
    this.close(c);
  }

  private close(c: Conn): void {
    if (c.closed) return;
    c.closed = true;
    if (c.hold) clearTimeout(c.hold);
    if (c.keepalive) clearInterval(c.keepalive);
    c.sock.end();
    // A peer that does not close its side within a second is cut off.
    setTimeout(() => c.sock.destroy(), 1000).unref();
    this.closed(c);
  }

  /** A connection is gone (closed by either side, or failed to connect). */
  private closed(c: Conn): void {
    c.closed = true;
    if (c.hold) clearTimeout(c.hold);
    if (c.keepalive) clearInterval(c.keepalive);
    const i = this.conns.indexOf(c);
    if (i < 0) return;
    this.conns.splice(i, 1);
    if (this.est === c) {
      this.est = null;
      this.log(`bgp: ${this.cfg.name} (${this.cfg.address}) left Established${this.lastError ? `: ${this.lastError}` : ""}`);
      this.events.down(this);
    }
    if (this.conns.length === 0 && !this.stopped) {
      // §8.2.2: back to Idle / Active; the automatic start retries after ConnectRetryTime.
      this.idleState = c.outgoing && c.state === "Connect" ? "Active" : "Idle";
      if (!this.retry) this.retry = setTimeout(() => this.connect(), this.local.connectRetryTime * 1000);
    } else if (c.outgoing && !this.stopped && !this.retry && !this.est) {
      this.retry = setTimeout(() => this.connect(), this.local.connectRetryTime * 1000);
    }
  }
}
