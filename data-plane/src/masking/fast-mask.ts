/**
 * Byte-level fast paths for the common masked-column cases, decided once per plan so that masking a
 * DataRow (data-row.ts) or a COPY row (copy-text.ts) costs a walk over its bytes and no string,
 * closure or per-field Buffer. Every fast path gives exactly what the string path (mask-value.ts)
 * gives; a value the fast path is not sure about (non-ASCII under `partial`, a shape other than
 * "generic", a value a classifier may match) takes the string path. Pure.
 */
import { isBuiltinClassifier, type BuiltinClassifier } from "./classifiers.js";
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
  /** builtin classifiers scan the value: a byte prefilter first, the string path only if one may match */
  Scan = 4,
  /** Const for a binary integer: only a value of the column's width (anything else: the string path) */
  ConstBinary = 5,
}

/** Builtin classifiers as bits of FastOps.scan */
const SCAN_BIT: Record<BuiltinClassifier, number> = {
  email: 1,
  "credit-card": 2,
  iban: 4,
  "us-ssn": 8,
  jwt: 16,
  "aws-key": 32,
  "private-key": 64,
};

/** Classifier names as scanMayMatch's bits; -1 when one is custom (an arbitrary regex no prefilter can speak for). */
export function classifierBits(names: readonly string[]): number {
  let bits = 0;
  for (const n of names) {
    if (!isBuiltinClassifier(n)) return -1;
    bits |= SCAN_BIT[n];
  }
  return bits;
}

export interface FastOps {
  /** by field index */
  readonly ops: Uint8Array;
  /** the constant of each Op.Const field */
  readonly consts: ReadonlyArray<Buffer | undefined>;
  /** the classifier bits of each Op.Scan field */
  readonly scan: Uint8Array;
}

const ZERO = Buffer.from("0", "latin1");
const ZERO_INT: Record<number, Buffer> = { 16: Buffer.alloc(2), 32: Buffer.alloc(4), 64: Buffer.alloc(8) };
const REDACTED_BYTES = Buffer.from(REDACTED, "latin1");

