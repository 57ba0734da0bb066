import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { builtinClassifier, customClassifier, ibanValid, luhnValid, scanValue, BUILTIN_CLASSIFIERS } from "./classifiers.js";

const all = BUILTIN_CLASSIFIERS.map(builtinClassifier);
const kinds = (s: string) => scanValue(s, all).map((m) => `${m.classifier}:${s.slice(m.start, m.end)}`);

function luhnComplete(body: string): string {
  for (let d = 0; d < 10; d++) if (luhnValid(body + d)) return body + d;
  throw new Error("unreachable");
}

function ibanComplete(country: string, bban: string): string {
  const num = (bban + country + "00").replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let rem = 0;
  for (const ch of num) rem = (rem * 10 + Number(ch)) % 97;
  return country + String(98 - rem).padStart(2, "0") + bban;
}

test("Luhn: a completed number validates and every single-digit change is detected", () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[0-9]{12,18}$/), fc.nat(), fc.integer({ min: 1, max: 9 }), (body, pos, bump) => {
      const n = luhnComplete(body);
      assert.ok(luhnValid(n));
      const i = pos % n.length;
      const changed = n.slice(0, i) + ((Number(n[i]) + bump) % 10) + n.slice(i + 1);
      assert.equal(luhnValid(changed), false);
    }),
  );
  assert.ok(luhnValid("4111111111111111"));
  assert.ok(!luhnValid("4111111111111112"));
});

test("IBAN mod-97: a completed IBAN validates and a single substituted character is detected", () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Z]{2}$/), fc.stringMatching(/^[0-9A-Z]{11,30}$/), fc.nat(), (country, bban, pos) => {
      const iban = ibanComplete(country, bban);
      assert.ok(ibanValid(iban), iban);
      const i = 4 + (pos % bban.length);
      const c = iban[i]!;
      const repl = /[0-9]/.test(c) ? String((Number(c) + 1) % 10) : c === "Z" ? "A" : String.fromCharCode(c.charCodeAt(0) + 1);
      assert.equal(ibanValid(iban.slice(0, i) + repl + iban.slice(i + 1)), false);
    }),
  );
  assert.ok(ibanValid("GB82 WEST 1234 5698 7654 32"));
  assert.ok(ibanValid("DE89370400440532013000"));
  assert.ok(!ibanValid("DE89370400440532013001"));
});

test("each builtin classifier finds its values inside text and leaves look-alikes alone", () => {
  assert.deepEqual(kinds("mail alice.smith+x@example.co.uk now"), ["email:alice.smith+x@example.co.uk"]);
  assert.deepEqual(kinds("card 4111 1111 1111 1111 ok"), ["credit-card:4111 1111 1111 1111"]);
  assert.deepEqual(kinds("card 4111-1111-1111-1112 bad luhn"), []);
  assert.deepEqual(kinds("order 1234567890123"), []); // 13 digits, Luhn fails
  // a timestamped migration name passing Luhn is no card: no issuer's number begins 20…
  assert.ok(luhnValid("20261201000100"));
  assert.deepEqual(kinds("20261201000100_gadget_colour.cjs"), []);
  assert.deepEqual(kinds("mc 2221 0000 0000 0009 and mir 2200 0000 0000 0004"), ["credit-card:2221 0000 0000 0009", "credit-card:2200 0000 0000 0004"]);
  assert.deepEqual(kinds("pay DE89 3704 0044 0532 0130 00."), ["iban:DE89 3704 0044 0532 0130 00"]);
  assert.deepEqual(kinds("ssn 123-45-6789"), ["us-ssn:123-45-6789"]);
  assert.deepEqual(kinds("not ssn 000-12-3456 or 2024-01-15"), []);
  const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc_DEF-123";
  assert.deepEqual(kinds(`Bearer ${jwt}`), [`jwt:${jwt}`]);
  assert.deepEqual(kinds("key AKIAIOSFODNN7EXAMPLE"), ["aws-key:AKIAIOSFODNN7EXAMPLE"]);
  assert.deepEqual(kinds("AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), [
    "aws-key:AKIAIOSFODNN7EXAMPLE",
    "aws-key:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  ]);
  const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbc==\n-----END RSA PRIVATE KEY-----";
  assert.deepEqual(kinds(`x ${pem} y`), [`private-key:${pem}`]);
  assert.deepEqual(kinds("plain words, 42 and 2024-01-01"), []);
});

test("custom classifiers use the bundle's regex; overlapping matches keep the earlier, longer one", () => {
  const emp = customClassifier("employee-id", "EMP-\\d{6}");
  assert.deepEqual(scanValue("ids EMP-123456, EMP-000001", [emp]).map((m) => m.classifier), ["custom:employee-id", "custom:employee-id"]);
  const empty = customClassifier("empty", "x*");
  assert.deepEqual(scanValue("abc", [empty]), []);
  const m = scanValue("a@b.io 4111111111111111", all);
  assert.equal(m.length, 2);
  assert.ok(m[0]!.end <= m[1]!.start);
});
