import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BPDU_TYPE_CONFIG,
  BPDU_TYPE_TCN,
  CHECK_BAD_LENGTH,
  CHECK_BAD_PROTO_TYPE,
  CHECK_BAD_VERSION,
  CHECK_OK,
  CHECK_TOO_SHORT,
  bpduFrameCheck,
  bridgeIdString,
  emitBpdu,
  emitConfigBpdu,
  isStpGroup,
  parseBpdu,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Captured from Linux bridges (kernel 6.18, stp_state 1, priorities 4096 and 32768, hello
// 1 s, max age 6 s, forward delay 2 s) on the veths between them; tshark -V of each:
//
// ROOT_CONFIG: 802.3 Length 38, LLC DSAP 0x42 SSAP 0x42 control UI (0x03); Protocol
//   Identifier 0x0000, Version 0, BPDU Type Configuration (0x00), flags 0x00; Root
//   Identifier 4096 / 0 / 02:00:00:00:00:0a, Root Path Cost 0, Bridge Identifier
//   4096 / 0 / 02:00:00:00:00:0a, Port identifier 0x8001, Message Age 0, Max Age 6,
//   Hello Time 1, Forward Delay 2.
const ROOT_CONFIG = hex(`
  0180c2000000 02000000010a 0026 424203
  0000 00 00 00 1000 02000000000a 00000000 1000 02000000000a 8001 0000 0600 0100 0200
`);
// TCN: Length 7; Protocol Identifier 0x0000, Version 0, BPDU Type Topology Change
//   Notification (0x80).
const TCN = hex("0180c2000000 02000000010b 0007 424203 0000 00 80");
// TC_TCA: as ROOT_CONFIG with flags 0x81 (Topology Change Acknowledgment: Yes,
//   Topology Change: Yes).
const TC_TCA = hex(`
  0180c2000000 02000000010a 0026 424203
  0000 00 00 81 1000 02000000000a 00000000 1000 02000000000a 8001 0000 0600 0100 0200
`);
// RELAYED: the non-root bridge's BPDU on its designated port: flags 0x01 (Topology
//   Change), Root 4096 / 0 / 02:00:00:00:00:0a, Root Path Cost 2, Bridge Identifier
//   32768 / 0 / 02:00:00:00:00:0b, Port identifier 0x8002, Message Age 1.02734375,
//   Max Age 6, Hello Time 1, Forward Delay 2.
const RELAYED = hex(`
  0180c2000000 32ff46b79e7a 0026 424203
  0000 00 00 01 1000 02000000000a 00000002 8000 02000000000b 8002 0107 0600 0100 0200
`);

describe("BPDUs (802.1D clause 9) against the Linux bridge", () => {
  it("decodes what the kernel sends as tshark does", () => {
    expect(isStpGroup(ROOT_CONFIG, 0)).toBe(true);
    expect(bpduFrameCheck(ROOT_CONFIG, 0, ROOT_CONFIG.length)).toBe(CHECK_OK);
    expect(parseBpdu(ROOT_CONFIG, 0, ROOT_CONFIG.length)).toEqual({
      src: 0x02000000010a,
      version: 0,
      type: BPDU_TYPE_CONFIG,
      tc: false,
      tca: false,
      rootPriority: 4096,
      rootMac: 0x02000000000a,
      rootPathCost: 0,
      bridgePriority: 4096,
      bridgeMac: 0x02000000000a,
      portId: 0x8001,
      messageAge: 0,
      maxAge: 6,
      helloTime: 1,
      forwardDelay: 2,
    });
    expect(parseBpdu(TCN, 0, TCN.length)).toMatchObject({ type: BPDU_TYPE_TCN, src: 0x02000000010b, tc: false, rootPriority: 0, maxAge: 0 });
    expect(parseBpdu(TC_TCA, 0, TC_TCA.length)).toMatchObject({ tc: true, tca: true });
    expect(parseBpdu(RELAYED, 0, RELAYED.length)).toMatchObject({
      tc: true,
      tca: false,
      rootPriority: 4096,
      rootPathCost: 2,
      bridgePriority: 32768,
      bridgeMac: 0x02000000000b,
      portId: 0x8002,
      messageAge: 1.02734375,
    });
    expect(bridgeIdString(4096, 0x02000000000a)).toBe("1000.02000000000a");
  });

  it("encodes the same bytes (padded to 60 with zeros, as a NIC sends them)", () => {
    for (const f of [ROOT_CONFIG, TCN, TC_TCA, RELAYED]) {
      const r = parseBpdu(f, 0, f.length);
      expect(r).not.toBeNull();
      const out = Buffer.alloc(80, 0xee);
      expect(emitBpdu(r!, out, 10)).toBe(60);
      expect(out.subarray(10, 10 + f.length)).toEqual(f);
      expect(out.subarray(10 + f.length, 70)).toEqual(Buffer.alloc(60 - f.length));
      expect(out[9]).toBe(0xee);
      expect(out[70]).toBe(0xee);
      // Padding does not change what a receiver reads (the 802.3 length says where it ends).
      expect(parseBpdu(out, 10, 60)).toEqual(r);
    }
  });

  it("rejects what is not a BPDU", () => {
    const bad = (f: Buffer, mut: (b: Buffer) => void): number => {
      const b = Buffer.from(f);
      mut(b);
      return bpduFrameCheck(b, 0, b.length);
    };
    expect(bpduFrameCheck(ROOT_CONFIG, 0, 20)).toBe(CHECK_TOO_SHORT);
    expect(bad(ROOT_CONFIG, (b) => b.writeUInt16BE(0x0800, 12))).toBe(CHECK_BAD_LENGTH);
    expect(bad(ROOT_CONFIG, (b) => b.writeUInt16BE(200, 12))).toBe(CHECK_BAD_LENGTH);
    expect(bad(ROOT_CONFIG, (b) => b.writeUInt16BE(3, 12))).toBe(CHECK_BAD_LENGTH);
    expect(bad(ROOT_CONFIG, (b) => (b[14] = 0xaa))).toBe(CHECK_BAD_PROTO_TYPE);
    expect(bad(ROOT_CONFIG, (b) => (b[16] = 0x13))).toBe(CHECK_BAD_PROTO_TYPE);
    expect(bad(ROOT_CONFIG, (b) => (b[18] = 1))).toBe(CHECK_BAD_VERSION);
    // A config BPDU the length field cuts short of 35 bytes.
    expect(bad(ROOT_CONFIG, (b) => b.writeUInt16BE(20, 12))).toBe(CHECK_TOO_SHORT);
    expect(parseBpdu(ROOT_CONFIG, 0, 30)).toBeNull();
    expect(isStpGroup(hex("0180c200000e"), 0)).toBe(false);
  });

  let hasTshark = true;
  try {
    execFileSync("tshark", ["--version"], { stdio: "ignore" });
  } catch {
    hasTshark = false;
  }
  const tmp = mkdtempSync(join(tmpdir(), "tapnet-bpdu-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.skipIf(!hasTshark && !process.env.CI)("tshark reads what tapnet writes", () => {
    const f = Buffer.alloc(60);
    emitConfigBpdu(f, 0, 0x027300000101, 0x81, 8192, 0x027300aabb00, 19, 36864, 0x0273001234ff, 0x8003, 300, 6 * 256, 256, 2 * 256);
    const t = Buffer.alloc(60);
    emitBpdu({ ...parseBpdu(TCN, 0, TCN.length)!, src: 0x027300000102 }, t, 0);
    // Classic pcap, LINKTYPE_ETHERNET.
    const gh = Buffer.alloc(24);
    gh.writeUInt32LE(0xa1b2c3d4, 0);
    gh.writeUInt16LE(2, 4);
    gh.writeUInt16LE(4, 6);
    gh.writeUInt32LE(65535, 16);
    gh.writeUInt32LE(1, 20);
    const rec = (p: Buffer, i: number): Buffer[] => {
      const h = Buffer.alloc(16);
      h.writeUInt32LE(1_700_000_000 + i, 0);
      h.writeUInt32LE(p.length, 8);
      h.writeUInt32LE(p.length, 12);
      return [h, p];
    };
    const file = join(tmp, "bpdu.pcap");
    writeFileSync(file, Buffer.concat([gh, ...rec(f, 0), ...rec(t, 1)]));
    const fields = [
      "llc.dsap",
      "llc.ssap",
      "stp.protocol",
      "stp.type",
      "stp.flags.tc",
      "stp.flags.tcack",
      "stp.root.prio",
      "stp.root.hw",
      "stp.root.cost",
      "stp.bridge.prio",
      "stp.bridge.hw",
      "stp.port",
      "stp.msg_age",
      "stp.max_age",
      "stp.hello",
      "stp.forward",
    ];
    const out = execFileSync("tshark", ["-r", file, "-T", "fields", "-E", "separator=|", ...fields.flatMap((x) => ["-e", x])], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const [cfg, tcn] = out
      .trim()
      .split("\n")
      .map((l) => l.split("|"));
    expect(cfg).toEqual([
      "0x42",
      "0x42",
      "0x0000",
      "0x00",
      "1",
      "1",
      "8192",
      "02:73:00:aa:bb:00",
      "19",
      "36864",
      "02:73:00:12:34:ff",
      "0x8003",
      "1.171875",
      "6",
      "1",
      "2",
    ]);
    expect(tcn.slice(0, 4)).toEqual(["0x42", "0x42", "0x0000", "0x80"]);
  });
});
