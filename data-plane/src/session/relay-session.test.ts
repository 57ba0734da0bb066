import { test } from "node:test";
import assert from "node:assert/strict";
import { RelaySession, type RelayIo } from "./relay-session.js";
import { SluiceError } from "@sluice/shared/errors";
import { allowAllEnforcerForTests, noopAudit, type ApprovalGate, type AuditFeatures, type AuditSink, type Enforcer, type ResultMasker, type SessionInfo, type StatementCompletion, type StatementRecord } from "./session-hooks.js";
import { classifySql, loadSqlParser } from "@sluice/shared/sql";
import { bind as bindFrame, errorResponse, execute as executeFrame, parse, parse as parseFrame, query, readyForQuery, sync } from "../wire/encode.js";
import { decodeErrorFields, decodeQuery, decodeReadyForQuery } from "../wire/decode.js";
import { splitFrames } from "../wire/frame-scanner.js";

const info: SessionInfo = {
  sessionId: "s1", nodeId: "n1", region: "r", resource: "app", clientUser: "ci", clientAddress: "127.0.0.1:1",
  subject: "sub", issuer: "dev", groups: ["ci"], claims: {}, policyRevision: 1,
};
const TOKEN = "sluice_denied_test";
/** the session's server-name prefix (relay-session.ts) */
const PREFIX = `_${Buffer.from(TOKEN).toString("hex").slice(-12)}_`;

function harness(enforcer: Enforcer = allowAllEnforcerForTests, audit: AuditSink = noopAudit, features: AuditFeatures = { decodeParams: true, captureRows: 0 }, approvals?: ApprovalGate, masker?: ResultMasker) {
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
  const s = new RelaySession({ info, enforcer, audit, features, approvals, masker, maxFrameBytes: 1 << 20, poisonToken: TOKEN, now: () => 0, io });
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
  // asked only once the server answered what comes before it in its batch (it could yet skip it)
  assert.equal(asked.length, 0);
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete]));
  await tick();
  assert.equal(asked.length, 1);
  assert.equal(asked[0]!.params?.[0]?.value?.toString(), "42");
});

test("a statement the server will skip after an error is never put before an approver: behind a failed Execute, behind CopyFail", async () => {
  await loadSqlParser();
  const approving: Enforcer = {
    decide: (sql) => {
      const c = classifySql(sql);
      const approve = /^UPDATE/.test(sql);
      return { action: approve ? "approve" : "allow", rule: "t", reason: "t", statementClass: "write", statementIndex: 0, statements: c.ok ? c.statements : [], ...(approve ? { approval: { approvers: ["dba"], timeoutMs: 1000 } } : {}) };
    },
  };
  const asked: StatementRecord[] = [];
  const approvals: ApprovalGate = { request: async (_s, rec) => (asked.push(rec), "approved") };
  const h = harness(approving, noopAudit, undefined, approvals);
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1/0"), bindFrame("", ""), executeFrame(""), parseFrame("u", "UPDATE t SET a = 0"), bindFrame("", "u"), executeFrame(""), sync()]));
  await tick();
  assert.equal(codes(h.toUpstream), "PBEPBH", "the UPDATE's Execute waits, behind a Flush");
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" })]));
  await tick();
  assert.equal(asked.length, 0, "the server skips it: nobody is asked");
  assert.equal(codes(h.toUpstream), "PBEPBHS");
  h.s.onUpstreamData(readyForQuery("I"));
  // CopyFail behind an extended COPY FROM: the server fails the COPY and skips to Sync
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([parseFrame("", "COPY t FROM STDIN"), bindFrame("", ""), executeFrame(""), frame("f", Buffer.from("no\0")), parseFrame("v", "UPDATE t SET a = 1"), bindFrame("", "v"), executeFrame(""), sync()]));
  await tick();
  assert.equal(codes(h.toUpstream), "PBEfS", "nothing behind the CopyFail until Sync");
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, frame("G", Buffer.from([0, 0, 0])), errorResponse({ severity: "ERROR", sqlstate: "57014", message: "COPY from stdin failed: no" }), readyForQuery("I")]));
  await tick();
  assert.equal(asked.length, 0);
  assert.equal(codes(h.toClient), "12EZ12GEZ");
});

// ------------------------------------------------------------------ the proxy's namespace and the server's answers

const sent = (bufs: Buffer[]) => splitFrames(Buffer.concat(bufs), 1 << 20).frames;
const codes = (bufs: Buffer[]) => sent(bufs).map((f) => String.fromCharCode(f.code)).join("");
/** the C string at byte `at` of a frame */
const cstrAt = (f: Buffer, at: number) => f.toString("utf8", at, f.indexOf(0, at));
const closeComplete = frame("3", Buffer.alloc(0));
const noData = frame("n", Buffer.alloc(0));

function closing() {
  const closed: Array<{ reason: string; fatal?: Record<string, string> }> = [];
  return { closed, close: (reason: string, fatal?: Buffer) => void closed.push({ reason, fatal: fatal ? decodeErrorFields(fatal) : undefined }) };
}

function recording(enforcer: Enforcer = allowAllEnforcerForTests) {
  const records: StatementRecord[] = [];
  const audit: AuditSink = { ...noopAudit, statementAllowed: (_s, r) => void records.push(r) };
  const h = harness(enforcer, audit);
  const c = closing();
  (h.s as unknown as { o: { io: RelayIo } }).o.io.close = c.close;
  return { ...h, records, closed: c.closed };
}

