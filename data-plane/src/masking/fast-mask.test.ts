import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MASK_STRATEGIES, type MaskStrategy } from "@sluice/shared/policy";
import { decodeDataRow } from "../wire/decode.js";
import { encodeDataRow } from "../wire/encode.js";
import { maskDataRowFrame } from "./data-row.js";
import { applyPartial, Op, PARTIAL_SLOW, partialPlan, scanMayMatch, classifierBits } from "./fast-mask.js";
import { BUILTIN_CLASSIFIERS, builtinClassifier, scanValue } from "./classifiers.js";
import { escapeCopyField, maskCopyDataFrame, maskCopyText, maskCopyTextSlow } from "./copy-text.js";
import { compileMasking, planMask, type FieldFacts, type MaskPlanData } from "./mask-rules.js";
import { guessKind, partialMask } from "./mask-strategies.js";
import { maskFieldBytes } from "./mask-value.js";

const KEY = Buffer.from("test-hash-key-0123456789abcdef");

/** The behaviour before the fast path: decode every field, mask each through the string path, re-encode. */
function reference(plan: MaskPlanData, frame: Buffer): Buffer {
  const values = decodeDataRow(frame).map((v, i) => {
    const m = plan.byIndex[i];
    if (!m || v === null) return v;
    return maskFieldBytes(m, v, plan.formats[i] ?? 0, plan.hashKey) ?? v;
  });
  return encodeDataRow(values);
}

const field = (name: string, typeOid: number): FieldFacts => ({
  name,
  typeOid,
  format: 0,
  origins: [{ schema: "public", table: "t", column: name }],
  lineage: { name, sources: [], unknown: false },
});

