/**
 * The differential suite's judges, on evidence built by hand: the oracles must see each kind of
 * violation they exist for (a suite whose oracles never fire would prove nothing), and must pass a
 * clean session; the response walker follows the server's skip-to-Sync; the statement log reader
 * parses what PG 15 writes.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { HashChain, makeEvent, SessionEventType, type CloudEvent } from "@sluice/shared/events";
import { loadSqlParser } from "@sluice/shared/sql";
import { frontend, splitBackend, type BackendMessage } from "../lib/pg-frames.js";
import { executedPlans, executedStatements, parseParameterDetail, type LogRecord } from "../lib/statement-log.js";
import { fuzzBundle, IDENTITIES } from "./fuzz-policy.js";
import { makeSecrets } from "./fuzz-world.js";
import { judge, type OracleContext } from "./oracles.js";
import { walkResponses } from "./response-walk.js";
import type { Evidence } from "./run-case.js";
import type { Op } from "./ops.js";

// ------------------------------------------------------------------ backend frames, by hand

function be(code: string, body: Buffer = Buffer.alloc(0)): BackendMessage {
  const head = Buffer.alloc(5);
  head.write(code, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return { code, raw: Buffer.concat([head, body]) };
}
const z = (s = "I") => be("Z", Buffer.from(s));
const cc = (tag: string) => be("C", Buffer.from(`${tag}\0`));
const err = (code: string, msg: string, detail?: string) =>
  be("E", Buffer.from(`SERROR\0VERROR\0C${code}\0M${msg}\0${detail ? `D${detail}\0` : ""}\0`));
const row = (...vals: string[]) => {
  const parts = [Buffer.from([0, vals.length])];
  for (const v of vals) {
    const n = Buffer.alloc(4);
    n.writeInt32BE(Buffer.byteLength(v));
    parts.push(n, Buffer.from(v));
  }
  return be("D", Buffer.concat(parts));
};

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

test("response walk: an extended-protocol error makes the server ignore everything, a Query too, until Sync", () => {
  const ops: Op[] = [
    { t: "P", name: "", sql: "SELECT 1/0" }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 },
    { t: "Q", sql: "SELECT 1" }, { t: "S" }, { t: "Q", sql: "SELECT 2" }, { t: "S" },
  ];
  const msgs = [be("1"), be("2"), err("22012", "division by zero"), z(), be("T", Buffer.from([0, 0])), row("2"), cc("SELECT 1"), z(), z()];
  const w = walkResponses(ops, msgs);
  assert.equal(w.violation, undefined);
  assert.ok(w.complete);
  assert.deepEqual(w.perOp.map((m) => m.map((x) => x.code).join("")), ["1", "2", "E", "", "Z", "TDCZ", "Z"]);
  // a stream that answers the skipped Query is out of protocol
  const wrong = walkResponses(ops, [be("1"), be("2"), err("22012", "division by zero"), z(), z(), be("T", Buffer.from([0, 0])), row("2"), cc("SELECT 1"), z()]);
  assert.match(wrong.violation ?? "", /op 6 \(S\): expected ReadyForQuery/);
  // one that stops early is incomplete, waiting for the op it stopped at
  const short = walkResponses(ops, msgs.slice(0, 4));
  assert.equal(short.complete, false);
  assert.equal(short.waitingFor, 5);
});

test("statement log: parameters, executions, resumed portals, errors and plans as PG 15 logs them", () => {
  assert.deepEqual(parseParameterDetail("parameters: $1 = 'a''b', $2 = NULL, $3 = ''"), ["a'b", null, ""]);
  const r = (pid: number, message: string, extra: Partial<LogRecord> = {}): LogRecord => ({ pid, error_severity: "LOG", message, ...extra });
  const recs: LogRecord[] = [
    r(7, "statement: EXECUTE p1", { detail: "prepare: PREPARE p1 AS SELECT 1; EXECUTE p1" }),
    r(7, "execute s1/c1: SELECT $1::int", { detail: "parameters: $1 = '5'" }),
    r(7, "execute fetch from s1/c1: SELECT $1::int", { detail: "parameters: $1 = '5'" }),
    r(8, "statement: SELECT 'other backend'"),
    r(7, "execute <unnamed>: SELECT 1/0"),
    { pid: 7, error_severity: "ERROR", state_code: "22012", message: "division by zero", statement: "SELECT 1/0" },
    { pid: 7, error_severity: "ERROR", state_code: "42601", message: "syntax error", statement: "SELEC" },
    r(7, 'duration: 0.010 ms  plan:\n{"Query Text": "DELETE FROM items", "Plan": {"Node Type": "ModifyTable", "Operation": "Delete", "Relation Name": "items", "Schema": "public", "Plans": [{"Node Type": "Seq Scan", "Relation Name": "items", "Schema": "public"}]}}'),
  ];
  const ex = executedStatements(recs, 7);
  assert.deepEqual(ex.map((e) => [e.kind, e.text, e.statement ?? null, e.portal ?? null, e.fetch ?? null, e.params ?? null, e.error?.code ?? null]), [
    ["simple", "EXECUTE p1", null, null, null, null, null],
    ["execute", "SELECT $1::int", "s1", "c1", false, ["5"], null],
    ["execute", "SELECT $1::int", "s1", "c1", true, ["5"], null],
    ["execute", "SELECT 1/0", "", "", false, [], "22012"],
  ]);
  assert.equal(ex[0]!.prepareDetail, "PREPARE p1 AS SELECT 1; EXECUTE p1");
  assert.deepEqual(executedPlans(recs, 7), [{ queryText: "DELETE FROM items", relations: [{ name: "items", schema: "public", write: "Delete" }, { name: "items", schema: "public" }] }]);
});

// ------------------------------------------------------------------ the oracles on synthetic evidence

const secrets = makeSecrets();
const hashKey = Buffer.alloc(32, 7);
const bundle = fuzzBundle();
const ctxOf = (id: keyof typeof IDENTITIES): OracleContext => ({
  bundle,
  ctx: { resource: "app", groups: IDENTITIES[id].groups, issuer: "dev", subject: IDENTITIES[id].sub },
  secrets,
  hashKey,
});
const hash = (s: string) => "h:" + createHmac("sha256", hashKey).update(s, "utf8").digest("base64url").slice(0, 16);

function events(...statements: Array<{ sql: string; protocol?: "simple" | "extended"; params?: Array<string | null>; ok?: boolean }>): CloudEvent[] {
  const chain = new HashChain();
  const out: CloudEvent[] = [];
  const add = (name: keyof typeof SessionEventType, data: unknown) =>
    out.push(chain.link(makeEvent({ type: SessionEventType[name], source: "sluice://t/n", subject: "s-1", time: new Date(0), id: `e${out.length}`, data })));
  add("session.started", { applicationName: "fz-x" });
  statements.forEach((s, i) => {
    add("statement.allowed", { statementId: i + 1, sql: s.sql, protocol: s.protocol ?? "simple", ...(s.params ? { params: s.params } : {}), decision: "allow" });
    add("statement.completed", { statementId: i + 1, rows: 0, durationMs: 0, ...(s.ok === false ? { error: { sqlstate: "22012", message: "x" } } : { commandTag: "SELECT 1" }) });
  });
  add("session.ended", {});
  return out;
}

function evidence(over: Partial<Evidence> & { ops?: Op[]; proxyMsgs?: BackendMessage[]; refMsgs?: BackendMessage[] }): Evidence {
  const ops = over.ops ?? [{ t: "Q", sql: "SELECT 1" }, { t: "S" }];
  const pm = over.proxyMsgs ?? [be("T", Buffer.from([0, 0])), row("1"), cc("SELECT 1"), z(), z()];
  const rm = over.refMsgs ?? pm;
  const stream = (msgs: BackendMessage[]) => ({ ops, messages: msgs, bytes: Buffer.concat(msgs.map((m) => m.raw)), walk: walkResponses(ops, msgs), stalled: false });
  const evs = over.events ?? events({ sql: "SELECT 1" });
  return {
    c: { identity: "reader", ops, approvals: [] },
    appName: "fz-x",
    proxy: stream(pm),
    denied: over.denied ?? [],
    reference: stream(rm),
    executed: over.executed ?? [{ kind: "simple", text: "SELECT 1" }],
    plans: over.plans ?? [],
    pid: 1,
    sessionId: "s-1",
    events: evs,
    auditRaw: evs.map((e) => JSON.stringify(e)),
    approvals: over.approvals ?? [],
    health: over.health ?? { ok: true },
    ...(over.c ? { c: over.c } : {}),
  };
}

const kinds = (ev: Evidence, id: keyof typeof IDENTITIES = "reader") => judge(ev, ctxOf(id)).failures.map((f) => `${f.oracle}:${f.kind}`);

test("oracles: a clean session passes all five", async () => {
  await loadSqlParser();
  const v = judge(evidence({}), ctxOf("reader"));
  assert.deepEqual(v.failures, []);
  assert.ok(v.checks[1] >= 1 && v.checks[2] >= 1 && v.checks[3] >= 1 && v.checks[4] >= 1 && v.checks[5] === 1);
});

test("oracle 1: a statement the identity may not run, or one needing an approval nobody gave, is found in the server's log", async () => {
  await loadSqlParser();
  const del = "DELETE FROM items WHERE id = 1";
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: del }], events: events({ sql: del }) })), ["1:executed-denied:default-deny"]);
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: "SELECT * FROM secrets" }], events: events({ sql: "SELECT * FROM secrets" }) })), ["1:executed-denied:tables.deny"]);
  // the writer may delete with a WHERE, needs an approval without one
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: del }], events: events({ sql: del }) }), "writer"), []);
  const all = "DELETE FROM items";
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: all }], events: events({ sql: all }) }), "writer"), ["1:executed-without-approval"]);
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: all }], events: events({ sql: all }), approvals: [{ id: "apr-1", approved: true, sql: all }] }), "writer"), []);
  // SQL EXECUTE is judged as what the server says the name held
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: "EXECUTE p1", prepareDetail: "PREPARE p1 AS DELETE FROM items WHERE id = 3" }], events: events({ sql: "EXECUTE p1" }) })), ["1:executed-denied:default-deny"]);
  // and an EXECUTE of a name the server does not have ran nothing
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: "EXECUTE p9", error: { code: "26000", message: "does not exist" } }], events: events({ sql: "EXECUTE p9", ok: false }) })), []);
});

test("oracle 1 (executor): a write by a read-only identity or a read of the denied table, whatever the SQL text looked like", async () => {
  await loadSqlParser();
  const text = "SELECT 'a\\', 'b; DELETE FROM items WHERE id = 3; --'";
  const ev = evidence({ executed: [{ kind: "simple", text }], events: events({ sql: text }), plans: [{ queryText: text, relations: [{ schema: "public", name: "items", write: "Delete" }] }] });
  assert.deepEqual(kinds(ev), ["1:executor-wrote-read-only"]);
  assert.deepEqual(kinds(ev, "writer"), []);
  const read = evidence({ plans: [{ queryText: "SELECT f()", relations: [{ schema: "public", name: "secrets" }] }] });
  assert.deepEqual(kinds(read, "writer"), ["1:executor-touched-denied-table"]);
});

test("oracle 2: an executed statement missing from the audit, recorded with other parameters, or recorded as run when it was not", async () => {
  await loadSqlParser();
  assert.deepEqual(kinds(evidence({ events: events() })), ["2:executed-not-recorded"]);
  const q = "SELECT $1::int + 1";
  const ext = (params: Array<string | null>) => evidence({ executed: [{ kind: "execute", text: q, statement: "", portal: "", params: ["5"] }], events: events({ sql: q, protocol: "extended", params }) });
  assert.deepEqual(kinds(ext([hash("5")])), [], "the masked form of the bound value matches");
  assert.deepEqual(kinds(ext([hash("\\x00000005")])), [], "so does the masked binary form");
  assert.deepEqual(kinds(ext([hash("6")])), ["2:recorded-params-differ"]);
  assert.deepEqual(kinds(ext(["5"])), ["2:recorded-params-differ"], "an unmasked parameter is not what the rules record");
  // two COMMITs recorded, the first failed: the one execution is the second, and nothing is claimed falsely
  const two = events({ sql: "COMMIT", ok: false }, { sql: "COMMIT" });
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: "COMMIT" }], events: two })), []);
  const claimed = events({ sql: "COMMIT" }, { sql: "COMMIT" });
  assert.deepEqual(kinds(evidence({ executed: [{ kind: "simple", text: "COMMIT" }], events: claimed })), ["2:recorded-success-not-executed"]);
  // a broken chain
  const broken = events({ sql: "SELECT 1" });
  (broken[1]!.data as { sql: string }).sql = "SELECT 2";
  assert.ok(kinds(evidence({ events: broken })).includes("2:chain-broken"));
});

test("oracle 3: a seeded masked or denied value, in any message or audit event, in the shapes a query can give it", async () => {
  await loadSqlParser();
  const email = secrets.emails[0]!;
  const core = email.slice(3, email.indexOf("@"));
  const leak = (v: string, code = "D") => evidence({ proxyMsgs: [be("T", Buffer.from([0, 0])), code === "D" ? row(v) : err("22P02", `invalid input syntax: "${v}"`), cc("SELECT 1"), z(), z()] });
  assert.deepEqual(kinds(leak(email)), ["3:raw-value-to-client:DataRow"]);
  assert.ok(kinds(leak(email.toUpperCase())).includes("3:raw-value-to-client:DataRow"));
  assert.ok(kinds(leak([...core].reverse().join(""))).includes("3:raw-value-to-client:DataRow"));
  assert.ok(kinds(leak(Buffer.from(core).toString("hex"))).includes("3:raw-value-to-client:DataRow"));
  assert.ok(kinds(leak(secrets.tokens[0]!, "E")).includes("3:raw-value-to-client:ErrorResponse"));
  assert.ok(kinds(leak(secrets.cards[1]!.slice(2, 14))).includes("3:raw-value-to-client:DataRow"));
  // the masked form is fine
  assert.ok(!kinds(leak(hash(email))).some((k) => k.startsWith("3:")));
});

test("oracle 4: a response stream out of protocol, or one that differs from the server's own answer", async () => {
  await loadSqlParser();
  const ref = [be("T", Buffer.from([0, 0])), row("1"), cc("SELECT 1"), z(), z()];
  assert.deepEqual(kinds(evidence({ proxyMsgs: [be("T", Buffer.from([0, 0])), row("1"), cc("SELECT 1"), z("T"), z()], refMsgs: ref })), ["4:differs-from-server@Q"]);
  assert.deepEqual(kinds(evidence({ proxyMsgs: [be("T", Buffer.from([0, 0])), row("1"), cc("SELECT 1"), z(), be("n"), z()], refMsgs: ref })), ["4:response-out-of-protocol"]);
  assert.deepEqual(kinds(evidence({ proxyMsgs: [be("T", Buffer.from([0, 0])), row("2"), cc("SELECT 1"), z(), z()], refMsgs: ref })), ["4:differs-from-server@Q"]);
  // a denial answered in place of the statement is what the server does for a statement failing there
  const deny = (sql: string) => evidence({ ops: [{ t: "Q", sql }, { t: "S" }], executed: [], events: events(), denied: [0], proxyMsgs: [err("42501", "permission denied by sluice policy", "sluice rule: x"), z(), z()], refMsgs: [err("42601", "syntax error"), z(), z()] });
  assert.deepEqual(kinds(deny("SELECT * FROM secrets")), []);
  // but not a denial policy does not call for
  assert.deepEqual(kinds(deny("SELECT 1")), ["4:denied-allowed-statement"]);
});

test("oracle 5: another session's statement failing afterwards", async () => {
  await loadSqlParser();
  assert.deepEqual(kinds(evidence({ health: { ok: false, error: "timeout" } })), ["5:node-unhealthy"]);
});