test("a named statement and portal reach the server under the proxy's names; the server's errors name the client's", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 1"), bindFrame("p1", "s1"), executeFrame("p1"), sync()]));
  const [p, b, e] = sent(h.toUpstream);
  const server = cstrAt(p!.raw, 5);
  assert.match(server, /^_[0-9a-f]{12}_s\d+$/);
  assert.equal(cstrAt(b!.raw, 5 + cstrAt(b!.raw, 5).length + 1), server, "Bind names the server's statement");
  assert.match(cstrAt(b!.raw, 5), /^_[0-9a-f]{12}_p\d+$/);
  assert.equal(cstrAt(e!.raw, 5), cstrAt(b!.raw, 5));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, dataRow, cmdComplete, readyForQuery("I")]));
  // the client Parses s1 again: the server refuses (the name exists) and says so with the server's name
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 2"), sync()]));
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "42P05", message: `prepared statement "${server}" already exists` }), readyForQuery("I")]));
  const err = decodeErrorFields(sent(h.toClient)[0]!.raw);
  assert.equal(err.C, "42P05");
  assert.equal(err.M, 'prepared statement "s1" already exists');
});

test("an Execute is decided from the statement bound into the portal, not from what the name means now", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 'bound'"), bindFrame("", ""), parseFrame("", "SELECT 'later'"), executeFrame(""), sync()]));
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 'bound'"]);
});

test("Bind of a name the client never prepared and Execute of a portal it never bound: sent under names the server cannot have, its errors with the client's names", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([bindFrame("", "nosuch"), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "BS", "the Bind under unallocated names, the Execute after it dropped");
  const [b] = sent(h.toUpstream);
  assert.deepEqual([cstrAt(b!.raw, 5), cstrAt(b!.raw, 6 + PREFIX.length + 2)], [`${PREFIX}p0`, `${PREFIX}s0`]);
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "26000", message: `prepared statement "${PREFIX}s0" does not exist` }), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient)[0]!.raw).C, "26000");
  assert.equal(decodeErrorFields(sent(h.toClient)[0]!.raw).M, 'prepared statement "nosuch" does not exist');
  h.toClient.length = 0;
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([bindFrame("", ""), sync()]));
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "26000", message: `prepared statement "${PREFIX}s0" does not exist` }), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient)[0]!.raw).M, "unnamed prepared statement does not exist");
  h.toClient.length = 0;
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([executeFrame("nop"), sync()]));
  assert.equal(cstrAt(sent(h.toUpstream)[0]!.raw, 5), `${PREFIX}p0`);
  // in an aborted transaction the server's order of checks is its own (here: the name first)
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "34000", message: `portal "${PREFIX}p0" does not exist` }), readyForQuery("E")]));
  assert.equal(decodeErrorFields(sent(h.toClient)[0]!.raw).M, 'portal "nop" does not exist');
  assert.deepEqual(h.records, [], "nothing was recorded as allowed");
  // anything but an error for such a message: the proxy lost track of the server
  h.s.onClientData(Buffer.concat([executeFrame("nop"), sync()]));
  h.s.onUpstreamData(cmdComplete);
  assert.equal(h.closed.length, 1);
});

test("the unnamed portal a failed simple Query may leave in a transaction block (finding 028): its Execute goes as it is and the server answers; a completed Query leaves none", async () => {
  const h = recording();
  h.s.onClientData(query("BEGIN"));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("BEGIN\0")), readyForQuery("T")]));
  h.s.onClientData(query("UPDATE t SET a = 1"));
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "25006", message: "cannot execute UPDATE in a read-only transaction" }), readyForQuery("E")]));
  assert.equal(h.s["ns"].unnamedPortal.confirmed?.leftover, true);
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([executeFrame("", 1), sync()]));
  await tick();
  const [e] = sent(h.toUpstream);
  assert.equal(String.fromCharCode(e!.code), "E");
  assert.equal(cstrAt(e!.raw, 5), "", "the unnamed portal, which nothing can run");
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "25P02", message: "current transaction is aborted, commands ignored until end of transaction block" }), readyForQuery("E")]));
  assert.deepEqual(sent(h.toClient).map((f) => (f.code === 0x45 ? decodeErrorFields(f.raw).C : String.fromCharCode(f.code))), ["25P02", "Z"]);
  assert.deepEqual(h.records.map((r) => r.sql), ["BEGIN", "UPDATE t SET a = 1"], "nothing recorded for it");
  // ROLLBACK ends the block and every portal
  h.s.onClientData(query("ROLLBACK"));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("ROLLBACK\0")), readyForQuery("I")]));
  assert.equal(h.s["ns"].unnamedPortal.confirmed, null);
  assert.equal(h.closed.length, 0);
});

