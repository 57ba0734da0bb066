/**
 * Masks PII inside a JSON text (json, jsonb in text form) while keeping it valid JSON and keeping
 * every byte that is not masked exactly as it was (no parse/re-serialise round trip, which would
 * change number precision and key order). Pure.
 *
 * Object keys are masked as well as values: within a masked value (everything with `all`, or below
 * a masked key) a key is masked whole with the same strategy, elsewhere the classifiers scan it. A
 * masked key may then repeat (`redact` makes every key `[REDACTED]`): still valid JSON text, though
 * a client's parser keeps one of them.
 */
import type { MaskStrategy } from "@sluice/shared/policy";
import { scanValue, type Classifier, type ValueMatch } from "./classifiers.js";
import { maskMatches, maskWhole } from "./mask-strategies.js";

export interface JsonMaskOptions {
  /** lower-case object keys whose whole value (and everything below it) is masked, with their strategy */
  keys: ReadonlyMap<string, MaskStrategy>;
  /** mask every string and number leaf with `strategy` (the value derives from a masked column in an unkeyed way) */
  all: boolean;
  strategy: MaskStrategy;
  hashKey: Buffer;
  /** leaves not masked by key are scanned with these */
  classifiers: readonly Classifier[];
  /** strategy for a classifier match (defaults to `strategy`) */
  classifierStrategy?: MaskStrategy | ((m: ValueMatch) => MaskStrategy);
}

interface Level {
  obj: boolean;
  /** the strategy masking everything below this level, if any */
  masked: MaskStrategy | undefined;
  key: string | null;
}

function isDelim(c: number): boolean {
  // , ] } whitespace
  return c === 44 || c === 93 || c === 125 || c === 32 || c === 10 || c === 13 || c === 9;
}

/** Returns the masked JSON text, or the same string when nothing changed. Invalid JSON throws. */
export function maskJsonText(text: string, o: JsonMaskOptions): string {
  const stack: Level[] = [];
  let expectKey = false;
  let out = "";
  let copied = 0; // text[copied, i) is not yet appended to out
  let changed = false;
  const valueMasked = (): MaskStrategy | undefined => {
    if (o.all) return o.strategy;
    const top = stack[stack.length - 1];
    if (!top) return undefined;
    return top.masked ?? (top.obj && top.key !== null ? o.keys.get(top.key.toLowerCase()) : undefined);
  };
  const replace = (start: number, end: number, replacement: string): void => {
    out += text.slice(copied, start) + replacement;
    copied = end;
    changed = true;
  };
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 123 /* { */ || c === 91 /* [ */) {
      stack.push({ obj: c === 123, masked: valueMasked(), key: null });
      expectKey = c === 123;
      i++;
    } else if (c === 125 || c === 93) {
      stack.pop();
      expectKey = false;
      i++;
    } else if (c === 58 /* : */) {
      expectKey = false;
      i++;
    } else if (c === 44 /* , */) {
      expectKey = stack[stack.length - 1]?.obj ?? false;
      i++;
    } else if (c === 34 /* " */) {
      let j = i + 1;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (d === 92) j++;
        else if (d === 34) break;
      }
      if (j >= n) throw new Error("unterminated JSON string");
      const token = text.slice(i, j + 1);
      const top = stack[stack.length - 1];
      if (top && top.obj && expectKey) {
        const key = JSON.parse(token) as string;
        top.key = key;
        // keys carry data too (`json_object_agg(email, …)`, a masked JSON column's own keys): inside a
        // masked value they are masked like its leaves; elsewhere the classifiers look at them
        if (top.masked) replace(i, j + 1, JSON.stringify(maskWhole(key, top.masked, o.hashKey)));
        else if (o.classifiers.length) {
          const matches = scanValue(key, o.classifiers);
          if (matches.length) replace(i, j + 1, JSON.stringify(maskMatches(key, matches, o.classifierStrategy ?? o.strategy, o.hashKey)));
        }
      } else {
        const value = JSON.parse(token) as string;
        const st = valueMasked();
        if (st) {
          replace(i, j + 1, JSON.stringify(maskWhole(value, st, o.hashKey)));
        } else if (o.classifiers.length) {
          const matches = scanValue(value, o.classifiers);
          if (matches.length)
            replace(i, j + 1, JSON.stringify(maskMatches(value, matches, o.classifierStrategy ?? o.strategy, o.hashKey)));
        }
      }
      i = j + 1;
    } else if (c === 32 || c === 10 || c === 13 || c === 9) {
      i++;
    } else {
      // number, true, false, null
      let j = i + 1;
      while (j < n && !isDelim(text.charCodeAt(j))) j++;
      const isNumber = c === 45 || (c >= 48 && c <= 57);
      const st = isNumber ? valueMasked() : undefined;
      if (st) {
        // a masked number becomes a string: a card number stored as a JSON number must not survive
        replace(i, j, JSON.stringify(maskWhole(text.slice(i, j), st, o.hashKey)));
      }
      i = j;
    }
  }
  if (!changed) return text;
  return out + text.slice(copied);
}
