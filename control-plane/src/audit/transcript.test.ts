import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionScript } from "./testing.js";
import { ChunkJoiner } from "./chunk-joiner.js";
import { TranscriptRenderer } from "./transcript.js";

test("a replayed session reads as a transcript: statements, decisions and rules, timing, masked rows", () => {
  const s = new SessionScript("0190eeee-0000-7000-8000-00000000000e", Date.parse("2026-02-01T09:00:00Z"))
    .start("repo:acme/orders").allowed("SELECT id, email FROM customers", 12).blocked("DELETE FROM orders")
    .approval("DROP TABLE old", "ap-9", "rejected").allowed(`SELECT '${"y".repeat(700 * 1024)}'`, 0).end();
  const joiner = new ChunkJoiner();
  const r = new TranscriptRenderer({ maxSqlChars: 100 });
  const lines = s.events.flatMap((ev) => {
    const whole = joiner.push(ev);
    return whole ? r.push(whole) : [];
  });
  const text = lines.join("\n");
  assert.ok(r.ended);
  assert.match(text, /^session 0190eeee/);
  assert.match(text, /authenticated repo:acme\/orders \(issuer dev; groups ci\) \(policy rev 1\)/);
  assert.match(text, /#1 \[simple, read\]\n    SELECT id, email FROM customers\n    allowed by ci-read\/allow:read/);
  assert.match(text, /\| id \| email \(masked\)/);
  assert.match(text, /\| 1  \| a\*\*\*@example.com/);
  assert.match(text, /… 9 more rows \(3 recorded, capped\)/);
  assert.match(text, /#1 SELECT 12: 12 rows in 1.5 ms/);
  assert.match(text, /BLOCKED by default-deny: not allowed \(SQLSTATE 42501\)/);
  assert.match(text, /HELD for approval ap-9/);
  assert.match(text, /#3 REJECTED by dba-alice \(approval ap-9, SQLSTATE 42501\)/);
  assert.match(text, /SELECT 'y{80,}… \(716809 chars\)/, "a chunked statement is shown once, reassembled and clipped");
  assert.match(text, /ended: client_terminate/);
  assert.doesNotMatch(text, /"part"/);
});
