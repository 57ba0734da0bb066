/**
 * Byte-level fast paths for the common masked-column cases, decided once per plan so that masking a
 * DataRow costs a walk over its bytes and no string, closure or per-field Buffer. Every fast path
 * gives exactly what the string path (mask-value.ts) gives; a value the fast path is not sure about
 * (non-ASCII, or a shape other than "generic" under `partial`) takes the string path. Pure.
 */
import { REDACTED } from "./mask-strategies.js";
import type { FieldMask } from "./mask-rules.js";

/** What to do with one field of a row. */
export const enum Op {
  /** not masked: bytes pass through */
  None = 0,
  /** the string path (mask-value.ts) */
  Slow = 1,
  /** `partial` on a whole text value: same length, letters/digits become `*` */
  Partial = 2,
  /** the value becomes a constant whatever it was (`redact`, or a number under partial/redact) */
  Const = 3,
}

export interface FastOps {
  /** by field index */
  readonly ops: Uint8Array;
  /** the constant of each Op.Const field */
  readonly consts: ReadonlyArray<Buffer | undefined>;
}

const ZERO = Buffer.from("0", "latin1");
const REDACTED_BYTES = Buffer.from(REDACTED, "latin1");

/** The fast path of each field, from its treatment, codec and result format. */
export function compileFastOps(fieldCount: number, byIndex: ReadonlyArray<FieldMask | undefined>, formats: readonly number[]): FastOps {
  const ops = new Uint8Array(fieldCount);
  const consts: Array<Buffer | undefined> = new Array(fieldCount);
  for (let i = 0; i < fieldCount; i++) {
    const m = byIndex[i];
    if (!m) continue;
    ops[i] = Op.Slow;
    const t = m.treatment;
    // binary values (int8, jsonb, …) and JSON/classifier scans keep the string path
    if ((formats[i] ?? 0) !== 0 || t.mode !== "whole" || t.strategy === "hash") continue;
    if (m.codec.kind === "int" || m.codec.kind === "number") {
      // maskNumericText: any non-hash strategy stands a number in for 0, whatever the value
      ops[i] = Op.Const;
      consts[i] = ZERO;
    } else if (t.strategy === "redact") {
      ops[i] = Op.Const;
      consts[i] = REDACTED_BYTES;
    } else {
      ops[i] = Op.Partial;
    }
  }
  return { ops, consts };
}

/** b[start, end) equals c */
export function bytesEqual(b: Buffer, start: number, end: number, c: Buffer): boolean {
  if (end - start !== c.length) return false;
  for (let i = 0; i < c.length; i++) if (b[start + i] !== c[i]) return false;
  return true;
}

const PEM_MARK = Buffer.from("PRIVATE KEY-----", "latin1");

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isUpper(c: number): boolean {
  return c >= 65 && c <= 90;
}

// byte classes for partialPlan's loop: one table load per byte instead of a chain of compares
const C_ALNUM = 1;
const C_DASH = 2;
const C_SLOW = 3;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) CLASS[c] = c > 127 || c === 64 ? C_SLOW : isAsciiAlnum(c) ? C_ALNUM : c === 45 ? C_DASH : 0;

/** Partial: the string path must decide (non-ASCII, or a shape with its own visible parts). */
export const PARTIAL_SLOW = -1;

/**
 * `partial` of the text value b[start, end) when it is ASCII and its guessed shape is "generic"
 * (mask-strategies.ts guessKind/partialGeneric): returns the count of letters/digits to hide (0:
 * unchanged), or PARTIAL_SLOW when the string path must decide. Reads only.
 *
 * The shape tests are necessary conditions of guessKind's patterns: when none holds, guessKind
 * answers "generic"; when one holds, the string path runs the real pattern.
 */
export function partialPlan(b: Buffer, start: number, end: number): number {
  let alnum = 0;
  let dash = false;
  for (let i = start; i < end; i++) {
    const k = CLASS[b[i]!]!;
    if (k === 0) continue;
    if (k === C_ALNUM) alnum++;
    else if (k === C_DASH) dash = true;
    else return PARTIAL_SLOW; // '@' or non-ASCII
  }
  const len = end - start;
  if (len >= 6) {
    const c0 = b[start]!;
    if (isDigit(c0)) return PARTIAL_SLOW; // SSN, card number
    // IBAN: two capitals and two digits; AWS key id: AKIA/ASIA
    if (isUpper(c0) && isUpper(b[start + 1]!) && (isDigit(b[start + 2]!) || (len === 20 && b[start + 2] === 73 /* I */ && b[start + 3] === 65 /* A */)))
      return PARTIAL_SLOW;
    if (c0 === 101 /* e */ && b[start + 1] === 121 /* y */ && b[start + 2] === 74 /* J */) return PARTIAL_SLOW; // JWT
    if (dash && len >= PEM_MARK.length) {
      const at = b.indexOf(PEM_MARK, start);
      if (at >= 0 && at + PEM_MARK.length <= end) return PARTIAL_SLOW;
    }
  }
  // partialGeneric: the last four stay visible when at least sixteen letters/digits are there
  return alnum >= 16 ? alnum - 4 : alnum;
}

/** Writes `*` over the first `hide` letters/digits of out[start, end) (the plan from partialPlan). */
export function applyPartial(out: Buffer, start: number, end: number, hide: number): void {
  for (let i = start; i < end && hide > 0; i++) {
    if (isAsciiAlnum(out[i]!)) {
      out[i] = 42; // '*'
      hide--;
    }
  }
}
