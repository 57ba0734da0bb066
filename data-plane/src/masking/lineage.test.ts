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
    [...new Set(c.sources.map((s) => `${s.col.table ?? s.col.candidates!.map((t) => t.table).join("|")}.${s.col.column}${s.jsonKey ? "@" + s.jsonKey : ""}`))].sort(),
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
    ["customers.*", "customers.c"],
    ["customers.email@e", "customers.name@n"],
  ]);
  assert.deepEqual(srcs("SELECT to_jsonb(c.*) FROM customers c"), [["customers.*"]]);
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