test("the unnamed portal across simple Queries in a block: an empty Query keeps it, a completed one drops it, one failing at its first statement keeps it", () => {
  const h = recording();
  const ns = h.s["ns"];
  h.s.onClientData(Buffer.concat([query("BEGIN"), parseFrame("", "SELECT 1"), bindFrame("", ""), sync()]));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("BEGIN\0")), readyForQuery("T"), parseComplete, bindComplete, readyForQuery("T")]));
  const bound = ns.unnamedPortal.confirmed;
  assert.ok(bound && !bound.leftover);
  h.s.onClientData(query(""));
  h.s.onUpstreamData(Buffer.concat([frame("I", Buffer.alloc(0)), readyForQuery("T")]));
  assert.equal(ns.unnamedPortal.confirmed, bound, "EmptyQueryResponse: nothing ran");
  assert.equal(ns.unnamedStatement.confirmed, null, "every Query drops the unnamed statement");
  h.s.onClientData(query("SELECT nocol"));
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "42703", message: 'column "nocol" does not exist' }), readyForQuery("E")]));
  assert.equal(ns.unnamedPortal.confirmed, bound, "failed before its first statement ran: the Bind's portal (failed now) may be there");
  h.s.onClientData(query("ROLLBACK"));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("ROLLBACK\0")), readyForQuery("I")]));
  h.s.onClientData(Buffer.concat([query("BEGIN"), parseFrame("", "SELECT 1"), bindFrame("", ""), sync(), query("SELECT 2; SELECT 1/0")]));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("BEGIN\0")), readyForQuery("T"), parseComplete, bindComplete, readyForQuery("T")]));
  h.s.onUpstreamData(Buffer.concat([rowDesc, dataRow, cmdComplete, errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" }), readyForQuery("E")]));
  assert.equal(ns.unnamedPortal.confirmed?.leftover, true, "its first statement replaced the Bind's portal");
  h.s.onClientData(query("ROLLBACK; BEGIN; SELECT 3"));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("ROLLBACK\0")), frame("C", Buffer.from("BEGIN\0")), rowDesc, dataRow, cmdComplete, readyForQuery("T")]));
  assert.equal(ns.unnamedPortal.confirmed, null, "completed: its last portal was dropped");
  assert.equal(h.closed.length, 0);
});

test("a Bind in the next Sync batch of an unnamed Parse waits until the server answered that Parse", async () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1"), sync(), bindFrame("", ""), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "PS", "the Bind is held: the Parse might yet fail");
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  await tick();
  assert.equal(codes(h.toUpstream), "PSBES");
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 1"]);
});

test("after an error the skipped Parse does not count: the Execute runs the statement the server still has", async () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 'X'"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  // an error, then a Parse the server skips, then (next batch) a Bind of the unnamed statement
  h.s.onClientData(Buffer.concat([executeFrame("nope"), parseFrame("", "SELECT 'Y'"), sync(), bindFrame("", ""), executeFrame(""), sync()]));
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "42601", message: `syntax error at or near "${TOKEN}"` }), readyForQuery("I")]));
  await tick();
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 'X'"], "decided as what the server runs");
});

test("a backend message the proxy does not expect ends the session (FATAL 08P01); nothing is forwarded after it", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1"), bindFrame("", ""), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, dataRow, readyForQuery("I")]));
  assert.equal(h.closed.length, 1);
  assert.equal(h.closed[0]!.fatal?.C, "08P01");
  assert.match(h.closed[0]!.fatal!.M!, /lost track.*DataRow while answering Bind/);
  assert.ok(!codes(h.toClient).includes("D"), "the row was not forwarded");
});

test("the server reporting another standard_conforming_strings or client_encoding ends the session", () => {
  for (const [name, value] of [["standard_conforming_strings", "off"], ["client_encoding", "SJIS"]]) {
    const h = recording();
    h.s.onClientData(query("SET x = y"));
    h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("SET\0")), frame("S", Buffer.from(`${name}\0${value}\0`)), readyForQuery("I")]));
    assert.equal(h.closed.length, 1, name);
    assert.equal(h.closed[0]!.fatal?.C, "0A000");
    assert.match(h.closed[0]!.fatal!.M!, new RegExp(name));
    assert.ok(!codes(h.toClient).includes("S"));
  }
  const ok = recording();
  ok.s.onUpstreamData(frame("S", Buffer.from("TimeZone\0UTC\0")));
  assert.equal(ok.closed.length, 0);
});

test("COPY FROM STDIN in a pipeline: the Sync sent before the data is swallowed by the server; anything else behind the COPY is refused", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([parseFrame("", "COPY t FROM STDIN"), bindFrame("", ""), executeFrame(""), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, frame("G", Buffer.from([0, 0, 0]))]));
  h.s.onClientData(Buffer.concat([frame("d", Buffer.from("1\n")), frame("c", Buffer.alloc(0)), sync()]));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("COPY 1\0")), readyForQuery("I")]));
  assert.equal(h.closed.length, 0);
  assert.equal(codes(h.toClient), "12GCZ");
  const bad = recording();
  bad.s.onClientData(Buffer.concat([parseFrame("", "COPY t FROM STDIN"), bindFrame("", ""), executeFrame(""), sync(), parseFrame("", "SELECT 1"), sync()]));
  bad.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, frame("G", Buffer.from([0, 0, 0]))]));
  assert.equal(bad.closed[0]?.fatal?.C, "08P01");
  assert.match(bad.closed[0]!.fatal!.M!, /pipelined behind COPY FROM STDIN/);
  const during = recording();
  during.s.onClientData(Buffer.concat([query("COPY t FROM STDIN")]));
  during.s.onUpstreamData(frame("G", Buffer.from([0, 0, 0])));
  during.s.onClientData(parseFrame("", "SELECT 1"));
  assert.match(during.closed[0]!.fatal!.M!, /during COPY FROM STDIN/);
});

