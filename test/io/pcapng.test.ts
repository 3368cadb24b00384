import { execFileSync } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { EPB_DIR_INBOUND, EPB_DIR_OUTBOUND, PcapngWriter, nowNs, readPcapng, type PcapngInterface } from "../../src/io/pcapng.js";

// Real frames between 10.78.0.1 (02:00:00:00:00:01) and 10.78.0.2 (02:00:00:00:00:02).
const ARP_REQUEST = Buffer.from("ffffffffffff020000000001080600010800060400010200000000010a4e00010000000000000a4e0002", "hex");
const ARP_REPLY = Buffer.from("020000000001020000000002080600010800060400020200000000020a4e00020200000000010a4e0001", "hex");
const ICMP_PAYLOAD = "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041424344454647";
const ICMP_ECHO_REQUEST = Buffer.from(`02000000000202000000000108004500005412344000400113d70a4e00010a4e00020800fce742420001${ICMP_PAYLOAD}`, "hex");
const ICMP_ECHO_REPLY = Buffer.from(`02000000000102000000000208004500005412344000400113d70a4e00020a4e0001000004e842420001${ICMP_PAYLOAD}`, "hex");

const T0 = 1_700_000_000_123_456_789n;

const le32 = (n: number): string => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b.toString("hex");
};
const hex = (s: string): string => Buffer.from(s, "utf8").toString("hex");

/** Frames as a caller hands them: inside a larger reused buffer, at an offset. */
function inBigBuffer(frame: Buffer, off: number): Buffer {
  const big = Buffer.alloc(off + frame.length + 100, 0xee);
  frame.copy(big, off);
  return big;
}

function collect(opts?: { chunkSize?: number }): { w: PcapngWriter; bytes: () => Buffer; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const w = new PcapngWriter((c) => chunks.push(c), opts);
  return { w, chunks, bytes: () => Buffer.concat(chunks) };
}

const IFS: PcapngInterface[] = [{ name: "h1" }, { name: "h2", description: "host two" }];

/** The capture the tool tests read: 2 interfaces, 5 frames, both directions. */
function writeSample(w: PcapngWriter): void {
  w.header(IFS);
  w.packet(0, inBigBuffer(ARP_REQUEST, 64), 64, ARP_REQUEST.length, T0, "in");
  w.packet(1, inBigBuffer(ARP_REQUEST, 7), 7, ARP_REQUEST.length, T0 + 1000n, "out");
  w.packet(1, inBigBuffer(ARP_REPLY, 64), 64, ARP_REPLY.length, T0 + 2000n, "in");
  w.packet(0, inBigBuffer(ICMP_ECHO_REQUEST, 64), 64, ICMP_ECHO_REQUEST.length, T0 + 3000n, "out");
  w.packet(0, inBigBuffer(ICMP_ECHO_REPLY, 3), 3, ICMP_ECHO_REPLY.length, Number(T0 + 4000n));
  w.flush();
}

