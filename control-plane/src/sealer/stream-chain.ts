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
 * The digest of one event inside a message: its `sluicehash` (which itself covers every other
 * field), or, for an event that is not hash-chained, the hash of its canonical JSON.
 */
export function eventDigest(ev: CloudEvent): string {
  if (typeof ev.sluicehash === "string" && HEX64.test(ev.sluicehash)) return ev.sluicehash;
  return hashEvent(ev);
}

/** Domain separation of the two kinds of message digest. */
const BATCH_TAG = Buffer.from([0x01]);
const RAW_TAG = Buffer.from([0x00]);

/**
 * The digest the stream chain covers for one stored message:
 *  - a CloudEvents batch: SHA-256( 0x01 || the 32-byte digest of each event, in order ), so removing,
 *    adding, altering or reordering an event inside a message changes it;
 *  - anything else: SHA-256( 0x00 || the message bytes ), so the sealer never stalls on a malformed
 *    message (verify reports such messages separately).
 * A JSON-lines copy (one event a line) gives the same digest back: it needs the events, not bytes.
 */
export function messageDigest(events: readonly CloudEvent[] | undefined, raw?: Uint8Array): string {
  const h = createHash("sha256");
  if (events) {
    h.update(BATCH_TAG);
    for (const ev of events) h.update(Buffer.from(eventDigest(ev), "hex"));
  } else {
    h.update(RAW_TAG);
    h.update(raw ?? new Uint8Array());
  }
  return h.digest("hex");
}
