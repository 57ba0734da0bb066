import { test } from "node:test";
import assert from "node:assert/strict";
import { RelaySession, type RelayIo } from "./relay-session.js";
import { SluiceError } from "@sluice/shared/errors";
import { allowAllEnforcerForTests, noopAudit, type ApprovalGate, type AuditFeatures, type AuditSink, type Enforcer, type SessionInfo, type StatementRecord } from "./session-hooks.js";
import { errorResponse, parse, query, readyForQuery, sync } from "../wire/encode.js";
import { decodeErrorFields, decodeQuery, decodeReadyForQuery } from "../wire/decode.js";
import { splitFrames } from "../wire/frame-scanner.js";

const info: SessionInfo = {
  sessionId: "s1", nodeId: "n1", region: "r", resource: "app", clientUser: "ci", clientAddress: "127.0.0.1:1",
  subject: "sub", issuer: "dev", groups: ["ci"], claims: {}, policyRevision: 1,
};
const TOKEN = "sluice_denied_test";

function harness(enforcer: Enforcer = allowAllEnforcerForTests, audit: AuditSink = noopAudit, features: AuditFeatures = { decodeParams: true, captureRows: 0 }, approvals?: ApprovalGate) {
  const toClient: Buffer[] = [];
  const toUpstream: Buffer[] = [];
  const holds: boolean[] = [];
  const io: RelayIo = {
    writeClient: (b) => void toClient.push(Buffer.from(b)),
    writeUpstream: (b) => void toUpstream.push(Buffer.from(b)),
    holdClient: (h) => void holds.push(h),
    holdUpstream: () => undefined,
    close: () => undefined,
  };
  const s = new RelaySession({ info, enforcer, audit, features, approvals, maxFrameBytes: 1 << 20, poisonToken: TOKEN, now: () => 0, io });
  return { s, toClient, toUpstream, holds };
}

/** an AuditSink whose statement.allowed is acknowledged when the test says so (ack durability) */
function ackingAudit() {
  const acks: Array<() => void> = [];
  const audit: AuditSink = { ...noopAudit, statementAllowed: () => new Promise<void>((r) => acks.push(r)) };
  return { audit, acks };
}
const tick = () => new Promise((r) => setImmediate(r));

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
/** Bind of the unnamed portal to the unnamed statement with one text parameter */
const bindWith = (v: string) => frame("B", Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1]), Buffer.from([0, 0, 0, v.length]), Buffer.from(v), Buffer.from([0, 0])]));
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

test("ack durability: a request-response statement waits for its ack and then costs one upstream write, no socket pause", async () => {
  const { audit, acks } = ackingAudit();
  const h = harness(allowAllEnforcerForTests, audit);
  const client = Buffer.concat([parse("", "SELECT 1"), bind, describeP, execute, sync()]);
  h.s.onClientData(client);
  await tick();
  assert.equal(h.toUpstream.length, 0, "nothing of the statement goes upstream before its audit ack");
  assert.equal(acks.length, 1);
  acks[0]!();
  await tick();
  assert.equal(h.toUpstream.length, 1, "Parse/Bind/Describe wait for the held Execute: one write");
  assert.ok(h.toUpstream[0]!.equals(client));
  assert.deepEqual(h.holds, [], "the client socket was never paused: the client sent nothing meanwhile");
});

test("ack durability: a pipelining client is paused while held, and a released statement never waits for the next ack", async () => {
  const { audit, acks } = ackingAudit();
  const h = harness(allowAllEnforcerForTests, audit);
  const first = Buffer.concat([parse("", "SELECT 1"), bind, describeP, execute]);
  const second = Buffer.concat([parse("", "SELECT 2"), bind, describeP, execute, sync()]);
  h.s.onClientData(first);
  h.s.onClientData(second); // arrives while the first is held
  assert.deepEqual(h.holds, [true], "more data during the hold pauses the socket");
  acks[0]!();
  await tick();
  // the first statement is released; the second is held for its own ack, but the first went out
  assert.equal(acks.length, 2);
  assert.ok(Buffer.concat(h.toUpstream).equals(Buffer.concat([first, parse("", "SELECT 2"), bind, describeP])));
  assert.deepEqual(h.holds, [true, false]);
  acks[1]!();
  await tick();
  assert.ok(Buffer.concat(h.toUpstream).equals(Buffer.concat([first, second])), "everything in order, byte for byte");
});

