import { test } from "node:test";
import assert from "node:assert/strict";
import { describe as describeMsg, execute } from "./encode.js";

test("Describe (F) and Execute (F) are framed as the protocol says", () => {
  // 'D', int32 length (self-inclusive), 'P', name, NUL
  assert.deepEqual(describeMsg("P", "p1"), Buffer.from([0x44, 0, 0, 0, 8, 0x50, 0x70, 0x31, 0]));
  assert.deepEqual(describeMsg("S", ""), Buffer.from([0x44, 0, 0, 0, 6, 0x53, 0]));
  // 'E', int32 length, portal name, NUL, int32 max rows (0 = all)
  assert.deepEqual(execute(""), Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]));
  assert.deepEqual(execute("é"), Buffer.from([0x45, 0, 0, 0, 11, 0xc3, 0xa9, 0, 0, 0, 0, 0]));
});
