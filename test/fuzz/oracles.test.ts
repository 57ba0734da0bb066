/**
 * The differential suite's judges, on evidence built by hand: the oracles must see each kind of
 * violation they exist for (a suite whose oracles never fire would prove nothing), and must pass a
 * clean session; the reference sequence, the audit message reader, the answer tally and the
 * minimiser, which decide what the oracles are shown, are pinned too.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  BATCH_CONTENT_TYPE, chunkSessionEvent, HashChain, makeEvent, SessionEventType, type CapturedResult, type CloudEvent,
} from "@sluice/shared/events";
import { loadSqlParser } from "@sluice/shared/sql";
import { backend, type BackendMessage } from "../lib/pg-frames.js";
import { readBatchMessage } from "./audit-collector.js";
import { answeredOps, minimise, newTally, type Checker } from "./fuzz-check.js";
import { fuzzBundle, IDENTITIES } from "./fuzz-policy.js";
import { makeSecrets } from "./fuzz-world.js";
import { judge, leakNeedles, serverWaitsToo, type OracleContext, type Verdicts } from "./oracles.js";
import { walkResponses } from "./response-walk.js";
import { isApprovalNotice, isSluiceError, POISON_SQL, referenceOps, type Evidence, type FuzzCase } from "./run-case.js";
import type { Op } from "./ops.js";
import { BASE_PATIENCE } from "./patience.js";

const z = (s: "I" | "T" | "E" = "I") => backend.ready(s);
const cc = (tag: string) => backend.commandComplete(tag);
const err = (code: string, msg: string, detail?: string) => backend.error(code, msg, detail ? { D: detail } : {});
const row = (...vals: string[]) => backend.dataRow(vals);
const desc = (...cols: string[]) => backend.rowDescription(cols);

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

/** one captured result set of text values */
const captured = (values: Array<Array<string | null>>, over: Partial<CapturedResult> = {}): CapturedResult => ({
  columns: [{ name: "x", typeOid: 25 }], values, rows: values.length, recorded: values.length, truncated: false,
  recordedBytes: values.flat().reduce((n, v) => n + (v === null ? 0 : Buffer.byteLength(v)), 0), ...over,
});

interface Stmt {
  sql: string;
  protocol?: "simple" | "extended";
  params?: Array<string | null>;
  ok?: boolean;
  /** captured sets inside statement.completed (default: the one row "1" of SELECT 1; none for other texts) */
  results?: CapturedResult[];
  /** captured sets as result.rows events before statement.completed */
  rowsEvents?: CapturedResult[];
  /** how many statement.completed events (default 1) */
  completions?: number;
  /** a statement of a multi-statement Query */
  part?: number;
  parts?: number;
  /** the completion's rows (default: the first captured set's) and tag */
  rows?: number;
  tag?: string;
}

/** A session's events as the recorder writes them: session.started, per statement its decision and completion, session.ended. */
function events(...statements: Stmt[]): CloudEvent[] {
  const chain = new HashChain();
  const out: CloudEvent[] = [];
  const add = (name: keyof typeof SessionEventType, data: unknown) => {
    const ev = makeEvent({ type: SessionEventType[name], source: "sluice://t/n", subject: "s-1", time: new Date(0), id: `e${out.length}`, data });
    for (const part of chunkSessionEvent(ev, () => `e${out.length}-${Math.random()}`)) out.push(chain.link(part));
  };
  add("session.started", { applicationName: "fz-x" });
  statements.forEach((s, i) => {
    const statementId = i + 1;
    add("statement.allowed", { statementId, sql: s.sql, protocol: s.protocol ?? "simple", ...(s.params ? { params: s.params } : {}), ...(s.parts ? { part: s.part, parts: s.parts } : {}), decision: "allow" });
    for (const r of s.rowsEvents ?? []) add("result.rows", { ...r, statementId });
    const results = s.results ?? (s.sql === "SELECT 1" && s.ok !== false && !s.rowsEvents ? [captured([["1"]])] : undefined);
    for (let n = 0; n < (s.completions ?? 1); n++) {
      const rows = s.rows ?? [...(results ?? []), ...(s.rowsEvents ?? [])][0]?.rows ?? 0;
      add("statement.completed", { statementId, rows, durationMs: 0, ...(s.ok === false ? { error: { sqlstate: "22012", message: "x" } } : { commandTag: s.tag ?? "SELECT 1" }), ...(results?.length ? { results } : {}) });
    }
  });
  add("session.ended", {});
  return out;
}

