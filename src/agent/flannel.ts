/**
 * `tapnet agent`: flanneld's job for one tapnet node, through etcd and the node's control
 * socket.
 *
 *   1. Reads `<prefix>/config` (waits for it; a config it cannot use is a fatal error).
 *   2. Leases a subnet the way flanneld does: an etcd lease with a TTL, and a transaction
 *      that writes `<prefix>/subnets/A.B.C.D-LEN` only if the key is absent (or, to take
 *      back its own subnet after a restart, only if it is unchanged since it was read).
 *      The subnet it prefers: the one in its subnet.env (its last lease), then the one the
 *      node already serves its pods from (cni0's address), then a random free one.
 *      The lease is renewed every TTL/3; when etcd says it is gone, it is taken again.
 *   3. Lists `<prefix>/subnets/`, programs every other node, and watches the prefix from the
 *      listed revision on; after a compaction or a lost watch it lists again and reconciles.
 *      Per peer: a route (and, for vxlan, a neighbour and an FDB entry) — the entries
 *      src/agent/flannel-peers.ts lists; host-gw reaches only peers on the node's underlay
 *      subnet (flannel's rule), as vxlan with DirectRouting does for a peer there. A lease
 *      that goes (deleted or expired) takes its entries with it. Leases that arrive while
 *      the node is being programmed go to it together in the next `changes` request.
 *   4. Writes subnet.env (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU).
 *   5. When etcd cannot be reached, the node keeps what it was given and the agent retries
 *      with backoff (0.5 s doubling to 8 s); it converges when etcd answers again.
 *
 * It runs as its own process beside the node (never inside it): the node's dataplane must
 * not wait on etcd, and the node's sandbox refuses the files and sockets an agent needs.
 * Its status (`tapnet show agent`) is served on a Unix socket of its own.
 */
import fs from "node:fs";
import { request } from "../control/client.js";
import { ControlServer } from "../control/server.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { EtcdClient, type KeyValue, type Watch } from "./etcd.js";
import {
  type FlannelConfig,
  freeSubnet,
  inRange,
  type LeaseValue,
  leaseValue,
  parseFlannelConfig,
  parseLeaseValue,
  parseSubnetKey,
  type Subnet,
  subnetEnv,
  subnetFromEnv,
  subnetKey,
  subnetText,
} from "./flannel-config.js";
import { type Op, type Planned, peerOps, programNode } from "./flannel-peers.js";

export interface AgentOptions {
  node: string;
  endpoints: string[];
  prefix: string;
  /** The node's control socket. */
  socket: string;
  /** The node's underlay address, written as PublicIP. */
  publicIp: string;
  /** Seconds an etcd lease lives without renewal. */
  ttl: number;
  subnetFile: string;
  statusSocket?: string;
  vtepIface: string;
  vxlanPort: string;
  podIface: string;
  underlayIface: string;
  log: (msg: string) => void;
}

interface Peer {
  subnet: Subnet;
  publicIp: string;
  vtepMac: string | null;
  /** What was programmed, to take it away again. */
  undo: Op[];
  since: string;
  /** When the node acknowledged it: wall-clock ms with a fraction (the bench compares it with the writer's clock). */
  sinceMs: number;
}

/** A lease seen or gone, waiting for the next `changes` request. */
type Change = { type: "PUT"; kv: KeyValue } | { type: "DEL"; key: string; why: string };

