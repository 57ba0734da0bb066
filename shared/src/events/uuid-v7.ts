import { randomFillSync } from "node:crypto";

let lastMs = 0;
let seq = 0;

/**
 * Random bytes are drawn from a pool refilled 4 KiB at a time: one randomBytes(16) per id was a
 * syscall-sized cost on the audit hot path (several events per statement). The pool is only ever
 * read forward, so no byte is used twice.
 */
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;
/**
 * The id's timestamp part ("xxxxxxxx-xxxx-"), remembered for the last millisecond: events come in
 * bursts within one, and its hex formatting was about a quarter of a µs per event.
 */
let prefixMs = Number.NaN;
let prefix = "";
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * RFC 9562 UUIDv7: 48-bit Unix ms timestamp, version 7, 12 bits of a per-process counter (so ids made
 * in the same millisecond still sort in creation order), variant 10, 62 random bits.
 */
export function uuidv7(nowMs: number = Date.now()): string {
  if (nowMs <= lastMs) {
    seq = (seq + 1) & 0xfff;
    if (seq === 0) lastMs += 1; // counter overflow: borrow the next millisecond
    nowMs = lastMs;
  } else {
    lastMs = nowMs;
    seq = 0;
  }
  if (poolAt + 8 > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const r = poolAt;
  poolAt += 8;
  if (nowMs !== prefixMs) {
    // 48-bit timestamp as 12 hex digits (split: bitwise ops are 32-bit)
    const hi = Math.floor(nowMs / 0x1000000);
    const lo = nowMs % 0x1000000;
    const ts = hi.toString(16).padStart(6, "0") + lo.toString(16).padStart(6, "0");
    prefix = ts.slice(0, 8) + "-" + ts.slice(8, 12) + "-";
    prefixMs = nowMs;
  }
  const p = pool;
  return (
    prefix +
    HEX[0x70 | ((seq >> 8) & 0x0f)]! + HEX[seq & 0xff]! + "-" +
    HEX[0x80 | (p[r]! & 0x3f)]! + HEX[p[r + 1]!]! + "-" +
    HEX[p[r + 2]!]! + HEX[p[r + 3]!]! + HEX[p[r + 4]!]! + HEX[p[r + 5]!]! + HEX[p[r + 6]!]! + HEX[p[r + 7]!]!
  );
}

export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, "").slice(0, 12), 16);
}
