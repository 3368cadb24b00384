/** The mesh's TCP framing (src/mesh/wire.ts) and password proofs (src/mesh/auth.ts). */
import { describe, expect, it } from "vitest";
import { deriveKey, newNonce, proof, verify } from "../../src/mesh/auth.js";
import { encodeMessage, MAX_MESSAGE, MessageReader, shortId } from "../../src/mesh/wire.js";

describe("mesh wire", () => {
  it("splits a stream into messages whatever the chunking; a non-JSON body is undefined", () => {
    const bytes = Buffer.concat([encodeMessage(1, { a: 1 }), encodeMessage(3, ["x"]), Buffer.from([0, 0, 0, 3, 2, 0x7b, 0x7b])]);
    for (const step of [1, 2, 5, 7, bytes.length]) {
      const r = new MessageReader();
      const got: Array<{ type: number; body: unknown }> = [];
      for (let i = 0; i < bytes.length; i += step) got.push(...r.push(bytes.subarray(i, i + step)));
      expect(got, `chunks of ${step}`).toEqual([
        { type: 1, body: { a: 1 } },
        { type: 3, body: ["x"] },
        { type: 2, body: undefined },
      ]);
    }
  });

  it("a length beyond 1 MiB: the messages before it are returned, then nothing more", () => {
    const r = new MessageReader();
    const too = Buffer.alloc(5);
    too.writeUInt32BE(MAX_MESSAGE + 1, 0);
    expect(r.push(Buffer.concat([encodeMessage(1, {}), too, encodeMessage(2, {})]))).toEqual([{ type: 1, body: {} }]);
    expect(r.tooLong).toBe(true);
    expect(r.push(encodeMessage(3, {}))).toEqual([]);
  });

  it("short ids are 30-bit, never 0, and differ for the lab's names", () => {
    const ids = ["node1", "node2", "node3", "node4"].map(shortId);
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(id > 0 && id < 2 ** 30).toBe(true);
  });
});

describe("mesh auth", () => {
  const key = deriveKey("secret");
  const other = deriveKey("not-secret");
  const [n1, n2] = [newNonce(), newNonce()];

  it("a proof over both nonces verifies with the same password only", () => {
    const p = proof(key, "node1", "00000000000000aa", n1, n2);
    expect(verify(key, "node1", "00000000000000aa", n1, n2, p)).toBe(true);
    expect(verify(other, "node1", "00000000000000aa", n1, n2, p)).toBe(false);
  });

  it("a proof is bound to the name, UID and nonce order (no replay, no reflection)", () => {
    const p = proof(key, "node1", "00000000000000aa", n1, n2);
    expect(verify(key, "node2", "00000000000000aa", n1, n2, p)).toBe(false);
    expect(verify(key, "node1", "00000000000000ab", n1, n2, p)).toBe(false);
    expect(verify(key, "node1", "00000000000000aa", n2, n1, p)).toBe(false);
    expect(verify(key, "node1", "00000000000000aa", n1, newNonce(), p)).toBe(false);
  });

  it("what is not a proof is refused without throwing", () => {
    for (const bad of [undefined, 7, "", "zz", "a".repeat(63), "a".repeat(65), { p: 1 }])
      expect(verify(key, "node1", "00000000000000aa", n1, n2, bad)).toBe(false);
  });
});
