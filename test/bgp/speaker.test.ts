/**
 * Two and three speakers over real kernel TCP on loopback addresses (127.0.0.x, one
 * port): sessions (with the collision of both sides connecting at once), route
 * exchange, reflection, withdrawal when a speaker stops.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type BgpConfig, BgpSpeaker, type FibAdapter } from "../../src/bgp/speaker.js";

const PORT = 17900 + (process.pid % 500);

class FakeFib implements FibAdapter {
  routes = new Map<string, string>();
  resolves(): boolean {
    return true;
  }
  install(prefix: string, nextHop: string): string | null {
    this.routes.set(prefix, nextHop);
    return null;
  }
  remove(prefix: string): void {
    this.routes.delete(prefix);
  }
}

const running: BgpSpeaker[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.stop();
});

function speaker(addr: string, announce: string[], peers: BgpConfig["peers"], holdTime = 9): { s: BgpSpeaker; fib: FakeFib } {
  const fib = new FakeFib();
  const s = new BgpSpeaker(
    { asn: 64512, routerId: addr, localAddress: addr, port: PORT, holdTime, connectRetryTime: 1, peers, announce },
    fib,
    () => undefined,
  );
  running.push(s);
  return { s, fib };
}

async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

type Status = { peers: Array<{ state: string; received: number; sent: number; bgpId: string }> };
const st = (s: BgpSpeaker): Status => s.status() as Status;

describe("BGP speaker over loopback TCP", () => {
  it("two iBGP speakers reach Established (both connecting at once) and exchange their blocks", async () => {
    const a = speaker("127.0.0.11", ["10.1.0.0/24"], [{ name: "b", address: "127.0.0.12", asn: 64512 }]);
    const b = speaker("127.0.0.12", ["10.2.0.0/24"], [{ name: "a", address: "127.0.0.11", asn: 64512 }]);
    await Promise.all([a.s.start(), b.s.start()]);
    await until("routes", () => a.fib.routes.get("10.2.0.0/24") === "127.0.0.12" && b.fib.routes.get("10.1.0.0/24") === "127.0.0.11");
    expect(st(a.s).peers[0]).toMatchObject({ state: "Established", received: 1, sent: 1, bgpId: "127.0.0.12" });
    // b stops: a's session goes down at once (Cease) and the route goes with it.
    b.s.stop();
    await until("withdrawal", () => !a.fib.routes.has("10.2.0.0/24"));
    expect(st(a.s).peers[0].state).not.toBe("Established");
  });

  it("a reflector passes a client's route to another client; non-clients' are not passed to non-clients", async () => {
    const rr = speaker(
      "127.0.0.21",
      [],
      [
        { name: "c1", address: "127.0.0.22", asn: 64512, rrClient: true },
        { name: "c2", address: "127.0.0.23", asn: 64512, rrClient: true },
        { name: "n", address: "127.0.0.24", asn: 64512 },
      ],
    );
    const c1 = speaker("127.0.0.22", ["10.22.0.0/24"], [{ name: "rr", address: "127.0.0.21", asn: 64512 }]);
    const c2 = speaker("127.0.0.23", ["10.23.0.0/24"], [{ name: "rr", address: "127.0.0.21", asn: 64512 }]);
    const n = speaker("127.0.0.24", ["10.24.0.0/24"], [{ name: "rr", address: "127.0.0.21", asn: 64512 }]);
    await Promise.all([rr.s.start(), c1.s.start(), c2.s.start(), n.s.start()]);
    await until("reflected routes", () => c2.fib.routes.get("10.22.0.0/24") === "127.0.0.22" && n.fib.routes.get("10.22.0.0/24") === "127.0.0.22");
    // A non-client's route goes to clients (c1, c2) ...
    await until("non-client route at clients", () => c1.fib.routes.get("10.24.0.0/24") === "127.0.0.24");
    expect([...rr.fib.routes.keys()].sort()).toEqual(["10.22.0.0/24", "10.23.0.0/24", "10.24.0.0/24"]);
    // ... and the reflector never sends a client its own route back (ORIGINATOR_ID would drop it anyway).
    expect(c1.fib.routes.has("10.22.0.0/24")).toBe(false);
  });

  it("a peer with the wrong AS gets OPEN error 2/2 and stays down", async () => {
    const a = speaker("127.0.0.31", [], [{ name: "b", address: "127.0.0.32", asn: 65000 }]);
    const b = speaker("127.0.0.32", ["10.3.0.0/24"], [{ name: "a", address: "127.0.0.31", asn: 64512 }]);
    await Promise.all([a.s.start(), b.s.start()]);
    await until("the OPEN error", () => JSON.stringify(a.s.status()).includes("NOTIFICATION 2/2"));
    expect(a.fib.routes.size).toBe(0);
  });
});