interface IfaceRow {
  name: string;
  mac: string;
  mtu: number;
  addresses: string[];
}

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 8000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class FlannelAgent {
  readonly etcd: EtcdClient;
  private config: FlannelConfig | null = null;
  private lease: { subnet: Subnet; id: string; renewedAt: number; ttl: number } | null = null;
  private readonly peers = new Map<string, Peer>();
  /** Peers removed from the table whose entries the node has not yet confirmed taken away. */
  private readonly leaving = new Set<Peer>();
  private pending: Change[] = [];
  private flushQueued = false;
  private revision = 0;
  private watch: Watch | null = null;
  private watching = false;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private vtep: IfaceRow | null = null;
  private underlay: { addr: number; len: number } | null = null;
  private status: ControlServer | null = null;
  private changes = 0;
  private resyncs = 0;
  /** Lease keys or values under the subnets prefix this agent could not use (counted each time one is seen). */
  private badValues = 0;
  private readonly notes = new Set<string>();

  constructor(readonly o: AgentOptions) {
    this.etcd = new EtcdClient(o.endpoints);
    parseIp(o.publicIp);
  }

  private get subnetsPrefix(): string {
    return `${this.o.prefix}/subnets/`;
  }

  /** Runs until stop(); throws on what no retry can mend (a bad config, an exhausted range). */
  async run(): Promise<void> {
    if (this.o.statusSocket) {
      this.status = new ControlServer(this.o.statusSocket, { status: () => this.describe() });
      await this.status.listen();
    }
    this.config = await this.readConfig();
    const c = this.config;
    this.o.log(
      `config: Network ${subnetText(c.network)}, SubnetLen ${c.subnetLen}, range ${ipToString(c.subnetMin)}-${ipToString(c.subnetMax)}, backend ${c.backend.type}${c.backend.type === "vxlan" ? ` (VNI ${c.backend.vni}, port ${c.backend.port})` : ""}`,
    );
    const ifaces = await this.retry("read the node's interfaces", () => request<IfaceRow[]>(this.o.socket, { cmd: "interfaces" }));
    await this.learnNode(ifaces);
    await this.acquire(ifaces);
    void this.renewLoop();
    await this.sync();
  }

  stop(): void {
    this.stopped = true;
    this.watch?.close();
    this.status?.close();
  }

  /** Retries `f` with backoff until it succeeds (or the agent stops), logging each failure once per kind. */
  private async retry<T>(what: string, f: () => Promise<T>): Promise<T> {
    let wait = BACKOFF_MIN;
    let last = "";
    for (;;) {
      try {
        return await f();
      } catch (e) {
        if (this.stopped) throw e;
        const m = msg(e);
        if (m !== last) this.o.log(`cannot ${what} (retrying every ≤${BACKOFF_MAX / 1000} s): ${m}`);
        last = m;
        await sleep(wait);
        wait = Math.min(wait * 2, BACKOFF_MAX);
      }
    }
  }

  private async readConfig(): Promise<FlannelConfig> {
    const key = `${this.o.prefix}/config`;
    let said = false;
    for (;;) {
      const { kv } = await this.retry(`read ${key} from etcd`, () => this.etcd.get(key));
      if (kv) return parseFlannelConfig(kv.value, key);
      if (!said) this.o.log(`waiting for ${key} in etcd`);
      said = true;
      await sleep(1000);
    }
  }

  private async learnNode(ifaces: IfaceRow[]): Promise<void> {
    const c = this.config as FlannelConfig;
    const find = (n: string): IfaceRow | undefined => ifaces.find((i) => i.name === n);
    if (c.backend.type === "vxlan") {
      const v = find(this.o.vtepIface);
      if (!v)
        throw new Error(
          `node ${this.o.node} has no interface '${this.o.vtepIface}' for the vxlan backend (interfaces: ${ifaces.map((i) => i.name).join(", ")})`,
        );
      this.vtep = v;
      if (c.backend.directRouting) {
        // Direct routes leave through the router's interface on the underlay, which a vxlan
        // node has only when its lab shares ul0 between kernel and router (overlay.directRouting).
        const u = find(this.o.underlayIface);
        const a = u?.addresses.find((x) => x.split("/")[0] === this.o.publicIp);
        if (a) this.underlay = { addr: parseIp(this.o.publicIp), len: Number(a.split("/")[1]) };
        else
          this.note(
            `DirectRouting: the node's router has no interface '${this.o.underlayIface}' with ${this.o.publicIp} (its lab needs overlay.directRouting: true), so every peer goes through VXLAN`,
          );
      }
    } else {
      const u = find(this.o.underlayIface);
      const a = u?.addresses.find((x) => x.split("/")[0] === this.o.publicIp);
      if (!a)
        throw new Error(
          `node ${this.o.node}: host-gw routes through the node's underlay interface '${this.o.underlayIface}' with address ${this.o.publicIp}, which it does not have`,
        );
      this.underlay = { addr: parseIp(this.o.publicIp), len: Number(a.split("/")[1]) };
    }
  }

  private bad(m: string): void {
    this.badValues++;
    this.o.log(`bad lease: ${m}`);
  }

  private note(m: string): void {
    if (this.notes.has(m)) return;
    this.notes.add(m);
    this.o.log(`note: ${m}`);
  }

  // -------------------------------------------------------------------------
  // The lease.

  private value(): string {
    return leaseValue(this.o.publicIp, this.config as FlannelConfig, this.vtep?.mac ?? null);
  }

  /** The subnets this node would like, best first. */
  private preferred(ifaces: IfaceRow[]): Subnet[] {
    const c = this.config as FlannelConfig;
    const out: Subnet[] = [];
    try {
      const s = subnetFromEnv(fs.readFileSync(this.o.subnetFile, "utf8"));
      if (s) out.push(s);
    } catch {
      // no previous lease
    }
    for (const a of ifaces.find((i) => i.name === this.o.podIface)?.addresses ?? []) {
      const [ip, len] = a.split("/");
      const l = Number(len);
      const m = l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0;
      out.push({ addr: (parseIp(ip) & m) >>> 0, len: l });
    }
    return out.filter((s) => inRange(c, s));
  }

  private async acquire(ifaces?: IfaceRow[]): Promise<void> {
    const c = this.config as FlannelConfig;
    const want = this.lease ? [this.lease.subnet] : this.preferred(ifaces ?? []);
    for (;;) {
      const got = await this.retry("lease a subnet in etcd", async () => {
        const id = await this.etcd.grant(this.o.ttl);
        const { kvs } = await this.etcd.list(this.subnetsPrefix);
        const byKey = new Map(kvs.map((kv) => [kv.key, kv]));
        for (const s of want) {
          const kv = byKey.get(this.subnetsPrefix + subnetKey(s));
          if (kv) {
            const v = parseLeaseValue(kv.value);
            // Our own lease from before a restart: take it over (same PublicIP).
            if ("value" in v && v.value.PublicIP === this.o.publicIp) {
              const r = await this.etcd.putIf(kv.key, this.value(), id, kv.modRevision);
              if (r.ok) return { id, subnet: s, how: "kept (its lease was still there)" };
            }
            continue;
          }
          const r = await this.etcd.putIf(this.subnetsPrefix + subnetKey(s), this.value(), id, 0);
          if (r.ok) return { id, subnet: s, how: "the subnet this node asked for: its last lease or its pod subnet" };
        }
        const taken = new Set(kvs.map((kv) => parseSubnetKey(kv.key.slice(this.subnetsPrefix.length))?.addr).filter((a): a is number => a !== undefined));
        const s = freeSubnet(c, taken);
        if (s === null) {
          await this.etcd.revoke(id).catch(() => undefined);
          return {
            id: "",
            subnet: null,
            how: `no free subnet: all ${taken.size} /${c.subnetLen} subnets of ${ipToString(c.subnetMin)}-${ipToString(c.subnetMax)} in Network ${subnetText(c.network)} are leased`,
          };
        }
        const r = await this.etcd.putIf(this.subnetsPrefix + subnetKey(s), this.value(), id, 0);
        if (r.ok) return { id, subnet: s, how: "new" };
        await this.etcd.revoke(id).catch(() => undefined);
        return null; // someone took it meanwhile: list again
      });
      if (got === null) continue;
      if (got.subnet === null) throw new Error(`node ${this.o.node}: ${got.how}`);
      this.lease = { subnet: got.subnet, id: got.id, renewedAt: Date.now(), ttl: this.o.ttl };
      this.o.log(`lease ${subnetText(got.subnet)} (${got.how}), etcd lease ${got.id}, TTL ${this.o.ttl} s, PublicIP ${this.o.publicIp}`);
      await this.adoptSubnet(got.subnet);
      return;
    }
  }

  /** Gives the node's pod and VTEP interfaces the leased subnet's addresses; writes subnet.env. */
  private async adoptSubnet(s: Subnet): Promise<void> {
    const c = this.config as FlannelConfig;
    const ifaces = await this.retry("read the node's interfaces", () => request<IfaceRow[]>(this.o.socket, { cmd: "interfaces" }));
    const ops: Array<{ op: string; args: Record<string, unknown> }> = [];
    const setAddr = (name: string, addr: string): void => {
      const i = ifaces.find((x) => x.name === name);
      if (!i || i.addresses.includes(addr)) return;
      const inNet = (a: string): boolean => {
        const ip = parseIp(a.split("/")[0]);
        return ip >= c.network.addr && ip < c.network.addr + 2 ** (32 - c.network.len);
      };
      for (const old of i.addresses.filter(inNet)) ops.push({ op: "addr.del", args: { address: old, dev: name } });
      ops.push({ op: "addr.add", args: { address: addr, dev: name } });
    };
    setAddr(this.o.podIface, `${ipToString(s.addr + 1)}/${s.len}`);
    if (c.backend.type === "vxlan") setAddr(this.o.vtepIface, `${ipToString(s.addr)}/32`);
    if (ops.length) {
      await this.program([{ ops, removing: false, what: `node addresses for ${subnetText(s)}`, done: () => undefined }]);
      this.o.log(`node addresses set for ${subnetText(s)}: ${ops.map((o) => `${o.op} ${o.args.address} dev ${o.args.dev}`).join(", ")}`);
    }
    const mtu = c.backend.type === "vxlan" ? (this.vtep?.mtu ?? 1450) : (ifaces.find((i) => i.name === this.o.underlayIface)?.mtu ?? 1500);
    const tmp = `${this.o.subnetFile}.tmp`;
    fs.writeFileSync(tmp, subnetEnv(c, s, mtu));
    fs.renameSync(tmp, this.o.subnetFile);
  }

  private async renewLoop(): Promise<void> {
    let wait = BACKOFF_MIN;
    while (!this.stopped) {
      const lease = this.lease;
      if (!lease) return;
      const every = (lease.ttl * 1000) / 3;
      const due = lease.renewedAt + every - Date.now();
      if (due > 0) await sleep(Math.min(due, every));
      if (this.stopped) return;
      try {
        const ttl = await this.etcd.keepAlive(lease.id);
        wait = BACKOFF_MIN;
        if (ttl > 0) {
          lease.renewedAt = Date.now();
          continue;
        }
        if (this.lease !== lease) continue; // leased again meanwhile (reclaim)
        this.o.log(`etcd lease ${lease.id} of ${subnetText(lease.subnet)} is gone (expired while etcd was unreachable?): leasing again`);
        await this.acquire();
      } catch (e) {
        this.o.log(`renewing the lease failed, retrying in ${wait / 1000} s: ${msg(e)}`);
        // The watch may be on a member that went away without closing its stream.
        if (this.watching) this.restartWatch("the lease could not be renewed");
        await sleep(wait);
        wait = Math.min(wait * 2, BACKOFF_MAX);
      }
    }
  }

  // -------------------------------------------------------------------------
  // Peers.

  private restartWatch(why: string): void {
    this.watch?.close();
    this.watch = null;
    this.watching = false;
    this.o.log(`watch: ${why}: listing again`);
    void this.sync();
  }

  /** Lists the subnets, reconciles the node with them, and watches from there on. */
  private async sync(): Promise<void> {
    if (this.stopped) return;
    const { kvs, revision } = await this.retry(`list ${this.subnetsPrefix} in etcd`, () => this.etcd.list(this.subnetsPrefix));
    if (this.stopped || this.watching) return;
    this.resyncs++;
    this.revision = revision;
    const seen = new Set<string>();
    for (const kv of kvs) {
      seen.add(kv.key);
      this.push({ type: "PUT", kv });
    }
    for (const key of [...this.peers.keys()]) if (!seen.has(key)) this.push({ type: "DEL", key, why: "its lease is gone" });
    this.watching = true;
    this.watch = this.etcd.watch(this.subnetsPrefix, revision + 1, {
      events: (evs, rev) => {
        this.revision = Math.max(this.revision, rev);
        for (const e of evs) {
          if (e.type === "DELETE" && this.isOwn(e.kv.key)) this.enqueue(() => this.reclaim());
          else if (e.type === "PUT") this.push({ type: "PUT", kv: e.kv });
          else this.push({ type: "DEL", key: e.kv.key, why: "its lease was deleted or expired" });
        }
      },
      compacted: (r) => this.restartWatch(`revision ${this.revision + 1} was compacted (now ${r})`),
      lost: (why) => {
        if (this.stopped) return;
        this.watching = false;
        this.watch = null;
        this.o.log(`watch lost (${why}): listing again`);
        void sleep(BACKOFF_MIN).then(() => this.sync());
      },
    });
  }

  private isOwn(key: string): boolean {
    return this.lease !== null && key === this.subnetsPrefix + subnetKey(this.lease.subnet);
  }

  /**
   * This node's own lease key was deleted (by hand, or its etcd lease revoked) while the
   * etcd lease may still renew: the other nodes have just removed their routes to it, so
   * it writes the key again, under a new etcd lease, for the same subnet when still free.
   */
  private async reclaim(): Promise<void> {
    const old = this.lease;
    if (!old || this.stopped) return;
    this.o.log(`own lease ${subnetText(old.subnet)} was deleted from etcd: leasing again`);
    await this.etcd.revoke(old.id).catch(() => undefined);
    await this.acquire();
  }

  private enqueue(f: () => Promise<void>): void {
    this.queue = this.queue.then(f).catch((e) => this.o.log(`error: ${msg(e)}`));
  }

  /**
   * Queues a lease seen (PUT) or gone (DEL). Changes that arrive while the node is being
   * programmed are applied together in the next `changes` request: 200 leases written at
   * once cost a few requests, not 200.
   */
  private push(c: Change): void {
    this.pending.push(c);
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.enqueue(() => this.flush());
  }

  private async flush(): Promise<void> {
    this.flushQueued = false;
    const batch = this.pending;
    this.pending = [];
    const planned: Planned[] = [];
    for (const c of batch) {
      if (c.type === "PUT") this.planUpsert(c.kv, planned);
      else this.planRemove(c.key, c.why, planned);
    }
    if (planned.length) await this.program(planned);
  }

  /** What a lease asks of this node, in order after what `out` holds already; the peer table follows at once. */
  private planUpsert(kv: KeyValue, out: Planned[]): void {
    const s = parseSubnetKey(kv.key.slice(this.subnetsPrefix.length));
    if (!s) return this.bad(`ignoring ${kv.key}: not a subnet key`);
    if (this.lease && s.addr === this.lease.subnet.addr && s.len === this.lease.subnet.len) return;
    const p = parseLeaseValue(kv.value);
    if ("error" in p) {
      // A peer whose lease turned unreadable is no longer one this node can reach.
      if (this.peers.has(kv.key)) this.planRemove(kv.key, "its lease value is no longer readable", out);
      return this.bad(`ignoring ${kv.key}: ${p.error}`);
    }
    const v: LeaseValue = p.value;
    if (v.PublicIP === this.o.publicIp) return; // an old lease of this node's
    const old = this.peers.get(kv.key);
    const mac = v.BackendData?.VtepMAC ?? null;
    if (old && old.publicIp === v.PublicIP && old.vtepMac === mac) return;
    if (old) this.planRemove(kv.key, "its lease changed", out);
    const c = this.config as FlannelConfig;
    if (v.BackendType !== c.backend.type) return this.note(`ignoring ${kv.key}: backend ${v.BackendType}, this node's is ${c.backend.type}`);
    const to = subnetText(s);
    const ops = peerOps(
      c.backend.type,
      { subnet: s, publicIp: v.PublicIP, vtepMac: mac, direct: this.directPeer(v.PublicIP) },
      this.o.vtepIface,
      this.o.vxlanPort,
    );
    if ("note" in ops) return this.note(ops.note);
    const { add, undo } = ops;
    const peer: Peer = { subnet: s, publicIp: v.PublicIP, vtepMac: mac, undo, since: "", sinceMs: 0 };
    this.peers.set(kv.key, peer);
    out.push({
      ops: add,
      removing: false,
      what: to,
      done: (at) => {
        peer.since = new Date(at).toISOString();
        peer.sinceMs = at;
        this.o.log(`peer ${to} added (PublicIP ${v.PublicIP}${mac ? `, VtepMAC ${mac}` : ""}): ${add.map((a) => a.op).join(", ")}`);
      },
    });
  }

  /** Whether a peer at `publicIp` is on this node's underlay subnet, where a direct route reaches it (host-gw, DirectRouting). */
  private directPeer(publicIp: string): boolean {
    const u = this.underlay;
    if (!u) return false;
    const m = u.len === 0 ? 0 : (0xffffffff << (32 - u.len)) >>> 0;
    return (parseIp(publicIp) & m) >>> 0 === (u.addr & m) >>> 0;
  }

  private planRemove(key: string, why: string, out: Planned[]): void {
    const p = this.peers.get(key);
    if (!p) return;
    this.peers.delete(key);
    // Listed (show agent) until the node has taken its entries away.
    this.leaving.add(p);
    out.push({
      ops: p.undo,
      removing: true,
      what: subnetText(p.subnet),
      done: () => {
        this.leaving.delete(p);
        this.o.log(`peer ${subnetText(p.subnet)} removed (${why}): ${p.undo.map((a) => a.op).join(", ")}`);
      },
    });
  }

  private async program(planned: Planned[]): Promise<void> {
    this.changes += await programNode(this.o.socket, planned, (what, f) => this.retry(what, f), this.o.log);
  }

  describe(): unknown {
    const c = this.config;
    return {
      node: this.o.node,
      prefix: this.o.prefix,
      publicIp: this.o.publicIp,
      backend: c?.backend ?? null,
      network: c ? subnetText(c.network) : null,
      lease: this.lease
        ? {
            subnet: subnetText(this.lease.subnet),
            key: this.subnetsPrefix + subnetKey(this.lease.subnet),
            etcdLease: this.lease.id,
            ttl: this.lease.ttl,
            renewedAt: new Date(this.lease.renewedAt).toISOString(),
          }
        : null,
      // What the node holds: peers it acknowledged, and peers whose removal it has not yet.
      peers: [...[...this.peers.values()].filter((p) => p.sinceMs > 0), ...this.leaving].map((p) => ({
        subnet: subnetText(p.subnet),
        publicIp: p.publicIp,
        vtepMac: p.vtepMac,
        since: p.since,
        sinceMs: p.sinceMs,
      })),
      etcd: {
        endpoints: this.o.endpoints,
        endpoint: this.etcd.lastEndpoint,
        reachable: this.etcd.lastError === null && this.etcd.lastEndpoint !== null,
        lastOk: this.etcd.lastOk ? new Date(this.etcd.lastOk).toISOString() : null,
        lastError: this.etcd.lastError,
        watching: this.watching,
        revision: this.revision,
      },
      changes: this.changes,
      resyncs: this.resyncs,
      badValues: this.badValues,
      subnetFile: this.o.subnetFile,
    };
  }
}
