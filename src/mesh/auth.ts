/**
 * Password authentication of a mesh connection: each end proves it knows the shared
 * password without sending it, with Node's crypto (OpenSSL), nothing home-made.
 *
 *   key   = scrypt(password, salt "tapnet-mesh v1", 32 bytes)   (RFC 7914; once, at start)
 *   proof = HMAC-SHA256(key, "tapnet-mesh auth" | name | uid | own nonce | peer's nonce)
 *
 * Both ends send a fresh 32-byte random nonce in their HELLO and answer with the proof
 * over their own identity and both nonces; the other end recomputes it and compares in
 * constant time (timingSafeEqual). A recorded proof is useless on another connection
 * (the peer's nonce differs); one end's proof cannot be reflected back as the other's
 * (the name and the nonce order differ, and a peer calling itself by our name is
 * refused before this).
 *
 * This authenticates who joins the mesh. It does not encrypt, and the messages after the
 * handshake and the UDP data path are not authenticated (see docs/mesh.md).
 */
import { createHmac, randomBytes, scryptSync, timingSafeEqual } from "node:crypto";

export function deriveKey(password: string): Buffer {
  return scryptSync(password, "tapnet-mesh v1", 32);
}

export function newNonce(): string {
  return randomBytes(32).toString("hex");
}

export function proof(key: Buffer, name: string, uid: string, ownNonce: string, peerNonce: string): string {
  return createHmac("sha256", key).update(`tapnet-mesh auth\0${name}\0${uid}\0${ownNonce}\0${peerNonce}`).digest("hex");
}

/** Checks the peer's proof (its name, uid and nonce first, then ours). */
export function verify(key: Buffer, name: string, uid: string, peerNonce: string, ownNonce: string, got: unknown): boolean {
  if (typeof got !== "string" || !/^[0-9a-f]{64}$/.test(got)) return false;
  const want = Buffer.from(proof(key, name, uid, peerNonce, ownNonce), "hex");
  return timingSafeEqual(want, Buffer.from(got, "hex"));
}
