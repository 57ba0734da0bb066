/**
 * Masking strategies (contract: `strategy: partial | redact | hash`). Pure.
 *
 * - `partial` is format-preserving: the output has the same length in characters and keeps
 *   separators; what stays visible depends on the value's shape (card: BIN + last four as PCI DSS
 *   allows; email: first character of the local part + domain; SSN: last four; IBAN: country,
 *   check digits and last four; AWS key id: prefix + last four). Other values: every letter and
 *   digit becomes `*`, the last four stay when at least twelve letters/digits remain hidden.
 * - `redact` replaces the value with the fixed marker `[REDACTED]`: the length is NOT kept, so
 *   the marker leaks nothing about the value, not even its size.
 * - `hash` is `h:` + the first 16 base64url characters (96 bits) of HMAC-SHA-256(key, value):
 *   deterministic for one key, so masked values still join and group; the key never leaves the
 *   data plane's configuration.
 */
import { createHmac } from "node:crypto";
import type { MaskStrategy } from "@sluice/shared/policy";
import type { ValueMatch } from "./classifiers.js";

export const REDACTED = "[REDACTED]";
export type ValueKind = ValueMatch["kind"];

const ALNUM = /[\p{L}\p{N}]/u;
const STAR = "*";

function isAlnum(ch: string): boolean {
  return ALNUM.test(ch);
}

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** Masks the alphanumerics of `s` except the first `keepHead` and the last `keepTail` of them. */
function maskAlnum(s: string, keepHead: number, keepTail: number): string {
  if (isAscii(s)) {
    // hot path (emails, card numbers): byte-wise, no per-character allocation
    const b = Buffer.from(s, "latin1");
    let total = 0;
    for (let i = 0; i < b.length; i++) if (isAsciiAlnum(b[i]!)) total++;
    let k = 0;
    for (let i = 0; i < b.length; i++) {
      if (!isAsciiAlnum(b[i]!)) continue;
      if (k >= keepHead && k < total - keepTail) b[i] = 42; // '*'
      k++;
    }
    return b.toString("latin1");
  }
  const chars = Array.from(s);
  let total = 0;
  for (const c of chars) if (isAlnum(c)) total++;
  let i = 0;
  let out = "";
  for (const c of chars) {
    if (!isAlnum(c)) {
      out += c;
      continue;
    }
    out += i < keepHead || i >= total - keepTail ? c : STAR;
    i++;
  }
  return out;
}

function countAlnum(s: string): number {
  let n = 0;
  if (isAscii(s)) {
    for (let i = 0; i < s.length; i++) if (isAsciiAlnum(s.charCodeAt(i))) n++;
    return n;
  }
  for (const c of s) if (isAlnum(c)) n++;
  return n;
}

function partialEmail(s: string): string {
  const at = s.lastIndexOf("@");
  if (at <= 0) return maskAlnum(s, 0, 0);
  const localPart = s.slice(0, at);
  if (isAscii(localPart)) return at > 1 ? localPart[0] + STAR.repeat(at - 1) + s.slice(at) : STAR + s.slice(at);
  const local = Array.from(localPart);
  const keep = local.length > 1 ? 1 : 0;
  return local.map((c, i) => (i < keep ? c : STAR)).join("") + s.slice(at);
}

function partialCard(s: string): string {
  const digits = countAlnum(s);
  // PCI DSS: at most the first six and last four digits may be displayed; short runs show less
  return digits >= 13 ? maskAlnum(s, 6, 4) : maskAlnum(s, 0, Math.min(4, Math.floor(digits / 4)));
}

function partialPem(s: string): string {
  const lines = s.split("\n");
  return lines
    .map((l) => (/^-----(BEGIN|END) /.test(l) ? l : l.replace(/[^\s]/g, STAR)))
    .join("\n");
}

function partialGeneric(s: string): string {
  const n = countAlnum(s);
  return maskAlnum(s, 0, n >= 16 ? 4 : 0);
}