/** an Enforcer whose decisions are promises the test settles */
function deferredEnforcer() {
  const pending: Array<{ sql: string; resolve: (allow: boolean) => void; reject: (e: Error) => void }> = [];
  const enforcer: Enforcer = {
    decide: (sql) =>
      new Promise((resolve, reject) =>
        pending.push({
          sql,
          resolve: (allow) => resolve({ action: allow ? "allow" : "deny", rule: allow ? "t/allow" : "t/deny", reason: "test", statementClass: "read", statementIndex: 0, statements: [] }),
          reject,
        }),
      ),
  };
  return { enforcer, pending };
}

test("an asynchronous decision holds its message and everything pipelined behind it, in order", async () => {
  const { enforcer, pending } = deferredEnforcer();
  const h = harness(enforcer);
  h.s.onClientData(Buffer.concat([query("SELECT 1"), query("SELECT 2")]));
  await tick();
  assert.equal(h.toUpstream.length, 0, "nothing goes upstream before the decision");
  assert.deepEqual(pending.map((p) => p.sql), ["SELECT 1"], "the second message waits behind the first");
  pending[0]!.resolve(true);
  await tick();
  assert.deepEqual(pending.map((p) => p.sql), ["SELECT 1", "SELECT 2"]);
  pending[1]!.resolve(true);
  await tick();
  const sent = splitFrames(Buffer.concat(h.toUpstream), 1 << 20).frames;
  assert.deepEqual(sent.map((f) => decodeQuery(f.raw)), ["SELECT 1", "SELECT 2"]);
});

test("a rejected decision fails closed: 57P03 when the enforcer is unavailable, 42501 otherwise, in order", async () => {
  const { enforcer, pending } = deferredEnforcer();
  const h = harness(enforcer);
  h.s.onClientData(Buffer.concat([query("SELECT slow"), query("SELECT broken")]));
  await tick();
  pending[0]!.reject(new SluiceError("unavailable", "classification timed out"));
  await tick();
  pending[1]!.reject(new Error("worker crashed"));
  await tick();
  const sent = splitFrames(Buffer.concat(h.toUpstream), 1 << 20).frames;
  assert.deepEqual(sent.map((f) => decodeQuery(f.raw)), [TOKEN, TOKEN], "neither statement reaches the server as itself");
  const poisonErr = errorResponse({ severity: "ERROR", sqlstate: "42601", message: `syntax error at or near "${TOKEN}"` });
  h.s.onUpstreamData(Buffer.concat([poisonErr, readyForQuery("I"), poisonErr, readyForQuery("I")]));
  const got = splitFrames(Buffer.concat(h.toClient), 1 << 20).frames.filter((f) => f.code === 0x45);
  assert.deepEqual(got.map((f) => decodeErrorFields(f.raw).C), ["57P03", "42501"]);
  assert.match(decodeErrorFields(got[0]!.raw).M!, /timed out/);
});

test("audit features are explicit: rows are captured up to captureRows, parameters decoded only when asked", () => {
  const rows: number[] = [];
  const records: StatementRecord[] = [];
  const audit: AuditSink = { ...noopAudit, statementAllowed: (_s, r) => void records.push(r), resultRows: (_s, _q, _f, r) => void rows.push(r.length) };
  for (const features of [{ decodeParams: false, captureRows: 0 }, { decodeParams: true, captureRows: 1 }]) {
    rows.length = 0;
    records.length = 0;
    const h = harness(allowAllEnforcerForTests, audit, features);
    h.s.onClientData(Buffer.concat([parse("", "SELECT $1"), bindWith("x"), execute, sync()]));
    h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, dataRow, dataRow, cmdComplete, readyForQuery("I")]));
    assert.equal(records.length, 1);
    assert.equal(records[0]!.params?.[0]?.value?.toString(), features.decodeParams ? "x" : undefined);
    assert.deepEqual(rows, features.captureRows ? [1] : []);
  }
});

test("a statement that needs approval is bound with its parameters even when the audit decodes none", async () => {
  const approve: Enforcer = {
    decide: () => ({ action: "approve", rule: "t/approve", reason: "ddl", statementClass: "write", statementIndex: 0, statements: [], approval: { approvers: ["dba"], timeoutMs: 1000 } }),
  };
  const asked: StatementRecord[] = [];
  const approvals: ApprovalGate = { request: async (_s, rec) => (asked.push(rec), "approved") };
  const h = harness(approve, noopAudit, { decodeParams: false, captureRows: 0 }, approvals);
  h.s.onClientData(Buffer.concat([parse("", "DELETE FROM t WHERE id = $1"), bindWith("42"), execute, sync()]));
  await tick();
  assert.equal(asked.length, 1);
  assert.equal(asked[0]!.params?.[0]?.value?.toString(), "42");
});
