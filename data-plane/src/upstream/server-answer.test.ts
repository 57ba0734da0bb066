import { test } from "node:test";
import assert from "node:assert/strict";
import { ServerAnswer } from "./server-answer.js";
import { errorResponse, noticeResponse, parameterStatus, readyForQuery } from "../wire/encode.js";
import { decodeParameterStatus } from "../wire/decode.js";

const frame = (code: string, body: Buffer): Buffer => {
  const h = Buffer.alloc(5);
  h[0] = code.charCodeAt(0);
  h.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([h, body]);
};
const commandComplete = (tag: string) => frame("C", Buffer.from(`${tag}\0`));
const notification = () => frame("A", Buffer.concat([Buffer.alloc(4), Buffer.from("chan\0payload\0")]));

function feed(a: ServerAnswer, frames: Buffer[]) {
  let v = a.frame(frames[0]![0]!, frames[0]!);
  for (const f of frames.slice(1)) v = a.frame(f[0]!, f);
  return v;
}

test("DISCARD ALL answered as Postgres does is clean; the settings it reports replace the old ones", () => {
  const a = new ServerAnswer([parameterStatus("TimeZone", "Pacific/Chatham"), parameterStatus("application_name", "x")]);
  const v = feed(a, [notification(), parameterStatus("TimeZone", "UTC"), noticeResponse({ sqlstate: "00000", message: "hi" }), commandComplete("DISCARD ALL"), readyForQuery("I")]);
  assert.deepEqual(v, { state: "clean" });
  assert.deepEqual(a.parameterStatus.map(decodeParameterStatus), [{ name: "TimeZone", value: "UTC" }, { name: "application_name", value: "x" }]);
});

test("an error, a transaction status other than idle, a pinned setting changed, or anything else is dirty", () => {
  const dirty = (frames: Buffer[]) => feed(new ServerAnswer([]), frames).state;
  assert.equal(dirty([errorResponse({ severity: "ERROR", sqlstate: "25001", message: "in a transaction" }), readyForQuery("T")]), "dirty");
  assert.equal(dirty([commandComplete("DISCARD ALL"), readyForQuery("T")]), "dirty");
  assert.equal(dirty([commandComplete("DISCARD ALL"), readyForQuery("E")]), "dirty");
  assert.equal(dirty([parameterStatus("standard_conforming_strings", "off"), readyForQuery("I")]), "dirty");
  assert.equal(dirty([frame("G", Buffer.from([0, 0, 0])), readyForQuery("I")]), "dirty");
  assert.equal(dirty([readyForQuery("I"), readyForQuery("I")]), "dirty");
  assert.equal(dirty([commandComplete("DISCARD ALL")]), "more");
});
