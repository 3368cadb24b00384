/**
 * Child process of test/io/ipip-port.test.ts: one "node" of the IPIP lab, run by the
 * test inside the node's network namespace (`ip netns exec`), transpiled with the
 * source tree into a temporary directory.
 *
 * An Engine with three ports: `tap` (a TAP the test moves into the pod's namespace),
 * `ipip` (the port under test) and `mem` (frames the test injects, sent straight
 * out of the IPIP port). The pipeline is a deliberately tiny router, enough to carry
 * real packets across the tunnel:
 *   tap  -> ARP request for the gateway: answered (and the pod's MAC learned);
 *           IPv4 to the gateway MAC for a remote pod subnet: TTL - 1, Ethernet
 *           rewritten to (ipipNeighbourMac(remote node), gateway MAC), out of ipip.
 *   ipip -> IPv4 for the local pod subnet: TTL - 1, Ethernet rewritten to (pod MAC,
 *           gateway MAC), out of the TAP.
 *   mem  -> out of ipip unchanged.
 * `inject` and `txAt` also report whether the queued frames (and the 12 bytes before
 * each) were left unchanged by the IPIP port's transmit (framesIntact).
 * Driven by JSON lines on stdin; exits when stdin closes.
 */
import { createInterface } from "node:readline";
import type { FrameList } from "../../src/core/batch.js";
import { Engine } from "../../src/core/engine.js";
import type { Port } from "../../src/core/port.js";
import { IpipPort, ipipNeighbourMac } from "../../src/io/ipip-port.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import { TapPort } from "../../src/io/tap-port.js";
import { ARP_OPER_REQUEST, arpCheck, arpGetOper, arpGetSha, arpGetSpa, arpGetTpa, emitArpReply } from "../../src/wire/arp.js";
import { ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethGetDstAddr, ethGetEtherType, ethSetDstAddr, ethSetSrcAddr } from "../../src/wire/ethernet.js";
import { ipInSubnet, parseCidr, parseIp } from "../../src/wire/ipv4addr.js";
import { ipv4DecrementTtl, ipv4GetDstAddr, ipv4GetTtl } from "../../src/wire/ipv4.js";
import { CHECK_OK } from "../../src/wire/reason.js";

export interface AgentConfig {
  tap: string;
  local: string;
  peers: string[];
  mtu: number;
  gwIp: string;
  gwMac: number;
  /** The local pod subnet, e.g. 10.244.1.0/24. */
  podNet: string;
  routes: Array<{ to: string; via: string }>;
}

const cfg = JSON.parse(process.argv[2]) as AgentConfig;
const out = (m: unknown): void => {
  process.stdout.write(`${JSON.stringify(m)}\n`);
};
process.on("uncaughtException", (e) => {
  process.stderr.write(`agent: ${e.stack ?? String(e)}\n`);
  process.exit(3);
});

const engine = new Engine();
const tap = new TapPort("tap", cfg.tap);
const ipip = new IpipPort("ipip", { localAddr: cfg.local, peers: cfg.peers, mac: cfg.gwMac, mtu: cfg.mtu });
const mem = new MemoryPort("mem");
engine.addPort(tap);
engine.addPort(ipip);
engine.addPort(mem);

const gwIp = parseIp(cfg.gwIp);
const gwMac = cfg.gwMac;
const pod = parseCidr(cfg.podNet);
const routes = cfg.routes.map((r) => {
  const c = parseCidr(r.to);
  return { net: c.network, mask: c.mask, nextHopMac: ipipNeighbourMac(parseIp(r.via)) };
});

const r = { arpAnswered: 0, toTunnel: 0, fromTunnel: 0, dropped: 0, podMac: 0 };
const ipipBatches = new Map<number, number>();
let lastFromTunnel = "";

function fromTap(pool: Buffer, off: number, len: number): void {
  const et = ethGetEtherType(pool, off);
  const l3 = off + ETH_HEADER_LEN;
  if (et === ETHERTYPE_ARP && arpCheck(pool, l3, len - ETH_HEADER_LEN) === CHECK_OK) {
    if (arpGetOper(pool, l3) === ARP_OPER_REQUEST && arpGetTpa(pool, l3) === gwIp) {
      const sha = arpGetSha(pool, l3);
      const spa = arpGetSpa(pool, l3);
      if (ipInSubnet(spa, pod.network, pod.mask)) r.podMac = sha;
      emitArpReply(pool, l3, gwMac, gwIp, sha, spa);
      ethSetDstAddr(pool, off, sha);
      ethSetSrcAddr(pool, off, gwMac);
      tap.txq.push(off, len);
      r.arpAnswered++;
      return;
    }
  } else if (et === ETHERTYPE_IPV4 && len >= ETH_HEADER_LEN + 20 && ethGetDstAddr(pool, off) === gwMac) {
    const dst = ipv4GetDstAddr(pool, l3);
    for (const rt of routes) {
      if (ipInSubnet(dst, rt.net, rt.mask) && ipv4GetTtl(pool, l3) > 1) {
        ipv4DecrementTtl(pool, l3);
        ethSetDstAddr(pool, off, rt.nextHopMac);
        ethSetSrcAddr(pool, off, gwMac);
        ipip.txq.push(off, len);
        r.toTunnel++;
        return;
      }
    }
  }
  r.dropped++;
}

