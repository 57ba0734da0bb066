/**
 * Value classifiers (contract: data path step 7). Each one finds sensitive substrings in a text
 * value. Pure and fast: a classifier first runs a cheap prefilter (a substring test or a character
 * count) and only then its regular expression, so ordinary values cost a few `includes` calls.
 */

export type BuiltinClassifier = "email" | "credit-card" | "iban" | "us-ssn" | "jwt" | "aws-key" | "private-key";
export const BUILTIN_CLASSIFIERS: readonly BuiltinClassifier[] = [
  "email",
  "credit-card",
  "iban",
  "us-ssn",
  "jwt",
  "aws-key",
  "private-key",
];

/** A sensitive substring `[start, end)` of a value, and which classifier found it. */
export interface ValueMatch {
  start: number;
  end: number;
  /** classifier name: a builtin, or `custom:<name>` */
  classifier: string;
  /** the shape used by the `partial` strategy (custom classifiers mask generically) */
  kind: BuiltinClassifier | "aws-secret" | "generic";
}

export interface Classifier {
  readonly name: string;
  /** appends the matches found in `s` to `out` */
  find(s: string, out: ValueMatch[]): void;
}

/**
 * Whether a card number's first digits could be an issuer's: cards begin with 2 (Mir 2200–2204,
 * Mastercard 2221–2720), 3, 4, 5, 6 or 8. Numbers that begin otherwise are no card, whatever their
 * checksum: a knex migration named 20261201000100_… (a timestamp, 14 digits) passes Luhn one time
 * in ten, and was masked in knex's own table until this (issue 13).
 */
export function issuerPrefix(digits: string): boolean {
  const first = digits.charCodeAt(0) - 48;
  if (first === 2) {
    const p = Number(digits.slice(0, 4));
    return (p >= 2200 && p <= 2204) || (p >= 2221 && p <= 2720);
  }
  return first >= 3 && first <= 6 || first === 8;
}

/** Luhn checksum over a string of ASCII digits (credit card numbers). */
export function luhnValid(digits: string): boolean {
  if (digits.length < 2) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** ISO 13616 IBAN check: move the first four characters to the end, letters to 10..35, mod 97 = 1. */
export function ibanValid(raw: string): boolean {
  const s = raw.replace(/ /g, "").toUpperCase();
  if (s.length < 15 || s.length > 34 || !/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(s)) return false;
  const r = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < r.length; i++) {
    const c = r.charCodeAt(i);
    // digits fold in one step, letters (two digits each) in two, keeping `rem` small
    if (c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else rem = (rem * 100 + (c - 55)) % 97;
  }
  return rem === 1;
}

function countDigits(s: string, atLeast: number): boolean {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57 && ++n >= atLeast) return true;
  }
  return false;
}

function regexClassifier(
  name: BuiltinClassifier,
  prefilter: (s: string) => boolean,
  re: RegExp,
  validate?: (m: string) => boolean,
): Classifier {
  return {
    name,
    find(s, out) {
      if (!prefilter(s)) return;
      re.lastIndex = 0;
      for (let m = re.exec(s); m !== null; m = re.exec(s)) {
        if (m[0].length === 0) {
          re.lastIndex++;
          continue;
        }
        if (!validate || validate(m[0])) out.push({ start: m.index, end: m.index + m[0].length, classifier: name, kind: name });
      }
    },
  };
}

const EMAIL_RE = /[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
// 13..19 digits, optionally grouped with single spaces or dashes, not glued to other digits
const CARD_RE = /(?<![0-9])\d(?:[ -]?\d){12,18}(?![0-9])/g;
const IBAN_RE = /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g;
// dashed form only: nine bare digits are too common to call an SSN; excludes never-issued areas
const SSN_RE = /(?<![0-9-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![0-9-])/g;
const JWT_RE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/g;
const AWS_ID_RE = /(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])/g;
// a secret access key is 40 base64 characters; only believed when an access key id or the
// words "secret"/"aws" appear in the same value, which keeps random base64 out
const AWS_SECRET_RE = /(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g;
const PEM_RE = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)/g;

const awsClassifier: Classifier = {
  name: "aws-key",
  find(s, out) {
    const hasId = s.includes("AKIA") || s.includes("ASIA") || /A(?:GPA|IDA|ROA|IPA|NPA|NVA|BIA|CCA)/.test(s);
    const before = out.length;
    if (hasId) {
      AWS_ID_RE.lastIndex = 0;
      for (let m = AWS_ID_RE.exec(s); m !== null; m = AWS_ID_RE.exec(s))
        out.push({ start: m.index, end: m.index + m[0].length, classifier: "aws-key", kind: "aws-key" });
    }
    if (s.length >= 40 && (out.length > before || /secret|aws/i.test(s))) {
      AWS_SECRET_RE.lastIndex = 0;
      for (let m = AWS_SECRET_RE.exec(s); m !== null; m = AWS_SECRET_RE.exec(s)) {
        // a secret mixes cases or digits; 40 letters of one case is a word, not a key
        if (/[a-z]/.test(m[0]) && /[A-Z0-9]/.test(m[0]))
          out.push({ start: m.index, end: m.index + m[0].length, classifier: "aws-key", kind: "aws-secret" });
      }
    }
  },
};

const BUILTINS: Record<BuiltinClassifier, Classifier> = {
  email: regexClassifier("email", (s) => s.includes("@"), EMAIL_RE),
  "credit-card": regexClassifier("credit-card", (s) => s.length >= 13 && countDigits(s, 13), CARD_RE, (m) => {
    const d = m.replace(/[ -]/g, "");
    return d.length >= 13 && d.length <= 19 && issuerPrefix(d) && luhnValid(d);
  }),
  iban: regexClassifier("iban", (s) => s.length >= 15 && countDigits(s, 2), IBAN_RE, ibanValid),
  "us-ssn": regexClassifier("us-ssn", (s) => s.length >= 11 && s.includes("-"), SSN_RE),
  jwt: regexClassifier("jwt", (s) => s.includes("eyJ"), JWT_RE),
  "aws-key": awsClassifier,
  "private-key": regexClassifier("private-key", (s) => s.includes("PRIVATE KEY-----"), PEM_RE),
};

export function builtinClassifier(name: BuiltinClassifier): Classifier {
  return BUILTINS[name];
}

export function isBuiltinClassifier(name: string): name is BuiltinClassifier {
  return Object.prototype.hasOwnProperty.call(BUILTINS, name);
}

/** A classifier from a bundle's `custom` regex (JavaScript syntax; matched globally). */
export function customClassifier(name: string, pattern: string): Classifier {
  const re = new RegExp(pattern, "g");
  return {
    name: `custom:${name}`,
    find(s, out) {
      re.lastIndex = 0;
      for (let m = re.exec(s); m !== null; m = re.exec(s)) {
        if (m[0].length === 0) {
          re.lastIndex++;
          continue;
        }
        out.push({ start: m.index, end: m.index + m[0].length, classifier: `custom:${name}`, kind: "generic" });
      }
    },
  };
}

/**
 * Every sensitive substring of `s` found by `classifiers`, sorted and without overlaps (an
 * earlier, then longer, match wins: a JWT's payload is not also reported as a card number).
 */
export function scanValue(s: string, classifiers: readonly Classifier[]): ValueMatch[] {
  if (s.length < 3) return [];
  const found: ValueMatch[] = [];
  for (const c of classifiers) c.find(s, found);
  if (found.length <= 1) return found;
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: ValueMatch[] = [];
  let end = -1;
  for (const m of found) {
    if (m.start >= end) {
      out.push(m);
      end = m.end;
    }
  }
  return out;
}
