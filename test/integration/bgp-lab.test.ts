/**
 * Calico's BGP mode against a real peer: the calico-bgp lab (three tapnet nodes in an
 * iBGP full mesh, BIRD 2 on the underlay router peer1). Both sides must agree the
 * sessions are up, routes must flow both ways into forwarding tables and carry pings, a
 * route BIRD withdraws must leave tapnet's FIB, and a hand-made peer
 * (bgp-craft.py) sends malformed UPDATEs that must get RFC 4271 / RFC 7606 treatment
 * while the node keeps running.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, ROOT, background, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor } from "./harness.js";

const LAB = "calico-bgp";
const FILE = path.join(ROOT, "scripts/labs/calico-bgp.yaml");
const CTL = `/run/tapnet/${LAB}/peer1.bird.ctl`;
const ns = (n: string): string => `tn.${LAB}.${n}`;

interface PeerView {
  name: string;
  address: string;
  state: string;
  received: number;
  accepted: number;
  treatAsWithdraw: number;
  lastError: string | null;
  lastUpdateError: string | null;
}
interface BgpView {
  peers: PeerView[];
}
interface RouteView {
  prefix: string;
  via: string | null;
  dev: string;
  kind: string;
}

function birdc(...args: string[]): string {
  const r = inNs(ns("peer1"), ["birdc", "-s", CTL, ...args]);
  if (r.status !== 0) throw new Error(`birdc ${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}
const bgp = (node: string): BgpView => JSON.parse(tapnetOk(["show", "bgp", "--node", node, "--lab", LAB, "--json"])) as BgpView;
const peer = (node: string, name: string): PeerView | undefined => bgp(node).peers.find((p) => p.name === name);
const routes = (node: string): RouteView[] => JSON.parse(tapnetOk(["show", "route", "--node", node, "--lab", LAB, "--json"])) as RouteView[];
const route = (node: string, prefix: string): RouteView | undefined => routes(node).find((r) => r.prefix === prefix);
/** The PID of a node's process now (its supervisor restarts it when it dies). */
function nodePid(name: string): number | null {
  // lab status exits 1 while a node is down; its JSON still says which.
  const labs = JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{
    lab: string;
    nodes: Array<{ name: string; pid: number | null; running: boolean }>;
  }>;
  const n = labs.find((l) => l.lab === LAB)?.nodes.find((x) => x.name === name);
  return n?.running && n.pid !== null ? n.pid : null;
}
/** BIRD's state of protocol `name` ("Established", "Active", …): the Info column of `show protocols`. */
function birdState(name: string): string | undefined {
  const line = birdc("show", "protocols")
    .split("\n")
    .find((l) => l.startsWith(`${name} `));
  return line?.trim().split(/\s+/)[5];
}

