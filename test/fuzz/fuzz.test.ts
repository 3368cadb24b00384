/**
 * Fuzz: generated and mutated frames through every element as a node wires them
 * (harness.ts), with and without offloads: no exception may leave an element and every
 * frame must be accounted for. FUZZ_FRAMES frames per element (default 100,000, half
 * with offloads off, half on), from FUZZ_SEED (default: a fixed seed, so CI is
 * reproducible; `npm run fuzz` picks a random one). A failure names its seed and
 * the command that reproduces it.
 */
import { describe, expect, it } from "vitest";
import { ELEMENTS, type ElementName, fuzzElement } from "./harness.js";

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261122) >>> 0;
const ONLY = process.env.FUZZ_ELEMENT;
const OFFLOAD = process.env.FUZZ_OFFLOAD ?? "both";
const MODES = OFFLOAD === "on" ? [true] : OFFLOAD === "off" ? [false] : [false, true];
// Generous: a slow shared machine must not turn a long run into a timeout.
const TIMEOUT = 120_000 + FRAMES * 2;

describe("fuzz: every element, generated frames", () => {
  for (const element of ELEMENTS) {
    const run = ONLY === undefined || ONLY === element ? it : it.skip;
    run(`${element}: ${FRAMES} frames, no exception, every frame accounted for`, { timeout: TIMEOUT }, async () => {
      const started = performance.now();
      const res = await fuzzElement(element as ElementName, SEED, FRAMES, MODES);
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      for (const r of res) {
        // The ledgers balanced (fuzzElement throws otherwise); the frames really went in.
        const first = Object.values(r.summary)[0];
        expect(first.in).toBeGreaterThan(0);
        if (process.env.FUZZ_VERBOSE) console.log(`${element} offloads ${r.vnet ? "on" : "off"} seed ${r.seed} (${secs} s):`, JSON.stringify(r.summary));
      }
    });
  }
});
