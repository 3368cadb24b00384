/** The supervisor's pure parts: the crash-loop back-off, and the inherited-TAP list it hands a node. */
import { describe, expect, it } from "vitest";
import { restartDelay } from "../../src/lab/supervisor.js";
import { parseTapFds } from "../../src/node/ports.js";
import { mapTapFds } from "../../src/node/standby.js";

describe("crash-loop back-off", () => {
  it("restarts at once five times within 10 s, then waits 0.5 s doubling up to 5 s", () => {
    let deaths: number[] = [];
    const waits: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = restartDelay(deaths, 1000 + i * 100);
      deaths = r.deaths;
      waits.push(r.waitMs);
    }
    expect(waits).toEqual([0, 0, 0, 0, 0, 500, 1000, 2000, 4000, 5000]);
  });

  it("forgets deaths older than 10 s", () => {
    const r = restartDelay([0, 1, 2, 3, 4, 5], 10_004);
    expect(r.deaths).toEqual([5, 10_004]);
    expect(r.waitMs).toBe(0);
    expect(restartDelay([0, 1, 2, 3, 4], 9_999).waitMs).toBe(500);
  });
});

describe("TAPNET_TAP_FDS", () => {
  it("names each inherited fd's port, with the MTU when known", () => {
    expect([...parseTapFds("h1=3/1500,web-2=4,h3=10/9000")]).toEqual([
      ["h1", { fd: 3, mtu: 1500 }],
      ["web-2", { fd: 4, mtu: 0 }],
      ["h3", { fd: 10, mtu: 9000 }],
    ]);
    expect(parseTapFds("").size).toBe(0);
  });

  it("refuses what it cannot read, stdio fds, and a port named twice", () => {
    expect(() => parseTapFds("h1")).toThrow(/TAPNET_TAP_FDS: 'h1' is not NAME=FD\[\/MTU\] with FD >= 3/);
    expect(() => parseTapFds("h1=2")).toThrow(/with FD >= 3/);
    expect(() => parseTapFds("H1=3")).toThrow(/'H1=3'/);
    expect(() => parseTapFds("h1=3,h1=4")).toThrow(/port h1 is named twice/);
  });
});

describe("a standby's TAPNET_TAP_FDS", () => {
  it("names the fds as received: slot 3 + i is the i-th fd of the message", () => {
    expect(mapTapFds("h1=3/1500,web-2=4,h3=5/9000", [21, 22, 23])).toBe("h1=21/1500,web-2=22,h3=23/9000");
    expect(mapTapFds("", [])).toBe("");
  });

  it("refuses a slot no fd came for", () => {
    expect(() => mapTapFds("h1=3/1500,h2=4/1500", [21])).toThrow(/names fd 4 for h2, but only 1 fd\(s\) came/);
  });
});
