/**
 * The statement log reader on records as PG 15's jsonlog writes them: which backend is which, the
 * statements one backend executed with their parameters, resumed portals and errors, and the plans
 * auto_explain logged for it.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { backendsByApplication, executedPlans, executedStatements, parseParameterDetail, type LogRecord } from "./statement-log.js";

const r = (pid: number, message: string, extra: Partial<LogRecord> = {}): LogRecord => ({ pid, error_severity: "LOG", message, ...extra });

test("statement log: parameters, executions, resumed portals, errors and plans as PG 15 logs them", () => {
  assert.deepEqual(parseParameterDetail("parameters: $1 = 'a''b', $2 = NULL, $3 = ''"), ["a'b", null, ""]);
  assert.equal(parseParameterDetail("prepare: SELECT 1"), undefined);
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

test("statement log: each backend is known by the application_name it connected with, with or without TLS", () => {
  const m = backendsByApplication([
    r(7, "connection authorized: user=fuzz_app database=app application_name=fz-1"),
    r(8, "connection authorized: user=fuzz_app database=app application_name=fz-2 SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"),
    r(9, "statement: SELECT 1"),
  ]);
  assert.deepEqual([...m], [[7, "fz-1"], [8, "fz-2"]]);
});
