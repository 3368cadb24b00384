/**
 * The service table: kube-proxy-style services (a VIP, a protocol and a port) and
 * their backends, as the NAT (nat.ts) looks them up for every new connection and
 * DNATs it to one backend (random, or round robin). A service with no backends makes
 * the NAT refuse the connection (kube-proxy's REJECT).
 *
 * Lookup: open addressing on (proto, vip, port) in typed arrays, backends flattened;
 * nothing allocated per packet. Changes — set() (all of them, as a config resync),
 * add(), setBackends(), delete() — validate first and then rebuild the arrays, so a
 * change made while traffic flows takes effect between two packets: new connections
 * see the new table, existing ones keep their backend (their conntrack entries hold
 * the translation), as with Linux conntrack under kube-proxy. Round-robin positions
 * survive a rebuild.
 */
import { ipToString } from "../wire/ipv4addr.js";
import { CT_DNAT, type ConnTrack } from "./conntrack.js";

export interface Backend {
  addr: number;
  port: number;
}

export interface Service {
  name: string;
  vip: number;
  proto: 6 | 17;
  port: number;
  backends: Backend[];
  algorithm: "random" | "roundrobin";
}

export interface ServiceView {
  name: string;
  vip: string;
  proto: "tcp" | "udp";
  port: number;
  backends: string[];
  algorithm: "random" | "roundrobin";
  /** Live conntrack entries per backend (same order as `backends`). */
  connections: number[];
}

const NIL = -1;

/** Throws unless `addr` is a uint32 address (what: where, for the message). */
export function checkAddr(what: string, addr: number): void {
  if (!Number.isInteger(addr) || addr < 0 || addr > 0xffffffff) throw new Error(`${what}: address must be a uint32, got ${String(addr)}`);
}

