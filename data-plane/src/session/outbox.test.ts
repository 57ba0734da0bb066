import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "./outbox.js";

function box() {
  const writes: Buffer[] = [];
  return { writes, o: new Outbox((b) => void writes.push(b)) };
}

test("adjacent slices of one chunk leave as that chunk itself: no copy", () => {
  const { writes, o } = box();
  const chunk = Buffer.from("abcdefgh");
  o.push(chunk.subarray(0, 3));
  o.push(chunk.subarray(3, 8));
  assert.equal(o.pending, 8);
  o.flush();
  assert.equal(writes.length, 1);
  assert.equal(writes[0]!.toString(), "abcdefgh");
  assert.equal(writes[0]!.buffer, chunk.buffer, "a view of the input, not a copy");
});

test("a gap or another buffer closes the run; one flush is still one write, in order", () => {
  const { writes, o } = box();
  const chunk = Buffer.from("abcdefgh");
  o.push(chunk.subarray(0, 2));
  o.push(chunk.subarray(4, 6)); // not adjacent: the dropped "cd" is not sent
  o.push(Buffer.from("XY"));
  o.push(chunk.subarray(6, 8));
  o.flush();
  assert.equal(writes.length, 1);
  assert.equal(writes[0]!.toString(), "abefXYgh");
  assert.equal(o.pending, 0);
});

test("an empty flush writes nothing; empty pushes are ignored", () => {
  const { writes, o } = box();
  o.push(Buffer.alloc(0));
  o.flush();
  assert.deepEqual(writes, []);
});
