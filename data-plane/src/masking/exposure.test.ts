import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadParser, parseSql } from "@sluice/shared/sql";
import { compileMasking } from "./mask-rules.js";
import { indexExposure, statementExposure, syntaxUses, type ExposureFacts, type ExposureIndex } from "./exposure.js";

before(async () => {
  await loadParser();
});

const c = compileMasking([{ resources: ["db"], columns: ["customers.email"], types: ["citext"], strategy: "hash" }], "db", Buffer.from("k"))!;

type Rel = ExposureFacts["relations"][number];
const rel = (oid: number, name: string, over: Partial<Rel> = {}): Rel => ({
  oid, schema: "public", name, kind: "r", columns: [["id", "int4", ""]], readCode: false, writeCode: false, reads: [], writes: [], ...over,
});

/** a small database: masked customers, clean orders, views over them, user code in a few places */
const facts: ExposureFacts = {
  relations: [
    rel(1, "customers", { columns: [["id", "int4", ""], ["email", "text", ""]], writes: [2] }),
    rel(2, "orders"), // cascades from customers (writes: [2] above)
    rel(3, "plain", { columns: [["v", "text", ""]] }),
    rel(4, "cview", { kind: "v", reads: [1] }),
    rel(5, "pview", { kind: "v", reads: [3] }),
    rel(6, "leaky_view", { kind: "v", readCode: true, reads: [3] }),
    rel(7, "audited", { writeCode: true }),
    rel(8, "tagged", { columns: [["handle", "citext", ""]] }),
    rel(9, "child", { columns: [["note", "text", ""]] }),
    rel(10, "parent", { reads: [11], writes: [11] }),
    rel(11, "kid", { columns: [["alias", "mydomain", "citext"]], schema: "archive" }), // a domain over a masked type
    rel(12, "customers", { schema: "archive", columns: [["x", "int4", ""]] }),
    rel(13, "pg_class", { schema: "pg_catalog", columns: [["relname", "name", ""]] }),
  ],
  functions: new Map([["lower", false], ["replace", false], ["count", false], ["json_object_agg", false], ["leak", true], ["public.leak", true], ["pg_catalog.lower", false]]),
  userOperators: new Set(),
  userCastTypes: new Set(),
  implicitUserCast: false,
};
const index = indexExposure(c, facts);

function exposure(sql: string, ix: ExposureIndex | null = index) {
  const r = classifySql(sql);
  assert.ok(r.ok, sql);
  const stmts = r.statements;
  return statementExposure(stmts, ix ?? undefined, (i) => syntaxUses(parseSql(stmts[i]!.text).stmts));
}
const level = (sql: string, ix: ExposureIndex | null = index) => exposure(sql, ix).level;

test("clean: known tables without masked columns, built-in functions only", () => {
  assert.equal(level("SELECT v::int FROM plain"), "clean");
  assert.equal(level("SELECT lower(v) FROM pview"), "clean");
  assert.equal(level("INSERT INTO orders VALUES (1)"), "clean");
  assert.equal(level("SELECT relname::int FROM pg_catalog.pg_class"), "clean");
  assert.equal(level("SELECT 1/0"), "clean");
  assert.equal(level("WITH x AS (SELECT v FROM plain) SELECT * FROM x"), "clean", "a CTE is not a relation");
});

test("masked: a masked column read directly, through a view, a type rule, an inheritance child or a cascade", () => {
  assert.deepEqual(exposure("SELECT replace(email, '@', '#')::int FROM customers"), { level: "masked", reasons: ["it reads masked columns through customers"] });
  assert.equal(level("SELECT 1 FROM customers WHERE email::int = 1"), "masked", "any use, not only the output");
  assert.equal(level("SELECT contact::int FROM cview"), "masked");
  assert.equal(level("SELECT handle::int FROM tagged"), "masked", "citext is masked by type");
  assert.equal(level("SELECT * FROM parent"), "masked", "a parent's read scans its children");
  assert.equal(level("DELETE FROM customers WHERE id = 1"), "masked");
  assert.equal(level("INSERT INTO orders SELECT id FROM customers"), "masked");
  // a bare name matches every schema's relation of that name; a qualified one only its own
  assert.equal(level("SELECT x FROM archive.customers"), "clean");
  assert.equal(level("SELECT x FROM customers"), "masked");
});

test("code: user code may run, or something is not known", () => {
  assert.equal(level("SELECT leak()"), "code");
  assert.equal(level("SELECT * FROM leaky_view"), "code");
  assert.equal(level("INSERT INTO audited VALUES (1)"), "code", "a trigger runs on write");
  assert.equal(level("SELECT * FROM audited"), "clean", "… not on read");
  assert.equal(level("SELECT * FROM nowhere"), "code", "a relation the catalog does not know");
  assert.equal(level("SELECT made_up_function(1)"), "code", "a function the catalog does not know");
  assert.equal(level("DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM customers LIMIT 1); END $$"), "code", "a DO block over masked data");
  assert.equal(level("DO $$ BEGIN RAISE NOTICE '%', (SELECT v FROM plain LIMIT 1); END $$"), "clean", "… but not over clean tables");
  assert.equal(level("COMMIT"), "code", "deferred constraint triggers");
  assert.equal(level("SET CONSTRAINTS ALL IMMEDIATE"), "code");
  assert.equal(level("FETCH 1 FROM c"), "code");
  assert.equal(level("EXECUTE s1"), "code");
  assert.equal(level("CALL p()"), "code");
  assert.equal(level("SELECT v::int FROM plain", null), "code", "no catalog: nothing is proven");
  assert.equal(statementExposure([], index).level, "code", "no statement to judge");
  assert.equal(statementExposure(undefined, index).level, "code");
});

test("operators and casts that run user code are found in the statement's syntax", () => {
  const ix = indexExposure(c, { ...facts, userOperators: new Set(["%%%"]), userCastTypes: new Set(["mydomain"]) });
  assert.equal(level("SELECT 1 %%% 2", ix), "code");
  assert.equal(level("SELECT v::mydomain FROM plain", ix), "code");
  assert.equal(level("SELECT 1 + 2, v::text FROM plain", ix), "clean");
  assert.equal(level("DO $$ BEGIN PERFORM 1; END $$", ix), "code", "a DO block's operators are not visible");
  assert.equal(level("SELECT 1", indexExposure(c, { ...facts, implicitUserCast: true })), "code");
  assert.deepEqual(syntaxUses(parseSql("SELECT a %%% b::x.mytype, CAST(c AS int) FROM t").stmts), { operators: ["%%%"], castTypes: ["mytype", "int4"] });
});

test("views over views, and cycles, are closed over; a missing reference fails closed", () => {
  const ix = indexExposure(c, {
    ...facts,
    relations: [
      ...facts.relations,
      rel(20, "v2", { kind: "v", reads: [4] }),
      rel(21, "loop_a", { kind: "v", reads: [22] }),
      rel(22, "loop_b", { kind: "v", reads: [21] }),
      rel(23, "dangling", { kind: "v", reads: [999] }),
    ],
  });
  assert.equal(level("SELECT * FROM v2", ix), "masked");
  assert.equal(level("SELECT * FROM loop_a", ix), "code");
  assert.equal(level("SELECT * FROM dangling", ix), "code");
});
