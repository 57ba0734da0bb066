import { createHash } from "node:crypto";
import { GENESIS_HASH, hashEvent, type CloudEvent } from "@sluice/shared/events";

/** The stream chain starts from 32 zero bytes, like the per-session chains. */
export const STREAM_GENESIS = GENESIS_HASH;

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * One link of the stream-wide hash chain:
 *   h_n = SHA-256( h_{n-1} (32 bytes) || stream seq (uint64 big-endian) || event digest (32 bytes) )
 * Binary concatenation of fixed-width fields, so no two (prev, seq, digest) triples share an input.
 * Pure apart from hashing.
 */
export function streamChainStep(prevHex: string, seq: number, digestHex: string): string {
  const buf = Buffer.alloc(72);
  buf.write(prevHex, 0, 32, "hex");
  buf.writeBigUInt64BE(BigInt(seq), 32);
  buf.write(digestHex, 40, 32, "hex");
  return createHash("sha256").update(buf).digest("hex");
}

/**
 * The digest the stream chain covers for one stored message: the event's `sluicehash` (which itself
 * covers every other field), or, for a message that is not a hash-chained event, SHA-256 of its bytes
 * (so the sealer never stalls on a malformed message; verify reports such messages separately).
 */
export function eventDigest(ev: CloudEvent | undefined, raw?: Uint8Array): string {
  if (ev && typeof ev.sluicehash === "string" && HEX64.test(ev.sluicehash)) return ev.sluicehash;
  if (ev) return hashEvent(ev);
  return createHash("sha256").update(raw ?? new Uint8Array()).digest("hex");
}
