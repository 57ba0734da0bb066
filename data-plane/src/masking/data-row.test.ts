import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MASK_STRATEGIES, type MaskStrategy } from "@sluice/shared/policy";
import { decodeDataRow } from "../wire/decode.js";
import { encodeDataRow } from "../wire/encode.js";
import { maskDataRowFrame } from "./data-row.js";
import { compileMasking, planMask, type FieldFacts } from "./mask-rules.js";
import { REDACTED } from "./mask-strategies.js";

const KEY = Buffer.from("test-hash-key-0123456789abcdef");

function plan(strategy: MaskStrategy, fields: FieldFacts[], classifiers: string[] = []) {
  const c = compileMasking([{ resources: ["db"], columns: ["public.t.secret"], classifiers, strategy }], "db", KEY)!;
  return planMask(c, fields);
}

const secretField = (format = 0, typeOid = 25): FieldFacts => ({
  name: "secret",
  typeOid,
  format,
  origins: [{ schema: "public", table: "t", column: "secret" }],
  lineage: { name: "secret", sources: [], unknown: false },
});
const plainField = (name: string, format = 0): FieldFacts => ({
  name,
  typeOid: 25,
  format,
  origins: [{ schema: "public", table: "t", column: name }],
  lineage: { name, sources: [], unknown: false },
});

/** a value worth protecting: long enough that finding it in the output would be a leak */
const nonTrivial = (s: string) => [...s].filter((c) => /[\p{L}\p{N}]/u.test(c)).length >= 4 && !REDACTED.includes(s);

test("property: any values, any strategy — the rewritten DataRow decodes, lengths are right, only masked fields change, no raw value survives", () => {
  const cell = fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.emailAddress(), fc.string({ unit: "binary", maxLength: 20 })), { nil: null, freq: 5 });
  fc.assert(
    fc.property(
      fc.constantFrom(...MASK_STRATEGIES),
      fc.array(fc.tuple(cell, fc.boolean()), { minLength: 1, maxLength: 8 }),
      (strategy, cols) => {
        const fields = cols.map(([, masked], i) => (masked ? { ...secretField(), name: `c${i}` } : plainField(`p${i}`)));
        const p = plan(strategy, fields);
        const values = cols.map(([v]) => (v === null ? null : Buffer.from(v, "utf8")));
        const frame = encodeDataRow(values);
        if (!p) {
          assert.ok(cols.every(([, m]) => !m));
          return;
        }
        const out = maskDataRowFrame(p, frame);
        assert.equal(out.readInt32BE(1), out.length - 1, "frame length");
        const back = decodeDataRow(out); // throws on any inconsistent field length
        assert.equal(back.length, values.length);
        cols.forEach(([v, masked], i) => {
          if (v === null) return assert.equal(back[i], null, "NULL stays NULL");
          const got = back[i]!.toString("utf8");
          if (!masked) return assert.equal(got, v);
          if (strategy === "partial") assert.equal([...got].length, [...v].length, "partial keeps the length");
          if (strategy === "redact") assert.equal(got, REDACTED);
          if (strategy === "hash") assert.match(got, /^h:[A-Za-z0-9_-]{16}$/);
          if (nonTrivial(v)) assert.ok(!got.includes(v), `raw value leaked: ${JSON.stringify(v)} → ${JSON.stringify(got)}`);
        });
      },
    ),
    { numRuns: 300 },
  );
});

test("property: binary text, jsonb and int8 columns are masked in their binary form", () => {
  fc.assert(
    fc.property(fc.constantFrom(...MASK_STRATEGIES), fc.string({ minLength: 4 }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (strategy, s, n) => {
      const fields = [secretField(1, 25), { ...secretField(1, 3802), name: "j" }, { ...secretField(1, 20), name: "n" }];
      const p = plan(strategy, fields)!;
      const i8 = Buffer.alloc(8);
      i8.writeBigInt64BE(n);
      const jsonb = Buffer.concat([Buffer.from([1]), Buffer.from(JSON.stringify({ secret: s, other: 1 }))]);
      const out = decodeDataRow(maskDataRowFrame(p, encodeDataRow([Buffer.from(s), jsonb, i8])));
      if (nonTrivial(s)) assert.ok(!out[0]!.toString().includes(s));
      assert.equal(out[1]![0], 1, "jsonb version byte kept");
      // a masked column's JSON value is masked in every leaf and every key, and stays valid JSON
      const text = out[1]!.subarray(1).toString();
      const j = JSON.parse(text);
      for (const k of Object.keys(j)) assert.ok(k !== "secret" && k !== "other", `key kept: ${k}`);
      if (nonTrivial(s)) assert.ok(!text.includes(JSON.stringify(s).slice(1, -1)), text);
      assert.equal(out[2]!.length, 8);
      const masked = out[2]!.readBigInt64BE(0);
      assert.ok(strategy === "hash" ? masked >= 0n : masked === 0n);
    }),
    { numRuns: 100 },
  );
});

test("a masked column of a type that cannot be masked in binary is refused with a clear message", () => {
  assert.throws(() => plan("partial", [{ ...secretField(1, 1082) }]), {
    code: "permission_denied",
    message: /cannot mask binary column public\.t\.secret of type date/,
  });
  // the same column in text format is fine
  assert.ok(plan("partial", [{ ...secretField(0, 1082) }]));
});

test("hash is deterministic (joins still work) and keyed", () => {
  const p = plan("hash", [secretField()])!;
  const a = decodeDataRow(maskDataRowFrame(p, encodeDataRow([Buffer.from("alice@example.com")])))[0]!.toString();
  const b = decodeDataRow(maskDataRowFrame(p, encodeDataRow([Buffer.from("alice@example.com")])))[0]!.toString();
  assert.equal(a, b);
  const other = compileMasking([{ resources: ["db"], columns: ["secret"], strategy: "hash" }], "db", Buffer.from("another key"))!;
  const c = decodeDataRow(maskDataRowFrame(planMask(other, [secretField()])!, encodeDataRow([Buffer.from("alice@example.com")])))[0]!.toString();
  assert.notEqual(a, c);
});

test("partial keeps PCI-permitted card digits, email domain, SSN last four; unchanged rows are the same Buffer", () => {
  const p = plan("partial", [secretField(), plainField("note")], ["email"])!;
  const row = (v: string, note = "hello") => decodeDataRow(maskDataRowFrame(p, encodeDataRow([Buffer.from(v), Buffer.from(note)])))[0]!.toString();
  assert.equal(row("4111 1111 1111 1111"), "4111 11** **** 1111");
  assert.equal(row("alice@example.com"), "a****@example.com");
  assert.equal(row("123-45-6789"), "***-**-6789");
  const scanned = decodeDataRow(maskDataRowFrame(p, encodeDataRow([Buffer.from("x"), Buffer.from("mail bob@corp.io now")])))[1]!.toString();
  assert.equal(scanned, "mail b**@corp.io now");
  const noPii = plan("partial", [plainField("note")], ["email"])!;
  const frame = encodeDataRow([Buffer.from("nothing to see")]);
  assert.equal(maskDataRowFrame(noPii, frame), frame);
});
