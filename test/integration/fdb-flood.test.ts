/**
 * A MAC flood against the learning switch (the default 8192-entry table), on a lab of
 * its own:
 *   sw1: h1 (the flooder) h2 h3 h4, TAP hosts
 * h1 sends 100,000 frames with random source MACs (trafgen, bounded by count and
 * timeout). The table fills within the first 8192; from then on each new MAC evicts h1's
 * own least recently seen entry. Afterwards h2 and h3 are still known, a station never
 * seen before (h4 with a new MAC) is learned at its first frame, and unicast to and from
 * it is not flooded: neither the third host (h3) nor the flooder (h1) sees any of it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canRunLabs, inNs, macOf, netnsList, ping, sendRaw, sleep, tapnet, tapnetOk, tcpdump, writeLabFile } from "./harness.js";

const LAB = "tfdb";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  sw1: {}
hosts:
  h1: { node: sw1, ip: 10.0.0.1/24 }
  h2: { node: sw1, ip: 10.0.0.2/24 }
  h3: { node: sw1, ip: 10.0.0.3/24 }
  h4: { node: sw1, ip: 10.0.0.4/24 }
`,
);
const FLOOD = 100_000;
/** The node's maxEntries (the topology's default). */
const MAX_ENTRIES = 8192;

interface FdbRow {
  mac: string;
  vlan: number;
  port: string;
  static: boolean;
}
interface PortRow {
  name: string;
  rxFrames: number;
  rxDrops: number;
}
type Stats = { switch: Record<string, number>; fdbEntries: number; engine: { internalErrors: number } };

const show = <T>(what: string): T => JSON.parse(tapnetOk(["show", what, "--node", "sw1", "--lab", LAB, "--json"])) as T;
const fdb = (): FdbRow[] => show<FdbRow[]>("fdb");
const stats = (): Stats => show<Stats>("stats");
const port = (name: string): PortRow => {
  const p = show<PortRow[]>("ports").find((x) => x.name === name);
  if (!p) throw new Error(`no port ${name}`);
  return p;
};

