/**
 * 802.1D spanning tree between tapnet switches, on a simulated network with a virtual
 * clock (stp-sim.ts): root election, port roles, the one blocked port of a loop,
 * failover when the active link is cut (message age, then listening and learning),
 * topology change (TCN, TC, fast ageing), root failure, a loop without STP, BPDU
 * validation, and the frame ledgers of the switch and the tree.
 */
import { describe, expect, it } from "vitest";
import { SWITCH_COUNTERS } from "../../src/elements/switch-counters.js";
import { STP_COUNTERS } from "../../src/elements/stp.js";
import { showStp } from "../../src/elements/stp-view.js";
import { emitBpdu, parseBpdu, BPDU_TYPE_CONFIG, BPDU_TYPE_TCN } from "../../src/wire/bpdu.js";
import { SimNet, type SimBridge } from "./stp-sim.js";

const BCAST = "ffffffffffff";
const frame = (dst: string, src: string): Buffer => Buffer.from(`${dst}${src}0800${"00".repeat(46)}`, "hex");

/** Triangle: a (root, 4096) b (32768) c (8192); hosts ha, hb, hc. */
function triangle(): SimNet {
  const net = new SimNet();
  net.add({ name: "a", priority: 4096, ports: ["ha", "b", "c"] });
  net.add({ name: "b", priority: 32768, ports: ["hb", "a", "c"] });
  net.add({ name: "c", priority: 8192, ports: ["hc", "a", "b"] });
  net.cable("a", "b");
  net.cable("a", "c");
  net.cable("b", "c");
  return net;
}

function roles(b: SimBridge): Record<string, string> {
  return Object.fromEntries(showStp(b.stp, 0).ports.map((p) => [p.name, `${p.role}/${p.state}`]));
}

function blocked(net: SimNet): string[] {
  const out: string[] = [];
  for (const b of Object.values(net.bridges))
    for (const p of showStp(b.stp, 0).ports) if (p.state !== "forwarding") out.push(`${b.spec.name}/${p.name}:${p.state}`);
  return out.sort();
}

/** Switch and STP ledgers: frames in = terminal counters; BPDUs handed over = STP's terminal counters. */
function ledgers(b: SimBridge): void {
  const c = b.sw.counters() as Record<string, number>;
  let rx = 0;
  for (const p of b.graph.engine.ports) rx += p.rxFrames;
  const terminal = SWITCH_COUNTERS.names.filter((n) => SWITCH_COUNTERS.decls[n].kind !== "event");
  expect(terminal.reduce((s, n) => s + c[n], 0)).toBe(rx);
  const s = b.stp.counters() as Record<string, number>;
  const st = STP_COUNTERS.names.filter((n) => STP_COUNTERS.decls[n].kind !== "event");
  expect(st.reduce((sum, n) => sum + s[n], 0)).toBe(c.bpdu);
}

