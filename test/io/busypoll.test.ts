/**
 * Busy polling after a batch (native/busypoll.c via src/io/native.ts): a batch any
 * native handle delivers opens a window during which the event loop polls instead of
 * sleeping; the window closes by itself, and with the setting at 0 no batch opens one.
 *
 * The handle is a native UDP socket on 127.0.0.1 (an ephemeral port; nothing leaves
 * the loopback), fed by a node:dgram socket. The setting is per thread (per Node.js
 * environment): this file's worker only.
 */
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyPollStats, setBusyPoll } from "../../src/io/native.js";
import { ipv4ToUint, openUdp, type UdpHandle } from "../../src/io/udp-native.js";
import { waitFor } from "../integration/harness.js";

const ADDON = fileURLToPath(new URL("../../native/build/Release/tapnet.node", import.meta.url));
const canRun = process.platform === "linux" && existsSync(ADDON);
if (!canRun && process.env.CI) throw new Error("busy-poll tests must run in CI: need Linux and the built addon");

describe.skipIf(!canRun)("busy polling after a batch", () => {
  const slots = 8;
  const slotSize = 2048;
  let batches = 0;
  let h: UdpHandle;
  let sender: dgram.Socket;

  beforeAll(async () => {
    h = openUdp({
      bindAddr: ipv4ToUint("127.0.0.1"),
      port: 0,
      pool: Buffer.alloc(slots * slotSize),
      rxBase: 0,
      slots,
      slotSize,
      offsets: new Uint32Array(slots),
      lengths: new Uint32Array(slots),
      addrs: new Uint32Array(slots),
      ports: new Uint32Array(slots),
      segs: new Uint32Array(slots),
      onBatch: () => {
        batches++;
      },
    });
    h.start();
    sender = dgram.createSocket("udp4");
    await new Promise<void>((r) => sender.bind(0, "127.0.0.1", () => r()));
  });

  afterAll(() => {
    setBusyPoll(0);
    h?.close();
    sender?.close();
  });

  /** Sends one datagram and waits for the batch that delivers it. */
  async function oneBatch(): Promise<void> {
    const before = batches;
    sender.send(Buffer.from("busy"), h.port, "127.0.0.1");
    await waitFor("the datagram's batch", () => batches > before, 5000, 5);
  }

  it("off by default: batches open no window", async () => {
    await oneBatch();
    expect(busyPollStats()).toEqual({ windowUs: 0, windows: 0, turns: 0, polling: false });
  });

  it("a batch opens a window: the loop turns without sleeping, then stops by itself", async () => {
    setBusyPoll(20_000);
    expect(busyPollStats().windowUs).toBe(20_000);
    await oneBatch();
    const open = busyPollStats();
    expect(open.windows).toBe(1);
    // The loop keeps turning while the window is open, then sleeps again.
    const turned = await waitFor("loop turns in the window", () => {
      const s = busyPollStats();
      return s.turns > 0 ? s : false;
    });
    expect(turned.windows).toBe(1);
    const closed = await waitFor("the window to close", () => {
      const s = busyPollStats();
      return s.polling ? false : s;
    });
    expect(closed.turns).toBeGreaterThan(1);
    // Closed: an idle loop sleeps, so the count of turns stays where it is.
    await new Promise((r) => setTimeout(r, 30));
    expect(busyPollStats().turns).toBe(closed.turns);
    // The next batch opens the next window.
    await oneBatch();
    expect(busyPollStats().windows).toBe(2);
  });

  it("set to 0: an open window closes at once and batches open no more", async () => {
    setBusyPoll(1_000_000);
    await oneBatch();
    expect(busyPollStats().polling).toBe(true);
    setBusyPoll(0);
    expect(busyPollStats().polling).toBe(false);
    const windows = busyPollStats().windows;
    await oneBatch();
    expect(busyPollStats()).toMatchObject({ windowUs: 0, windows, polling: false });
  });

  it("refuses a window that is not an integer number of microseconds up to a second", () => {
    expect(() => setBusyPoll(-1)).toThrow(/setBusyPoll: microseconds must be an integer in 0\.\.1000000, got -1/);
    expect(() => setBusyPoll(1_000_001)).toThrow(/setBusyPoll: microseconds must be an integer in 0\.\.1000000/);
    expect(() => setBusyPoll(1.5)).toThrow(/setBusyPoll: microseconds must be an integer/);
    expect(busyPollStats().windowUs).toBe(0);
  });

  it("a worker thread may end while its window is open: exit, terminate, or its loop running out", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tnbp-"));
    try {
      const script = join(dir, "worker.mjs");
      writeFileSync(
        script,
        `import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import dgram from 'node:dgram';
if (isMainThread) {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  for (const mode of ['exit', 'terminate', 'end']) {
    const w = new Worker(new URL(import.meta.url), { workerData: mode });
    const port = await new Promise((r) => w.once('message', r));
    const polling = new Promise((r) => w.once('message', r));
    s.send(Buffer.from('x'), port, '127.0.0.1');
    const st = await polling;
    const exited = new Promise((r) => w.once('exit', r));
    if (mode === 'terminate') w.terminate(); else w.postMessage('go');
    console.log(mode, st.polling, st.windows, await exited);
  }
  s.close();
} else {
  const b = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
  const a = () => new Uint32Array(4);
  const h = b.openUdp({ bindAddr: 0x7f000001, port: 0, pool: Buffer.alloc(4 * 2048), rxBase: 0, slots: 4, slotSize: 2048,
    offsets: a(), lengths: a(), addrs: a(), ports: a(), segs: a(),
    onBatch() { setImmediate(() => parentPort.postMessage(b.busyPollStats())); } });
  b.setBusyPoll(1000000);
  h.start();
  parentPort.postMessage(h.port);
  parentPort.once('message', () => {
    if (workerData === 'exit') process.exit(3);
    h.close();
    parentPort.unref();
  });
}
`,
      );
      const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      child.stderr.on("data", (d) => {
        err += d;
      });
      const code = await new Promise<number | null>((r) => child.on("exit", r));
      expect(err).toBe("");
      expect(code).toBe(0);
      expect(out.trim().split("\n")).toEqual(["exit true 1 3", "terminate true 1 1", "end true 1 0"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