// values that sit on the edges of guessKind's shapes: every one must give what the string path gives
const tricky = fc.oneof(
  fc.string({ unit: fc.constantFrom(..." aZ09-@.*_\tAKIASeyJ"), maxLength: 30 }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.string({ unit: fc.constantFrom(..."0123456789 --"), minLength: 6, maxLength: 26 }),
  fc.tuple(fc.integer({ min: 0, max: 9 }), fc.string({ unit: fc.constantFrom(..."0123456789 -a"), maxLength: 24 })).map(([d, r]) => `${d}${r}`),
  fc.emailAddress(),
  fc.constantFrom(
    "",
    " ".repeat(84),
    "4111 1111 1111 1111",
    "123-45-6789",
    "123-45-67890",
    "123 45 6789",
    "4111-1111-1111-1111",
    "4111111111111111",
    "411111111111",
    "4111  1111 1111 1111",
    "4111 1111 1111 1111 ",
    "41111111111111111111",
    "2024-01-01",
    "555-0100-1234567",
    "DE89 3704 0044 0532 0130 00",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAIOSFODNN7EXAMPLE",
    "AKIAIOSFODNN7EXAMPL",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "eyJhbGci",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "x-PRIVATE KEY----",
    "abcdefghijklmnop",
    "abcdefghijklmno",
    "AB12",
    "AB12 rest of it",
    "Ünïcödé wörds",
    "0",
    "-42",
    "[REDACTED]",
    "card 4111-1111-1111-1111 exp",
    "iban DE89370400440532013000 ok",
    "ssn 123-45-6789",
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "id AKIAIOSFODNN7EXAMPLE",
    "aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "SECRET=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzxampleKEY",
    "Aws: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzxampleKEY",
    "mail bob@corp.io now",
    "a@b.cd",
    "ab@cd.io",
    "*@x.io",
    "a**@x.io",
    "a*b@x.io",
    "a b@x.io",
    "x\t@y.io",
    "@abcdef",
    "abcdef@",
    "a@b@c.io",
    "1234@5678",
    "AB12@x.io",
    "order 17 shipped to the customer, thanks for your patience",
  ),
);

/** a text embedding pieces that trip some classifiers' prefilters but not their patterns */
const scanText = fc.oneof(
  tricky,
  fc.array(fc.oneof(tricky, fc.constantFrom("AKIA", "ASIA", "AROA", "eyJ", "aws", "Secret", "DE89", "-", "@", "1234567890123", "PRIVATE KEY-----", "é")), { maxLength: 6 }).map((a) => a.join(" ")),
);

test("property: partialPlan + applyPartial give exactly partialMask(guessKind) on every ASCII value it does not hand back", () => {
  fc.assert(
    fc.property(tricky, (s) => {
      const b = Buffer.from(s, "utf8");
      const hide = partialPlan(b, 0, b.length);
      if (hide === PARTIAL_SLOW) return;
      assert.ok(b.every((c) => c < 128), "only ASCII takes the fast path");
      const expected = partialMask(s, guessKind(s));
      assert.ok(["generic", "email", "us-ssn", "credit-card"].includes(guessKind(s)), guessKind(s));
      if (hide !== 0) applyPartial(b, 0, b.length, hide);
      assert.equal(b.toString("latin1"), expected);
      assert.equal(hide === 0, expected === s, "plan 0 means unchanged");
    }),
    { numRuns: 3000 },
  );
});

test("property: the DataRow fast path gives byte for byte what decode + string masking + encode gave, and reuses unchanged frames", () => {
  const types = [25, 1042, 1043, 23, 20, 1700, 701, 1082];
  fc.assert(
    fc.property(
      fc.constantFrom(...MASK_STRATEGIES),
      fc.array(fc.tuple(fc.option(tricky, { nil: null, freq: 6 }), fc.boolean(), fc.constantFrom(...types)), { minLength: 1, maxLength: 7 }),
      (strategy: MaskStrategy, cols) => {
        const masked = cols.map(([, m], i) => (m ? `public.t.c${i}` : null)).filter((c): c is string => c !== null);
        const c = compileMasking([{ resources: ["db"], columns: masked, strategy }], "db", KEY)!;
        const plan = planMask(c, cols.map(([, , t], i) => field(`c${i}`, t)));
        const frame = encodeDataRow(cols.map(([v]) => (v === null ? null : Buffer.from(v, "utf8"))));
        if (!plan) return;
        const before = Buffer.from(frame);
        const got = maskDataRowFrame(plan, frame);
        const want = reference(plan, frame);
        assert.deepEqual(got, want);
        assert.deepEqual(frame, before, "the input frame is never written to");
        if (want.equals(frame)) assert.equal(got, frame, "an unchanged row is the same Buffer");
      },
    ),
    { numRuns: 1500 },
  );
});

test("property: when scanMayMatch says no classifier can match, the classifiers indeed find nothing", () => {
  fc.assert(
    fc.property(scanText, fc.subarray([...BUILTIN_CLASSIFIERS], { minLength: 1 }), (s, names) => {
      const b = Buffer.from(s, "utf8");
      const bits = classifierBits(names);
      const found = scanValue(s, names.map(builtinClassifier));
      if (!scanMayMatch(b, 0, b.length, bits)) assert.deepEqual(found, [], `missed ${JSON.stringify(s)} with ${names.join(",")}`);
    }),
    { numRuns: 5000 },
  );
});

test("property: text columns scanned by classifiers are masked exactly as before", () => {
  fc.assert(
    fc.property(
      fc.subarray([...BUILTIN_CLASSIFIERS], { minLength: 1 }),
      fc.constantFrom(...MASK_STRATEGIES),
      fc.array(fc.option(scanText, { nil: null, freq: 8 }), { minLength: 1, maxLength: 5 }),
      (classifiers, strategy, cells) => {
        const c = compileMasking([{ resources: ["db"], columns: ["t.nothing"], classifiers, strategy }], "db", KEY)!;
        const plan = planMask(c, cells.map((_, i) => field(`c${i}`, 25)))!;
        assert.ok(plan.fast.ops.every((op) => op === Op.Scan));
        const frame = encodeDataRow(cells.map((v) => (v === null ? null : Buffer.from(v, "utf8"))));
        const got = maskDataRowFrame(plan, frame);
        const want = reference(plan, frame);
        assert.deepEqual(got, want);
        if (want.equals(frame)) assert.equal(got, frame);
      },
    ),
    { numRuns: 1500 },
  );
});

test("the bench's shape: a partial char(84) and an int column take the fast path and an untouched row costs no copy", () => {
  const c = compileMasking([{ resources: ["db"], columns: ["t.filler", "t.abalance"], strategy: "partial" }], "db", KEY)!;
  const plan = planMask(c, [field("aid", 23), field("abalance", 23), field("filler", 1042)])!;
  assert.deepEqual([...plan.fast.ops], [Op.None, Op.Const, Op.Partial]);
  const clean = encodeDataRow([Buffer.from("7"), Buffer.from("0"), Buffer.from(" ".repeat(84))]);
  assert.equal(maskDataRowFrame(plan, clean), clean);
  const dirty = encodeDataRow([Buffer.from("7"), Buffer.from("-1234"), Buffer.from("note 42".padEnd(84))]);
  assert.deepEqual(decodeDataRow(maskDataRowFrame(plan, dirty)).map((v) => v?.toString()), ["7", "0", "**** **".padEnd(84)]);
});

test("a custom classifier keeps the string path; hash and binary fields too; a frame whose field runs past its end is refused", () => {
  const c = compileMasking([{ resources: ["db"], columns: ["t.a"], strategy: "hash", custom: [{ name: "order", pattern: "ORD-\\d+" }] }], "db", KEY)!;
  const plan = planMask(c, [field("a", 25), { ...field("b", 25), format: 1 }, field("note", 25)])!;
  assert.deepEqual([...plan.fast.ops], [Op.Slow, Op.Slow, Op.Slow]);
  const bad = encodeDataRow([Buffer.from("x"), Buffer.from("y"), Buffer.from("z")]);
  bad.writeInt32BE(50, bad.length - 5);
  assert.throws(() => maskDataRowFrame(plan, bad), { code: "internal", message: /runs past the frame/ });
});

test("property: COPY text rows take the byte path and give exactly what the string path gives", () => {
  const cell = fc.oneof(
    { weight: 6, arbitrary: scanText.map((s) => escapeCopyField(s)) },
    { weight: 1, arbitrary: fc.constant("\\N") },
    { weight: 1, arbitrary: fc.constantFrom("a\\tb", "\\\\x", "é", "0", "") },
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...MASK_STRATEGIES),
      fc.subarray([...BUILTIN_CLASSIFIERS]),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
      fc.array(fc.array(cell, { minLength: 5, maxLength: 5 }), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      (strategy, classifiers, maskedCols, rows, trailingNewline) => {
        const cols = maskedCols.map((m, i) => (m ? `t.c${i}` : `t.other${i}`));
        const c = compileMasking([{ resources: ["db"], columns: cols.filter((x) => x.startsWith("t.c")), classifiers, strategy }], "db", KEY)!;
        const plan = planMask(c, maskedCols.map((_, i) => field(`c${i}`, 25)));
        if (!plan) return;
        const text = rows.map((r) => r.slice(0, maskedCols.length).join("\t")).join("\n") + (trailingNewline ? "\n" : "");
        const payload = Buffer.from(text, "utf8");
        const want = maskCopyTextSlow(plan, payload);
        const got = maskCopyText(plan, payload);
        assert.deepEqual(got, want);
        if (want === payload) assert.equal(got, payload);
        const frame = Buffer.concat([Buffer.from([0x64, 0, 0, 0, 0]), payload]);
        frame.writeInt32BE(4 + payload.length, 1);
        const f = maskCopyDataFrame(plan, frame);
        assert.equal(f.readInt32BE(1), f.length - 1);
        assert.deepEqual(f.subarray(5), want);
      },
    ),
    { numRuns: 1500 },
  );
});

