import { randomBytes } from "node:crypto";

let lastMs = 0;
let seq = 0;

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
  const b = randomBytes(16);
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = 0x70 | ((seq >> 8) & 0x0f);
  b[7] = seq & 0xff;
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, "").slice(0, 12), 16);
}