/** `partial` for one value whose shape is `kind`. Same length in characters, separators kept. */
export function partialMask(s: string, kind: ValueKind): string {
  switch (kind) {
    case "email":
      return partialEmail(s);
    case "credit-card":
      return partialCard(s);
    case "us-ssn":
      return maskAlnum(s, 0, 4);
    case "iban":
      return maskAlnum(s, 4, 4);
    case "aws-key":
      return maskAlnum(s, 4, 4);
    case "jwt": {
      // the header names only the algorithm; payload and signature are hidden
      const dot = s.indexOf(".");
      return dot < 0 ? maskAlnum(s, 0, 0) : s.slice(0, dot) + s.slice(dot).replace(/[^.]/g, STAR);
    }
    case "private-key":
      return partialPem(s);
    case "aws-secret":
      return s.replace(/[^\s]/g, STAR);
    case "generic":
      return partialGeneric(s);
  }
}

/** Guess the shape of a whole column value so `partial` keeps the right parts visible. */
export function guessKind(s: string): ValueKind {
  if (s.length < 6) return "generic";
  if (s.includes("@")) return /^[^@\s]+@[^@\s]+$/.test(s) ? "email" : "generic";
  const c0 = s.charCodeAt(0);
  if (c0 >= 48 && c0 <= 57) {
    if (s.length === 11 && /^\d{3}-\d{2}-\d{4}$/.test(s)) return "us-ssn";
    return /^\d(?:[ -]?\d){12,18}$/.test(s) ? "credit-card" : "generic";
  }
  if (c0 >= 65 && c0 <= 90 && /^[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}$/.test(s)) return "iban";
  if (s.startsWith("eyJ") && s.split(".").length === 3) return "jwt";
  if (s.includes("PRIVATE KEY-----")) return "private-key";
  if (/^(?:AKIA|ASIA)[A-Z0-9]{16}$/.test(s)) return "aws-key";
  return "generic";
}

export function hashToken(s: string, key: Buffer): string {
  return "h:" + createHmac("sha256", key).update(s, "utf8").digest("base64url").slice(0, 16);
}

/** Masks a whole value (a masked column) with `strategy`. */
export function maskWhole(s: string, strategy: MaskStrategy, key: Buffer, kind?: ValueKind): string {
  switch (strategy) {
    case "redact":
      return REDACTED;
    case "hash":
      return hashToken(s, key);
    case "partial":
      return partialMask(s, kind ?? guessKind(s));
  }
}

/**
 * Masks only the matched substrings of `s` (a value scanned by classifiers); `strategy` may depend
 * on the classifier that matched (each bundle entry has its own).
 */
export function maskMatches(
  s: string,
  matches: readonly ValueMatch[],
  strategy: MaskStrategy | ((m: ValueMatch) => MaskStrategy),
  key: Buffer,
): string {
  if (matches.length === 0) return s;
  let out = "";
  let at = 0;
  for (const m of matches) {
    const st = typeof strategy === "function" ? strategy(m) : strategy;
    out += s.slice(at, m.start) + maskWhole(s.slice(m.start, m.end), st, key, m.kind);
    at = m.end;
  }
  return out + s.slice(at);
}

/**
 * A deterministic stand-in for a masked integer: 0 for `partial`/`redact`, an HMAC-derived value in
 * the type's range for `hash` (so masked integer keys still join). `bits` is 16, 32 or 64.
 */
export function maskInteger(value: string, strategy: MaskStrategy, key: Buffer, bits: 16 | 32 | 64): bigint {
  if (strategy !== "hash") return 0n;
  const d = createHmac("sha256", key).update(value, "utf8").digest();
  const u = d.readBigUInt64BE(0);
  const mod = 1n << BigInt(bits - 1);
  return u % mod; // non-negative, fits the signed type
}

/** Masks a decimal number in text form, keeping it a valid number for clients that parse it. */
export function maskNumericText(s: string, strategy: MaskStrategy, key: Buffer, bits: 16 | 32 | 64): string {
  return maskInteger(s, strategy, key, bits).toString();
}
