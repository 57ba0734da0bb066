/**
 * Masks one field value in its wire form (text or binary), per the field's planned treatment.
 * Pure. Returns null when the value is unchanged (so the frame can be reused).
 */
import { SluiceError } from "@sluice/shared/errors";
import { scanValue } from "./classifiers.js";
import { maskJsonText } from "./json-mask.js";
import { maskInteger, maskMatches, maskNumericText, maskWhole } from "./mask-strategies.js";
import type { FieldMask, Treatment } from "./mask-rules.js";

/** Masks a value in text form. */
export function maskText(m: FieldMask, s: string, hashKey: Buffer): string {
  const t = m.treatment;
  switch (t.mode) {
    case "whole":
      if (m.codec.kind === "int" || m.codec.kind === "number") return maskNumericText(s, t.strategy, hashKey, m.codec.bits ?? 64);
      return maskWhole(s, t.strategy, hashKey);
    case "json":
      return maskJson(t, s, hashKey);
    case "scan": {
      const matches = scanValue(s, t.classifiers);
      // each classifier masks with its own bundle entry's strategy
      return matches.length === 0 ? s : maskMatches(s, matches, t.strategyOf, hashKey);
    }
  }
}

function maskJson(t: Extract<Treatment, { mode: "json" }>, s: string, hashKey: Buffer): string {
  try {
    return maskJsonText(s, {
      keys: t.keys,
      all: t.all,
      strategy: t.strategy,
      hashKey,
      classifiers: t.classifiers,
      classifierStrategy: t.strategyOf,
    });
  } catch {
    // not JSON after all (a json-typed expression the server rendered oddly): mask it whole
    return maskWhole(s, t.strategy, hashKey);
  }
}

function asciiOnly(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 127) return false;
  return true;
}

function asciiString(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** Text bytes → masked text bytes; ASCII values (the common case) skip UTF-8 coding. */
function maskTextBytes(m: FieldMask, value: Buffer, hashKey: Buffer): Buffer | null {
  if (asciiOnly(value)) {
    const s = value.toString("latin1");
    const r = maskText(m, s, hashKey);
    if (r === s) return null;
    return Buffer.from(r, asciiString(r) ? "latin1" : "utf8");
  }
  const s = value.toString("utf8");
  const r = maskText(m, s, hashKey);
  return r === s ? null : Buffer.from(r, "utf8");
}

/** Masks one field's bytes. `format` 0 text, 1 binary. Null = unchanged. */
export function maskFieldBytes(m: FieldMask, value: Buffer, format: number, hashKey: Buffer): Buffer | null {
  if (format === 0) return maskTextBytes(m, value, hashKey);
  switch (m.codec.kind) {
    case "text":
    case "json":
      return maskTextBytes(m, value, hashKey);
    case "jsonb": {
      // binary jsonb: a version byte (1) then the JSON text
      if (value.length === 0 || value[0] !== 1) throw new SluiceError("permission_denied", `cannot mask binary column ${m.label}: unknown jsonb version`);
      const s = value.toString("utf8", 1);
      const r = maskText(m, s, hashKey);
      return r === s ? null : Buffer.concat([value.subarray(0, 1), Buffer.from(r, "utf8")]);
    }
    case "int": {
      const t = m.treatment;
      if (t.mode !== "whole") return null;
      const bits = m.codec.bits!;
      const raw = bits === 16 ? value.readInt16BE(0) : bits === 32 ? value.readInt32BE(0) : value.readBigInt64BE(0);
      const v = maskInteger(String(raw), t.strategy, hashKey, bits);
      const out = Buffer.alloc(bits / 8);
      if (bits === 16) out.writeInt16BE(Number(v));
      else if (bits === 32) out.writeInt32BE(Number(v));
      else out.writeBigInt64BE(v);
      return out;
    }
    default:
      throw new SluiceError("permission_denied", `cannot mask binary column ${m.label} of type ${m.codec.typeName}`);
  }
}
