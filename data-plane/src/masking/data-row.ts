/**
 * (B) DataRow rewriting: 'D', int32 length (self-inclusive), int16 field count, then per field an
 * int32 length (-1 = NULL) and that many bytes. Only masked fields are re-encoded; the frame and
 * field lengths are recomputed. NULL stays NULL. Pure. Decoding and encoding whole rows is the wire
 * codec's (wire/decode.ts decodeDataRow, wire/encode.ts encodeDataRow): one codec for the data plane.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { MaskPlanData } from "./mask-rules.js";
import { maskFieldBytes } from "./mask-value.js";
import { applyPartial, bytesEqual, Op, PARTIAL_SLOW, partialPlan, scanMayMatch } from "./fast-mask.js";

const D = 0x44;

// The edits of the row being masked, in field order: a field either gets new bytes (repBytes) or
// is copied and starred in place per its partial plan (repHide, fast-mask.ts; repBytes null). Module scratch (the
// function is synchronous and not re-entrant), so a masked row allocates nothing but its output.
const repStart: number[] = [];
const repEnd: number[] = [];
const repBytes: Array<Buffer | null> = [];
const repHide: number[] = [];

function readLen(b: Buffer, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}

/**
 * Masks a whole DataRow frame per `plan`. Returns `frame` itself when nothing changed.
 *
 * One read-only walk over the fields decides the edits (masked values are judged on their bytes in
 * place, fast-mask.ts); a changed row is then written once into one buffer of its final size.
 */
export function maskDataRowFrame(plan: MaskPlanData, frame: Buffer): Buffer {
  if (frame[0] !== D) return frame;
  const size = frame.length;
  if (size < 7) throw new SluiceError("internal", "DataRow frame is truncated");
  const n = (frame[5]! << 8) | frame[6]!;
  if (n !== plan.fieldCount) throw new SluiceError("internal", `DataRow has ${n} fields, RowDescription announced ${plan.fieldCount}`);
  const ops = plan.fast.ops;
  let edits = 0;
  let delta = 0;
  let p = 7;
  for (let i = 0; i < n; i++) {
    if (p + 4 > size) throw new SluiceError("internal", "DataRow field runs past the frame");
    const l = readLen(frame, p);
    p += 4;
    if (l < 0) continue;
    const end = p + l;
    if (end > size) throw new SluiceError("internal", "DataRow field runs past the frame");
    const op = ops[i]!;
    if (op !== Op.None) {
      let r: Buffer | null = null;
      let hide = 0;
      if (op === Op.Const) {
        const c = plan.fast.consts[i]!;
        if (!bytesEqual(frame, p, end, c)) r = c;
      } else if (op === Op.Scan) {
        if (scanMayMatch(frame, p, end, plan.fast.scan[i]!)) r = maskFieldBytes(plan.byIndex[i]!, frame.subarray(p, end), plan.formats[i] ?? 0, plan.hashKey);
      } else if (op === Op.ConstBinary) {
        const c = plan.fast.consts[i]!;
        if (l !== c.length) r = maskFieldBytes(plan.byIndex[i]!, frame.subarray(p, end), 1, plan.hashKey);
        else if (!bytesEqual(frame, p, end, c)) r = c;
      } else {
        hide = op === Op.Partial ? partialPlan(frame, p, end) : PARTIAL_SLOW;
        if (hide === PARTIAL_SLOW) {
          hide = 0;
          r = maskFieldBytes(plan.byIndex[i]!, frame.subarray(p, end), plan.formats[i] ?? 0, plan.hashKey);
        }
      }
      if (r !== null || hide !== 0) {
        repStart[edits] = p;
        repEnd[edits] = end;
        repBytes[edits] = r;
        repHide[edits] = hide;
        edits++;
        if (r !== null) delta += r.length - l;
      }
    }
    p = end;
  }
  if (p !== size) throw new SluiceError("internal", "DataRow has trailing bytes");
  if (edits === 0) return frame;
  const out = Buffer.allocUnsafe(size + delta);
  let from = 0;
  let to = 0;
  for (let k = 0; k < edits; k++) {
    const start = repStart[k]!;
    const b = repBytes[k] as Buffer | null;
    if (b === null) {
      // same length: copy through the value, then star it in the output
      const end = repEnd[k]!;
      const at = to + (start - from);
      to += frame.copy(out, to, from, end);
      applyPartial(out, at, to, repHide[k]!);
    } else {
      to += frame.copy(out, to, from, start - 4);
      out.writeInt32BE(b.length, to);
      to += 4;
      to += b.copy(out, to);
      repBytes[k] = null; // drop the reference: a masked value must not outlive its row here
    }
    from = repEnd[k]!;
  }
  frame.copy(out, to, from);
  if (delta !== 0) out.writeInt32BE(out.length - 1, 1);
  return out;
}