function evidence(over: Partial<Evidence> & { ops?: Op[]; proxyMsgs?: BackendMessage[]; refMsgs?: BackendMessage[] }): Evidence {
  const ops = over.ops ?? [{ t: "Q", sql: "SELECT 1" }, { t: "S" }];
  const pm = over.proxyMsgs ?? [desc("?column?"), row("1"), cc("SELECT 1"), z(), z()];
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
    auditProblems: over.auditProblems ?? [],
    approvals: over.approvals ?? [],
    health: over.health ?? { ok: true },
    ranOut: over.ranOut ?? [],
    patience: BASE_PATIENCE,
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

test("oracle 2: an Execute of a statement a multi-statement Query PREPAREd is recorded with the PREPARE's own text (finding 025)", async () => {
  await loadSqlParser();
  const source = "SELECT 1; PREPARE p1 AS SELECT id FROM items WHERE id = 3";
  const prepare = "PREPARE p1 AS SELECT id FROM items WHERE id = 3";
  const run = (recorded: string) => kinds(evidence({
    executed: [{ kind: "execute", text: source, statement: "p1", portal: "", params: [] }],
    events: events({ sql: recorded, protocol: "extended", params: [] }),
  }));
  assert.deepEqual(run(prepare), [], "the server logs the whole Query as the source; the audit has the PREPARE");
  assert.deepEqual(run("PREPARE p1 AS SELECT id FROM items"), ["2:executed-not-recorded"], "another statement is still not a match");
});

test("oracle 2: a statement is two events, its decision and one completion carrying rows up to 64 KiB; result.rows only for more", async () => {
  await loadSqlParser();
  const q = (sql: string, rows: string[], ev: CloudEvent[]) => kinds(evidence({
    ops: [{ t: "Q", sql }, { t: "S" }], executed: [{ kind: "simple", text: sql }], events: ev,
    proxyMsgs: [desc("x"), ...rows.map((r) => row(r)), cc(`SELECT ${rows.length}`), z(), z()],
  }));
  const small = ["a", "b"];
  const big = Array.from({ length: 70 }, (_, i) => `${i}`.padEnd(1000, "r"));
  const sql = "SELECT x FROM t";
  assert.deepEqual(q(sql, small, events({ sql, results: [captured(small.map((v) => [v]))] })), []);
  assert.deepEqual(q(sql, big, events({ sql, rowsEvents: [captured(big.map((v) => [v]))] })), [], "70 KB of rows as result.rows");
  assert.deepEqual(q(sql, small, events({ sql, rowsEvents: [captured(small.map((v) => [v]))] })), ["2:rows-inline-contract"]);
  assert.deepEqual(q(sql, big, events({ sql, results: [captured(big.map((v) => [v]))] })), ["2:rows-inline-contract"]);
  assert.deepEqual(q(sql, small, events({ sql, results: [captured([["a"]])], rowsEvents: [captured([["b"]])] })), ["2:rows-inline-contract", "2:recorded-rows-differ"]);
  assert.deepEqual(q(sql, small, events({ sql, results: [captured(small.map((v) => [v]))], completions: 2 })), ["2:completed-twice"]);
  assert.deepEqual(q(sql, small, events({ sql, completions: 0 })), ["2:allowed-never-completed"]);
  assert.deepEqual(q(sql, small, events({ sql, results: [captured(small.map((v) => [v]), { recorded: 1 })] })), ["2:captured-counts"]);
  assert.deepEqual(q(sql, small, events({ sql, results: [captured(small.map((v) => [v]), { rows: 5 })] })), ["2:captured-counts", "2:recorded-rows-differ"]);
  // a result.rows above 512 KiB comes in chunks, which are one event to this oracle
  const huge = Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(6000, "h"));
  const chunked = events({ sql, rowsEvents: [captured(huge.map((v) => [v]))] });
  assert.ok(chunked.filter((e) => e.type === SessionEventType["result.rows"]).length > 1, "the rows were chunked");
  assert.deepEqual(q(sql, huge, chunked), []);
  // a completion with no decision before it
  const orphan = events({ sql });
  const moved = [orphan[0]!, orphan[2]!, orphan[1]!, ...orphan.slice(3)];
  assert.ok(kinds(evidence({ ops: [{ t: "Q", sql }, { t: "S" }], executed: [{ kind: "simple", text: sql }], events: moved })).includes("2:completion-without-decision"));
});