test("a portal suspended by a row limit is executed again with its own statement while another portal ran in between", () => {
  const h = recording();
  h.s.onClientData(Buffer.concat([query("BEGIN")]));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("BEGIN\0")), readyForQuery("T")]));
  h.s.onClientData(Buffer.concat([parseFrame("a", "SELECT 'a'"), bindFrame("pa", "a"), executeFrame("pa", 1), parseFrame("b", "SELECT 'b'"), bindFrame("pb", "b"), executeFrame("pb"), executeFrame("pa", 1), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, dataRow, frame("s", Buffer.alloc(0)), parseComplete, bindComplete, dataRow, cmdComplete, dataRow, frame("s", Buffer.alloc(0)), readyForQuery("T")]));
  assert.equal(h.closed.length, 0);
  assert.deepEqual(h.records.map((r) => r.sql), ["BEGIN", "SELECT 'a'", "SELECT 'b'", "SELECT 'a'"]);
  assert.equal(codes(h.toClient), "CZ12Ds12DCDsZ");
  // after Sync inside the transaction the portal still is what it was
  h.s.onClientData(Buffer.concat([executeFrame("pa"), sync()]));
  assert.equal(h.records.at(-1)!.sql, "SELECT 'a'");
  void closeComplete;
  void noData;
});

// ------------------------------------------------------------------ what the server skips, and DEALLOCATE of a Parse's name

const poisonError = () => errorResponse({ severity: "ERROR", sqlstate: "42601", message: `syntax error at or near "${TOKEN}"` });
/** the server's answer to a Bind sent under the unallocated statement name */
const missingError = () => errorResponse({ severity: "ERROR", sqlstate: "26000", message: `prepared statement "${PREFIX}s0" does not exist` });

/** allows everything and says what the real classifier says of each statement (PREPARE, DEALLOCATE, …) */
const classifying: Enforcer = {
  decide: (sql) => {
    const c = classifySql(sql);
    return { action: "allow", rule: "t/allow", reason: "test", statementClass: "read", statementIndex: 0, statements: c.ok ? c.statements : [] };
  },
};

function completing(enforcer: Enforcer, statementAllowed: AuditSink["statementAllowed"] = () => undefined) {
  const records: StatementRecord[] = [];
  const completions: StatementCompletion[] = [];
  const audit: AuditSink = {
    ...noopAudit,
    statementAllowed: (s, r) => (records.push(r), statementAllowed(s, r)),
    statementCompleted: (_s, d) => void completions.push(d),
  };
  const h = harness(enforcer, audit);
  const c = closing();
  (h.s as unknown as { o: { io: RelayIo } }).o.io.close = c.close;
  return { ...h, records, completions, closed: c.closed };
}

test("an error before the client's Sync: what the client sends until that Sync is skipped by the server, so it is not forwarded (a simple Query too)", () => {
  const h = completing(allowAllEnforcerForTests);
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1/0"), bindFrame("", ""), executeFrame("")]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" })]));
  h.toUpstream.length = 0;
  // the server skips all of this: the Query would otherwise wait for a ReadyForQuery that never comes
  h.s.onClientData(Buffer.concat([query("DELETE FROM t"), parseFrame("s", "SELECT 2"), bindFrame("p", "s"), executeFrame("p"), sync()]));
  assert.equal(codes(h.toUpstream), "S", "only the Sync that ends the skipping");
  h.s.onUpstreamData(readyForQuery("I"));
  assert.equal(codes(h.toClient), "12EZ");
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 1/0"], "nothing the server skipped is recorded as allowed");
  assert.deepEqual(h.completions.map((d) => d.error?.sqlstate), ["22012"]);
  // and the session goes on: the skipped Parse made nothing
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([bindFrame("", "s"), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "BS", "the Bind of a name the server never got, under a name it cannot have");
  h.s.onUpstreamData(Buffer.concat([missingError(), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient).at(-2)!.raw).M, 'prepared statement "s" does not exist');
  assert.equal(h.closed.length, 0);
});

test("a statement held for its audit ack when the server begins skipping never goes upstream; its completion says it did not run", async () => {
  const acks: Array<() => void> = [];
  const h = completing(allowAllEnforcerForTests, () => new Promise<void>((r) => acks.push(r)));
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1/0"), bindFrame("", ""), executeFrame(""), parseFrame("", "SELECT 2"), bindFrame("", ""), executeFrame("")]));
  acks[0]!();
  await tick();
  assert.equal(acks.length, 2, "the second Execute waits for its own ack");
  assert.equal(codes(h.toUpstream), "PBEPB");
  // the first fails before the second's ack: the server skips the second's Parse and Bind, and would skip its Execute
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" })]));
  acks[1]!();
  await tick();
  assert.equal(codes(h.toUpstream), "PBEPB", "the held Execute is dropped");
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 1/0", "SELECT 2"]);
  assert.deepEqual(h.completions.map((d) => d.error?.sqlstate), ["22012", "08P01"]);
  assert.match(h.completions[1]!.error!.message, /not run/);
  h.s.onClientData(sync());
  h.s.onUpstreamData(readyForQuery("I"));
  assert.equal(codes(h.toClient), "12EZ");
  assert.equal(h.closed.length, 0);
});

