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
  // below a masked key, keys are part of the masked value
  const under = maskJsonText('{"card": {"number": 4111111111111111, "exp": "12/30"}, "ok": true}', { keys: new Map([["card", "redact" as const]]), all: false, strategy: "redact", hashKey: KEY, classifiers: [] });
  assert.equal(under, '{"card": {"[REDACTED]": "[REDACTED]", "[REDACTED]": "[REDACTED]"}, "ok": true}');
});

test("JSON keys: masked within a masked value, scanned by the classifiers elsewhere", () => {
  const email = [builtinClassifier("email")];
  // json_object_agg(email, id): the whole value derives from the masked column, keys included
  const agg = maskJsonText('{ "alice@example.com" : 1, "bob#corp.io" : 2 }', { keys: new Map(), all: true, strategy: "hash", hashKey: KEY, classifiers: email });
  assert.ok(!agg.includes("alice") && !agg.includes("bob"), agg);
  assert.equal(Object.keys(JSON.parse(agg)).length, 2, "hashed keys stay distinct");
  // a column without masking rules: only what a classifier finds, in keys as in values
  const plain = maskJsonText('{"carol@example.org": {"tier": "gold"}}', { keys: new Map(), all: false, strategy: "partial", hashKey: KEY, classifiers: email });
  assert.equal(plain, '{"c****@example.org": {"tier": "gold"}}');
});

/** JSON text → a tree that keeps every object member in order, duplicate keys too (JSON.parse keeps one) */
type Tree = null | boolean | number | string | Tree[] | { pairs: Array<[string, Tree]> };
function parsePairs(text: string): Tree {
  let i = 0;
  const ws = () => { while (/\s/.test(text[i] ?? "")) i++; };
  const str = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): Tree => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const pairs: Array<[string, Tree]> = [];
      ws();
      if (text[i] === "}") { i++; return { pairs }; }
      for (;;) {
        ws();
        const k = str();
        ws(); i++; // :
        pairs.push([k, value()]);
        ws();
        if (text[i++] === "}") return { pairs };
      }
    }
    if (c === "[") {
      i++;
      const items: Tree[] = [];
      ws();
      if (text[i] === "]") { i++; return items; }
      for (;;) {
        items.push(value());
        ws();
        if (text[i++] === "]") return items;
      }
    }
    if (c === '"') return str();
    const m = /^(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i))!;
    i += m[0].length;
    return JSON.parse(m[0]) as Tree;
  };
  return value();
}

/** the shape of a tree: leaves become "leaf", object keys are kept (keys: true) or dropped */
function shape(t: Tree, keys: boolean): unknown {
  if (Array.isArray(t)) return t.map((x) => shape(x, keys));
  if (t && typeof t === "object") return t.pairs.map(([k, v]) => (keys ? [k, shape(v, keys)] : shape(v, keys)));
  return typeof t === "string" || typeof t === "number" ? "leaf" : t;
}

/** every key and string leaf of a tree */
function texts(t: Tree, out: string[] = []): string[] {
  if (Array.isArray(t)) for (const x of t) texts(x, out);
  else if (t && typeof t === "object") for (const [k, v] of t.pairs) (out.push(k), texts(v, out));
  else if (typeof t === "string") out.push(t);
  return out;
}

test("property: masked JSON is always valid JSON of the same shape; unmasked keys stay, keys of masked values go", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.boolean(), fc.constantFrom("partial", "redact", "hash" as const), (v, all, strategy) => {
      const text = JSON.stringify(v, null, 1);
      const out = maskJsonText(text, { keys: new Map([["a", strategy], ["b", "redact" as const]]), all, strategy, hashKey: KEY, classifiers: [builtinClassifier("email")] });
      JSON.parse(out); // valid
      const before = parsePairs(text);
      const after = parsePairs(out);
      assert.deepEqual(shape(after, false), shape(before, false), "same members and leaves, in order");
      if (!all && !JSON.stringify(v).includes("@")) {
        // keys outside masked values are kept unless a classifier matched: compare with the masked ones removed
        const strip = (t: Tree, under: boolean): unknown =>
          Array.isArray(t) ? t.map((x) => strip(x, under))
            : t && typeof t === "object" ? t.pairs.map(([k, x]) => [under ? "*" : k, strip(x, under || k.toLowerCase() === "a" || k.toLowerCase() === "b")])
              : "leaf";
        assert.deepEqual(strip(after, false), strip(before, false));
      }
    }),
    { numRuns: 300 },
  );
});

test("property: with every leaf masked (redact, hash), no key or string of the input survives", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.constantFrom("redact", "hash" as const), (v, strategy) => {
      const text = JSON.stringify(v);
      const out = maskJsonText(text, { keys: new Map(), all: true, strategy, hashKey: KEY, classifiers: [] });
      for (const s of texts(parsePairs(out))) assert.ok(strategy === "redact" ? s === "[REDACTED]" : /^h:[A-Za-z0-9_-]{16}$/.test(s), `${s} in ${out}`);
    }),
    { numRuns: 300 },
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