/** Throws unless `port` is 1-65535. */
export function checkPort(what: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${what}: port must be an integer 1-65535, got ${String(port)}`);
  }
}

function checkBackends(name: string, backends: Backend[]): void {
  for (const b of backends) {
    checkAddr(`service ${name} backend`, b.addr);
    checkPort(`service ${name} backend ${ipToString(b.addr >>> 0)}`, b.port);
  }
}

function checkService(s: Service): void {
  if (typeof s.name !== "string" || s.name === "") throw new Error("service: a name is required");
  if (s.proto !== 6 && s.proto !== 17) throw new Error(`service ${s.name}: proto must be 6 (tcp) or 17 (udp)`);
  checkPort(`service ${s.name}`, s.port);
  checkAddr(`service ${s.name} vip`, s.vip);
  if (s.algorithm !== "random" && s.algorithm !== "roundrobin") {
    throw new Error(`service ${s.name}: algorithm must be "random" or "roundrobin"`);
  }
  checkBackends(s.name, s.backends);
}

function copyService(s: Service): Service {
  return { ...s, backends: s.backends.map((b) => ({ addr: b.addr, port: b.port })) };
}

function hashOf(vip: number, pp: number): number {
  let h = Math.imul(vip, 0x9e3779b1) ^ Math.imul(pp, 0x85ebca6b);
  h ^= h >>> 15;
  return Math.imul(h, 0xc2b2ae35) ^ (h >>> 13);
}

/** The lookup arrays, built whole by compile() and put in place by one assignment. */
interface Compiled {
  /** Open addressing: service index per slot, NIL when empty. */
  slots: Int32Array;
  vip: Int32Array;
  /** proto << 16 | port. */
  pp: Int32Array;
  backStart: Int32Array;
  backCount: Int32Array;
  random: Uint8Array;
  rr: Int32Array;
  /** Backends of all services, flattened (pick() gives an index into these). */
  backAddr: Int32Array;
  backPort: Uint16Array;
}

export class ServiceTable {
  private list: Service[] = [];
  private t: Compiled;

  constructor(services: Service[] = []) {
    services.forEach(checkService);
    const list = services.map(copyService);
    this.t = this.compile(list);
    this.list = list;
  }

  get size(): number {
    return this.list.length;
  }

  /** Replaces every service (a resync). */
  set(services: Service[]): void {
    services.forEach(checkService);
    this.rebuild(services.map(copyService));
  }

  /** Adds a service; its name and its (vip, proto, port) must be new. */
  add(s: Service): void {
    checkService(s);
    if (this.indexOf(s.name) >= 0) throw new Error(`service ${s.name} already exists`);
    this.rebuild([...this.list, copyService(s)]);
  }

  /** Replaces the backends of service `name` (an endpoints update). */
  setBackends(name: string, backends: Backend[]): void {
    const i = this.indexOf(name);
    if (i < 0) throw new Error(`no service ${name}`);
    checkBackends(name, backends);
    const next = this.list.slice();
    next[i] = { ...next[i], backends: backends.map((b) => ({ addr: b.addr, port: b.port })) };
    this.rebuild(next);
  }

  /** Removes service `name`; false when there is none. */
  delete(name: string): boolean {
    const i = this.indexOf(name);
    if (i < 0) return false;
    this.rebuild(this.list.filter((_, k) => k !== i));
    return true;
  }

  /** Copies of the services, in table order. */
  services(): Service[] {
    return this.list.map(copyService);
  }

  private indexOf(name: string): number {
    return this.list.findIndex((s) => s.name === name);
  }

  private rebuild(services: Service[]): void {
    this.t = this.compile(services);
    this.list = services;
  }

  /** Checks that names and (vip, proto, port) are unique and builds the arrays. */
  private compile(services: Service[]): Compiled {
    const n = services.length;
    const names = new Set<string>();
    const keys = new Set<string>();
    let nb = 0;
    for (const s of services) {
      if (names.has(s.name)) throw new Error(`service ${s.name} is defined twice`);
      names.add(s.name);
      const key = `${s.proto}/${s.vip >>> 0}/${s.port}`;
      if (keys.has(key)) throw new Error(`service ${s.name}: ${ipToString(s.vip >>> 0)}:${s.port}/${s.proto} is defined twice`);
      keys.add(key);
      nb += s.backends.length;
    }
    let size = 8;
    while (size < 2 * n) size <<= 1;
    const t: Compiled = {
      slots: new Int32Array(size).fill(NIL),
      vip: Int32Array.from(services, (s) => s.vip | 0),
      pp: Int32Array.from(services, (s) => (s.proto << 16) | s.port),
      backStart: new Int32Array(n),
      backCount: Int32Array.from(services, (s) => s.backends.length),
      random: Uint8Array.from(services, (s) => (s.algorithm === "random" ? 1 : 0)),
      rr: new Int32Array(n),
      backAddr: new Int32Array(nb),
      backPort: new Uint16Array(nb),
    };
    let k = 0;
    services.forEach((s, i) => {
      t.backStart[i] = k;
      // Round robin goes on where it was for a service that stays.
      const before = this.indexOf(s.name);
      if (before >= 0 && t.backCount[i] > 0) t.rr[i] = this.t.rr[before] % t.backCount[i];
      for (const b of s.backends) {
        t.backAddr[k] = b.addr | 0;
        t.backPort[k] = b.port;
        k++;
      }
      let h = hashOf(t.vip[i], t.pp[i]) & (size - 1);
      while (t.slots[h] !== NIL) h = (h + 1) & (size - 1);
      t.slots[h] = i;
    });
    return t;
  }

  /** Service index for (proto, vip, port), or -1. `vip` as int32 bits or uint32. */
  find(proto: number, vip: number, port: number): number {
    const t = this.t;
    vip |= 0;
    const pp = (proto << 16) | port;
    const mask = t.slots.length - 1;
    let h = hashOf(vip, pp) & mask;
    for (;;) {
      const s = t.slots[h];
      if (s === NIL) return NIL;
      if (t.vip[s] === vip && t.pp[s] === pp) return s;
      h = (h + 1) & mask;
    }
  }

  backendCount(s: number): number {
    return this.t.backCount[s];
  }

  /** A backend of service `s` (which has some) for a new connection: an index for backendAddr/backendPort. */
  pick(s: number, rng: () => number): number {
    const t = this.t;
    const n = t.backCount[s];
    let k: number;
    if (t.random[s] === 1) {
      k = Math.floor(rng() * n);
      if (!(k >= 0 && k < n)) k = 0;
    } else {
      k = t.rr[s];
      t.rr[s] = k + 1 === n ? 0 : k + 1;
    }
    return t.backStart[s] + k;
  }

  /** Backend `b`'s address (int32 bits). */
  backendAddr(b: number): number {
    return this.t.backAddr[b];
  }

  backendPort(b: number): number {
    return this.t.backPort[b];
  }

  /** The services with their live connections per backend (`show services`). */
  views(ct: ConnTrack, now: number): ServiceView[] {
    const counts = this.list.map((s) => new Array<number>(s.backends.length).fill(0));
    ct.forEachLive(now, (e) => {
      if ((ct.status[e] & CT_DNAT) === 0) return;
      const o = 2 * e;
      const s = this.find(ct.proto[e], ct.tDst[o], ct.tDport[o]);
      if (s < 0) return;
      const r = o + 1;
      const t = this.t;
      for (let k = 0; k < t.backCount[s]; k++) {
        const b = t.backStart[s] + k;
        if (t.backAddr[b] === ct.tSrc[r] && t.backPort[b] === ct.tSport[r]) {
          counts[s][k]++;
          break;
        }
      }
    });
    return this.list.map((s, i) => ({
      name: s.name,
      vip: ipToString(s.vip >>> 0),
      proto: s.proto === 6 ? ("tcp" as const) : ("udp" as const),
      port: s.port,
      backends: s.backends.map((b) => `${ipToString(b.addr >>> 0)}:${b.port}`),
      algorithm: s.algorithm,
      connections: counts[i],
    }));
  }
}