let memSnaps: Array<{ pool: Buffer; from: number; to: number; bytes: Buffer }> = [];

function fromTunnel(pool: Buffer, off: number, len: number): void {
  lastFromTunnel = pool.toString("hex", off, off + ETH_HEADER_LEN);
  const l3 = off + ETH_HEADER_LEN;
  if (r.podMac !== 0 && ipInSubnet(ipv4GetDstAddr(pool, l3), pod.network, pod.mask) && ipv4GetTtl(pool, l3) > 1) {
    ipv4DecrementTtl(pool, l3);
    ethSetDstAddr(pool, off, r.podMac);
    ethSetSrcAddr(pool, off, gwMac);
    tap.txq.push(off, len);
    r.fromTunnel++;
    return;
  }
  r.dropped++;
}

const sink = {
  process(port: Port, frames: FrameList, pool: Buffer): void {
    if (port === ipip) ipipBatches.set(frames.count, (ipipBatches.get(frames.count) ?? 0) + 1);
    for (let i = 0; i < frames.count; i++) {
      const off = frames.offsets[i];
      const len = frames.lengths[i];
      if (port === tap) fromTap(pool, off, len);
      else if (port === ipip) fromTunnel(pool, off, len);
      else {
        memSnaps.push({ pool, from: off - 12, to: off + len, bytes: Buffer.from(pool.subarray(off - 12, off + len)) });
        ipip.txq.push(off, len);
      }
    }
  },
};
for (const p of engine.ports) engine.connect(p, sink);

function state(): Record<string, unknown> {
  return {
    kind: ipip.kind,
    isOpen: ipip.isOpen,
    info: ipip.info(),
    tunnelInfo: ipip.tunnelInfo(),
    ipip: { ...ipip.counters(), ...ipip.tunnelCounters() },
    lastTxError: ipip.lastTxError,
    lastRxError: ipip.lastRxError,
    rcvBuf: ipip.rcvBufEffective,
    tap: tap.counters(),
    router: { ...r },
    ipipBatches: Object.fromEntries(ipipBatches),
    underlay: ipip.underlayStats(),
    lastFromTunnel,
    passes: engine.passes,
    internalErrors: engine.internalErrors,
    lastError: engine.lastError,
  };
}

try {
  engine.start();
} catch (e) {
  out({ ready: false, error: String((e as Error).stack ?? e) });
  process.exit(2);
}
out({ ready: true, ...state() });

const rl = createInterface({ input: process.stdin });
rl.on("close", () => {
  engine.stop();
  process.exit(0);
});
rl.on("line", (line) => {
  const m = JSON.parse(line) as { id: number; op: string; frames?: string[]; at?: Array<{ hex: string; off: number }> };
  const reply = (x: Record<string, unknown>): void => out({ id: m.id, ok: true, ...x });
  try {
    switch (m.op) {
      case "state":
        return reply(state());
      case "inject": {
        // The frames in mem's slots, with the 12 bytes before each, as they were when
        // queued on the IPIP port: transmit() must leave them as it found them.
        memSnaps = [];
        mem.inject((m.frames ?? []).map((h) => Buffer.from(h, "hex")));
        const framesIntact = memSnaps.every((x) => x.pool.subarray(x.from, x.to).equals(x.bytes));
        memSnaps = [];
        return reply({ ...state(), framesIntact });
      }
      case "txAt": {
        // Frames placed at chosen pool offsets (the same offset may come twice) and
        // queued on the IPIP port in one pass: offsets below 6 leave no room in front.
        const at = m.at ?? [];
        const snaps: Array<{ from: number; bytes: Buffer }> = [];
        let poolRef = null as Buffer | null;
        engine.runPass((pool) => {
          poolRef = pool;
          for (const { hex, off } of at) {
            const f = Buffer.from(hex, "hex");
            f.copy(pool, off);
            const from = Math.max(0, off - 12);
            snaps.push({ from, bytes: Buffer.from(pool.subarray(from, off + f.length)) });
            ipip.txq.push(off, f.length);
          }
        });
        const pool = poolRef as Buffer | null;
        const framesIntact = pool !== null && snaps.every((x) => pool.subarray(x.from, x.from + x.bytes.length).equals(x.bytes));
        return reply({ ...state(), framesIntact });
      }
      case "close":
        ipip.close();
        ipip.close();
        return reply(state());
      case "exit":
        engine.stop();
        reply({});
        setTimeout(() => process.exit(0), 20);
        return;
      default:
        throw new Error(`unknown op ${m.op}`);
    }
  } catch (e) {
    out({ id: m.id, ok: false, error: String((e as Error).stack ?? e) });
  }
});