test("oracle 2: what a simple Query's completion captured is what the client got for it", async () => {
  await loadSqlParser();
  const sql = "SELECT id, email FROM customers";
  const ops: Op[] = [{ t: "Q", sql }, { t: "S" }];
  const client = [desc("id", "email"), backend.dataRow(["1", "h:aaaaaaaaaaaaaaaa"]), backend.dataRow(["2", null]), cc("SELECT 2"), z(), z()];
  const run = (sets: CapturedResult[], o: Partial<Evidence> = {}) => kinds(evidence({ ops, proxyMsgs: client, executed: [{ kind: "simple", text: sql }], events: events({ sql, results: sets }), ...o }));
  assert.deepEqual(run([captured([["1", "h:aaaaaaaaaaaaaaaa"], ["2", null]])]), []);
  assert.deepEqual(run([captured([["1", "h:aaaaaaaaaaaaaaaa"]], { rows: 2, truncated: true })]), [], "a capped capture: the first rows, the exact count");
  assert.deepEqual(run([captured([["1", "h:bbbbbbbbbbbbbbbb"], ["2", null]])]), ["2:recorded-rows-differ"], "another statement's rows");
  assert.deepEqual(run([captured([["1", "h:aaaaaaaaaaaaaaaa"], ["2", null]], { rows: 3, truncated: true })]), ["2:recorded-rows-differ"]);
  assert.deepEqual(run([]), ["2:recorded-rows-differ"], "rows the client got, none captured");
  // a Query whose text comes twice in the case, or a denied one, is not paired with an event
  const twice: Op[] = [{ t: "Q", sql }, { t: "Q", sql }, { t: "S" }];
  const both = [...client.slice(0, 5), ...client.slice(0, 5), z()];
  assert.deepEqual(kinds(evidence({ ops: twice, proxyMsgs: both, executed: [{ kind: "simple", text: sql }, { kind: "simple", text: sql }], events: events({ sql, results: [] }, { sql, results: [] }) })), []);
});

test("oracle 2: each statement of a multi-statement Query is a statement of its own, with its own completion and exact rows (finding 020)", async () => {
  await loadSqlParser();
  const sql = "SELECT 1 AS a; SELECT generate_series(1, 3) AS n; SELECT 2 AS b WHERE false";
  const ops: Op[] = [{ t: "Q", sql }, { t: "S" }];
  const client = [desc("a"), row("1"), cc("SELECT 1"), desc("n"), row("1"), row("2"), row("3"), cc("SELECT 3"), desc("b"), cc("SELECT 0"), z(), z()];
  const three = (n: Partial<Stmt>[] = []) => [
    { sql: "SELECT 1 AS a", part: 1, parts: 3, results: [captured([["1"]])], ...n[0] },
    { sql: "SELECT generate_series(1, 3) AS n", part: 2, parts: 3, results: [captured([["1"], ["2"]], { rows: 3, truncated: true })], tag: "SELECT 3", ...n[1] },
    { sql: "SELECT 2 AS b WHERE false", part: 3, parts: 3, results: [], rows: 0, tag: "SELECT 0", ...n[2] },
  ];
  const run = (st: Stmt[]) => kinds(evidence({ ops, proxyMsgs: client, executed: [{ kind: "simple", text: sql }], events: events(...st) }));
  assert.deepEqual(run(three()), [], "the server's one logged Query is the run of its statements' events");
  assert.deepEqual(run(three([{}, { rows: 2 }])), ["2:recorded-rows-differ"], "a completion's rows are the rows the client got");
  assert.deepEqual(run(three([{}, { results: [captured([["1"], ["2"]])] }])), ["2:recorded-rows-differ"], "a capped set says how many rows there were");
  assert.deepEqual(run(three([{}, {}, { results: [captured([["1"]])] }])), ["2:recorded-rows-differ"], "rows captured for a statement that returned none");
  // the whole Query recorded as one statement is not what the server ran statement by statement
  assert.deepEqual(run([{ sql, results: [captured([["1"]]), captured([["1"], ["2"], ["3"]])], rows: 5 }]), ["2:recorded-rows-differ"]);
  // a run that lacks a statement does not record the Query
  assert.deepEqual(run(three().slice(0, 2)), ["2:executed-not-recorded"]);
});

