import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalJson } from "./canonical-json.js";
import { HashChain, makeEvent, verifyChain, hashEvent, chunkString, decodeEvent } from "./cloud-event.js";
import { uuidv7, uuidv7Time } from "./uuid-v7.js";

test("canonical JSON sorts keys by UTF-16 code units and drops whitespace (RFC 8785)", () => {
  assert.equal(canonicalJson({ b: 1, a: [true, null, "x"], "€": 2, "\u0080": 3 }), '{"a":[true,null,"x"],"b":1,"\u0080":3,"€":2}');
  assert.equal(canonicalJson({ n: 1e21, f: 0.1, z: -0 }), '{"f":0.1,"n":1e+21,"z":0}');
  assert.throws(() => canonicalJson({ x: NaN }));
});

test("uuidv7 ids are time-ordered and carry their timestamp", () => {
  const ids = Array.from({ length: 1000 }, () => uuidv7(1_700_000_000_000));
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  assert.match(ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(uuidv7Time(uuidv7(1_800_000_000_000)), 1_800_000_000_000);
});

function session(n: number) {
  const chain = new HashChain();
  return Array.from({ length: n }, (_, i) =>
    chain.link(makeEvent({ source: "sluice://r/n", type: "dev.sluice.session.statement.allowed.v1", subject: "s1", data: { i } })),
  );
}

test("an honest chain verifies", () => {
  assert.equal(verifyChain(session(20)), undefined);
});

test("a chain pinpoints an altered event, a gap and a reorder", () => {
  const altered = session(10);
  (altered[4]!.data as { i: number }).i = 99;
  assert.match(verifyChain(altered)!.reason, /altered/);
  assert.equal(verifyChain(altered)!.index, 4);

  const gap = session(10);
  gap.splice(6, 1);
  assert.equal(verifyChain(gap)!.seq, 8);
  assert.match(verifyChain(gap)!.reason, /gap/);

  const swapped = session(10);
  [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
  assert.equal(verifyChain(swapped)!.index, 2);
});

test("the hash covers every field but sluicehash", () => {
  const [ev] = session(1);
  const h = hashEvent(ev!);
  assert.equal(h, ev!.sluicehash);
  assert.notEqual(hashEvent({ ...ev!, sluicepolicyrev: 7 }), h);
});

test("chunkString keeps UTF-8 sequences whole and respects the cap", () => {
  const s = "é".repeat(1000) + "x";
  const parts = chunkString(s, 101);
  assert.equal(parts.join(""), s);
  for (const p of parts) assert.ok(Buffer.byteLength(p) <= 101);
});

test("chunkString cuts an ASCII text where it cuts any other: at the cap, in bytes", () => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom("a", "\"", "\\", "é", "\u2028", "😀"), maxLength: 600 }), fc.integer({ min: 4, max: 97 }), (s, max) => {
      const ascii = s.replace(/[^\x00-\x7f]/g, "x");
      for (const text of [s, ascii]) {
        const parts = chunkString(text, max);
        assert.equal(parts.join(""), text);
        for (const p of parts.slice(0, -1)) assert.ok(Buffer.byteLength(p) <= max && Buffer.byteLength(p) > max - 4);
        assert.ok(Buffer.byteLength(parts.at(-1)!) <= max);
      }
      // an ASCII text's parts are exactly max bytes long but the last
      const parts = chunkString(ascii, max);
      assert.deepEqual(parts.map((p) => p.length), parts.map((_, i) => (i < parts.length - 1 ? max : ascii.length - max * (parts.length - 1))));
    }),
  );
});

test("linkJson stamps the chain like link and its text parses to the linked event", () => {
  const mk = (i: number) =>
    makeEvent({ source: "sluice://r/n", type: "dev.sluice.statement.allowed.v1", subject: "s1", time: new Date(1_700_000_000_000 + i),
      data: { statementId: i, sql: "select 'é\u2028'", params: [{ value: "x", skipped: undefined }, undefined], n: -0 }, policyRev: 3 });
  const a = new HashChain();
  const b = new HashChain();
  const decoded = [];
  for (let i = 0; i < 5; i++) {
    const ev = mk(i);
    const plain = a.link(structuredClone(ev));
    const back = decodeEvent(Buffer.from(b.linkJson(ev)));
    assert.equal(ev.sluicehash, plain.sluicehash);
    assert.deepEqual(back, JSON.parse(JSON.stringify(plain)));
    decoded.push(back);
  }
  assert.equal(verifyChain(decoded), undefined);
  assert.equal(b.lastHash, a.lastHash);
});

test("linkCanonical writes exactly the text linkJson writes for the same event, and chains the same", () => {
  const json = fc.jsonValue({ maxDepth: 3 });
  const text = fc.string({ unit: "binary", maxLength: 12 });
  fc.assert(
    fc.property(
      fc.array(fc.record({ data: json, source: text, subject: text, type: text, ms: fc.integer({ min: 0, max: 4_102_444_800_000 }), policyRev: fc.option(fc.integer({ min: 0, max: 2 ** 40 }), { nil: undefined }) }), { minLength: 1, maxLength: 4 }),
      (evs) => {
        const a = new HashChain();
        const b = new HashChain();
        for (const e of evs) {
          const time = new Date(e.ms);
          const id = uuidv7(e.ms);
          const ev = makeEvent({ source: e.source, type: e.type, subject: e.subject, time, id, data: e.data, policyRev: e.policyRev });
          const expected = a.linkJson(ev);
          const got = b.linkCanonical(
            { id, time: time.toISOString(), policyRev: e.policyRev, sourceJson: JSON.stringify(e.source), subjectJson: JSON.stringify(e.subject), typeJson: JSON.stringify(e.type) },
            canonicalJson(e.data),
          );
          assert.equal(got.json, expected);
          assert.equal(got.bytes, Buffer.byteLength(expected, "utf8"));
          assert.equal(got.hash, ev.sluicehash);
          assert.equal(got.seq, ev.sluicesessionseq);
        }
        assert.equal(b.lastHash, a.lastHash);
        assert.equal(b.lastSeq, a.lastSeq);
      },
    ),
    { numRuns: 300 },
  );
});
