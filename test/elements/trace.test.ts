/** The pieces of `tapnet trace` and `capture --drops` that need no lab: the filter, the frames, the pcapng comment. */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PcapngWriter, readPcapng } from "../../src/io/pcapng.js";
import { compileFilter } from "../../src/node/trace-filter.js";
import { buildFrame, describeFrame, parsePacketSpec } from "../../src/node/trace.js";

const frame = (spec: string): Buffer => buildFrame(parsePacketSpec(spec), 0x020000000001, 0x020000000002);

describe("trace filter", () => {
  const icmp = frame("icmp 10.0.1.10 > 10.0.2.10");
  const udp = frame("udp 10.0.1.10:5000 > 10.0.3.1:53 vlan 7");
  const tcp = frame("tcp 192.168.1.1:40000 > 10.0.2.10:443");
  const m = (f: string, b: Buffer): boolean => compileFilter(f)(b, 0, b.length);

  it("matches hosts, nets, protocols, ports and VLANs", () => {
    expect(m("host 10.0.2.10", icmp)).toBe(true);
    expect(m("src 10.0.2.10", icmp)).toBe(false);
    expect(m("dst host 10.0.2.10", icmp)).toBe(true);
    expect(m("net 10.0.0.0/16", tcp)).toBe(true);
    expect(m("net 10.0.3.0/24", tcp)).toBe(false);
    expect(m("icmp", icmp)).toBe(true);
    expect(m("icmp", udp)).toBe(false);
    expect(m("port 53", udp)).toBe(true);
    expect(m("port 53", tcp)).toBe(false);
    expect(m("vlan 7", udp)).toBe(true);
    expect(m("vlan 7", icmp)).toBe(false);
    expect(m("proto 6", tcp)).toBe(true);
    expect(m("", tcp)).toBe(true);
  });

  it("combines with and, or, not and parentheses, not binding tightest", () => {
    expect(m("icmp and dst 10.0.2.10", icmp)).toBe(true);
    expect(m("icmp dst 10.0.2.10", icmp)).toBe(true);
    expect(m("udp or tcp", tcp)).toBe(true);
    expect(m("not icmp", tcp)).toBe(true);
    expect(m("not icmp and port 443", tcp)).toBe(true);
    expect(m("not (icmp or tcp)", tcp)).toBe(false);
    expect(m("icmp or tcp and port 53", tcp)).toBe(false);
    expect(m("(icmp or tcp) and port 443", tcp)).toBe(true);
  });

  it("names the word it cannot read", () => {
    expect(() => compileFilter("icmp and bogus")).toThrow(/unknown word 'bogus'/);
    expect(() => compileFilter("host 10.0.0")).toThrow(/'10\.0\.0' is not an IPv4 address/);
    expect(() => compileFilter("(icmp")).toThrow(/expected/);
    expect(() => compileFilter("port 70000")).toThrow(/'70000' is not a port/);
    expect(() => compileFilter("icmp )")).toThrow(/'\)' unexpected/);
  });
});