test("DEALLOCATE of a name made with Parse goes to the server under the proxy's name, among other statements too", async () => {
  await loadSqlParser();
  const h = completing(classifying);
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 1"), sync()]));
  const server = cstrAt(sent(h.toUpstream)[0]!.raw, 5);
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.s.onClientData(query("DEALLOCATE s1"));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), [`DEALLOCATE "${server}"`]);
  assert.equal(h.records.at(-1)!.sql, `DEALLOCATE "${server}"`, "recorded as what the server runs");
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("DEALLOCATE\0")), readyForQuery("I")]));
  // the name is gone: a Bind of it gets the server's error without reaching the server
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([bindFrame("", "s1"), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "BS");
  assert.ok(sent(h.toUpstream)[0]!.raw.includes(`${PREFIX}s0`));
  h.s.onUpstreamData(Buffer.concat([missingError(), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient).at(-2)!.raw).M, 'prepared statement "s1" does not exist');
  // the client's own name reaches the server as it is only when no Parse made it (the server's error is its own)
  h.toUpstream.length = 0;
  h.s.onClientData(query("DEALLOCATE s1"));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), ["DEALLOCATE s1"]);
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "26000", message: 'prepared statement "s1" does not exist' }), readyForQuery("I")]));
  // among other statements, only its name changes; the server runs it or skips it, and the name
  // is gone once the server completed it (finding 030)
  h.s.onClientData(Buffer.concat([parseFrame("s2", "SELECT 2"), sync()]));
  const server2 = cstrAt(sent(h.toUpstream).at(-2)!.raw, 5);
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  // an error before it: the server skips it, s2 stays
  h.s.onClientData(Buffer.concat([query("SELECT 1/0; DEALLOCATE s2"), bindFrame("", "s2"), executeFrame(""), sync()]));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), [`SELECT 1/0; DEALLOCATE "${server2}"`], "the Bind waits for the Query's answer");
  assert.deepEqual(h.records.slice(-2).map((r) => r.sql), ["SELECT 1/0", `DEALLOCATE "${server2}"`], "each statement recorded as the server runs it");
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" }), readyForQuery("I")]));
  await tick();
  assert.equal(codes(h.toUpstream), "QBES", "s2 is still the Parse's statement");
  h.s.onUpstreamData(Buffer.concat([bindComplete, dataRow, cmdComplete, readyForQuery("I")]));
  // it runs, then an error after it: s2 is gone all the same
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([query("DEALLOCATE s2; SELECT 1/0"), bindFrame("", "s2"), executeFrame(""), sync()]));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), [`DEALLOCATE "${server2}"; SELECT 1/0`]);
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("DEALLOCATE\0")), errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" }), readyForQuery("I")]));
  await tick();
  assert.equal(codes(h.toUpstream), "QBS", "the Bind of a name the server no longer has, under a name it cannot have");
  assert.ok(sent(h.toUpstream)[1]!.raw.includes(`${PREFIX}s0`));
  h.s.onUpstreamData(Buffer.concat([missingError(), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient).at(-2)!.raw).M, 'prepared statement "s2" does not exist');
  assert.deepEqual(h.completions.slice(-2).map((d) => d.commandTag ?? d.error?.sqlstate), ["DEALLOCATE", "22012"], "each statement has its completion");
  assert.equal(h.closed.length, 0);
});

