import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser } from "@sluice/shared/sql";
import { renamedPrepare } from "./clash-rename.js";

before(loadSqlParser);

const renamed = (sql: string) => {
  const c = classifySql(sql);
  assert.ok(c.ok);
  return renamedPrepare(sql, c.statements, c.statements.findIndex((s) => s.prepares !== undefined), "_abc_s1");
};

test("only the PREPARE's name changes, the rest of the text byte for byte", () => {
  assert.deepEqual(renamed("SET a = 1; PREPARE s2 AS DELETE FROM t; SELECT 3"), { text: 'SET a = 1; PREPARE "_abc_s1" AS DELETE FROM t; SELECT 3', statement: 'PREPARE "_abc_s1" AS DELETE FROM t' });
  assert.equal(renamed('  select \'é\';; /* c */ prepare "S2" (int) AS SELECT $1')?.text, '  select \'é\';; /* c */ prepare "_abc_s1" (int) AS SELECT $1');
  assert.equal(renamed("PREPARE action AS SELECT 1")?.text, 'PREPARE "_abc_s1" AS SELECT 1', "a keyword as the name");
});

test("the PREPARE's text repeated in a comment or string before it: the statement itself is renamed", () => {
  assert.equal(renamed("SELECT 1; -- PREPARE s2 AS SELECT 1\nPREPARE s2 AS SELECT 1")?.text, 'SELECT 1; -- PREPARE s2 AS SELECT 1\nPREPARE "_abc_s1" AS SELECT 1');
  assert.equal(renamed("SELECT 'PREPARE s2 AS SELECT 1'; PREPARE s2 AS SELECT 1")?.text, "SELECT 'PREPARE s2 AS SELECT 1'; PREPARE \"_abc_s1\" AS SELECT 1");
});

test("what is not a PREPARE at that index is not rewritten", () => {
  const c = classifySql("SELECT 1; SELECT 2");
  assert.ok(c.ok);
  assert.equal(renamedPrepare("SELECT 1; SELECT 2", c.statements, 1, "_abc_s1"), undefined);
  assert.equal(renamedPrepare("SELECT 1", c.statements, 5, "_abc_s1"), undefined);
});