test("oracle 2: an audit message that is not a CloudEvents batch is a failure of the case it came in", async () => {
  await loadSqlParser();
  assert.deepEqual(kinds(evidence({ auditProblems: ["message 7 on sluice.audit.r.n.0: not a CloudEvents JSON batch (a non-empty array)"] })), ["2:audit-message-not-a-batch"]);
  const [ev] = events();
  const text = JSON.stringify([ev]);
  assert.deepEqual(readBatchMessage(BATCH_CONTENT_TYPE, text), { events: [ev] });
  assert.match((readBatchMessage(undefined, text) as { problem: string }).problem, /content-type null/);
  assert.match((readBatchMessage("application/cloudevents+json", JSON.stringify(ev)) as { problem: string }).problem, /content-type/);
  assert.match((readBatchMessage(BATCH_CONTENT_TYPE, JSON.stringify(ev)) as { problem: string }).problem, /non-empty array/);
  assert.match((readBatchMessage(BATCH_CONTENT_TYPE, "[]") as { problem: string }).problem, /non-empty array/);
  assert.match((readBatchMessage(BATCH_CONTENT_TYPE, JSON.stringify([ev, { id: "x" }])) as { problem: string }).problem, /element 1/);
  assert.ok("problem" in readBatchMessage(BATCH_CONTENT_TYPE, "[{"));
});

test("oracle 3: a seeded masked or denied value, in any message or audit event, in the shapes a query can give it", async () => {
  await loadSqlParser();
  const email = secrets.emails[0]!;
  const core = email.slice(3, email.indexOf("@"));
  const leak = (v: string, code = "D") => evidence({ proxyMsgs: [desc("?column?"), code === "D" ? row(v) : err("22P02", `invalid input syntax: "${v}"`), cc("SELECT 1"), z(), z()] });
  const leaks = (ev: Evidence) => kinds(ev).filter((k) => k.startsWith("3:"));
  assert.deepEqual(leaks(leak(email)), ["3:raw-value-to-client:DataRow"]);
  assert.deepEqual(leaks(leak(email.toUpperCase())), ["3:raw-value-to-client:DataRow"]);
  assert.deepEqual(leaks(leak([...core].reverse().join(""))), ["3:raw-value-to-client:DataRow"]);
  assert.deepEqual(leaks(leak(Buffer.from(core).toString("hex"))), ["3:raw-value-to-client:DataRow"]);
  assert.deepEqual(leaks(leak(secrets.tokens[0]!, "E")), ["3:raw-value-to-client:ErrorResponse"]);
  assert.deepEqual(leaks(leak(secrets.cards[1]!.slice(2, 14))), ["3:raw-value-to-client:DataRow"]);
  // the masked form is fine
  assert.deepEqual(leaks(leak(hash(email))), []);
  // in the audit: rows captured inside statement.completed, or in result.rows
  const inAudit = (e: CloudEvent[]) => leaks(evidence({ events: e }));
  assert.deepEqual(inAudit(events({ sql: "SELECT 1", results: [captured([[email]])] })), ["3:raw-value-in-audit:statement.completed"]);
  assert.deepEqual(inAudit(events({ sql: "SELECT 2", rowsEvents: [captured(Array.from({ length: 70 }, () => ["x".repeat(1000)]).concat([[email]]))] })), ["3:raw-value-in-audit:result.rows"]);
});

test("oracle 3: its needles are the random part of each seeded value, at least 8 characters, as is, reversed and hex", () => {
  const needles = leakNeedles(secrets);
  assert.ok(needles.every((n) => n.needle.length >= 8));
  const email = secrets.emails[1]!;
  const core = email.slice(3, email.indexOf("@"));
  for (const form of [core.slice(0, 8), [...core].reverse().join("").slice(0, 8), Buffer.from(core.slice(0, 8)).toString("hex")]) {
    assert.ok(needles.some((n) => n.needle === form && n.what.startsWith("customers.email #2")), form);
  }
  // nothing a masked result or the schema itself shows: the fixed parts of the values are not needles
  for (const harmless of ["@example.com", "fzm", "fzs", "customers", hash(email)]) assert.ok(!needles.some((n) => harmless.includes(n.needle)), harmless);
});