test("a Query's PREPARE of a name a Parse took goes to the server under that statement's server name, so the server fails it where it gets there (finding 023)", async () => {
  await loadSqlParser();
  const h = completing(classifying);
  h.s.onClientData(Buffer.concat([parseFrame("s2", "SELECT 1"), sync()]));
  const server = cstrAt(sent(h.toUpstream)[0]!.raw, 5);
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  // a Bind of s2 right behind the Query waits for its answer: until then the server's s2 is in question
  h.s.onClientData(Buffer.concat([query("SET a = 1; PREPARE s2 AS DELETE FROM t; SELECT 3"), bindFrame("", "s2"), executeFrame(""), sync()]));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), [`SET a = 1; PREPARE "${server}" AS DELETE FROM t; SELECT 3`], "only the name changes");
  assert.deepEqual(h.records.map((r) => r.sql), ["SET a = 1", `PREPARE "${server}" AS DELETE FROM t`, "SELECT 3"], "each statement recorded as the server runs it");
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("SET\0")), errorResponse({ severity: "ERROR", sqlstate: "42P05", message: `prepared statement "${server}" already exists` }), readyForQuery("I")]));
  await tick();
  const got = sent(h.toClient);
  assert.deepEqual(got.map((f) => String.fromCharCode(f.code)).slice(0, 3), ["C", "E", "Z"]);
  assert.equal(decodeErrorFields(got[1]!.raw).M, 'prepared statement "s2" already exists');
  assert.deepEqual(h.completions.slice(0, 3).map((d) => d.commandTag ?? d.error?.sqlstate), ["SET", "42P05", "08P01"], "each statement has its completion; the one after the failure did not run");
  assert.equal(codes(h.toUpstream), "QBES", "the Bind went once the Query was answered");
  h.s.onUpstreamData(Buffer.concat([bindComplete, dataRow, cmdComplete, readyForQuery("I")]));
  assert.deepEqual(h.records.at(-1)!.sql, "SELECT 1", "s2 is still the Parse's statement");

  // after DEALLOCATE ALL in the same message nothing clashes: sent as it is
  h.toUpstream.length = 0;
  h.s.onClientData(query("DEALLOCATE ALL; PREPARE s2 AS SELECT 5"));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), ["DEALLOCATE ALL; PREPARE s2 AS SELECT 5"]);
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("DEALLOCATE ALL\0")), frame("C", Buffer.from("PREPARE\0")), readyForQuery("I")]));
  assert.equal(h.closed.length, 0);

  // should the server ever complete the renamed PREPARE, the proxy lost track: the session ends
  h.s.onClientData(Buffer.concat([parseFrame("s3", "SELECT 1"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.s.onClientData(query("PREPARE s3 AS SELECT 2"));
  h.s.onUpstreamData(frame("C", Buffer.from("PREPARE\0")));
  assert.equal(h.closed.length, 1);
  assert.equal(h.closed[0]!.fatal?.C, "08P01");
});

test("a denied Query that also clashes gets its denial: the server never sees it, so it never fails the PREPARE", async () => {
  await loadSqlParser();
  const denyDelete: Enforcer = {
    decide: (sql) => {
      const c = classifySql(sql);
      const deny = /DELETE FROM t$/.test(sql);
      return { action: deny ? "deny" : "allow", rule: "t/deny:write", reason: "test", statementClass: "write", statementIndex: 0, statements: c.ok ? c.statements : [] };
    },
  };
  const h = completing(denyDelete);
  h.s.onClientData(Buffer.concat([parseFrame("s2", "SELECT 1"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(query("SELECT 0; PREPARE s2 AS SELECT 1; DELETE FROM t"));
  assert.deepEqual(sent(h.toUpstream).map((f) => decodeQuery(f.raw)), [TOKEN]);
  h.s.onUpstreamData(Buffer.concat([poisonError(), readyForQuery("I")]));
  assert.deepEqual([decodeErrorFields(sent(h.toClient)[0]!.raw).C, decodeErrorFields(sent(h.toClient)[0]!.raw).D], ["42501", "sluice rule: t/deny:write"]);
});

test("a Parse of DEALLOCATE of a Parse's statement is sent under that statement's server name; its Execute deallocates what the name means then", async () => {
  await loadSqlParser();
  const h = completing(classifying);
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 1"), sync()]));
  const server = cstrAt(sent(h.toUpstream)[0]!.raw, 5);
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([parseFrame("d", "DEALLOCATE s1"), bindFrame("c", "d"), executeFrame("c"), sync()]));
  const [p] = sent(h.toUpstream);
  assert.equal(cstrAt(p!.raw, 5 + cstrAt(p!.raw, 5).length + 1), `DEALLOCATE "${server}"`);
  assert.equal(codes(h.toUpstream), "PBES");
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, frame("C", Buffer.from("DEALLOCATE\0")), readyForQuery("I")]));
  assert.equal(h.records.at(-1)!.sql, `DEALLOCATE "${server}"`, "recorded as the server runs it");
  assert.equal(h.s["ns"].statementSlot("s1")?.confirmed, null, "s1 is gone, as on the server");
  // s1 made again, closed and made again: it keeps its server name, so the prepared DEALLOCATE deallocates what s1 means now
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 2"), parseFrame("e", "DEALLOCATE s1"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, parseComplete, readyForQuery("I")]));
  h.s.onClientData(Buffer.concat([frame("C", Buffer.from("Ss1\0")), sync()]));
  h.s.onUpstreamData(Buffer.concat([closeComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 3"), sync()]));
  assert.equal(cstrAt(sent(h.toUpstream)[0]!.raw, 5), server, "the same server name");
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([bindFrame("c", "e"), executeFrame("c"), sync()]));
  assert.equal(codes(h.toUpstream), "BES");
  h.s.onUpstreamData(Buffer.concat([bindComplete, frame("C", Buffer.from("DEALLOCATE\0")), readyForQuery("I")]));
  assert.equal(h.s["ns"].statementSlot("s1")?.confirmed, null, "deallocated");
  // a DEALLOCATE Parsed while the name was no Parse's is sent as it came: executed once the name is a Parse's, refused
  h.s.onClientData(Buffer.concat([parseFrame("f", "DEALLOCATE s9"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.s.onClientData(Buffer.concat([parseFrame("s9", "SELECT 9"), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([bindFrame("c", "f"), executeFrame("c"), sync()]));
  assert.equal(codes(h.toUpstream), "BPS", "the Execute is replaced by the poison");
  h.s.onUpstreamData(Buffer.concat([bindComplete, poisonError(), readyForQuery("I")]));
  assert.equal(decodeErrorFields(sent(h.toClient)[1]!.raw).D, "sluice rule: deallocate-protocol-statement");
  assert.equal(h.closed.length, 0);
});

// ------------------------------------------------------------------ masking refusals before the statement runs

/** refuses binary fields (as the real masker does for types it cannot rewrite) and COPY in any format but text */
const refusingMasker: ResultMasker = {
  planFor: (fields) => {
    if (fields.some((f) => f.format === 1)) throw new SluiceError("permission_denied", "cannot mask binary column n of type date: request it in text format");
    return null;
  },
  maskDataRow: (_p, f) => f,
  refusal: async (ctx) => (/FORMAT (csv|binary)/i.test(ctx.statements[ctx.statementIndex ?? 0]?.text ?? ctx.sql) ? "COPY TO STDOUT of a result with masking rules is not allowed in binary format" : undefined),
};
const binaryRowDesc = frame("T", Buffer.concat([Buffer.from([0, 1]), Buffer.from("n\0"), Buffer.alloc(16), Buffer.from([0, 1])]));

function masking() {
  const records: StatementRecord[] = [];
  const blocked: StatementRecord[] = [];
  const completions: StatementCompletion[] = [];
  const audit: AuditSink = {
    ...noopAudit,
    statementAllowed: (_s, r) => void records.push(r),
    statementBlocked: (_s, r) => void blocked.push(r),
    statementCompleted: (_s, d) => void completions.push(d),
  };
  const h = harness(classifying, audit, undefined, undefined, refusingMasker);
  const c = closing();
  (h.s as unknown as { o: { io: RelayIo } }).o.io.close = c.close;
  return { ...h, records, blocked, completions, closed: c.closed };
}

test("a Bind asking for binary results: the portal is described first and the Execute waits; a result that cannot be masked is refused before it runs", async () => {
  await loadSqlParser();
  const h = masking();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT born FROM t"), bindFrame("", "", [], [], [1]), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "PBDH", "Describe and Flush, not the Execute");
  h.toUpstream.length = 0;
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, binaryRowDesc]));
  await tick();
  assert.equal(codes(h.toUpstream), "PS", "the poison, then the client's Sync");
  assert.ok(sent(h.toUpstream)[0]!.raw.includes(TOKEN));
  h.s.onUpstreamData(Buffer.concat([poisonError(), readyForQuery("I")]));
  assert.equal(codes(h.toClient), "12EZ", "the injected Describe's answer is the proxy's own");
  const e = decodeErrorFields(sent(h.toClient)[2]!.raw);
  assert.deepEqual([e.C, e.S, e.D], ["42501", "ERROR", "sluice rule: masking"]);
  assert.match(e.M!, /cannot mask binary column n of type date/);
  assert.deepEqual(h.records, [], "never recorded as allowed");
  assert.deepEqual(h.blocked.map((r) => [r.sql, r.decision.rule]), [["SELECT born FROM t", "masking"]]);
  assert.equal(h.closed.length, 0);
});

test("a binary Execute whose Describe the server skips after an earlier error is dropped, never forwarded", async () => {
  await loadSqlParser();
  const h = masking();
  h.s.onClientData(Buffer.concat([parseFrame("", "SELECT 1/0"), bindFrame("", ""), executeFrame(""), parseFrame("", "SELECT born FROM t"), bindFrame("", "", [], [], [1]), executeFrame(""), sync()]));
  assert.equal(codes(h.toUpstream), "PBDEPBDH", "the text Execute with its Describe in the same write, the binary one waiting for its own");
  h.toUpstream.length = 0;
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, rowDesc, errorResponse({ severity: "ERROR", sqlstate: "22012", message: "division by zero" })]));
  await tick();
  assert.equal(codes(h.toUpstream), "S", "only the client's Sync");
  h.s.onUpstreamData(readyForQuery("I"));
  assert.equal(codes(h.toClient), "12EZ");
  assert.deepEqual(h.records.map((r) => r.sql), ["SELECT 1/0"]);
  assert.deepEqual(h.completions.map((d) => d.error?.sqlstate), ["22012"]);
  assert.equal(h.closed.length, 0);
});

test("a binary Execute whose result can be masked goes on with the plan made ahead; NoData needs no plan", async () => {
  await loadSqlParser();
  const h = masking();
  h.s.onClientData(Buffer.concat([parseFrame("", "UPDATE t SET a = 1"), bindFrame("", "", [], [], [1]), executeFrame(""), sync()]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, noData]));
  await tick();
  assert.equal(codes(h.toUpstream), "PBDHES");
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("UPDATE 2\0")), readyForQuery("I")]));
  assert.equal(codes(h.toClient), "12CZ");
  assert.deepEqual(h.completions.map((d) => [d.commandTag, d.rows]), [["UPDATE 2", 2]]);
});

