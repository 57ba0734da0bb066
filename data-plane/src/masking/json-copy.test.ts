import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { builtinClassifier } from "./classifiers.js";
import { escapeCopyField, maskCopyDataFrame, unescapeCopyField } from "./copy-text.js";
import { maskJsonText } from "./json-mask.js";
import { compileMasking, planMask } from "./mask-rules.js";

const KEY = Buffer.from("k");

test("JSON: keyed leaves and classifier hits are masked; everything else keeps its bytes", () => {
  const text = '{"email": "alice@example.com", "n": 12345678901234567890, "nested": {"note": "call bob@x.io"}, "tags": ["a", 1.50]}';
  const out = maskJsonText(text, { keys: new Map([["email", "partial" as const]]), all: false, strategy: "partial", hashKey: KEY, classifiers: [builtinClassifier("email")] });
  assert.equal(out, '{"email": "a****@example.com", "n": 12345678901234567890, "nested": {"note": "call b**@x.io"}, "tags": ["a", 1.50]}');
  const under = maskJsonText('{"card": {"number": 4111111111111111, "exp": "12/30"}, "ok": true}', { keys: new Map([["card", "redact" as const]]), all: false, strategy: "redact", hashKey: KEY, classifiers: [] });
  assert.deepEqual(JSON.parse(under), { card: { number: "[REDACTED]", exp: "[REDACTED]" }, ok: true });
});

test("property: masked JSON is always valid JSON with the same shape", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.boolean(), fc.constantFrom("partial", "redact", "hash" as const), (v, all, strategy) => {
      const text = JSON.stringify(v, null, 1);
      const out = maskJsonText(text, { keys: new Map([["a", strategy], ["b", "redact" as const]]), all, strategy, hashKey: KEY, classifiers: [builtinClassifier("email")] });
      const back = JSON.parse(out);
      const shape = (x: unknown): unknown => (Array.isArray(x) ? x.map(shape) : x && typeof x === "object" ? Object.fromEntries(Object.entries(x).map(([k, y]) => [k, shape(y)])) : typeof x === "string" || typeof x === "number" ? "leaf" : x);
      assert.deepEqual(shape(back), shape(v));
    }),
    { numRuns: 200 },
  );
});

test("COPY text escapes round-trip", () => {
  fc.assert(
    fc.property(fc.option(fc.string(), { nil: null }), (v) => {
      const e = escapeCopyField(v);
      assert.ok(!e.includes("\t") && !e.includes("\n"));
      assert.equal(unescapeCopyField(e), v);
    }),
  );
  assert.equal(unescapeCopyField("a\\101\\x42"), "aAB");
});

test("COPY text rows: masked columns rewritten, NULLs and other columns untouched, frame length recomputed", () => {
  const c = compileMasking([{ resources: ["db"], columns: ["customers.email"], strategy: "partial" }], "db", KEY)!;
  const plan = planMask(c, [
    { name: "id", typeOid: 25, format: 0, origins: [], lineage: { name: "id", sources: [{ col: { table: "customers", column: "id" } }], unknown: false } },
    { name: "email", typeOid: 25, format: 0, origins: [], lineage: { name: "email", sources: [{ col: { table: "customers", column: "email" } }], unknown: false } },
  ])!;
  const payload = Buffer.from("1\\t\tal\\\\ice@example.com\n2\t\\N\n");
  const frame = Buffer.concat([Buffer.from([0x64, 0, 0, 0, 0]), payload]);
  frame.writeInt32BE(4 + payload.length, 1);
  const out = maskCopyDataFrame(plan, frame);
  assert.equal(out.readInt32BE(1), out.length - 1);
  assert.equal(out.subarray(5).toString(), "1\\t\ta*****@example.com\n2\t\\N\n");
});
