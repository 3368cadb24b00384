/**
 * scripts/labs/vlan.yaml: two switches, a trunk, VLANs 10 and 20 on one subnet. Run
 * twice: as shipped (TAP I/O with readv()/write()), and with `io: uring` on both
 * switches (native/uring.c), the same assertions on the same lab. Under TAPNET_IO=uring
 * (which makes io_uring the default) the first run names `io: rw` on both switches. The
 * uring run also sets `busyPoll: 200` on sw1 (native/busypoll.c): the setting reaches
 * that node only, and every ping of the file crosses it.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { ROOT, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, tcpdump, writeLabFile } from "./harness.js";

const shipped = path.join(ROOT, "scripts/labs/vlan.yaml");
const ns = (n: string): string => `tn.vlan.${n}`;

describe.skipIf(!canRunLabs()).each(["rw", "uring"] as const)("vlan.yaml: 802.1Q isolation across a trunk (TAP io %s)", (io) => {
  const asShipped = io === "rw" && ["", "rw"].includes(process.env.TAPNET_IO ?? "");
  const file = asShipped
    ? shipped
    : writeLabFile(
        `vlan-${io}`,
        fs
          .readFileSync(shipped, "utf8")
          .replace(/^ {2}(sw[12]): \{\}$/gm, `  $1: { io: ${io} }`)
          .replace(/^ {2}sw1: \{ io: uring \}$/m, "  sw1: { io: uring, busyPoll: 200 }"),
      );
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    if (file !== shipped) fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith("tn.vlan."))).toEqual([]);
  });

  it(`every TAP port of both switches uses ${io}, under the node's seccomp filter`, () => {
    if (file !== shipped) expect(fs.readFileSync(file, "utf8")).toMatch(new RegExp(`sw2: \\{ io: ${io} \\}`));
    for (const node of ["sw1", "sw2"]) {
      const ports = JSON.parse(tapnetOk(["show", "ports", "--node", node, "--lab", "vlan", "--json"])) as Array<{ kind: string; io?: string }>;
      const taps = ports.filter((p) => p.kind === "tap");
      expect(taps.length).toBeGreaterThanOrEqual(2);
      expect(taps.map((p) => p.io)).toEqual(taps.map(() => io));
      const st = JSON.parse(tapnetOk(["show", "status", "--node", node, "--lab", "vlan", "--json"])) as { sandbox: { seccomp: string } };
      expect(st.sandbox.seccomp).toBe("filter");
      const log = fs.readFileSync(`/run/tapnet/vlan/${node}.log`, "utf8");
      expect(log).not.toMatch(/io_uring unavailable/);
    }
  });

  it("h1 reaches h2 across the trunk, and the trunk carries tag 10", async () => {
    const trunk = await tcpdump(ns("sw1"), "sw2", ["-e"]);
    const r = ping(ns("h1"), "10.0.0.2", 3);
    const lines = await trunk.stop();
    expect(r.status, r.stdout).toBe(0);
    const tagged = lines.filter((l) => /vlan 10\b/.test(l));
    expect(tagged.length).toBeGreaterThan(0);
    expect(lines.some((l) => /vlan 20\b/.test(l))).toBe(false);
    expect(ping(ns("h3"), "10.0.0.4", 2).status).toBe(0);
  });

  it("h1 cannot reach h3 or h4, and h3 sees none of h1's broadcasts", async () => {
    inNs(ns("h1"), ["ip", "neigh", "flush", "dev", "eth0"]);
    const h3 = await tcpdump(ns("h3"), "eth0");
    const h4 = await tcpdump(ns("h4"), "eth0");
    const h2 = await tcpdump(ns("h2"), "eth0", ["arp"]);
    expect(ping(ns("h1"), "10.0.0.3", 2).status).not.toBe(0);
    expect(ping(ns("h1"), "10.0.0.4", 1).status).not.toBe(0);
    const seen3 = await h3.stop();
    const seen4 = await h4.stop();
    const seen2 = await h2.stop();
    expect(seen3.filter((l) => l.includes("10.0.0.1"))).toEqual([]);
    expect(seen4.filter((l) => l.includes("10.0.0.1"))).toEqual([]);
    // The same broadcasts did reach h2, in h1's VLAN, on the other switch.
    expect(seen2.some((l) => /who-has 10\.0\.0\.3 tell 10\.0\.0\.1/.test(l))).toBe(true);
  });

  it("show ports describes access and trunk ports", () => {
    const ports = JSON.parse(tapnetOk(["show", "ports", "--node", "sw1", "--lab", "vlan", "--json"])) as Array<{
      name: string;
      mode: string;
      pvid: number | null;
      tagged: number[];
    }>;
    expect(ports.find((p) => p.name === "h1")).toMatchObject({ mode: "access", pvid: 10 });
    expect(ports.find((p) => p.name === "h3")).toMatchObject({ mode: "access", pvid: 20 });
    expect(ports.find((p) => p.name === "sw2")).toMatchObject({ mode: "trunk", pvid: null, tagged: [10, 20] });
    const fdb = JSON.parse(tapnetOk(["show", "fdb", "--node", "sw2", "--lab", "vlan", "--json"])) as Array<{ vlan: number; port: string }>;
    // h1's MAC was learned on sw2 through the trunk, in VLAN 10 only.
    expect(fdb.some((e) => e.port === "sw1" && e.vlan === 10)).toBe(true);
    expect(fdb.filter((e) => e.vlan !== 10 && e.vlan !== 20)).toEqual([]);
  });

  // Only with io: uring (a registration, not a skip: the rw run has nothing to fall back from).
  if (io === "uring")
    it("a TAP added after the seccomp filter cannot set up io_uring: it uses read/write and the node's log says why", async () => {
      const socket = "/run/tapnet/vlan/sw1.sock";
      await request(socket, { cmd: "change", op: "port.add", args: { name: "h9", kind: "tap", vlan: 10 } });
      try {
        const ports = JSON.parse(tapnetOk(["show", "ports", "--node", "sw1", "--lab", "vlan", "--json"])) as Array<{ name: string; io?: string }>;
        expect(ports.find((p) => p.name === "h9")?.io).toBe("rw");
        expect(ports.find((p) => p.name === "h1")?.io).toBe("uring");
        const log = fs.readFileSync("/run/tapnet/vlan/sw1.log", "utf8");
        expect(log).toMatch(/port h9: io_uring unavailable \(io_uring_setup failed: Operation not permitted\); using read\/write/);
      } finally {
        await request(socket, { cmd: "change", op: "port.del", args: { name: "h9" } });
      }
    });

  it(`busyPoll reaches the node it is set on (${io === "uring" ? "sw1: 200 µs" : "none"}): pings cross it, and its batches open windows`, () => {
    if (io === "uring") expect(fs.readFileSync(file, "utf8")).toMatch(/sw1: \{ io: uring, busyPoll: 200 \}/);
    const r = ping(ns("h1"), "10.0.0.2", 3);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const node of ["sw1", "sw2"]) {
      const st = JSON.parse(tapnetOk(["show", "stats", "--node", node, "--lab", "vlan", "--json"])) as {
        engine: { busyPoll: { windowUs: number; windows: number; turns: number } };
      };
      const bp = st.engine.busyPoll;
      const text = tapnetOk(["show", "stats", "--node", node, "--lab", "vlan"]);
      if (io === "uring" && node === "sw1") {
        expect(bp.windowUs).toBe(200);
        expect(bp.windows).toBeGreaterThan(0);
        expect(bp.turns).toBeGreaterThan(0);
        expect(text).toMatch(/engine\.busyPoll\.windowUs\s+200\b/);
      } else {
        expect(bp).toMatchObject({ windowUs: 0, windows: 0, turns: 0 });
        expect(text).not.toMatch(/busyPoll/);
      }
    }
  });
});