test("a COPY row with the wrong field count is still refused with the string path's message", () => {
  const c = compileMasking([{ resources: ["db"], columns: ["t.c0"], strategy: "partial" }], "db", KEY)!;
  const plan = planMask(c, [field("c0", 25), field("c1", 25)])!;
  assert.throws(() => maskCopyText(plan, Buffer.from("a\tb\tc\n")), { code: "permission_denied", message: /COPY row has 3 fields, expected 2/ });
  assert.equal(maskCopyText(plan, Buffer.from("Alice Smith\t1\n")).toString(), "***** *****\t1\n");
});

test("property: a malformed DataRow gives a clear internal error, never a RangeError or a wrong frame", () => {
  const c = compileMasking([{ resources: ["db"], columns: ["t.c1", "t.c2"], classifiers: ["email"], strategy: "partial" }], "db", KEY)!;
  const plan = planMask(c, [field("c0", 25), field("c1", 25), field("c2", 23)])!;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.boolean(), (body, rightCount) => {
      const head = Buffer.from([0x44, 0, 0, 0, 0, 0, rightCount ? 3 : body.length % 5]);
      const frame = Buffer.concat([head, Buffer.from(body)]);
      frame.writeInt32BE(frame.length - 1, 1);
      try {
        const out = maskDataRowFrame(plan, frame);
        assert.deepEqual(out, reference(plan, frame), "a well-formed row masks as before");
      } catch (e) {
        assert.equal((e as { code?: string }).code, "internal", String(e));
      }
    }),
    { numRuns: 3000 },
  );
});