/** The fast path of each field, from its treatment, codec and result format. */
export function compileFastOps(fieldCount: number, byIndex: ReadonlyArray<FieldMask | undefined>, formats: readonly number[]): FastOps {
  const ops = new Uint8Array(fieldCount);
  const consts: Array<Buffer | undefined> = new Array(fieldCount);
  const scan = new Uint8Array(fieldCount);
  for (let i = 0; i < fieldCount; i++) {
    const m = byIndex[i];
    if (!m) continue;
    ops[i] = Op.Slow;
    const t = m.treatment;
    const format = formats[i] ?? 0;
    // a text column in binary format is its UTF-8 bytes, exactly as in text format (maskFieldBytes)
    const asText = format === 0 || m.codec.kind === "text";
    if (t.mode === "scan" && asText) {
      const bits = classifierBits(t.classifiers.map((c) => c.name));
      if (bits >= 0) {
        ops[i] = Op.Scan;
        scan[i] = bits;
      }
      continue;
    }
    // JSON and hash keep the string path
    if (t.mode !== "whole" || t.strategy === "hash") continue;
    if (format === 1 && m.codec.kind === "int") {
      // a binary integer under partial/redact becomes 0 in the column's width
      ops[i] = Op.ConstBinary;
      consts[i] = ZERO_INT[m.codec.bits!];
    } else if (!asText) {
      // other binary values (jsonb, …) keep the string path
    } else if (m.codec.kind === "int" || m.codec.kind === "number") {
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
  return { ops, consts, scan };
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
const C_AT = 3;
const C_SLOW = 4;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) CLASS[c] = c > 127 ? C_SLOW : c === 64 ? C_AT : isAsciiAlnum(c) ? C_ALNUM : c === 45 ? C_DASH : 0;

/** Partial: the string path must decide (non-ASCII, or a shape with its own visible parts). */
export const PARTIAL_SLOW = -1;
/** Partial plan of a card number: the first six and the last four digits stay (partialCard) */
const PARTIAL_CARD = -2;
/** Partial plans below this are an email: PARTIAL_EMAIL - plan is the offset of its @ */
const PARTIAL_EMAIL = -3;

/** /^\d{3}-\d{2}-\d{4}$/ on 11 bytes */
function ssnShape(b: Buffer, s: number): boolean {
  for (let k = 0; k < 11; k++) {
    const c = b[s + k]!;
    if (k === 3 || k === 6 ? c !== 45 : !isDigit(c)) return false;
  }
  return true;
}

/** /^\d(?:[ -]?\d){12,18}$/: 13 to 19 digits, single spaces or dashes between them */
function cardShape(b: Buffer, start: number, end: number): boolean {
  let digits = 0;
  let sep = true;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (isDigit(c)) {
      digits++;
      sep = false;
    } else if ((c === 32 || c === 45) && !sep) sep = true;
    else return false;
  }
  return !sep && digits >= 13 && digits <= 19;
}

function isAsciiSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/**
 * `partial` of the text value b[start, end) when it is ASCII and its guessed shape is "generic",
 * "email", "us-ssn" or "credit-card" (mask-strategies.ts guessKind and partialMask). Returns 0 when
 * the value stays as it is, PARTIAL_SLOW when the string path must decide, otherwise a plan for
 * applyPartial: > 0 the count of letters/digits to hide from the start (generic, SSN),
 * PARTIAL_CARD a card number, < PARTIAL_EMAIL an email.
 * Reads only.
 *
 * The shape tests are necessary conditions of guessKind's patterns: when none holds, guessKind
 * answers "generic"; when one holds, the string path runs the real pattern.
 */
export function partialPlan(b: Buffer, start: number, end: number): number {
  let alnum = 0;
  let dash = false;
  let ats = 0;
  let at = 0;
  for (let i = start; i < end; i++) {
    const k = CLASS[b[i]!]!;
    if (k === 0) continue;
    if (k === C_ALNUM) alnum++;
    else if (k === C_DASH) dash = true;
    else if (k === C_AT) {
      ats++;
      at = i - start;
    } else return PARTIAL_SLOW; // non-ASCII
  }
  const len = end - start;
  if (len >= 6 && ats > 0) {
    // guessKind: one local@domain without whitespace is an email, any other value with an @ generic
    let email = ats === 1 && at > 0 && at < len - 1;
    for (let i = start; email && i < end; i++) if (isAsciiSpace(b[i]!)) email = false;
    if (email) {
      // partialEmail: the first character of the local part stays (unless it is the only one)
      const from = at > 1 ? start + 1 : start;
      for (let i = from; i < start + at; i++) if (b[i] !== 42 /* * */) return PARTIAL_EMAIL - at;
      return 0;
    }
  } else if (len >= 6) {
    const c0 = b[start]!;
    if (isDigit(c0)) {
      // guessKind decides a value starting with a digit here: SSN, card number or generic
      if (len === 11 && ssnShape(b, start)) return alnum - 4;
      if (cardShape(b, start, end)) return PARTIAL_CARD;
      return alnum >= 16 ? alnum - 4 : alnum;
    }
    // IBAN: two capitals and two digits; AWS key id: AKIA/ASIA
    if (isUpper(c0) && isUpper(b[start + 1]!) && (isDigit(b[start + 2]!) || (len === 20 && b[start + 2] === 73 /* I */ && b[start + 3] === 65 /* A */)))
      return PARTIAL_SLOW;
    if (c0 === 101 /* e */ && b[start + 1] === 121 /* y */ && b[start + 2] === 74 /* J */) return PARTIAL_SLOW; // JWT
    if (dash && len >= PEM_MARK.length) {
      const pem = b.indexOf(PEM_MARK, start);
      if (pem >= 0 && pem + PEM_MARK.length <= end) return PARTIAL_SLOW;
    }
  }
  // partialGeneric: the last four stay visible when at least sixteen letters/digits are there
  return alnum >= 16 ? alnum - 4 : alnum;
}

/** Applies a partialPlan plan (not 0, not PARTIAL_SLOW) to out[start, end), a copy of the value. */
export function applyPartial(out: Buffer, start: number, end: number, plan: number): void {
  if (plan < PARTIAL_EMAIL) {
    const at = PARTIAL_EMAIL - plan;
    out.fill(42 /* * */, at > 1 ? start + 1 : start, start + at);
    return;
  }
  if (plan === PARTIAL_CARD) {
    // PCI DSS: at most the first six and the last four digits are shown
    let total = 0;
    for (let i = start; i < end; i++) if (isDigit(out[i]!)) total++;
    let k = 0;
    for (let i = start; i < end; i++) {
      if (!isDigit(out[i]!)) continue;
      if (k >= 6 && k < total - 4) out[i] = 42;
      k++;
    }
    return;
  }
  let hide = plan;
  for (let i = start; i < end && hide > 0; i++) {
    if (isAsciiAlnum(out[i]!)) {
      out[i] = 42; // '*'
      hide--;
    }
  }
}

// byte classes for scanMayMatch: most bytes of ordinary text are class 0 and cost one table load
const S_DIGIT = 1;
const S_AT = 2;
const S_DASH = 3;
const S_J = 4;
const S_UPPER = 5;
const S_S = 6;
const SCLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++)
  SCLASS[c] =
    c >= 48 && c <= 57 ? S_DIGIT : c === 64 ? S_AT : c === 45 ? S_DASH : c === 74 ? S_J : c === 83 || c === 115 ? S_S : c >= 65 && c <= 90 ? S_UPPER : 0;

