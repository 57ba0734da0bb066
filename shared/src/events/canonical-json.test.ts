import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalJson } from "./canonical-json.js";

/** RFC 8785 the slow, obvious way: rebuild every object with sorted keys, then stringify. */
function reference(v: unknown): string {
  const sortDeep = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map((e) => (e === undefined ? null : sortDeep(e)));
    if (x !== null && typeof x === "object") {
      const o = x as Record<string, unknown>;
      const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
      // integer-like keys would be reordered by JSON.stringify: write members by hand instead
      return { __members: keys.map((k) => [k, sortDeep(o[k])] as const), __out: out };
    }
    return x;
  };
  const write = (x: unknown): string => {
    if (x !== null && typeof x === "object" && "__members" in (x as object)) {
      const m = (x as { __members: ReadonlyArray<readonly [string, unknown]> }).__members;
      return "{" + m.map(([k, e]) => JSON.stringify(k) + ":" + write(e)).join(",") + "}";
    }
    if (Array.isArray(x)) return "[" + x.map(write).join(",") + "]";
    return JSON.stringify(x);
  };
  return write(sortDeep(v));
}

/** the same value with every object's keys inserted in sorted order (what the audit payload builders do) */
function sortedCopy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedCopy);
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    // defineProperty: a "__proto__" key (JSON.parse makes it an own member) must stay a member
    for (const k of Object.keys(o).sort()) Object.defineProperty(out, k, { value: sortedCopy(o[k]), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return v;
}

test("canonicalJson equals the reference RFC 8785 writer on arbitrary JSON, in any key order", () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const want = reference(v);
      assert.equal(canonicalJson(v), want);
      assert.equal(canonicalJson(sortedCopy(v)), want, "the native fast path (keys already in order)");
    }),
    { numRuns: 1000 },
  );
});

test("canonicalJson: members in order but with array-index keys, undefined, -0 and toJSON", () => {
  assert.equal(canonicalJson({ "1": 1, "10": 2, "9": 3 }), '{"1":1,"10":2,"9":3}');
  assert.equal(canonicalJson({ a: undefined, b: [undefined, 1] }), '{"b":[null,1]}');
  assert.equal(canonicalJson({ a: -0, b: 1e21 }), '{"a":0,"b":1e+21}');
  assert.equal(canonicalJson({ a: new Date(0), b: "x" }), '{"a":"1970-01-01T00:00:00.000Z","b":"x"}');
  assert.equal(canonicalJson({ b: { d: 1, c: 2 }, a: "\u2028\ud800" }), '{"a":"\u2028\\ud800","b":{"c":2,"d":1}}');
  assert.throws(() => canonicalJson({ a: Infinity }), /non-finite/);
  assert.throws(() => canonicalJson({ a: 1n }), /bigint/);
});
