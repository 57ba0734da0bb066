/**
 * The frame helpers tests build raw sessions from: frontend frames are framed like any protocol
 * message (the backend splitter reads them), and what `backend` builds reads back field by field.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { backend, commandTag, dataRow, errorFields, frontend, readyStatus, rowDescription, splitBackend } from "./pg-frames.js";

test("frames: a frontend Parse/Bind/Execute/Sync round-trips through the backend splitter's framing", () => {
  const bytes = Buffer.concat([frontend.parse("s1", "SELECT $1", [23]), frontend.bind("", "s1", ["1", null, { binary: Buffer.from([1]) }]), frontend.execute("", 5), frontend.sync()]);
  const { messages, rest } = splitBackend(bytes);
  assert.deepEqual(messages.map((m) => m.code), ["P", "B", "E", "S"]);
  assert.equal(rest.length, 0);
  // a frame split anywhere leaves the tail for later
  const cut = splitBackend(bytes.subarray(0, bytes.length - 2));
  assert.deepEqual(cut.messages.map((m) => m.code), ["P", "B", "E"]);
  assert.equal(cut.rest.length, 3);
});

test("frames: backend messages built by hand read back as the readers see a server's", () => {
  const msgs = [
    backend.rowDescription(["a", { name: "b", typeOid: 23, format: 1 }]),
    backend.dataRow(["x", null, Buffer.from([0, 0, 0, 7])]),
    backend.commandComplete("SELECT 1"),
    backend.error("22012", "division by zero", { D: "detail" }),
    backend.error("08P01", "bye", { V: "FATAL" }),
    backend.ready("T"),
  ];
  const { messages, rest } = splitBackend(Buffer.concat(msgs.map((m) => m.raw)));
  assert.equal(rest.length, 0);
  assert.deepEqual(messages.map((m) => m.code), ["T", "D", "C", "E", "E", "Z"]);
  assert.deepEqual(rowDescription(messages[0]!).map((f) => [f.name, f.typeOid, f.format]), [["a", 25, 0], ["b", 23, 1]]);
  assert.deepEqual(dataRow(messages[1]!), [Buffer.from("x"), null, Buffer.from([0, 0, 0, 7])]);
  assert.equal(commandTag(messages[2]!), "SELECT 1");
  assert.deepEqual(errorFields(messages[3]!), { S: "ERROR", V: "ERROR", C: "22012", M: "division by zero", D: "detail" });
  assert.equal(errorFields(messages[4]!).V, "FATAL");
  assert.equal(readyStatus(messages[5]!), "T");
});