test("COPY TO STDOUT the masker refuses: a statement error before it runs, simple and extended", async () => {
  await loadSqlParser();
  const h = masking();
  h.s.onClientData(query("COPY t TO STDOUT (FORMAT binary)"));
  await tick();
  assert.equal(decodeQuery(sent(h.toUpstream)[0]!.raw), TOKEN);
  h.s.onUpstreamData(Buffer.concat([poisonError(), readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.s.onClientData(Buffer.concat([parseFrame("", "COPY t TO STDOUT (FORMAT csv)"), bindFrame("", ""), executeFrame(""), query("DELETE FROM t"), sync()]));
  await tick();
  assert.equal(codes(h.toUpstream), "PBPS", "Parse, Bind, the poison for the Execute; the Query behind it is skipped");
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, poisonError(), readyForQuery("I")]));
  assert.equal(codes(h.toClient), "EZ12EZ");
  assert.deepEqual(h.blocked.map((r) => r.decision.rule), ["masking", "masking"]);
  assert.deepEqual(h.records, []);
  assert.equal(h.closed.length, 0);
});

test("a message that waits for the server's answer to a pipelined message asks the server to flush (no Sync is behind it yet)", async () => {
  await loadSqlParser();
  const h = completing(classifying);
  h.s.onClientData(Buffer.concat([parseFrame("s2", "DEALLOCATE ALL"), bindFrame("c1", "s2"), executeFrame("c1"), frame("D", Buffer.from("Ps1\0")), sync()]));
  assert.equal(codes(h.toUpstream), "PBEH", "the Describe of a named portal waits for DEALLOCATE ALL to complete, behind a Flush");
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, frame("C", Buffer.from("DEALLOCATE ALL\0"))]));
  await tick();
  // no Bind made portal s1: only an SQL cursor could have that name, so the Describe goes to the server as spelled
  assert.equal(codes(h.toUpstream), "PBEHDS", "then the Describe and the Sync");
  assert.equal(h.closed.length, 0);
});

