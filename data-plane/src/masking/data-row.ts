/**
 * (B) DataRow rewriting: 'D', int32 length (self-inclusive), int16 field count, then per field an
 * int32 length (-1 = NULL) and that many bytes. Only masked fields are re-encoded; the frame and
 * field lengths are recomputed. NULL stays NULL. Pure.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { MaskPlanData } from "./mask-rules.js";
import { maskFieldBytes } from "./mask-value.js";

const D = 0x44;

/** The fields of a DataRow frame (for tests and the recorder). */
export function decodeDataRow(frame: Buffer): Array<Buffer | null> {
  if (frame[0] !== D) throw new SluiceError("internal", "not a DataRow frame");
  const len = frame.readInt32BE(1);
  if (len + 1 !== frame.length) throw new SluiceError("internal", `DataRow length ${len} does not match frame of ${frame.length} bytes`);
  const n = frame.readInt16BE(5);
  const out: Array<Buffer | null> = [];
  let p = 7;
  for (let i = 0; i < n; i++) {
    const l = frame.readInt32BE(p);
    p += 4;
    if (l < 0) out.push(null);
    else {
      out.push(frame.subarray(p, p + l));
      p += l;
    }
  }
  if (p !== frame.length) throw new SluiceError("internal", "DataRow has trailing bytes");
  return out;
}

export function encodeDataRow(values: ReadonlyArray<Buffer | null>): Buffer {
  let size = 7;
  for (const v of values) size += 4 + (v ? v.length : 0);
  const b = Buffer.allocUnsafe(size);
  b[0] = D;
  b.writeInt32BE(size - 1, 1);
  b.writeInt16BE(values.length, 5);
  let p = 7;
  for (const v of values) {
    if (v === null) {
      b.writeInt32BE(-1, p);
      p += 4;
    } else {
      b.writeInt32BE(v.length, p);
      p += 4;
      v.copy(b, p);
      p += v.length;
    }
  }
  return b;
}

/** Masks a whole DataRow frame per `plan`. Returns `frame` itself when nothing changed. */
export function maskDataRowFrame(plan: MaskPlanData, frame: Buffer): Buffer {
  if (frame[0] !== D) return frame;
  const n = frame.readInt16BE(5);
  if (n !== plan.fieldCount) throw new SluiceError("internal", `DataRow has ${n} fields, RowDescription announced ${plan.fieldCount}`);
  // first pass: find masked fields and their replacements; unmasked rows cost one walk of lengths
  let replaced: Array<{ start: number; end: number; bytes: Buffer }> | undefined;
  let p = 7;
  let delta = 0;
  for (let i = 0; i < n; i++) {
    const l = frame.readInt32BE(p);
    const start = p;
    p += 4;
    if (l < 0) continue;
    const m = plan.byIndex[i];
    if (m) {
      const r = maskFieldBytes(m, frame.subarray(p, p + l), plan.formats[i] ?? 0, plan.hashKey);
      if (r) {
        (replaced ??= []).push({ start, end: p + l, bytes: r });
        delta += r.length - l;
      }
    }
    p += l;
  }
  if (!replaced) return frame;
  const out = Buffer.allocUnsafe(frame.length + delta);
  let from = 0;
  let to = 0;
  for (const r of replaced) {
    to += frame.copy(out, to, from, r.start);
    out.writeInt32BE(r.bytes.length, to);
    to += 4;
    to += r.bytes.copy(out, to);
    from = r.end;
  }
  frame.copy(out, to, from);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}
