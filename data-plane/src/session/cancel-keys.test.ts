import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeClientPid, MAX_NODE_NUMBER, nodeNumberFromId, nodeOfClientPid } from "./cancel-keys.js";

test("the client pid carries the node number and stays a positive int32", () => {
  for (const node of [0, 1, 7, 1000, MAX_NODE_NUMBER]) {
    for (const counter of [0, 1, 12345, 0xfffff, 0x100000 + 5]) {
      const pid = encodeClientPid(node, counter);
      assert.ok(pid > 0 || (node === 0 && (counter & 0xfffff) === 0));
      assert.ok(pid <= 0x7fffffff);
      assert.equal(nodeOfClientPid(pid), node);
    }
  }
  assert.throws(() => encodeClientPid(MAX_NODE_NUMBER + 1, 1), RangeError);
});

test("node numbers derived from ids are stable and in range", () => {
  assert.equal(nodeNumberFromId("dp-eu-1"), nodeNumberFromId("dp-eu-1"));
  for (const id of ["a", "dp-1", "dp-2", "x".repeat(100)]) {
    const n = nodeNumberFromId(id);
    assert.ok(n >= 0 && n <= MAX_NODE_NUMBER);
  }
});