describe.skipIf(!canRunLabs())("calico-bgp lab: tapnet's BGP speaker with BIRD as the peer", () => {
  let birdPid = 0;
  beforeAll(() => {
    tapnet(["lab", "down", FILE]);
    tapnetOk(["lab", "up", FILE, "-q"]);
    const st = JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/state.json`, "utf8")) as { daemons?: Record<string, { pid: number }> };
    birdPid = st.daemons?.peer1?.pid ?? 0;
  }, 180_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", FILE]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
    // lab down stopped BIRD by its PID and removed its socket with the lab's directory.
    expect(birdPid).toBeGreaterThan(0);
    expect(fs.existsSync(`/proc/${birdPid}/cmdline`) && fs.readFileSync(`/proc/${birdPid}/cmdline`, "utf8").includes("bird")).toBe(false);
    expect(fs.existsSync(CTL)).toBe(false);
  });

  it("sessions reach Established on both sides: birdc show protocols and tapnet show bgp", async () => {
    // Hold time 9 s, connect retry 2 s: the mesh settles within a few retries even on a loaded machine.
    for (const n of ["node1", "node2", "node3"]) {
      await waitFor(`BIRD's session with ${n} Established`, () => birdState(n) === "Established", 60_000, 200);
      await waitFor(
        `${n}'s sessions all Established`,
        () => {
          const ps = bgp(n).peers;
          return ps.length === 3 && ps.every((p) => p.state === "Established");
        },
        60_000,
        200,
      );
    }
    const node1 = bgp("node1")
      .peers.map((p) => `${p.name} ${p.address}`)
      .sort();
    expect(node1).toEqual(["node2 192.168.0.2", "node3 192.168.0.3", "peer1 192.168.0.10"]);
  }, 150_000);

  it("BIRD learns every node's pod block with the node as next hop", async () => {
    for (const [i, n] of ["node1", "node2", "node3"].entries()) {
      const out = await waitFor(
        `BIRD's route to 10.244.${i + 1}.0/24`,
        () => {
          const o = birdc("show", "route", `10.244.${i + 1}.0/24`);
          return o.includes(`via 192.168.0.${i + 1}`) ? o : false;
        },
        30_000,
        200,
      );
      expect(out, n).toContain(`[${n} `);
    }
  }, 60_000);

  it("BIRD's route and the other nodes' pod blocks are in tapnet's FIB (proto bgp) and carry pings", async () => {
    for (const [n, others] of [
      ["node1", [2, 3]],
      ["node2", [1, 3]],
      ["node3", [1, 2]],
    ] as const) {
      const r = await waitFor(`${n}: route to 10.250.0.0/24`, () => route(n, "10.250.0.0/24"), 30_000, 200);
      expect(r).toMatchObject({ via: "192.168.0.10", dev: "ul0", kind: "bgp" });
      for (const o of others) {
        const p = await waitFor(`${n}: route to 10.244.${o}.0/24`, () => route(n, `10.244.${o}.0/24`), 30_000, 200);
        expect(p).toMatchObject({ via: `192.168.0.${o}`, kind: "bgp" });
      }
    }
    // Pod to pod through two tapnet routers, and pod to BIRD's originated address.
    for (const [from, to] of [
      ["pod1a", "10.244.3.2"],
      ["pod3a", "10.244.2.2"],
      ["pod2a", "10.250.0.1"],
    ]) {
      const r = ping(ns(from), to, 2, ["-W", "3"]);
      expect(r.status, `${from} -> ${to}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 120_000);

  it("a route BIRD withdraws (its static protocol disabled) leaves tapnet's FIB, and returns", async () => {
    birdc("disable", "originated");
    try {
      for (const n of ["node1", "node2", "node3"]) await waitFor(`${n}: 10.250.0.0/24 withdrawn`, () => route(n, "10.250.0.0/24") === undefined, 30_000, 200);
      const r = ping(ns("pod1a"), "10.250.0.1", 1, ["-W", "2"]);
      expect(r.status).not.toBe(0);
    } finally {
      birdc("enable", "originated");
    }
    for (const n of ["node1", "node2", "node3"]) await waitFor(`${n}: 10.250.0.0/24 back`, () => route(n, "10.250.0.0/24"), 30_000, 200);
    // The sessions were not disturbed by it.
    expect(bgp("node1").peers.every((p) => p.state === "Established")).toBe(true);
  }, 120_000);

  it("a node that hangs (SIGSTOP) loses its sessions after the hold time and its pod block everywhere; back after SIGCONT", async () => {
    const pid = nodePid("node2") as number;
    const t0 = Date.now();
    process.kill(pid, "SIGSTOP");
    try {
      // Hold time 9 s (RFC 4271 §6.5): no KEEPALIVE from node2, so BIRD and node1 drop it.
      await waitFor("BIRD: node2's session down", () => birdState("node2") !== "Established", 40_000, 200);
      await waitFor("BIRD: 10.244.2.0/24 withdrawn", () => !birdc("show", "route").includes("10.244.2.0/24"), 20_000, 200);
      await waitFor("node1: 10.244.2.0/24 withdrawn", () => route("node1", "10.244.2.0/24") === undefined, 40_000, 200);
      // Not before the hold time: nothing else told them node2 was gone. The timer runs
      // from node2's last KEEPALIVE (every 3 s), up to 3 s before the stop: at least 6 s.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(5_500);
      const p = peer("node1", "node2") as PeerView;
      expect(p.state).not.toBe("Established");
      expect(p.lastError).toMatch(/hold/i);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await waitFor("BIRD: node2 Established again", () => birdState("node2") === "Established", 60_000, 200);
    await waitFor("node1: 10.244.2.0/24 back", () => route("node1", "10.244.2.0/24"), 60_000, 200);
    const r = ping(ns("pod1a"), "10.244.2.2", 2, ["-W", "3"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 180_000);

  it("a node killed with -9 is restarted by its supervisor; its sessions and pod block come back", async () => {
    const pid = nodePid("node2") as number;
    process.kill(pid, "SIGKILL");
    await waitFor(
      "node2 restarted",
      () => {
        const now = nodePid("node2");
        return now !== null && now !== pid;
      },
      30_000,
      100,
    );
    for (const n of ["node1", "node3"]) {
      await waitFor(`${n}: session with node2 Established again`, () => peer(n, "node2")?.state === "Established", 60_000, 200);
      await waitFor(`${n}: 10.244.2.0/24`, () => route(n, "10.244.2.0/24"), 30_000, 200);
    }
    await waitFor("BIRD: node2 Established", () => birdState("node2") === "Established", 60_000, 200);
    await waitFor("node2: all its sessions Established", () => bgp("node2").peers.every((p) => p.state === "Established"), 60_000, 200);
    await waitFor("node2: 10.250.0.0/24 learned again", () => route("node2", "10.250.0.0/24"), 30_000, 200);
    const r = ping(ns("pod3a"), "10.244.2.2", 2, ["-W", "3"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 180_000);

  describe("malformed UPDATEs from a crafted peer (BIRD's session with node3 disabled; the script speaks from peer1's address)", () => {
    let craft: Background | null = null;
    const start = async (): Promise<Background> => {
      const b = background(
        ns("peer1"),
        ["timeout", "-k", "2", "90", "python3", path.join(ROOT, "test/integration/bgp-craft.py"), "192.168.0.10", "192.168.0.3", "64512"],
        { stdin: true },
      );
      craft = b;
      await b.waitFor(/^established$/m, 60_000);
      await waitFor("node3's session with the crafted peer Established", () => peer("node3", "peer1")?.state === "Established", 30_000, 200);
      return b;
    };
    /** Sends one command and waits for the script to say it went out. */
    const send = async (b: Background, line: string): Promise<void> => {
      const n = (b.out().match(/^sent /gm) ?? []).length;
      b.send(`${line}\n`);
      await waitFor(`crafted peer sent '${line}'`, () => (b.out().match(/^sent /gm) ?? []).length > n, 15_000, 20);
    };

    beforeAll(async () => {
      birdc("disable", "node3");
      await waitFor("node3's session with BIRD down", () => peer("node3", "peer1")?.state !== "Established", 30_000, 200);
    }, 60_000);
    afterAll(async () => {
      if (craft?.running()) await craft.stop();
      birdc("enable", "node3");
      await waitFor("BIRD's session with node3 back", () => birdState("node3") === "Established", 60_000, 200);
    }, 90_000);

    it("a good UPDATE installs; one whose attribute overruns the list is treat-as-withdraw (RFC 7606 §4), session kept", async () => {
      const b = await start();
      await send(b, "good 10.251.0.0/24");
      const r = await waitFor("node3: 10.251.0.0/24 from the crafted peer", () => route("node3", "10.251.0.0/24"), 20_000, 100);
      expect(r).toMatchObject({ via: "192.168.0.10", kind: "bgp" });

      const before = peer("node3", "peer1") as PeerView;
      await send(b, "badlen 10.251.0.0/24");
      await waitFor("node3: 10.251.0.0/24 withdrawn by treat-as-withdraw", () => route("node3", "10.251.0.0/24") === undefined, 20_000, 100);
      const after = peer("node3", "peer1") as PeerView;
      expect(after.state).toBe("Established");
      expect(after.treatAsWithdraw).toBe(before.treatAsWithdraw + 1);
      expect(after.lastUpdateError).toMatch(/treat-as-withdraw \(3\//);
      expect(b.out()).not.toMatch(/notification|closed/);
    }, 120_000);

    it("an AS_PATH with our own AS is a loop: not used (RFC 4271 §9.1.2), session kept", async () => {
      const b = craft as unknown as Background;
      await send(b, "loop 10.252.0.0/24");
      // A good UPDATE after it on the same TCP stream: once it is in, the loop was handled.
      await send(b, "good 10.253.0.0/24");
      await waitFor("node3: 10.253.0.0/24", () => route("node3", "10.253.0.0/24"), 20_000, 100);
      expect(route("node3", "10.252.0.0/24")).toBeUndefined();
      const loop = JSON.parse(tapnetOk(["show", "bgp", "--node", "node3", "--lab", LAB, "--json"])) as BgpView;
      expect(loop.peers.find((p) => p.name === "peer1")?.state).toBe("Established");
    }, 60_000);

    it("an unrecognized well-known attribute gets NOTIFICATION 3/2 (RFC 4271 §6.3); routes withdrawn, node keeps running", async () => {
      const b = craft as unknown as Background;
      b.send("wellknown 10.254.0.0/24\n");
      await b.waitFor(/^notification 3\/2$/m, 20_000);
      await b.waitFor(/^closed$/m, 20_000);
      await b.exited;
      // The session's routes go with it (RFC 4271 §8.2.2, on leaving Established).
      await waitFor("node3: 10.253.0.0/24 withdrawn with the session", () => route("node3", "10.253.0.0/24") === undefined, 20_000, 100);
      expect(route("node3", "10.254.0.0/24")).toBeUndefined();
      const p = peer("node3", "peer1") as PeerView;
      expect(p.state).not.toBe("Established");
      expect(p.lastError).toMatch(/3\/2|well-known/);
      // The node is alive and its mesh untouched: pods still ping across it.
      expect(
        bgp("node3")
          .peers.filter((x) => x.name !== "peer1")
          .every((x) => x.state === "Established"),
      ).toBe(true);
      const r = ping(ns("pod3a"), "10.244.1.2", 2, ["-W", "3"]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }, 90_000);
  });
});
