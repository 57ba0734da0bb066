import { test } from "node:test";
import assert from "node:assert/strict";
import { BIND, K, PARSE, ResponseQueue, SYNC, type Pending } from "./response-queue.js";

test("entries leave in the order they came, through many pushes and pops", () => {
  const q = new ResponseQueue();
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 5000; round++) {
    q.push({ kind: K.Execute, rows: next++ });
    if (round % 3 !== 0) assert.equal(q.pop()!.rows, expect++);
  }
  while (q.length) assert.equal(q.pop()!.rows, expect++);
  assert.equal(expect, next);
  assert.equal(q.pop(), undefined);
});

test("after an error the server skips to Sync: entries before the Sync are discarded in order, the Sync stays", () => {
  const q = new ResponseQueue();
  const exec: Pending = { kind: K.Execute };
  [PARSE, BIND, exec, SYNC, PARSE].forEach((p) => q.push(p));
  const skipped: K[] = [];
  q.discardUntilSync((p) => void skipped.push(p.kind));
  assert.deepEqual(skipped, [K.Parse, K.Bind, K.Execute]);
  assert.equal(q.peek(), SYNC);
  assert.equal(q.at(1), PARSE);
  assert.equal(q.length, 2);
});