test("oracle 4: a response stream out of protocol, or one that differs from the server's own answer", async () => {
  await loadSqlParser();
  const ref = [desc("?column?"), row("1"), cc("SELECT 1"), z(), z()];
  assert.deepEqual(kinds(evidence({ proxyMsgs: [desc("?column?"), row("1"), cc("SELECT 1"), z("T"), z()], refMsgs: ref })), ["4:differs-from-server@Q:Z/Z"]);
  assert.deepEqual(kinds(evidence({ proxyMsgs: [desc("?column?"), row("1"), cc("SELECT 1"), z(), backend.noData(), z()], refMsgs: ref })), ["4:response-out-of-protocol"]);
  const two = events({ sql: "SELECT 1", results: [captured([["2"]])] });
  assert.deepEqual(kinds(evidence({ proxyMsgs: [desc("?column?"), row("2"), cc("SELECT 1"), z(), z()], refMsgs: ref, events: two })), ["4:differs-from-server@Q:D/D"]);
  // a denial answered in place of the statement is what the server does for a statement failing there
  const deny = (sql: string) => evidence({ ops: [{ t: "Q", sql }, { t: "S" }], executed: [], events: events(), denied: [0], proxyMsgs: [err("42501", "permission denied by sluice policy", "sluice rule: x"), z(), z()], refMsgs: [err("42601", "syntax error"), z(), z()] });
  assert.deepEqual(kinds(deny("SELECT * FROM secrets")), []);
  // but not a denial policy does not call for
  assert.deepEqual(kinds(deny("SELECT 1")), ["4:denied-allowed-statement"]);
  // a setting the server reports: the masker may empty (or mask) its value, never change it otherwise
  const ps = (name: string, value: string) => backend.parameterStatus(name, value);
  const refS = [desc("?column?"), row("1"), cc("SELECT 1"), ps("application_name", "fz-renamed"), z(), z()];
  const withS = (s: BackendMessage) => evidence({ proxyMsgs: [desc("?column?"), row("1"), cc("SELECT 1"), s, z(), z()], refMsgs: refS });
  assert.deepEqual(kinds(withS(ps("application_name", "fz-renamed"))), []);
  assert.deepEqual(kinds(withS(ps("application_name", ""))), [], "emptied by the masker (finding 029)");
  assert.deepEqual(kinds(withS(ps("application_name", hash("fz-renamed")))), [], "masked");
  assert.deepEqual(kinds(withS(ps("application_name", "other"))), ["4:differs-from-server@Q:S/S"]);
  assert.deepEqual(kinds(withS(ps("TimeZone", "fz-renamed"))), ["4:differs-from-server@Q:S/S"]);
});

test("oracle 4: a stall the server shares (a COPY FROM STDIN left open) is not the proxy's; a stall of the proxy alone is", async () => {
  await loadSqlParser();
  const ops: Op[] = [{ t: "Q", sql: "COPY items FROM STDIN" }, { t: "S" }];
  const open = [backend.copyInResponse(3)];
  const stalled = (refStalls: boolean) => {
    const e = evidence({ ops, executed: [], events: events(), proxyMsgs: open, refMsgs: refStalls ? open : [err("22P04", "missing data"), z(), z()] });
    e.proxy.stalled = true;
    e.reference!.stalled = refStalls;
    return e;
  };
  const both = stalled(true);
  assert.equal(serverWaitsToo(both), true);
  const v = judge(both, ctxOf("writer"));
  assert.deepEqual(v.failures.filter((f) => f.oracle === 4).map((f) => f.kind), []);
  assert.ok(v.inconclusive.some((i) => /the server itself waits for the client from op 0/.test(i)), JSON.stringify(v.inconclusive));
  const alone = stalled(false);
  assert.equal(serverWaitsToo(alone), false);
  assert.ok(kinds(alone).includes("4:no-answer"));
});

test("oracle 5: another session's statement failing afterwards", async () => {
  await loadSqlParser();
  assert.deepEqual(kinds(evidence({ health: { ok: false, error: "timeout" } })), ["5:node-unhealthy"]);
});

// ------------------------------------------------------------------ what the oracles are shown