describe("what-if packets", () => {
  it("builds frames with good checksums that describeFrame reads back", () => {
    expect(describeFrame(frame("icmp 10.0.1.10 > 10.0.2.10 ttl 1"), 0, 60)).toBe(
      "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 10.0.1.10 > 10.0.2.10 ttl 1, ICMP echo request",
    );
    expect(describeFrame(frame("udp 10.0.1.10:5000 > 10.0.3.1:53 vlan 7"), 0, 64)).toMatch(/vlan 7, IPv4 10\.0\.1\.10 > 10\.0\.3\.1 ttl 64, UDP 5000 > 53$/);
    const file = path.join(os.tmpdir(), `tn-trace-${process.pid}.pcapng`);
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(Buffer.from(c)));
    w.header([{ name: "x" }]);
    for (const s of ["icmp 10.0.1.10 > 10.0.2.10", "udp 10.0.1.10:5000 > 10.0.3.1:53", "tcp 10.0.1.10:4000 > 10.0.2.10:443"]) {
      const f = frame(s);
      w.packet(0, f, 0, f.length, 0);
    }
    w.flush();
    fs.writeFileSync(file, Buffer.concat(chunks));
    try {
      const r = spawnSync(
        "tshark",
        [
          "-r",
          file,
          "-o",
          "ip.check_checksum:TRUE",
          "-o",
          "udp.check_checksum:TRUE",
          "-o",
          "tcp.check_checksum:TRUE",
          "-T",
          "fields",
          "-e",
          "ip.checksum.status",
          "-e",
          "icmp.checksum.status",
          "-e",
          "udp.checksum.status",
          "-e",
          "tcp.checksum.status",
        ],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      expect(
        r.stdout
          .trim()
          .split("\n")
          .map((l) => l.split("\t").filter(Boolean)),
      ).toEqual([
        ["1", "1"],
        ["1", "1"],
        ["1", "1"],
      ]);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it("refuses a spec it cannot read, saying why", () => {
    expect(() => parsePacketSpec("icmp 10.0.1.10 10.0.2.10")).toThrow(/no 'SRC > DST'/);
    expect(() => parsePacketSpec("sctp 1.1.1.1 > 2.2.2.2")).toThrow(/'sctp' is not icmp, udp or tcp/);
    expect(() => parsePacketSpec("icmp 1.1.1.1 > 2.2.2.2 ttl 300")).toThrow(/ttl '300' is not a whole number in 0\.\.255/);
    expect(() => parsePacketSpec("icmp 1.1.1.1:5 > 2.2.2.2")).toThrow(/icmp has no ports/);
    expect(() => parsePacketSpec("udp 1.1.1.1 > 2.2.2.2 df 2")).toThrow(/df '2' is not a whole number in 0\.\.1/);
  });

  it("sets DF unless df 0", () => {
    // The flags and fragment offset of the IPv4 header (bytes 20-21 of the frame).
    expect(frame("udp 10.0.1.10 > 10.0.2.10").readUInt16BE(20)).toBe(0x4000);
    expect(frame("udp 10.0.1.10 > 10.0.2.10 df 0").readUInt16BE(20)).toBe(0);
  });
});

describe("pcapng packet comments", () => {
  it("writes opt_comment next to the direction flag; tshark reads it as frame.comment, the reader skips it", () => {
    const file = path.join(os.tmpdir(), `tn-comment-${process.pid}.pcapng`);
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(Buffer.from(c)));
    w.header([{ name: "drops.router" }]);
    const f = frame("icmp 10.0.1.10 > 10.0.2.10 ttl 1");
    w.packet(0, f, 0, f.length, 1e18, undefined, "router.ttlExpired: TTL 1 or 0 (é)");
    w.packet(0, f, 0, f.length, 1e18, "in", "switch.x: 1");
    w.packet(0, f, 0, f.length, 1e18, "out");
    w.flush();
    const bytes = Buffer.concat(chunks);
    fs.writeFileSync(file, bytes);
    try {
      const r = spawnSync("tshark", ["-r", file, "-T", "fields", "-e", "frame.comment", "-e", "frame.p2p_dir"], { encoding: "utf8" });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.split("\n").filter(Boolean)).toEqual(["router.ttlExpired: TTL 1 or 0 (é)\t", "switch.x: 1\t1", "\t0"]);
      const read = readPcapng(bytes);
      expect(read.packets.map((p) => p.flags)).toEqual([0, 1, 2]);
      expect(read.packets.every((p) => p.data.equals(f))).toBe(true);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});

describe("describeFrame", () => {
  it("never throws on what a peer may send", () => {
    let seed = 7;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const base = frame("udp 10.0.1.10:5000 > 10.0.3.1:4789");
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(base);
      for (let k = 0; k < 6; k++) b[rnd() % b.length] = rnd() & 0xff;
      const cut = rnd() % (b.length + 1);
      expect(typeof describeFrame(b, 0, cut)).toBe("string");
      expect(typeof compileFilter("port 53 or host 10.0.3.1 or vlan 3")(b, 0, cut)).toBe("boolean");
    }
  });
});