test("each statement of a multi-statement Query is a statement of its own: its record, its completion; the server completing more than it has is a desync", async () => {
  await loadSqlParser();
  const h = completing(classifying);
  h.s.onClientData(query("SELECT 1; INSERT INTO t VALUES (1)"));
  h.s.onUpstreamData(Buffer.concat([rowDesc, dataRow, cmdComplete, frame("C", Buffer.from("INSERT 0 1\0")), readyForQuery("I")]));
  assert.deepEqual(h.records.map((r) => [r.seq, r.sql, r.part, r.parts]), [[1, "SELECT 1", 1, 2], [2, "INSERT INTO t VALUES (1)", 2, 2]]);
  assert.deepEqual(h.completions.map((d) => [d.seq, d.commandTag, d.rows]), [[1, "SELECT 1", 1], [2, "INSERT 0 1", 1]]);
  assert.equal(codes(h.toClient), "TDCCZ");
  h.s.onClientData(query("SELECT 2"));
  assert.equal(h.records.at(-1)!.seq, 3, "the next statement takes the next number");
  h.s.onUpstreamData(Buffer.concat([cmdComplete, cmdComplete]));
  assert.equal(h.closed.length, 1);
  assert.match(h.closed[0]!.fatal!.M!, /a completion of statement 2 of a Query of 1/);
});

test("a Describe of a portal no Bind made (an SQL cursor, as psycopg's named cursors ask) goes to the server as spelled; a name of the proxy's own does not", () => {
  const h = recording();
  const describePortal = (name: string) => frame("D", Buffer.from(`P${name}\0`));
  h.s.onClientData(query("DECLARE orders_cur CURSOR WITH HOLD FOR SELECT 1"));
  h.s.onUpstreamData(Buffer.concat([frame("C", Buffer.from("DECLARE CURSOR\0")), readyForQuery("I")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([describePortal("orders_cur"), sync()]));
  const [d] = sent(h.toUpstream);
  assert.equal(String.fromCharCode(d!.code), "D");
  assert.equal(cstrAt(d!.raw, 6), "orders_cur", "the client's spelling: the cursor's own name on the server");
  h.s.onUpstreamData(Buffer.concat([rowDesc, readyForQuery("I")]));
  assert.equal(codes(h.toClient), "TZ", "the cursor's columns reach the client");

  // the proxy's own portal names (its prefix) are never described for a client
  h.s.onClientData(Buffer.concat([parseFrame("s1", "SELECT 1"), bindFrame("p1", "s1"), sync()]));
  const own = cstrAt(sent(h.toUpstream).find((f) => String.fromCharCode(f.code) === "B")!.raw, 5);
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete, readyForQuery("T")]));
  h.toUpstream.length = 0;
  h.toClient.length = 0;
  h.s.onClientData(Buffer.concat([describePortal(own), sync()]));
  assert.ok(!sent(h.toUpstream).some((f) => String.fromCharCode(f.code) === "D" && cstrAt(f.raw, 6) === own), "not forwarded");
  assert.equal(cstrAt(sent(h.toUpstream)[0]!.raw, 6), `${PREFIX}p0`, "a name the server cannot have instead");
  h.s.onUpstreamData(Buffer.concat([errorResponse({ severity: "ERROR", sqlstate: "34000", message: `portal "${PREFIX}p0" does not exist` }), readyForQuery("T")]));
  const err = decodeErrorFields(sent(h.toClient)[0]!.raw);
  assert.deepEqual([err.C, err.M], ["34000", `portal "${own}" does not exist`]);
});

test("the session ends with statements unanswered (the client left mid-COPY, mid-Query): each gets a completion of unknown outcome, before the session's end (finding 031)", () => {
  const h = completing(allowAllEnforcerForTests);
  // an extended COPY FROM STDIN the server has begun (Parse/Bind answered, no CommandComplete yet) …
  h.s.onClientData(Buffer.concat([parseFrame("", "COPY t FROM STDIN"), bindFrame("", ""), executeFrame("")]));
  h.s.onUpstreamData(Buffer.concat([parseComplete, bindComplete]));
  assert.deepEqual(h.records.map((r) => r.sql), ["COPY t FROM STDIN"]);
  assert.equal(h.completions.length, 0, "nothing is answered yet");
  // … and the client vanishes: the proxy never learns how the server ended it
  h.s.dispose();
  assert.equal(h.completions.length, 1);
  assert.equal(h.completions[0]!.seq, h.records[0]!.seq);
  assert.equal(h.completions[0]!.error?.sqlstate, "08006");
  assert.match(h.completions[0]!.error!.message, /unknown outcome/);

  // a multi-statement Query the server is running: its running statement and the ones after it
  const q = completing(classifying);
  q.s.onClientData(query("SELECT 1; SELECT 2; SELECT 3"));
  q.s.onUpstreamData(Buffer.concat([rowDesc, dataRow, cmdComplete]));
  q.s.dispose();
  assert.deepEqual(q.completions.map((d) => d.commandTag ?? d.error?.sqlstate), ["SELECT 1", "08006", "08006"], "the first completed, the rest unknown");
  // a session that ends with nothing pending adds nothing
  const idle = completing(allowAllEnforcerForTests);
  idle.s.dispose();
  assert.equal(idle.completions.length, 0);
});