test("reference ops: each denied op becomes one failing at the same point on its own; the others are sent as they are", () => {
  const ops: Op[] = [
    { t: "Q", sql: "DELETE FROM items" }, { t: "P", name: "s1", sql: "SELECT * FROM secrets" }, { t: "P", name: "", sql: "SELECT * FROM secrets" },
    { t: "B", portal: "c1", stmt: "s1", params: ["1"] }, { t: "E", portal: "c1", maxRows: 3 }, { t: "D", kind: "S", name: "s1" },
    { t: "C", kind: "S", name: "s1" }, { t: "Q", sql: "SELECT 1" }, { t: "S" },
  ];
  assert.deepEqual(referenceOps(ops, [0, 1, 2, 3, 4, 5, 6]), [
    { t: "Q", sql: POISON_SQL }, { t: "P", name: "fz_poison_1", sql: POISON_SQL }, { t: "P", name: "", sql: POISON_SQL },
    { t: "B", portal: "c1", stmt: "fz_poison_3", params: [] }, { t: "E", portal: "fz_poison_4", maxRows: 3 }, { t: "D", kind: "S", name: "fz_poison_5" },
    { t: "C", kind: "S", name: "s1" }, { t: "Q", sql: "SELECT 1" }, { t: "S" },
  ]);
  assert.deepEqual(referenceOps(ops, []), ops);
});

test("the proxy's own errors: a policy denial names a sluice rule, an approval refusal or audit outage says so; the server's errors are not", () => {
  assert.ok(isSluiceError(err("42501", "permission denied by sluice policy", "sluice rule: fz-read/default-deny")));
  assert.ok(isSluiceError(err("42501", "statement rejected by approver")));
  assert.ok(isSluiceError(err("57P03", "audit stream unavailable")));
  assert.ok(!isSluiceError(err("42501", "permission denied for table secrets")), "the server's own permission error");
  assert.ok(!isSluiceError(err("57P03", "the database system is starting up")));
  assert.ok(!isSluiceError(z()));
  assert.ok(isApprovalNotice(backend.notice("01000", "approval required: request apr-0a1b2c waits for fz-dba")));
  assert.ok(!isApprovalNotice(backend.notice("01000", "approval required")));
});

test("answer tally: the messages the server answered itself, and those it skipped after an error until Sync", () => {
  const ops: Op[] = [{ t: "P", name: "", sql: "SELECT 1/0" }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 }, { t: "Q", sql: "SELECT 1" }, { t: "H" }, { t: "S" }];
  const msgs = [backend.parseComplete(), backend.bindComplete(), err("22012", "division by zero"), z()];
  const reference = { ops, messages: msgs, bytes: Buffer.alloc(0), walk: walkResponses(ops, msgs), stalled: false };
  assert.deepEqual(answeredOps(ops, { reference }), { answered: 3, skipped: 1 });
  assert.deepEqual(answeredOps(ops, {}), { answered: 0, skipped: 0 });
});

test("minimise: ops, statements of a Query and approvals go while the same failure stays; the final Sync stays", async () => {
  // a stand-in checker: the case fails (2:x) while it has a Parse of s1 and a Query with DELETE
  let runs = 0;
  const fails = (c: FuzzCase) => c.ops.some((o) => o.t === "P" && o.name === "s1") && c.ops.some((o) => o.t === "Q" && o.sql.includes("DELETE"));
  const verdict = (c: FuzzCase): Verdicts => ({ failures: fails(c) ? [{ oracle: 2, kind: "x", message: "m" }, { oracle: 4, kind: "y", message: "n" }] : [], inconclusive: [], checks: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, refused: false });
  const ck = { tally: newTally(), check: async (c: FuzzCase) => (runs++, { ev: {} as Evidence, v: verdict(c) }) } as unknown as Checker;
  const c: FuzzCase = {
    identity: "reader",
    approvals: [true],
    ops: [
      { t: "Q", sql: "SELECT 1; DELETE FROM items; SELECT 2" }, { t: "P", name: "s2", sql: "SELECT 1" }, { t: "S" },
      { t: "P", name: "s1", sql: "SELECT 1" }, { t: "H" }, { t: "E", portal: "", maxRows: 0 }, { t: "S" },
    ],
  };
  const m = await minimise(ck, c, "2:x");
  assert.deepEqual(m.c, { identity: "reader", approvals: [], ops: [{ t: "Q", sql: "DELETE FROM items" }, { t: "P", name: "s1", sql: "SELECT 1" }, { t: "S" }] });
  assert.equal(m.failure.kind, "x");
  assert.equal(m.runs, runs);
  await assert.rejects(minimise(ck, { ...c, ops: [{ t: "S" }] }, "2:x"), /does not fail/);
  // the budget bounds the runs
  runs = 0;
  await minimise(ck, c, "2:x", 3);
  assert.ok(runs <= 4, `${runs} runs`);
});