describe("PcapngWriter block layout", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("writes SHB, IDBs and EPBs byte for byte, leaving no byte unwritten", () => {
    // Every buffer the writer takes comes pre-filled with 0xa5, so a byte it forgets
    // to write (padding, reserved fields) shows up in the comparison.
    const realAlloc = Buffer.alloc;
    vi.spyOn(Buffer, "allocUnsafe").mockImplementation((n: number) => realAlloc(n, 0xa5));
    const { w, bytes } = collect();
    w.header(IFS);
    w.packet(0, inBigBuffer(ARP_REQUEST, 64), 64, ARP_REQUEST.length, T0, "in");
    w.packet(1, inBigBuffer(ARP_REPLY, 9), 9, 41, T0, "out"); // odd length: 3 pad bytes
    w.packet(1, inBigBuffer(ARP_REPLY, 9), 9, ARP_REPLY.length, T0); // no direction
    w.flush();

    const tsHi = le32(Number(T0 >> 32n));
    const tsLo = le32(Number(T0 & 0xffffffffn));
    const shb =
      "0a0d0d0a" +
      le32(44) +
      "4d3c2b1a" +
      "0100" +
      "0000" +
      "ffffffffffffffff" +
      "0400" +
      "0600" +
      hex("tapnet") +
      "0000" + // shb_userappl, padded
      "00000000" +
      le32(44);
    const idb1 =
      "01000000" +
      le32(40) +
      "0100" +
      "0000" +
      "00000000" +
      "0200" +
      "0200" +
      hex("h1") +
      "0000" + // if_name
      "0900" +
      "0100" +
      "09000000" + // if_tsresol = 9
      "00000000" +
      le32(40);
    const idb2 =
      "01000000" +
      le32(52) +
      "0100" +
      "0000" +
      "00000000" +
      "0200" +
      "0200" +
      hex("h2") +
      "0000" +
      "0300" +
      "0800" +
      hex("host two") + // if_description, no padding needed
      "0900" +
      "0100" +
      "09000000" +
      "00000000" +
      le32(52);
    const epb1 =
      "06000000" +
      le32(88) +
      le32(0) +
      tsHi +
      tsLo +
      le32(42) +
      le32(42) +
      ARP_REQUEST.toString("hex") +
      "0000" +
      "0200" +
      "0400" +
      le32(EPB_DIR_INBOUND) +
      "00000000" +
      le32(88);
    const epb2 =
      "06000000" +
      le32(88) +
      le32(1) +
      tsHi +
      tsLo +
      le32(41) +
      le32(41) +
      ARP_REPLY.subarray(0, 41).toString("hex") +
      "000000" +
      "0200" +
      "0400" +
      le32(EPB_DIR_OUTBOUND) +
      "00000000" +
      le32(88);
    const epb3 = `06000000${le32(76)}${le32(1)}${tsHi}${tsLo}${le32(42)}${le32(42)}${ARP_REPLY.toString("hex")}0000${le32(76)}`;
    expect(bytes().toString("hex")).toBe(shb + idb1 + idb2 + epb1 + epb2 + epb3);
  });

  it("cuts frames to the interface's snapLen and keeps the original length", () => {
    const { w, bytes } = collect();
    w.header([{ name: "cut", snapLen: 64 }]);
    w.packet(0, ICMP_ECHO_REQUEST, 0, ICMP_ECHO_REQUEST.length, 0);
    w.flush();
    const r = readPcapng(bytes());
    expect(r.interfaces[0].snapLen).toBe(64);
    expect(r.packets[0].data).toEqual(ICMP_ECHO_REQUEST.subarray(0, 64));
    expect(r.packets[0].origLen).toBe(98);
  });

  it("copies the frame at once: reusing the caller's buffer does not change the capture", () => {
    const { w, bytes } = collect();
    w.header([{ name: "h1" }]);
    const rx = Buffer.from(ARP_REQUEST);
    w.packet(0, rx, 0, rx.length, 0, "in");
    rx.fill(0);
    w.flush();
    expect(readPcapng(bytes()).packets[0].data).toEqual(ARP_REQUEST);
  });

  it("hands the sink whole chunks, and a block bigger than a chunk on its own", () => {
    const { w, bytes, chunks } = collect({ chunkSize: 256 });
    w.header(IFS);
    const big = Buffer.alloc(1000, 0x5a);
    for (let i = 0; i < 10; i++) w.packet(i & 1, ARP_REQUEST, 0, ARP_REQUEST.length, BigInt(i));
    w.packet(0, big, 0, big.length, 11n, "out");
    w.packet(1, ARP_REPLY, 0, ARP_REPLY.length, 12n, "in");
    expect(w.pending).toBeGreaterThan(0);
    w.flush();
    expect(w.pending).toBe(0);
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks.every((c) => c.length <= 256 || c.length === 28 + 1000 + 16)).toBe(true);
    expect(w.bytesWritten).toBe(bytes().length);
    const r = readPcapng(bytes());
    expect(r.packets.map((p) => p.timestamp)).toEqual([...Array(10).keys(), 11, 12].map(BigInt));
    expect(r.packets[10].data).toEqual(big);
    expect(r.packets[11]).toMatchObject({ ifIndex: 1, flags: EPB_DIR_INBOUND, data: ARP_REPLY });
    expect(w.packets).toBe(12);
  });

  it("takes number and bigint timestamps alike", () => {
    const { w, bytes } = collect();
    w.header([{ name: "h1" }]);
    const t = 1_712_345_678_901_234_000; // exactly representable (a multiple of 256 ns)
    w.packet(0, ARP_REQUEST, 0, 42, t);
    w.packet(0, ARP_REQUEST, 0, 42, BigInt(t));
    const now = nowNs();
    w.packet(0, ARP_REQUEST, 0, 42, now);
    w.flush();
    const r = readPcapng(bytes());
    expect(r.packets[0].timestamp).toBe(BigInt(t));
    expect(r.packets[1].timestamp).toBe(BigInt(t));
    expect(Number(r.packets[2].timestamp) / 1e6).toBeCloseTo(Date.now(), -3);
  });

  it("refuses an interface index that header() did not declare", () => {
    const { w } = collect();
    w.header([{ name: "h1" }]);
    expect(() => w.packet(1, ARP_REQUEST, 0, 42, 0)).toThrow(RangeError);
  });

  it("reader rejects broken framing", () => {
    const { w, bytes } = collect();
    writeSample(w);
    const good = bytes();
    expect(readPcapng(good).packets).toHaveLength(5);
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0x12345678, bad.length - 4); // trailing length of the last EPB
    expect(() => readPcapng(bad)).toThrow(/trailing block length/);
    expect(() => readPcapng(good.subarray(0, good.length - 10))).toThrow(/block length|truncated/);
    expect(() => readPcapng(good.subarray(44))).toThrow(/Section Header Block/);
  });
});

