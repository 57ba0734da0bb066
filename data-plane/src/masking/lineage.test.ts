import { before, test } from "node:test";
import assert from "node:assert/strict";
import { loadModule, parseSync } from "libpg-query";
import { alignLineage, queryLineage, type OutputLineage } from "./lineage.js";

before(async () => {
  await loadModule();
});

function lineage(sql: string): OutputLineage[] {
  return queryLineage(parseSync(sql).stmts![0]!.stmt as any)!;
}
/** `table.column@key` strings per output column, sorted, for readable assertions */
function srcs(sql: string): string[][] {
  return lineage(sql).map((c) =>
    [...new Set(c.sources.map((s) => `${s.col.table ?? s.col.candidates!.map((t) => t.table).join("|")}.${s.col.column}${s.jsonKey ? "@" + s.jsonKey : ""}${s.rowKeys ? "@names" : ""}`))].sort(),
  );
}

test("expressions over a column keep its lineage through aliases", () => {
  assert.deepEqual(srcs("SELECT lower(c.email), substring(c.card_number, 1, 6), c.email || '' AS e, upper(x) FROM customers c, t"), [
    ["customers.email"],
    ["customers.card_number"],
    ["customers.email"],
    ["customers|t.x"],
  ]);
  assert.deepEqual(srcs("SELECT email::text, coalesce(email, 'none'), CASE WHEN true THEN email END FROM public.customers"), [
    ["customers.email"],
    ["customers.email"],
    ["customers.email"],
  ]);
});

test("whole-row and JSON builds carry keys", () => {
  assert.deepEqual(srcs("SELECT row_to_json(c), json_build_object('e', c.email, 'n', name) FROM customers c"), [
    // `c` is also tried as a column name: conservative, a column named like the alias would count
    ["customers.*@names", "customers.c"],
    ["customers.email@e", "customers.name@n"],
  ]);
  assert.deepEqual(srcs("SELECT to_jsonb(c.*) FROM customers c"), [["customers.*@names"]]);
  // a star of a derived table: its columns keep their own names, not "*"
  assert.deepEqual(srcs("SELECT row_to_json(s) FROM (SELECT * FROM customers) s"), [["customers.*@names"]]);
});

test("JSON keys survive only JSON constructors: anything that can move a value out of its key counts as unkeyed", () => {
  // finding 003: a computed key holds the masked value itself
  assert.deepEqual(srcs("SELECT json_build_object(email, id) FROM customers"), [["customers.email", "customers.id"]]);
  assert.deepEqual(srcs("SELECT json_object_agg(email, id), jsonb_object_agg(id, json_build_object('e', email)) FROM customers"), [
    ["customers.email", "customers.id"],
    ["customers.email@e", "customers.id"],
  ]);
  // extraction, casts to text, string functions and operators drop the keys
  assert.deepEqual(srcs("SELECT json_build_object('e', email)->'e', to_json(json_build_object('e', email)::text), to_json(c::text), concat(c) FROM customers c"), [
    ["customers.email"],
    ["customers.email"],
    ["customers.*", "customers.c"],
    ["customers.*", "customers.c"],
  ]);
  // wrapping in JSON, CASE and COALESCE keep them
  assert.deepEqual(srcs("SELECT json_agg(json_build_object('e', email)), coalesce(json_build_object('e', email)::jsonb, '{}') FROM customers"), [
    ["customers.email@e"],
    ["customers.email@e"],
  ]);
});

test("a function in FROM derives its columns from its arguments (json_each keys, unnest)", () => {
  const each = lineage("SELECT e.key, replace(key, '@', '#') FROM customers c, json_each(json_build_object(c.email, 1)) e");
  assert.deepEqual(each.map((c) => c.sources.map((s) => `${s.col.table}.${s.col.column}${s.jsonKey ?? ""}`)), [["customers.email"], ["customers.email", "customers.key"]]);
  assert.ok(each.every((c) => c.unknown), "still unknown: a user function may read anything");
  assert.deepEqual(srcs("SELECT x FROM customers, unnest(ARRAY[email]) x"), [["customers.email", "customers.x"]]);
  assert.deepEqual(srcs("SELECT * FROM customers c, LATERAL jsonb_each_text(to_jsonb(c)) AS kv(k, v)").slice(-1), [["customers.*", "customers.c"]]);
});

test("subqueries, CTEs, UNION and joins resolve to base columns", () => {
  assert.deepEqual(srcs("WITH x AS (SELECT lower(email) AS m FROM customers) SELECT upper(m) FROM x"), [["customers.email"]]);
  assert.deepEqual(srcs("SELECT s.z || '!' FROM (SELECT card_number z FROM cards) s"), [["cards.card_number"]]);
  assert.deepEqual(srcs("SELECT a FROM t UNION ALL SELECT email FROM customers"), [["customers.email", "t.a"]]);
  assert.deepEqual(srcs("SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id"), [["orders.id"], ["customers.email"]]);
  assert.deepEqual(srcs("SELECT (SELECT max(email) FROM customers) AS m"), [["customers.email"]]);
  assert.deepEqual(srcs("SELECT count(email) FROM customers"), [[]]);
});

test("a function in FROM or an unknown alias makes lineage unknown (classifiers apply)", () => {
  assert.equal(lineage("SELECT x FROM generate_series(1, 3) x")[0]!.unknown, true);
  assert.equal(lineage("SELECT nope.x FROM t")[0]!.unknown, true);
  assert.equal(lineage("SELECT lower(email) FROM customers")[0]!.unknown, false);
});

test("stars over base tables align by position around them", () => {
  const l = lineage("SELECT lower(c.email) AS a, c.*, upper(c.name) AS b FROM customers c");
  assert.equal(l.length, 3);
  assert.ok(l[1]!.star);
  const aligned = alignLineage(l, 6)!;
  assert.equal(aligned.length, 6);
  assert.equal(aligned[0]!.name, "a");
  assert.equal(aligned[5]!.name, "b");
  assert.deepEqual(aligned[2]!.sources, []);
  assert.equal(alignLineage(l, 1), null);
  // a star over a subquery is expanded exactly
  assert.deepEqual(srcs("SELECT * FROM (SELECT lower(email) AS e, id FROM customers) s"), [["customers.email"], ["customers.id"]]);
});