function isUpperAt(b: Buffer, i: number): boolean {
  const c = b[i]!;
  return c >= 65 && c <= 90;
}

/** b[i, i + w.length) equals the lower-case ASCII word w, ignoring case */
function wordAt(b: Buffer, i: number, end: number, w: string): boolean {
  if (i < 0 || i + w.length > end) return false;
  for (let k = 0; k < w.length; k++) if ((b[i + k]! | 0x20) !== w.charCodeAt(k)) return false;
  return true;
}

/**
 * Whether any of the builtin classifiers in `bits` may match the text value b[start, end).
 * False means none can (so the value is unchanged); true means the string path must scan it.
 * Every test is a necessary condition of the classifier's pattern (classifiers.ts), on bytes: an
 * ASCII character of the decoded string is the same byte in UTF-8, and a string never has more
 * UTF-16 units than its UTF-8 bytes, so byte-length bounds are only looser.
 */
export function scanMayMatch(b: Buffer, start: number, end: number, bits: number): boolean {
  const len = end - start;
  if (len < 3) return false; // scanValue's own floor
  let digits = 0;
  let at = false;
  let dash = false;
  let jwt = false;
  let iban = false;
  let awsId = false;
  let awsWord = false;
  for (let i = start; i < end; i++) {
    const k = SCLASS[b[i]!]!;
    if (k === 0) continue;
    switch (k) {
      case S_DIGIT:
        digits++;
        // an IBAN starts with two capitals and two digits
        if (i - 3 >= start && SCLASS[b[i - 1]!] === S_DIGIT && isUpperAt(b, i - 2) && isUpperAt(b, i - 3)) iban = true;
        break;
      case S_AT:
        at = true;
        break;
      case S_DASH:
        dash = true;
        break;
      case S_J:
        if (i - 2 >= start && b[i - 1] === 121 /* y */ && b[i - 2] === 101 /* e */) jwt = true;
        break;
      case S_S:
        // "aws" or "secret" (any case) lets the aws-key classifier look for a 40-character secret
        if (wordAt(b, i - 2, end, "aws") || wordAt(b, i, end, "secret")) awsWord = true;
        if (b[i] === 83 && i > start && b[i - 1] === 65) awsId = true; // ASIA…
        break;
      default:
        // every access key id prefix is A + a capital (AKIA, ASIA, AROA, …)
        if (i > start && b[i - 1] === 65 /* A */) awsId = true;
    }
  }
  if (bits & SCAN_BIT.email && at) return true;
  if (bits & SCAN_BIT["credit-card"] && digits >= 13) return true;
  if (bits & SCAN_BIT.iban && iban && len >= 15) return true;
  if (bits & SCAN_BIT["us-ssn"] && len >= 11 && dash) return true;
  if (bits & SCAN_BIT.jwt && jwt) return true;
  if (bits & SCAN_BIT["aws-key"] && (awsId || (len >= 40 && awsWord))) return true;
  if (bits & SCAN_BIT["private-key"] && dash && len >= PEM_MARK.length) {
    const hit = b.indexOf(PEM_MARK, start);
    if (hit >= 0 && hit + PEM_MARK.length <= end) return true;
  }
  return false;
}