describe("PcapngWriter output read by other tools", () => {
  const dir = mkdtempSync(join(tmpdir(), "tapnet-pcapng-"));
  const file = join(dir, "sample.pcapng");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const tool = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: "utf8", timeout: 20_000, stdio: ["ignore", "pipe", "pipe"] });
  const have = (cmd: string): boolean => {
    try {
      execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  };

  it("reads back with readPcapng", () => {
    const { w, bytes } = collect();
    writeSample(w);
    writeFileSync(file, bytes());
    const r = readPcapng(readFileSync(file));
    expect(r.interfaces.map((i) => i.name)).toEqual(["h1", "h2"]);
    expect(r.interfaces[1].description).toBe("host two");
    expect(r.interfaces.every((i) => i.tsUnitsPerSec === 1_000_000_000n && i.linkType === 1)).toBe(true);
    expect(r.packets.map((p) => [p.ifIndex, p.data.length, p.flags])).toEqual([
      [0, 42, EPB_DIR_INBOUND],
      [1, 42, EPB_DIR_OUTBOUND],
      [1, 42, EPB_DIR_INBOUND],
      [0, 98, EPB_DIR_OUTBOUND],
      [0, 98, 0],
    ]);
    expect(r.packets[3].data).toEqual(ICMP_ECHO_REQUEST);
    expect(r.packets[0].timestamp).toBe(T0);
  });

  it.skipIf(!have("tshark"))("tshark sees the interfaces, frames, lengths, types and directions", () => {
    const { w, bytes } = collect();
    writeSample(w);
    writeFileSync(file, bytes());
    const out = tool("tshark", [
      "-r",
      file,
      "-T",
      "fields",
      "-E",
      "separator=,",
      "-e",
      "frame.interface_name",
      "-e",
      "frame.interface_description",
      "-e",
      "frame.len",
      "-e",
      "eth.type",
      "-e",
      "frame.packet_flags_direction",
      "-e",
      "frame.time_epoch",
      "-e",
      "arp.opcode",
      "-e",
      "icmp.type",
    ]);
    const rows = out
      .trim()
      .split("\n")
      .map((l) => l.split(","));
    expect(rows).toHaveLength(5);
    expect(rows.map((r) => r[0])).toEqual(["h1", "h2", "h2", "h1", "h1"]);
    expect(rows[1][1]).toBe("host two");
    expect(rows.map((r) => Number(r[2]))).toEqual([42, 42, 42, 98, 98]);
    expect(rows.map((r) => r[3])).toEqual(["0x0806", "0x0806", "0x0806", "0x0800", "0x0800"]);
    // 1 = inbound, 2 = outbound, 0 = not given.
    expect(rows.map((r) => (r[4] === "" ? "" : Number(r[4])))).toEqual([1, 2, 1, 2, ""]);
    // Nanosecond resolution survives: if_tsresol = 9 is honoured.
    expect(rows[0][5]).toBe("1700000000.123456789");
    expect(rows[1][5]).toBe("1700000000.123457789");
    expect(rows.map((r) => r[6] || r[7])).toEqual(["1", "1", "2", "8", "0"]);

    // No frame carries expert info (bad checksum, malformed): the bytes went through
    // unchanged. (A flipped ICMP byte makes this list "Bad checksum".)
    const expert = tool("tshark", [
      "-r",
      file,
      "-o",
      "ip.check_checksum:TRUE",
      "-Y",
      "_ws.expert",
      "-T",
      "fields",
      "-e",
      "frame.number",
      "-e",
      "_ws.expert.message",
    ]);
    expect(expert.trim()).toBe("");
  });

  it.skipIf(!have("capinfos"))("capinfos reads it as pcapng with 2 interfaces and 5 packets", () => {
    const { w, bytes } = collect();
    writeSample(w);
    writeFileSync(file, bytes());
    const out = tool("capinfos", ["-t", "-c", "-I", file]);
    expect(out).toMatch(/File type:\s+Wireshark\/\.\.\. - pcapng/);
    expect(out).toMatch(/Number of packets:\s+5\b/);
    expect(out).toMatch(/Number of interfaces in file: 2/);
    expect(out).toMatch(/Name = h1/);
    expect(out).toMatch(/Name = h2/);
    expect(out).toMatch(/Time precision = nanoseconds/);
  });

  it("writes through a Writable stream", async () => {
    const path = join(dir, "stream.pcapng");
    const ws = createWriteStream(path);
    const w = new PcapngWriter(ws);
    writeSample(w);
    await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const r = readPcapng(readFileSync(path));
    expect(r.packets).toHaveLength(5);
    expect(r.interfaces.map((i) => i.name)).toEqual(["h1", "h2"]);
  });
});