/** Frames the kernel handed over from `ns`'s eth0 (a TAP: counted when the switch reads them). */
function txPackets(n: string): number {
  const r = inNs(n, ["ip", "-s", "-j", "link", "show", "dev", "eth0"]);
  if (r.status !== 0) throw new Error(`ip -s link in ${n}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ stats64: { tx: { packets: number } } }>)[0].stats64.tx.packets;
}

/** Polls `f` until it gives something truthy, for at most `ms`. */
async function until<T>(what: string, f: () => T | undefined | false, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const hex = (mac: string): string => mac.replace(/:/g, "");

describe.skipIf(!canRunLabs())("FDB lab: a MAC flood from one port leaves the table useful", () => {
  const cfg = path.join(os.tmpdir(), `tn-fdb-flood-${process.pid}.cfg`);
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    fs.rmSync(cfg, { force: true });
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("after 100,000 random source MACs from h1, a new station is learned at its first frame and its unicast is not flooded", async () => {
    // h2 and h3 known before the flood.
    expect(ping(ns("h2"), "10.0.0.3", 1).status).toBe(0);
    const h2 = macOf(ns("h2"));
    const h3 = macOf(ns("h3"));
    const before = fdb();
    expect(
      before
        .filter((r) => r.mac === h2 || r.mac === h3)
        .map((r) => r.port)
        .sort(),
    ).toEqual(["h2", "h3"]);
    const others = before.filter((r) => r.port !== "h1").map((r) => `${r.mac} ${r.port}`);
    const s0 = stats();

    // The flood: locally administered unicast sources 06:xx:xx:xx:xx:xx (5 random bytes
    // each), to an unknown unicast MAC (flooded to h2-h4, whose stacks drop it), with
    // the IEEE local experimental EtherType.
    fs.writeFileSync(
      cfg,
      `{
  0x02, 0xff, 0xff, 0xff, 0xff, 0xfe,
  0x06, drnd(5),
  c16(0x88b5),
  fill(0x00, 46)
}
`,
    );
    const h1Tx0 = txPackets(ns("h1"));
    const tg = inNs(
      ns("h1"),
      [
        "timeout",
        "-k",
        "2",
        "60",
        "trafgen",
        "--dev",
        "eth0",
        "--conf",
        cfg,
        "--num",
        String(FLOOD),
        "--cpus",
        "1",
        "--no-sock-mem",
        "--notouch-irq",
        "--no-cpu-stats",
      ],
      70_000,
    );
    expect(tg.status, `trafgen: ${tg.stdout}${tg.stderr}`).toBe(0);
    // The flood is over when the switch has read everything h1's eth0 handed over (a TAP
    // counts a frame sent when the switch reads it). Nearly all of the flood, at least:
    // a frame the TAP's full queue refused may be lost, which is not the switch's doing.
    const h1Tx = txPackets(ns("h1"));
    const sent = h1Tx - h1Tx0;
    expect(sent).toBeGreaterThanOrEqual(0.9 * FLOOD);
    await until(
      "the switch to read all of h1's frames",
      () => {
        const p = port("h1");
        return p.rxFrames >= h1Tx;
      },
      30_000,
    );
    const s1 = stats();
    const learned = s1.switch.learned - s0.switch.learned;
    const evicted = s1.switch.evicted - s0.switch.evicted;
    // Every flood frame carried a new MAC (2^40 of them: repeats are vanishingly rare),
    // and each was learned: none was refused for a full table.
    expect(learned).toBeGreaterThanOrEqual(sent - 10);
    // The table was full once the room left before the flood was used; every later new
    // MAC evicted an entry (nothing ages within the 300 s ageing time).
    expect(evicted).toBe(learned - (MAX_ENTRIES - s0.fdbEntries));
    expect(s1.switch.macLimit).toBe(0);
    expect(s1.fdbEntries).toBe(MAX_ENTRIES);
    expect(s1.engine.internalErrors).toBe(0);
    // The other ports' stations (h2, h3 and any other) survived: the evictions came from
    // h1's port, which held the most.
    const rows = fdb();
    const othersAfter = rows.filter((r) => r.port !== "h1").map((r) => `${r.mac} ${r.port}`);
    expect(othersAfter).toEqual(expect.arrayContaining(others));
    expect(rows.filter((r) => r.port === "h1").length).toBe(MAX_ENTRIES - othersAfter.length);
    expect(tapnetOk(["show", "stats", "--node", "sw1", "--lab", LAB])).toMatch(new RegExp(`switch\\.evicted\\s+${s1.switch.evicted}\\b`));

    // A station never seen: h4 with a new MAC. One frame from it (to h2, known).
    const fresh =
      "02:5e:" +
      Array.from({ length: 4 }, () =>
        Math.floor(Math.random() * 256)
          .toString(16)
          .padStart(2, "0"),
      ).join(":");
    expect(inNs(ns("h4"), ["ip", "link", "set", "dev", "eth0", "address", fresh]).status).toBe(0);
    expect(macOf(ns("h4"))).toBe(fresh);
    expect(fdb().some((r) => r.mac === fresh)).toBe(false);
    const h4Rx0 = port("h4").rxFrames;
    expect(sendRaw(ns("h4"), "eth0", [`${hex(h2)}${hex(fresh)}88b5${"00".repeat(46)}`]).status).toBe(0);
    const row = await until("h4's new MAC in show fdb", () => fdb().find((r) => r.mac === fresh), 5_000);
    expect(row).toMatchObject({ port: "h4", vlan: 1, static: false });
    // Learned from that one frame: the switch had read exactly one from h4.
    expect(port("h4").rxFrames - h4Rx0).toBe(1);
    const s2 = stats();
    expect(s2.switch.evicted).toBe(s1.switch.evicted + 1);
    expect(s2.switch.macLimit).toBe(0);

    // Its unicast with h2 (ping both ways; only h4's ARP request is broadcast) reaches
    // neither the third host nor the flooder.
    const capH3 = await tcpdump(ns("h3"), "eth0", ["ether", "host", fresh, "and", "not", "ether", "broadcast"]);
    const capH1 = await tcpdump(ns("h1"), "eth0", ["ether", "host", fresh, "and", "not", "ether", "broadcast"]);
    const r = ping(ns("h4"), "10.0.0.2", 5);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/5 received/);
    const r2 = ping(ns("h2"), "10.0.0.4", 2);
    expect(r2.status, r2.stdout + r2.stderr).toBe(0);
    // Prove both captures work: a frame from h4 that is flooded (unknown destination) shows on both.
    const flooded = stats().switch.flooded;
    expect(sendRaw(ns("h4"), "eth0", [`02fffffffffd${hex(fresh)}88b5${"00".repeat(46)}`]).status).toBe(0);
    await until("the probe frame to be flooded", () => stats().switch.flooded > flooded, 5_000);
    // One line per frame (tcpdump adds hex lines for an unknown EtherType).
    const frames = (lines: string[]): string[] => lines.filter((l) => !/^\s/.test(l));
    const lines3 = frames(await capH3.stop());
    const lines1 = frames(await capH1.stop());
    const probe = (l: string): boolean => l.includes("02:ff:ff:ff:ff:fd");
    expect(
      lines3.filter((l) => !probe(l)),
      lines3.join("\n"),
    ).toEqual([]);
    expect(
      lines1.filter((l) => !probe(l)),
      lines1.join("\n"),
    ).toEqual([]);
    expect(lines3.filter(probe).length).toBe(1);
    expect(lines1.filter(probe).length).toBe(1);
  });
});
