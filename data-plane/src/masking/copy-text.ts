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

/** Masks the rows in one CopyData payload (text format). Returns the same Buffer when unchanged. */
export function maskCopyText(plan: MaskPlanData, payload: Buffer): Buffer {
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
  const payload = frame.subarray(5);
  const masked = maskCopyText(plan, payload);
  if (masked === payload) return frame;
  const out = Buffer.allocUnsafe(5 + masked.length);
  out[0] = 0x64;
  out.writeInt32BE(4 + masked.length, 1);
  masked.copy(out, 5);
  return out;
}
