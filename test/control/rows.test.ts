/**
 * The control protocol's row streams (server.ts, client.ts): slices between
 * event-loop turns, backpressure, a reader that leaves, errors part way, and the
 * one-line form. Over a real Unix socket in a temporary directory.
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestRows } from "../../src/control/client.js";
import { ControlServer, RowStream } from "../../src/control/server.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tn-rows-"));
const sockPath = path.join(dir, "ctl", "node.sock");

/** Event-loop turns, counted by a setImmediate chain (what a packet batch would get). */
let turns = 0;
let ticking = true;
function tick(): void {
  turns++;
  if (ticking) setImmediate(tick);
}

let produced = 0;
let closedEarly = 0;
const ROW_PAD = "x".repeat(80);

function* counting(n: number, failAt = -1): Generator<object | null, Record<string, unknown>, void> {
  try {
    for (let i = 0; i < n; i++) {
      if (i === failAt) throw new Error(`row ${i} is broken`);
      produced++;
      if (i % 7 === 0) yield null; // some work without a row
      yield { i, turn: turns, pad: ROW_PAD };
    }
    return { total: n };
  } finally {
    if (produced < n && failAt < 0) closedEarly++;
  }
}

const server = new ControlServer(sockPath, {
  rows: (req) => new RowStream(counting(Number(req.n)), { what: "numbers" }),
  broken: () => new RowStream(counting(1000, 500)),
  small: () => [{ a: 1 }, { a: 2 }],
  bad: () => {
    throw new Error("no such table");
  },
});

beforeAll(async () => {
  await server.listen();
  setImmediate(tick);
});
afterAll(() => {
  ticking = false;
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("row streams", () => {
  it("deliver every row in order, in slices with event-loop turns between them, and the end totals", async () => {
    produced = 0;
    const n = 100_000;
    let next = 0;
    let sameTurn = 0;
    let maxSameTurn = 0;
    let lastTurn = -1;
    const r = await requestRows(sockPath, { cmd: "rows", n }, (json) => {
      const row = JSON.parse(json) as { i: number; turn: number };
      expect(row.i).toBe(next++);
      sameTurn = row.turn === lastTurn ? sameTurn + 1 : 1;
      lastTurn = row.turn;
      maxSameTurn = Math.max(maxSameTurn, sameTurn);
    });
    expect(next).toBe(n);
    expect(r.header).toEqual({ what: "numbers" });
    expect(r.end).toEqual({ rows: n, total: n });
    // At most one slice (<= 128 generator steps, <= 32 KiB, <= 2 ms) per event-loop turn.
    expect(maxSameTurn).toBeLessThanOrEqual(128);
    expect(maxSameTurn).toBeGreaterThan(10);
    expect(server.activeStreams).toBe(0);
  });

  it("wait for a slow reader instead of buffering the table (backpressure), then finish", async () => {
    produced = 0;
    const n = 200_000; // about 20 MB of rows
    const sock = net.createConnection(sockPath);
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    sock.pause();
    sock.write(`${JSON.stringify({ cmd: "rows", n })}\n`);
    // Wait until the producer stalls: no progress over 20 consecutive checks.
    let last = -1;
    let still = 0;
    for (let i = 0; i < 2000 && still < 20; i++) {
      await new Promise((r) => setTimeout(r, 5));
      still = produced === last ? still + 1 : 0;
      last = produced;
    }
    expect(still).toBe(20);
    const stalledAt = produced;
    // What was produced is bounded by the socket buffers, far below the table.
    expect(stalledAt).toBeGreaterThan(0);
    expect(stalledAt * 100).toBeLessThan(8 * 1024 * 1024);
    // Now read it all.
    let bytes = 0;
    let text = "";
    sock.on("data", (c: Buffer) => {
      bytes += c.length;
      text = (text + c.toString()).slice(-300);
    });
    sock.resume();
    await new Promise<void>((resolve) => sock.once("end", () => resolve()));
    expect(produced).toBe(n);
    expect(bytes).toBeGreaterThan(n * 90);
    expect(text).toMatch(/\{"end":\{"total":200000,"rows":200000\}\}\n$/);
    sock.destroy();
  });

  it("stop the walk when the reader goes away", async () => {
    produced = 0;
    closedEarly = 0;
    const sock = net.createConnection(sockPath);
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    sock.write(`${JSON.stringify({ cmd: "rows", n: 1_000_000 })}\n`);
    await new Promise<void>((resolve) => sock.once("data", () => resolve()));
    sock.destroy();
    for (let i = 0; i < 200 && closedEarly === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(closedEarly).toBe(1);
    expect(produced).toBeLessThan(1_000_000);
    expect(server.activeStreams).toBe(0);
  });

  it("report an error part way in the end line; the client rejects with it", async () => {
    let got = 0;
    await expect(requestRows(sockPath, { cmd: "broken" }, () => void got++)).rejects.toThrow(/broken: row 500 is broken \(after 500 rows\)/);
    expect(got).toBe(500);
  });

  it("keep the one-line form for small answers and errors", async () => {
    const rows: string[] = [];
    const r = await requestRows(sockPath, { cmd: "small" }, (j) => void rows.push(j));
    expect(rows).toEqual(['{"a":1}', '{"a":2}']);
    expect(r.end.rows).toBe(2);
    await expect(requestRows(sockPath, { cmd: "bad" }, () => undefined)).rejects.toThrow(/^no such table$/);
    await expect(requestRows(sockPath, { cmd: "nope" }, () => undefined)).rejects.toThrow(/unknown command 'nope'/);
  });
});
