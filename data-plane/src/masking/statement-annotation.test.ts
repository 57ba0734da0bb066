import { test } from "node:test";
import assert from "node:assert/strict";
import { ClassifierPool, loadParser, parseSql, type Classification } from "@sluice/shared/sql";
import { annotateStatement, type ResultAnnotation } from "./statement-annotation.js";
import { queryLineage } from "./lineage.js";

const ANNOTATOR = new URL(`./statement-annotation${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url).href;

function annotations(c: Classification): ResultAnnotation[] {
  assert.ok(c.ok, JSON.stringify(c));
  return c.statements.map((s) => s.annotation as ResultAnnotation);
}

test("the pool annotates every statement where it classifies it: inline for a short one, in a worker for a long one, alike", async (t) => {
  await loadParser();
  const pool = await ClassifierPool.create({ workers: 1, annotator: ANNOTATOR });
  t.after(() => pool.close());
  const select = (pad: number) => `SELECT c.email AS e, lower(c.name) FROM customers c WHERE c.id IN (1${",2".repeat(pad)})`;
  const short = pool.classify(select(10));
  assert.ok(!(short instanceof Promise));
  const long = pool.classify(select(4000));
  assert.ok(long instanceof Promise, "a long statement goes to a worker");
  const [a] = annotations(short as Classification);
  const [b] = annotations(await long);
  assert.ok(a?.ok && b?.ok);
  assert.deepEqual(a.lineage, queryLineage(parseSql(select(10)).stmts[0].stmt));
  assert.deepEqual(b.lineage, a.lineage, "the worker traced the same columns");
  assert.deepEqual(b.lineage!.map((l) => l.sources.map((s) => `${s.col.table}.${s.col.column}`)), [["customers.email"], ["customers.name"]]);
});

test("COPY TO, a BINARY cursor, RETURNING and each statement of a message get what the masker plans them by", async () => {
  await loadParser();
  const ann = (sql: string) => parseSql(sql).stmts.map((s: any) => {
    const kind = Object.keys(s.stmt)[0]!;
    return annotateStatement(kind, s.stmt[kind]);
  });
  const [copy] = ann("COPY public.customers (email, name) TO STDOUT WITH (FORMAT csv, DELIMITER ';')");
  assert.ok(copy?.ok);
  assert.deepEqual(copy.copyOut, { relation: { schema: "public", table: "customers" }, columns: ["email", "name"], options: [{ name: "format", value: "csv" }, { name: "delimiter", value: ";" }] });
  const [query] = ann("COPY (SELECT email FROM customers) TO STDOUT");
  assert.ok(query?.ok && query.copyOut?.query?.[0]?.sources[0]?.col.column === "email");
  const [from] = ann("COPY customers FROM STDIN");
  assert.ok(from?.ok && from.copyOut === undefined, "a COPY FROM has no result to mask");
  const [cursor] = ann("DECLARE c BINARY CURSOR FOR SELECT email FROM customers");
  assert.ok(cursor?.ok && cursor.binaryCursor === true);
  const [ret, sel] = ann("UPDATE customers SET name = 'x' RETURNING email; SELECT a %%% b::mytype FROM t");
  assert.ok(ret?.ok && ret.lineage?.[0]?.sources[0]?.col.column === "email");
  assert.ok(sel?.ok);
  assert.deepEqual(sel.syntax, { operators: ["%%%"], castTypes: ["mytype"] });
});

test("a tree deeper than the walks is not analysed: no guessed lineage, no operators said to be none", async () => {
  await loadParser();
  const deep = "SELECT " + "(SELECT ".repeat(150) + "1" + ")".repeat(150);
  const s = parseSql(deep).stmts[0].stmt;
  const a = annotateStatement("SelectStmt", s.SelectStmt);
  // the operators walk stops at its depth bound: it says it does not know rather than "none"
  assert.ok(!a.ok || a.syntax === undefined, JSON.stringify(a).slice(0, 200));
  // a walk that overflows the stack is reported, not thrown into the relay
  let expr: unknown = { ColumnRef: { fields: [{ String: { sval: "x" } }] } };
  for (let i = 0; i < 200_000; i++) expr = { A_Expr: { kind: "AEXPR_OP", name: [{ String: { sval: "+" } }], lexpr: expr, rexpr: { A_Const: { ival: { ival: 1 } } } } };
  const huge = annotateStatement("SelectStmt", { targetList: [{ ResTarget: { val: expr } }], fromClause: [{ RangeVar: { relname: "t", inh: true } }] });
  assert.equal(huge.ok, false);
});
