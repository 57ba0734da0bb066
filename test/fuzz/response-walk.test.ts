/**
 * The response walk attributes a backend stream to the ops that caused it as PG 15's postgres.c
 * answers them; oracle 4 and the client's waits both rest on it, so each rule is pinned here on
 * streams built by hand: answers in order, skip-to-Sync after an extended-protocol error (a Query
 * and a Flush skipped too), asynchronous messages anywhere, portal suspension, COPY inside a Query
 * and an Execute, FATAL, and the ways a stream can fail to fit.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { backend as b, type BackendMessage } from "../lib/pg-frames.js";
import type { Op } from "./ops.js";
import { walkResponses } from "./response-walk.js";

const codes = (perOp: BackendMessage[][]) => perOp.map((m) => m.map((x) => x.code).join(""));
const P = (name = "", sql = "SELECT 1"): Op => ({ t: "P", name, sql });
const B = (portal = "", stmt = ""): Op => ({ t: "B", portal, stmt, params: [] });
const E = (portal = "", maxRows = 0): Op => ({ t: "E", portal, maxRows });
const S: Op = { t: "S" };
const H: Op = { t: "H" };
const Q = (sql: string): Op => ({ t: "Q", sql });

test("response walk: an extended-protocol error makes the server ignore everything, a Query too, until Sync", () => {
  const ops: Op[] = [P("", "SELECT 1/0"), B(), E(), Q("SELECT 1"), S, Q("SELECT 2"), S];
  const msgs = [b.parseComplete(), b.bindComplete(), b.error("22012", "division by zero"), b.ready(), b.rowDescription(["x"]), b.dataRow(["2"]), b.commandComplete("SELECT 1"), b.ready(), b.ready()];
  const w = walkResponses(ops, msgs);
  assert.equal(w.violation, undefined);
  assert.ok(w.complete);
  assert.deepEqual(codes(w.perOp), ["1", "2", "E", "", "Z", "TDCZ", "Z"]);
  // a stream that answers the skipped Query is out of protocol
  const wrong = walkResponses(ops, [b.parseComplete(), b.bindComplete(), b.error("22012", "division by zero"), b.ready(), b.ready(), b.rowDescription(["x"]), b.dataRow(["2"]), b.commandComplete("SELECT 1"), b.ready()]);
  assert.match(wrong.violation ?? "", /op 6 \(S\): expected ReadyForQuery/);
  // one that stops early is incomplete, waiting for the op it stopped at
  const short = walkResponses(ops, msgs.slice(0, 4));
  assert.equal(short.complete, false);
  assert.equal(short.waitingFor, 5);
});

test("response walk: a failed Parse skips the Describe, Bind, Execute and Close after it; Sync ends the skip", () => {
  const ops: Op[] = [P("s1", "SELEC"), { t: "D", kind: "S", name: "s1" }, B("", "s1"), E(), { t: "C", kind: "S", name: "s1" }, H, S, P(), S];
  const w = walkResponses(ops, [b.error("42601", "syntax error"), b.ready("I"), b.parseComplete(), b.ready()]);
  assert.equal(w.violation, undefined);
  assert.deepEqual(codes(w.perOp), ["E", "", "", "", "", "", "Z", "1", "Z"]);
});

test("response walk: Describe of a statement is ParameterDescription then RowDescription or NoData; of a portal, one of the two", () => {
  const ops: Op[] = [P("s1"), { t: "D", kind: "S", name: "s1" }, B("c1", "s1"), { t: "D", kind: "P", name: "c1" }, { t: "D", kind: "S", name: "" }, S];
  const ok = walkResponses(ops, [b.parseComplete(), b.parameterDescription([23]), b.rowDescription(["x"]), b.bindComplete(), b.rowDescription(["x"]), b.parameterDescription(), b.noData(), b.ready()]);
  assert.equal(ok.violation, undefined);
  assert.deepEqual(codes(ok.perOp), ["1", "tT", "2", "T", "tn", "Z"]);
  // a Describe of a statement that fails with its first answer skips the rest: no RowDescription then
  const failed = walkResponses(ops.slice(0, 2).concat([S]), [b.parseComplete(), b.error("26000", "prepared statement \"s1\" does not exist"), b.ready()]);
  assert.equal(failed.violation, undefined);
  assert.deepEqual(codes(failed.perOp), ["1", "E", "Z"]);
  // a RowDescription without the ParameterDescription before it does not fit
  assert.match(walkResponses(ops, [b.parseComplete(), b.rowDescription(["x"])]).violation ?? "", /op 1 \(D\): expected ParameterDescription/);
});

test("response walk: an Execute ends at CommandComplete, PortalSuspended, EmptyQueryResponse or an error; a resumed portal answers again", () => {
  const ops: Op[] = [P(), B("c1"), E("c1", 1), E("c1", 1), E("c1", 0), P("", ""), B(), E(), S];
  const msgs = [
    b.parseComplete(), b.bindComplete(), b.dataRow(["1"]), b.portalSuspended(), b.dataRow(["2"]), b.portalSuspended(), b.dataRow(["3"]), b.commandComplete("SELECT 1"),
    b.parseComplete(), b.bindComplete(), b.emptyQuery(), b.ready(),
  ];
  const w = walkResponses(ops, msgs);
  assert.equal(w.violation, undefined);
  assert.deepEqual(codes(w.perOp), ["1", "2", "Ds", "Ds", "DC", "1", "2", "I", "Z"]);
  // a ReadyForQuery in place of an Execute's answer does not fit
  assert.match(walkResponses([P(), B(), E(), S], [b.parseComplete(), b.bindComplete(), b.ready()]).violation ?? "", /op 2 \(E\): expected DataRow, CommandComplete/);
});

test("response walk: COPY inside a Query or an Execute is answered there; the client's CopyData, CopyDone and CopyFail get no answer of their own", () => {
  const out = walkResponses([Q("COPY items TO STDOUT"), S], [b.copyOutResponse(3), b.copyData("1\tone\t3\n"), b.copyDone(), b.commandComplete("COPY 1"), b.ready(), b.ready()]);
  assert.equal(out.violation, undefined);
  assert.deepEqual(codes(out.perOp), ["HdcCZ", "Z"]);
  const inQ = walkResponses([Q("COPY items FROM STDIN"), { t: "d", data: "9\tx\t1\n" }, { t: "c" }, S], [b.copyInResponse(3), b.commandComplete("COPY 1"), b.ready(), b.ready()]);
  assert.equal(inQ.violation, undefined);
  assert.deepEqual(codes(inQ.perOp), ["GCZ", "", "", "Z"]);
  const inE = walkResponses([P("", "COPY items FROM STDIN"), B(), E(), { t: "f", message: "no" }, S], [b.parseComplete(), b.bindComplete(), b.copyInResponse(3), b.error("57014", "COPY from stdin failed: no"), b.ready()]);
  assert.equal(inE.violation, undefined);
  assert.deepEqual(codes(inE.perOp), ["1", "2", "GE", "", "Z"]);
});

test("response walk: notices, parameter status and notifications may come at any time, and stay with the op during which they came", () => {
  const w = walkResponses([Q("SET x = 1"), P(), S], [b.notice("01000", "hm"), b.parameterStatus("application_name", "x"), b.commandComplete("SET"), b.ready(), b.parseComplete(), b.message("A", Buffer.from([0, 0, 0, 1, 0, 0])), b.ready(), b.notice("01000", "late")]);
  assert.equal(w.violation, undefined);
  assert.deepEqual(codes(w.perOp), ["NSCZ", "1", "AZN"]);
});

test("response walk: a FATAL ends the stream complete, at the op it answered; anything after it does not fit", () => {
  const fatal = b.error("08P01", "protocol violation", { V: "FATAL" });
  const w = walkResponses([P(), B(), E(), S], [b.parseComplete(), fatal]);
  assert.ok(w.complete);
  assert.deepEqual(w.fatal, { code: "08P01", message: "protocol violation", at: 1 });
  assert.equal(w.violation, undefined);
  assert.match(walkResponses([P(), S], [fatal, b.ready()]).violation ?? "", /messages after a FATAL at op 0/);
});

test("response walk: a message the ops never asked for, after the last answer, does not fit", () => {
  assert.match(walkResponses([P(), S], [b.parseComplete(), b.ready(), b.ready()]).violation ?? "", /unexpected 'Z' after the last op was answered/);
  assert.match(walkResponses([Q("SELECT 1"), S], [b.parseComplete()]).violation ?? "", /op 0 \(Q\): expected a simple-query answer/);
  // held back without Sync or Flush: nothing yet, so the walk waits at the first op
  const none = walkResponses([P(), B()], []);
  assert.equal(none.complete, false);
  assert.equal(none.waitingFor, 0);
});
