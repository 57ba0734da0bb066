import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { batchBytes, decodeBatch, encodeBatch } from "./cloud-event-batch.js";

const sized = (texts: string[]) => batchBytes(texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0), texts.length);

test("a batch written with its size is byte for byte the joined batch, whatever the texts hold", () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: "binary" }), { minLength: 1, maxLength: 8 }), (texts) => {
      assert.deepEqual(encodeBatch(texts, sized(texts)), encodeBatch(texts));
    }),
  );
  // multi-byte characters and a lone surrogate (written as U+FFFD, as Buffer.byteLength counts it)
  const texts = ['{"a":"é€😀"}', '{"b":"\uD800"}', "{}"];
  assert.deepEqual(encodeBatch(texts, sized(texts)), encodeBatch(texts));
  assert.deepEqual(decodeBatch(encodeBatch([JSON.stringify({ specversion: "1.0", id: "x", type: "t", subject: "s" })], sized([JSON.stringify({ specversion: "1.0", id: "x", type: "t", subject: "s" })])))[0]!.id, "x");
});

test("a wrong size never yields a wrong batch: too small (also where a character does not fit), too large", () => {
  for (const texts of [['{"a":1}', '{"b":"two"}'], ["éé"], ["aé", "b"], ['"😀😀"', "x"], ["€€€", "€"]]) {
    const right = encodeBatch(texts);
    for (let bytes = 0; bytes <= right.length + 8; bytes++) assert.deepEqual(encodeBatch(texts, bytes), right, `${JSON.stringify(texts)} ${bytes}`);
  }
  fc.assert(
    fc.property(fc.array(fc.string({ unit: "binary" }), { minLength: 1, maxLength: 5 }), fc.integer({ min: -12, max: 12 }), (texts, off) => {
      assert.deepEqual(encodeBatch(texts, sized(texts) + off), encodeBatch(texts));
    }),
  );
});