test("property: binary-format text and integer columns give byte for byte what the string path gave", () => {
  const widths: Record<number, number> = { 21: 2, 23: 4, 20: 8 };
  const col = fc.oneof(
    fc.tuple(fc.constantFrom(25, 1043, 1042), fc.option(tricky.map((s) => Buffer.from(s, "utf8")), { nil: null, freq: 6 })),
    fc.constantFrom(21, 23, 20).chain((t) =>
      fc.tuple(
        fc.constant(t),
        fc.option(
          fc.oneof(
            { weight: 6, arbitrary: fc.uint8Array({ minLength: widths[t], maxLength: widths[t] }).map((a) => Buffer.from(a)) },
            { weight: 1, arbitrary: fc.constant(Buffer.alloc(widths[t]!)) },
            { weight: 1, arbitrary: fc.uint8Array({ minLength: widths[t]! + 1, maxLength: 12 }).map((a) => Buffer.from(a)) },
            { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: widths[t]! - 1 }).map((a) => Buffer.from(a)) },
          ),
          { nil: null, freq: 6 },
        ),
      ),
    ),
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...MASK_STRATEGIES),
      fc.subarray([...BUILTIN_CLASSIFIERS]),
      fc.array(fc.tuple(col, fc.boolean()), { minLength: 1, maxLength: 5 }),
      (strategy, classifiers, cols) => {
        const masked = cols.map(([, m], i) => (m ? `t.c${i}` : null)).filter((x): x is string => x !== null);
        const c = compileMasking([{ resources: ["db"], columns: masked, classifiers, strategy }], "db", KEY)!;
        const plan = planMask(c, cols.map(([[t]], i) => ({ ...field(`c${i}`, t), format: 1 })));
        if (!plan) return;
        const frame = encodeDataRow(cols.map(([[, v]]) => v));
        let want: Buffer | Error;
        try {
          want = reference(plan, frame);
        } catch (e) {
          want = e as Error;
        }
        if (want instanceof Error) return assert.throws(() => maskDataRowFrame(plan, frame));
        const got = maskDataRowFrame(plan, frame);
        assert.deepEqual(got, want);
        if (want.equals(frame)) assert.equal(got, frame);
      },
    ),
    { numRuns: 1500 },
  );
});
