/**
 * COPY TO STDOUT in text format: each (B) CopyData carries rows of tab-separated fields, `\N` for
 * NULL and backslash escapes (\\ \t \n \r \b \f \v, octal \ooo, hex \xhh), each row ending in a
 * newline. PostgreSQL sends one row per CopyData; this also handles several whole rows in one.
 * CSV and binary COPY are not rewritten (the masker denies them when a masked column is copied).
 * Pure.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { MaskPlanData } from "./mask-rules.js";
import { maskText } from "./mask-value.js";
import { applyPartial, bytesEqual, Op, PARTIAL_SLOW, partialPlan, scanMayMatch } from "./fast-mask.js";

const ESC: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\\": "\\" };

export function unescapeCopyField(f: string): string | null {
  if (f === "\\N") return null;
  if (!f.includes("\\")) return f;
  return f.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ESC[e] ?? e;
  });
}

export function escapeCopyField(v: string | null): string {
  if (v === null) return "\\N";
  return v.replace(/[\\\t\n\r\b\f\v]/g, (c) => {
    switch (c) {
      case "\\": return "\\\\";
      case "\t": return "\\t";
      case "\n": return "\\n";
      case "\r": return "\\r";
      case "\b": return "\\b";
      case "\f": return "\\f";
      default: return "\\v";
    }
  });
}

// The edits of the payload being masked (as in data-row.ts): new bytes, or stars in place per a
// partial plan. Module scratch: the functions are synchronous and not re-entrant.
const repStart: number[] = [];
const repEnd: number[] = [];
const repBytes: Array<Buffer | null> = [];
const repHide: number[] = [];

/** the string path for one field of an ASCII payload without escapes: null when unchanged */
function maskFieldText(plan: MaskPlanData, i: number, b: Buffer, start: number, end: number): Buffer | null {
  const v = b.toString("latin1", start, end);
  const masked = maskText(plan.byIndex[i]!, v, plan.hashKey);
  return masked === v ? null : Buffer.from(escapeCopyField(masked), "utf8");
}

/**
 * The byte path of maskCopyText over b[from, end): rows whose masked fields are plain ASCII
 * without escapes are judged on their bytes (fast-mask.ts). Returns `b` when nothing changed, a new
 * Buffer (b[0, from) copied through) when something did, or undefined when the string path must
 * decide: a non-ASCII byte (the string path re-encodes changed rows as UTF-8), an escape in a masked
 * field, or a row with the wrong field count (the string path refuses it).
 */
function maskCopyBytes(plan: MaskPlanData, b: Buffer, from: number): Buffer | undefined {
  const ops = plan.fast.ops;
  const fieldCount = plan.fieldCount;
  const n = b.length;
  let edits = 0;
  let delta = 0;
  let i = from;
  while (i < n) {
    let field = 0;
    let fs = i;
    let escaped = false;
    for (;;) {
      const c = i < n ? b[i]! : 10;
      if (c > 127) return undefined;
      if (c === 92 /* \ */) escaped = true;
      if (c !== 9 && c !== 10) {
        i++;
        continue;
      }
      if (field >= fieldCount) return undefined;
      const op = ops[field]!;
      if (op !== Op.None && !(escaped && i - fs === 2 && b[fs] === 92 && b[fs + 1] === 78) /* \N: NULL */) {
        if (escaped) return undefined;
        let r: Buffer | null = null;
        let hide = 0;
        if (op === Op.Const) {
          const k = plan.fast.consts[field]!;
          if (!bytesEqual(b, fs, i, k)) r = k;
        } else if (op === Op.Scan) {
          if (scanMayMatch(b, fs, i, plan.fast.scan[field]!)) r = maskFieldText(plan, field, b, fs, i);
        } else {
          hide = op === Op.Partial ? partialPlan(b, fs, i) : PARTIAL_SLOW;
          if (hide === PARTIAL_SLOW) {
            hide = 0;
            r = maskFieldText(plan, field, b, fs, i);
          }
        }
        if (r !== null || hide !== 0) {
          repStart[edits] = fs;
          repEnd[edits] = i;
          repBytes[edits] = r;
          repHide[edits] = hide;
          edits++;
          if (r !== null) delta += r.length - (i - fs);
        }
      }
      field++;
      escaped = false;
      i++;
      if (c === 10) break;
      fs = i;
    }
    if (field !== fieldCount) return undefined;
  }
  if (edits === 0) return b;
  const out = Buffer.allocUnsafe(n + delta);
  let at = 0;
  let to = 0;
  for (let k = 0; k < edits; k++) {
    const start = repStart[k]!;
    const end = repEnd[k]!;
    const r = repBytes[k] as Buffer | null;
    to += b.copy(out, to, at, start);
    if (r === null) {
      to += b.copy(out, to, start, end);
      applyPartial(out, to - (end - start), to, repHide[k]!);
    } else {
      to += r.copy(out, to);
      repBytes[k] = null; // a masked value must not outlive its row here
    }
    at = end;
  }
  b.copy(out, to, at);
  return out;
}

/** Masks the rows in one CopyData payload (text format). Returns the same Buffer when unchanged. */
export function maskCopyText(plan: MaskPlanData, payload: Buffer): Buffer {
  return maskCopyBytes(plan, payload, 0) ?? maskCopyTextSlow(plan, payload);
}

/** The string path: decode, split, unescape, mask, escape, re-encode (and the byte path's reference in tests). */
export function maskCopyTextSlow(plan: MaskPlanData, payload: Buffer): Buffer {
  const text = payload.toString("utf8");
  const rows = text.split("\n");
  let changed = false;
  // the last element is "" when the payload ends with a newline (it always does for whole rows)
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    if (row === "" && r === rows.length - 1) continue;
    const fields = row.split("\t");
    if (fields.length !== plan.fieldCount)
      throw new SluiceError("permission_denied", `COPY row has ${fields.length} fields, expected ${plan.fieldCount}: cannot mask it`);
    let rowChanged = false;
    for (const m of plan.masks) {
      const raw = fields[m.index]!;
      const v = unescapeCopyField(raw);
      if (v === null) continue;
      const masked = maskText(m, v, plan.hashKey);
      if (masked !== v) {
        fields[m.index] = escapeCopyField(masked);
        rowChanged = true;
      }
    }
    if (rowChanged) {
      rows[r] = fields.join("\t");
      changed = true;
    }
  }
  return changed ? Buffer.from(rows.join("\n"), "utf8") : payload;
}

/** The same for a whole (B) CopyData frame ('d', int32 length, payload). */
export function maskCopyDataFrame(plan: MaskPlanData, frame: Buffer): Buffer {
  if (frame[0] !== 0x64) return frame;
  const fast = maskCopyBytes(plan, frame, 5);
  if (fast !== undefined) {
    if (fast !== frame) fast.writeInt32BE(fast.length - 1, 1);
    return fast;
  }
  const payload = frame.subarray(5);
  const masked = maskCopyTextSlow(plan, payload);
  if (masked === payload) return frame;
  const out = Buffer.allocUnsafe(5 + masked.length);
  out[0] = 0x64;
  out.writeInt32BE(4 + masked.length, 1);
  masked.copy(out, 5);
  return out;
}
