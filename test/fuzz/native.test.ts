/**
 * A short run of the native fuzz harnesses (scripts/fuzz-native.sh: libFuzzer with
 * AddressSanitizer and UndefinedBehaviorSanitizer over the offload core,
 * native/offload_core.c): a few seconds per target from a fixed libFuzzer seed, in a
 * temporary directory. Any crash, sanitizer report or broken contract fails it.
 * `npm run fuzz:native` is the long run (60 s per target by default).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const SECONDS = Number(process.env.FUZZ_NATIVE_SECONDS ?? 5);

describe("native fuzz (offload core under ASan/UBSan)", () => {
  it(`gso_segment, csum_complete, gro_coalesce, gro_frames: ${SECONDS} s each, no crash`, { timeout: 60_000 + SECONDS * 4 * 3000 }, () => {
    const out = mkdtempSync(join(tmpdir(), "tapnet-fuzz-native-"));
    try {
      const r = spawnSync("bash", ["scripts/fuzz-native.sh", `-max_total_time=${SECONDS}`, "-seed=1"], {
        encoding: "utf8",
        env: { ...process.env, FUZZ_NATIVE_OUT: out },
        timeout: 60_000 + SECONDS * 4 * 3000,
      });
      const text = `${r.stdout}\n${r.stderr}`;
      expect(r.status, text).toBe(0);
      // Each target ran and reported its executions.
      for (const t of ["gso_segment", "csum_complete", "gro_coalesce", "gro_frames"]) {
        const m = new RegExp(`fuzz-native: ${t}: #(\\d+) DONE`).exec(text);
        expect(m, `${t} did not report: ${text}`).not.toBeNull();
        expect(Number(m?.[1])).toBeGreaterThan(1000);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
