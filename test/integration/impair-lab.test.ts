/**
 * Link impairments with the real tools, on one small lab (two hosts on one switch, the
 * third host's port impaired from the topology file): `link set h2 delay 50ms` raises
 * ping's RTT by 50 ± 10 ms over the RTT measured without it; `loss 20%` loses 10-30 % of
 * 500 pings; `rate 10mbit` holds iperf3's TCP within 10 % of 10 Mbit/s; `show ports`
 * shows each; a bad value is refused with the reason.
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canRunLabs, inNs, iperf, netnsList, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = `name: imp
nodes:
  sw1: {}
hosts:
  h1: { node: sw1, ip: 10.9.0.1/24 }
  h2: { node: sw1, ip: 10.9.0.2/24 }
  h3: { node: sw1, ip: 10.9.0.3/24, impair: { out: { delay: 30ms } } }
`;

const H1 = "tn.imp.h1";

/** Each reply's RTT (ms), pings every `interval` s. */
function rttList(dst: string, count: number, interval = "0.05"): number[] {
  const r = inNs(H1, ["timeout", "-k", "2", "60", "ping", "-n", "-c", String(count), "-i", interval, "-W", "2", dst], 70_000);
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function show(): Array<{ name: string; txDrops: number; impair: Record<string, Record<string, number | string>> | null }> {
  return JSON.parse(tapnetOk(["show", "ports", "--lab", "imp", "--json"])).sw1;
}

describe.skipIf(!canRunLabs())("link impairments", () => {
  const file = writeLabFile("imp", LAB);
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file], 120_000);
    if (up.status !== 0) throw new Error(up.stderr);
  });
  afterAll(() => {
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.imp."))).toEqual([]);
  });

  it("delay 50ms raises ping's RTT by 50 ± 10 ms; show ports says so; cleared, the RTT is back", () => {
    const base = median(rttList("10.9.0.2", 20));
    tapnetOk(["link", "set", "h2", "delay", "50ms", "--lab", "imp"]);
    const row = show().find((p) => p.name === "h2");
    expect(row?.impair?.out).toMatchObject({ text: "delay 50ms", delay: 50 });
    expect(tapnetOk(["show", "ports", "--lab", "imp"])).toMatch(/^h2 .* out: delay 50ms\s*$/m);
    const delayed = rttList("10.9.0.2", 20);
    expect(delayed.length).toBe(20);
    const added = median(delayed) - base;
    console.log(`delay 50ms: baseline median RTT ${base} ms, delayed median ${median(delayed)} ms, added ${added.toFixed(2)} ms`);
    expect(added).toBeGreaterThan(40);
    expect(added).toBeLessThan(60);
    tapnetOk(["link", "set", "h2", "clear", "--lab", "imp"]);
    expect(show().find((p) => p.name === "h2")?.impair).toBeNull();
    expect(median(rttList("10.9.0.2", 10))).toBeLessThan(base + 20);
    // The other direction: what the node receives from h2 (the echo replies) waits.
    tapnetOk(["link", "set", "h2", "dir", "in", "delay", "50ms", "--lab", "imp"]);
    expect(show().find((p) => p.name === "h2")?.impair?.in).toMatchObject({ delay: 50 });
    const addedIn = median(rttList("10.9.0.2", 10)) - base;
    console.log(`dir in delay 50ms: added ${addedIn.toFixed(2)} ms`);
    expect(addedIn).toBeGreaterThan(40);
    expect(addedIn).toBeLessThan(60);
    tapnetOk(["link", "set", "h2", "dir", "in", "clear", "--lab", "imp"]);
  });

  it("duplicate 100% doubles every echo request (ping counts the duplicated replies)", () => {
    tapnetOk(["link", "set", "h2", "duplicate", "100%", "--lab", "imp"]);
    const r = inNs(H1, ["timeout", "-k", "2", "20", "ping", "-n", "-q", "-c", "5", "-i", "0.1", "-W", "2", "10.9.0.2"], 30_000);
    // ping stops at the fifth reply: the fifth duplicate may come after it has gone.
    expect(r.stdout, r.stdout).toMatch(/5 received, \+[45] duplicates/);
    // Every frame to h2 was doubled: the five requests (and an ARP request, if h1 asked again).
    expect(Number(show().find((p) => p.name === "h2")?.impair?.out?.duplicated)).toBeGreaterThanOrEqual(5);
    tapnetOk(["link", "set", "h2", "clear", "--lab", "imp"]);
  });

  it("the topology's impairment is on h3's port from the start (30 ms towards h3)", () => {
    expect(show().find((p) => p.name === "h3")?.impair?.out).toMatchObject({ delay: 30 });
    expect(tapnetOk(["lab", "save", "imp"])).toMatch(/h3:[\s\S]*impair:\s+out:\s+delay: 30/);
    const base = median(rttList("10.9.0.2", 10));
    const added = median(rttList("10.9.0.3", 10)) - base;
    expect(added).toBeGreaterThan(20);
    expect(added).toBeLessThan(40);
  });

  it("loss 20% loses 10-30% of 500 pings, counted as the port's drops", () => {
    tapnetOk(["link", "set", "h2", "loss", "20%", "--lab", "imp"]);
    const before = show().find((p) => p.name === "h2")?.txDrops ?? 0;
    const r = inNs(H1, ["timeout", "-k", "2", "90", "ping", "-n", "-q", "-c", "500", "-i", "0.01", "-W", "1", "10.9.0.2"], 100_000);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const sent = Number(m?.[1]);
    const lost = sent - Number(m?.[2]);
    console.log(`loss 20%: ${lost} of ${sent} pings lost`);
    expect(sent).toBe(500);
    expect(lost / sent).toBeGreaterThan(0.1);
    expect(lost / sent).toBeLessThan(0.3);
    const row = show().find((p) => p.name === "h2");
    expect(Number(row?.impair?.out?.lost)).toBeGreaterThanOrEqual(lost);
    expect((row?.txDrops ?? 0) - before).toBeGreaterThanOrEqual(lost);
    tapnetOk(["link", "set", "h2", "clear", "--lab", "imp"]);
  });

  it("rate 10mbit holds iperf3's TCP within 10% of 10 Mbit/s", async () => {
    tapnetOk(["link", "set", "h2", "rate", "10mbit", "--lab", "imp"]);
    const bps = await iperf("tn.imp.h2", H1, "10.9.0.2", 5);
    console.log(`rate 10mbit: iperf3 received ${(bps / 1e6).toFixed(2)} Mbit/s`);
    expect(bps).toBeGreaterThan(9e6);
    expect(bps).toBeLessThan(11e6);
    tapnetOk(["link", "set", "h2", "clear", "--lab", "imp"]);
  });

  it("a node killed with -9 comes back with the impairments set at runtime (journal replay)", async () => {
    tapnetOk(["link", "set", "h2", "dir", "in", "loss", "3%", "delay", "7ms", "--lab", "imp"]);
    const row = (): { pid: number | null; running: boolean; restarts: number } | undefined =>
      (
        JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{
          lab: string;
          nodes: Array<{ name: string; pid: number | null; running: boolean; restarts: number }>;
        }>
      )
        .find((l) => l.lab === "imp")
        ?.nodes.find((n) => n.name === "sw1");
    const before = row();
    expect(before?.running).toBe(true);
    process.kill(before?.pid as number, "SIGKILL");
    await waitFor(
      "sw1 to be restarted and answer",
      () => {
        const n = row();
        if (!n?.running || n.pid === before?.pid) return undefined;
        const r = tapnet(["show", "ports", "--lab", "imp", "--json"]);
        return r.status === 0 ? true : undefined;
      },
      30_000,
      100,
    );
    expect(show().find((p) => p.name === "h2")?.impair?.in).toMatchObject({ loss: 3, delay: 7 });
    expect(show().find((p) => p.name === "h3")?.impair?.out).toMatchObject({ delay: 30 });
    tapnetOk(["link", "set", "h2", "dir", "in", "clear", "--lab", "imp"]);
  });

  it("refuses a bad impairment with the reason and changes nothing", () => {
    const r = tapnet(["link", "set", "h2", "loss", "120%", "--lab", "imp"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/loss: '120%' is not a percentage 0-100/);
    expect(show().find((p) => p.name === "h2")?.impair).toBeNull();
  });
});