describe("spanning tree (802.1D) between tapnet switches", () => {
  it("elects the lowest bridge id as root and blocks exactly one port of a triangle", () => {
    const net = triangle();
    net.tick();
    // Before forward delay twice over, nothing forwards but BPDUs go round.
    expect(blocked(net).length).toBe(9);
    net.run(4500);
    const [a, b, c] = ["a", "b", "c"].map((n) => net.bridges[n]);
    for (const x of [a, b, c]) expect(showStp(x.stp, 0).rootId).toBe(showStp(a.stp, 0).bridgeId);
    expect(showStp(a.stp, 0).isRoot).toBe(true);
    expect(roles(a)).toEqual({ ha: "designated/forwarding", b: "designated/forwarding", c: "designated/forwarding" });
    expect(roles(c)).toEqual({ hc: "designated/forwarding", a: "root/forwarding", b: "designated/forwarding" });
    // On the b-c link c (8192) is designated: b's port there is the one blocked port.
    expect(roles(b)).toEqual({ hb: "designated/forwarding", a: "root/forwarding", c: "alternate/blocking" });
    expect(blocked(net)).toEqual(["b/c:blocking"]);
    expect(showStp(b.stp, 0).rootPathCost).toBe(2);
    // The root sends one config BPDU per hello out of each designated port; b's blocked port sends none.
    const txBefore = showStp(b.stp, 0).ports.find((p) => p.name === "c")?.tx;
    net.run(3000);
    expect(showStp(b.stp, 0).ports.find((p) => p.name === "c")?.tx).toBe(txBefore);
    for (const x of [a, b, c]) ledgers(x);
  });

  it("delivers a broadcast to every host exactly once over the tree, and unicast after learning", () => {
    const net = triangle();
    net.run(5000);
    net.take("b", "hb");
    net.take("c", "hc");
    net.bridges.a.ports.ha.inject([frame(BCAST, "020000000a0a")]);
    net.carry();
    expect(net.saturated).toBe(0);
    expect(net.take("b", "hb").length).toBe(1);
    expect(net.take("c", "hc").length).toBe(1);
    expect(net.take("a", "ha").length).toBe(0);
    // hc answers by unicast: it reaches ha only, by the tree (learned on the way).
    net.bridges.c.ports.hc.inject([frame("020000000a0a", "020000000c0c")]);
    net.carry();
    expect(net.take("a", "ha").length).toBe(1);
    expect(net.take("b", "hb").length).toBe(0);
    for (const x of Object.values(net.bridges)) ledgers(x);
  });

  it("without spanning tree one broadcast circulates the loop for ever", () => {
    const net = new SimNet();
    net.add({ name: "a", priority: 0, ports: ["ha", "b", "c"], stp: false });
    net.add({ name: "b", priority: 0, ports: ["hb", "a", "c"], stp: false });
    net.add({ name: "c", priority: 0, ports: ["hc", "a", "b"], stp: false });
    net.cable("a", "b");
    net.cable("a", "c");
    net.cable("b", "c");
    net.bridges.a.ports.ha.inject([frame(BCAST, "020000000a0a")]);
    net.carry(50);
    expect(net.saturated).toBe(1);
    // Two copies chase each other round the triangle; every round reaches the hosts again.
    expect(net.take("b", "hb").length).toBeGreaterThan(20);
    expect(net.bridges.a.sw.counters().flooded).toBeGreaterThan(20);
  });

  it("fails over within max age + 2 forward delays when the active link is cut, with a topology change", () => {
    const net = triangle();
    net.run(5000);
    const [a, b, c] = ["a", "b", "c"].map((n) => net.bridges[n]);
    expect(blocked(net)).toEqual(["b/c:blocking"]);
    // Cut a-c: c loses its root port's BPDUs (no carrier seen: only message age tells).
    net.cables.find((x) => x.a === a && x.b === c)!.up = false;
    const t0 = net.t;
    let failover = -1;
    let tcSeen = false;
    while (net.t - t0 < 15_000) {
      net.run(100);
      if (b.stp.topologyChange) tcSeen = true;
      if (roles(b).c === "designated/forwarding" || roles(b).c === "root/forwarding") {
        if (failover < 0 && roles(c).b === "root/forwarding") failover = net.t - t0;
      }
      if (failover >= 0) break;
    }
    // Max age (6 s) then listening and learning (2 s each), within a tick or two.
    // (Max age counts from the last BPDU heard, up to a hello time before the cut.)
    expect(failover).toBeGreaterThanOrEqual(6000 - 1000 + 4000 - 200);
    expect(failover).toBeLessThanOrEqual(6000 + 4000 + 500);
    expect(roles(c)).toEqual({ hc: "designated/forwarding", a: "designated/forwarding", b: "root/forwarding" });
    expect(showStp(c.stp, 0).rootPathCost).toBe(4);
    // The root learns of the change (TCN) and sets TC: b and c age entries in forward delay.
    net.run(500);
    expect(tcSeen || b.stp.topologyChange).toBe(true);
    expect(b.sw.ageingMs).toBe(2000);
    net.bridges.a.ports.ha.inject([frame(BCAST, "020000000a0a")]);
    net.carry();
    net.take("b", "hb");
    expect(net.take("c", "hc").length).toBeGreaterThanOrEqual(1);
    // TC lasts max age + forward delay at the root (from the last change it heard of), and
    // reaches b with the root's next BPDU; then ageing is back to 300 s.
    const t1 = net.t;
    while (b.stp.topologyChange && net.t - t1 < 15_000) net.run(100);
    expect(b.stp.topologyChange).toBe(false);
    expect(net.t - t1).toBeLessThanOrEqual(6000 + 2000 + 2 * 1000 + 500);
    expect(b.sw.ageingMs).toBe(300_000);
    expect(c.stp.counters().tcn + b.stp.counters().tcn + a.stp.counters().tcn).toBeGreaterThanOrEqual(1);
    // The link comes back: the tree returns to one blocked port, b's towards c.
    net.cables.find((x) => x.a === a && x.b === c)!.up = true;
    net.run(6000);
    expect(blocked(net)).toEqual(["b/c:blocking"]);
    for (const x of [a, b, c]) ledgers(x);
  });

  it("elects a new root when the root goes away", () => {
    const net = triangle();
    net.run(5000);
    for (const x of net.cables) if (x.a.spec.name === "a") x.up = false;
    net.run(12_000);
    const [b, c] = [net.bridges.b, net.bridges.c];
    expect(showStp(b.stp, 0).rootId).toBe(showStp(c.stp, 0).bridgeId);
    expect(showStp(c.stp, 0).isRoot).toBe(true);
    expect(roles(b).c).toBe("root/forwarding");
  });

  it("ignores RST BPDUs and its own looped BPDU, counts malformed ones, drops BPDUs as link-local while off", () => {
    const net = new SimNet();
    const a = net.add({ name: "a", priority: 4096, ports: ["p1", "p2"] });
    net.tick();
    const own = net.take("a", "p1", true).find((f) => parseBpdu(f, 0, f.length)?.type === BPDU_TYPE_CONFIG) as Buffer;
    expect(own).toBeDefined();
    const cfg = parseBpdu(own, 0, own.length)!;
    expect(cfg).toMatchObject({ rootPriority: 4096, bridgePriority: 4096, rootPathCost: 0, maxAge: 6, helloTime: 1, forwardDelay: 2, tc: false });
    expect(own.length).toBe(60);
    a.ports.p1.inject([own]); // its own, back on the port that sent it
    const rst = Buffer.from(own);
    rst[17 + 2] = 2;
    rst[17 + 3] = 2; // RST BPDU type
    rst[13] = 39; // length: LLC + 36
    a.ports.p1.inject([rst]);
    const short = Buffer.from(own.subarray(0, 30));
    a.ports.p2.inject([short]);
    const old = Buffer.from(own);
    old.writeUInt16BE(6 * 256, 17 + 27); // message age = max age
    a.ports.p2.inject([old]);
    const s = a.stp.counters();
    expect(s.ignored).toBe(2);
    expect(s.malformed).toBe(2);
    expect(a.sw.counters().bpdu).toBe(4);
    ledgers(a);
    // A TCN on a designated port is acknowledged (TCA) in the next config BPDU.
    const tcn = Buffer.alloc(60);
    emitBpdu({ ...cfg, type: BPDU_TYPE_TCN, src: 0x020000000099 }, tcn, 0);
    net.take("a", "p2", true);
    net.t += 1500;
    a.ports.p2.inject([tcn]);
    const reply = net
      .take("a", "p2", true)
      .map((f) => parseBpdu(f, 0, f.length))
      .find((x) => x?.type === BPDU_TYPE_CONFIG);
    expect(reply).toMatchObject({ tca: true, tc: true });
    // STP off: every port forwards; a BPDU is a link-local frame like any other.
    a.graph.engine.runPass((_p, now) => a.stp.setEnabled(false, now));
    expect(a.sw.guards.portGate(a.ports.p1.index)).toBe("forwarding");
    const ll = a.sw.counters().linkLocal;
    a.ports.p1.inject([own]);
    expect(a.sw.counters().linkLocal).toBe(ll + 1);
    a.graph.engine.runPass((_p, now) => a.stp.setEnabled(true, now));
    expect(a.sw.guards.portGate(a.ports.p1.index)).toBe("discarding");
  });

  it("ports added and removed while the node runs join and leave the tree; a port set down is a link gone", () => {
    const net = triangle();
    net.run(5000);
    const a = net.bridges.a;
    const p = a.graph.addPort({ name: "hx", kind: "tap", ifname: "hx", vlan: { mode: "access", vlan: 1 }, stp: { cost: 7 } });
    expect(showStp(a.stp, 0).ports.find((x) => x.name === "hx")).toMatchObject({ role: "designated", state: "listening", cost: 7 });
    expect(a.sw.guards.portGate(p.index)).toBe("discarding");
    net.run(4100);
    expect(roles(a).hx).toBe("designated/forwarding");
    a.graph.removePort("hx");
    expect(showStp(a.stp, 0).ports.map((x) => x.name)).toEqual(["ha", "b", "c"]);
    // a's port to c goes down: for the tree a link gone (disabled at once on a's side, c
    // hears nothing more and fails over by message age).
    const c = net.bridges.c;
    a.graph.setPortUp(a.ports.c, false);
    expect(roles(a).c).toBe("disabled/disabled");
    net.run(10_500);
    expect(roles(c).b).toBe("root/forwarding");
    expect(roles(net.bridges.b).c).toBe("designated/forwarding");
    a.graph.setPortUp(a.ports.c, true);
    net.run(6000);
    expect(blocked(net)).toEqual(["b/c:blocking"]);
  });

  it("takes ports added at run time and forgets a reset port", () => {
    const net = triangle();
    net.run(5000);
    const a = net.bridges.a;
    a.graph.engine.runPass((_p, now) => a.sw.guards.resetPort(a.ports.ha.index, now));
    expect(showStp(a.stp, 0).ports.map((p) => p.name)).toEqual(["b", "c"]);
    expect(a.sw.guards.portGate(a.ports.ha.index)).toBe("forwarding");
    a.graph.engine.runPass((_p, now) => a.stp.addPort(a.ports.ha.index, { cost: 100, priority: 32 }, now));
    const ha = showStp(a.stp, 0).ports.find((p) => p.name === "ha");
    expect(ha).toMatchObject({ role: "designated", state: "listening", cost: 100, priority: 32, portId: "2.001" });
    net.run(4100);
    expect(roles(a).ha).toBe("designated/forwarding");
  });
});
