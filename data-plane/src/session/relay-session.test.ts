import { test } from "node:test";
import assert from "node:assert/strict";
import { RelaySession, type RelayIo } from "./relay-session.js";
import { allowAllEnforcerForTests, type Enforcer, type SessionInfo } from "./session-hooks.js";
import { errorResponse, parse, query, readyForQuery, sync } from "../wire/encode.js";
import { decodeErrorFields, decodeQuery, decodeReadyForQuery } from "../wire/decode.js";
import { splitFrames } from "../wire/frame-scanner.js";

const info: SessionInfo = {
  sessionId: "s1", nodeId: "n1", region: "r", resource: "app", clientUser: "ci", clientAddress: "127.0.0.1:1",
  subject: "sub", issuer: "dev", groups: ["ci"], claims: {}, policyRevision: 1,
};
const TOKEN = "sluice_denied_test";

function harness(enforcer: Enforcer = allowAllEnforcerForTests) {
  const toClient: Buffer[] = [];
  const toUpstream: Buffer[] = [];
  const io: RelayIo = {
    writeClient: (b) => void toClient.push(Buffer.from(b)),
    writeUpstream: (b) => void toUpstream.push(Buffer.from(b)),
    holdClient: () => undefined,
    holdUpstream: () => undefined,
    close: () => undefined,
  };
  const s = new RelaySession({ info, enforcer, audit: {}, maxFrameBytes: 1 << 20, poisonToken: TOKEN, now: () => 0, io });
  return { s, toClient, toUpstream };
}

function frame(code: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = code.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const bind = frame("B", Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]));
const describeP = frame("D", Buffer.from("P\0"));
const execute = frame("E", Buffer.from([0, 0, 0, 0, 0]));
const parseComplete = frame("1", Buffer.alloc(0));
const bindComplete = frame("2", Buffer.alloc(0));
const rowDesc = frame("T", Buffer.concat([Buffer.from([0, 1]), Buffer.from("n\0"), Buffer.alloc(18)]));
const dataRow = frame("D", Buffer.from([0, 1, 0, 0, 0, 1, 0x31]));
const cmdComplete = frame("C", Buffer.from("SELECT 1\0"));

test("an allowed pipeline is forwarded byte for byte, one write per chunk each way", () => {
  const h = harness();
  const client = Buffer.concat([parse("", "SELECT 1"), bind, describeP, execute, sync()]);
  h.s.onClientData(client);
  assert.equal(h.toUpstream.length, 1);
  assert.ok(h.toUpstream[0]!.equals(client));
  const server = Buffer.concat([parseComplete, bindComplete, rowDesc, dataRow, cmdComplete, readyForQuery("I")]);
  h.s.onUpstreamData(server);
  assert.equal(h.toClient.length, 1);
  assert.ok(h.toClient[0]!.equals(server));
});

test("a denied Query becomes the poison upstream; its error is swapped in order for the 42501", () => {
  const deny: Enforcer = {
    decide: (sql) => ({
      action: sql.includes("bad") ? "deny" : "allow", rule: "r/deny:read", reason: "no", statementClass: "read", statementIndex: 0, statements: [],
    }),
  };
  const h = harness(deny);
  h.s.onClientData(Buffer.concat([query("SELECT ok"), query("SELECT bad")]));
  const sent = splitFrames(Buffer.concat(h.toUpstream), 1 << 20).frames;
  assert.deepEqual(sent.map((f) => decodeQuery(f.raw)), ["SELECT ok", TOKEN]);
  // upstream answers the first, then fails the poison inside a transaction block
  const poisonErr = errorResponse({ severity: "ERROR", sqlstate: "42601", message: `syntax error at or near "${TOKEN}"` });
  h.s.onUpstreamData(Buffer.concat([cmdComplete, readyForQuery("T"), poisonErr, readyForQuery("E")]));
  const got = splitFrames(Buffer.concat(h.toClient), 1 << 20).frames;
  assert.deepEqual(got.map((f) => String.fromCharCode(f.code)), ["C", "Z", "E", "Z"]);
  const e = decodeErrorFields(got[2]!.raw);
  assert.equal(e.C, "42501");
  assert.match(e.M!, /rule "r\/deny:read" \(read\)/);
  assert.ok(!Buffer.concat(h.toClient).includes(TOKEN), "the poison token never reaches the client");
  assert.equal(decodeReadyForQuery(got[3]!.raw), "E");
});

test("after a denied Parse, Bind/Describe/Execute are swallowed until Sync", () => {
  const deny: Enforcer = { decide: () => ({ action: "deny", rule: "r", reason: "no", statementClass: "write", statementIndex: 0, statements: [] }) };
  const h = harness(deny);
  h.s.onClientData(Buffer.concat([parse("s1", "DELETE FROM t"), bind, describeP, execute, sync()]));
  const sent = splitFrames(Buffer.concat(h.toUpstream), 1 << 20).frames;
  assert.deepEqual(sent.map((f) => String.fromCharCode(f.code)), ["P", "S"]);
  assert.ok(sent[0]!.raw.includes(TOKEN));
});

test("FunctionCall (a function by OID, outside SQL policy) is refused in order with 42501", () => {
  const h = harness();
  const fcall = frame("F", Buffer.from([0, 0, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0]));
  h.s.onClientData(fcall);
  const sent = splitFrames(Buffer.concat(h.toUpstream), 1 << 20).frames;
  assert.deepEqual(sent.map((f) => decodeQuery(f.raw)), [TOKEN]);
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "42601", message: `syntax error at or near "${TOKEN}"` }), readyForQuery("I")]));
  const got = splitFrames(Buffer.concat(h.toClient), 1 << 20).frames;
  assert.equal(decodeErrorFields(got[0]!.raw).C, "42501");
  assert.equal(decodeReadyForQuery(got[1]!.raw), "I");
});
