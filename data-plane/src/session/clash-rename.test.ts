import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser } from "@sluice/shared/sql";
import { renamedNames } from "./clash-rename.js";

before(loadSqlParser);

const renamed = (sql: string) => {
  const c = classifySql(sql);
  assert.ok(c.ok);
  const index = c.statements.findIndex((s) => s.prepares !== undefined);
  const r = renamedNames(sql, c.statements, [{ index, server: "_abc_s1" }]);
  return r && { text: r.text, statement: r.statements[index] };
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
  assert.equal(renamedNames("SELECT 1; SELECT 2", c.statements, [{ index: 1, server: "_abc_s1" }]), undefined);
  assert.equal(renamedNames("SELECT 1", c.statements, [{ index: 5, server: "_abc_s1" }]), undefined);
});

const renamedAll = (sql: string, indices: number[]) => {
  const c = classifySql(sql);
  assert.ok(c.ok);
  return renamedNames(sql, c.statements, indices.map((index, i) => ({ index, server: `_abc_s${i + 1}` })));
};

test("a DEALLOCATE's name is its last word: first, last, alone, with PREPARE, two of them; the rest byte for byte", () => {
  assert.deepEqual(renamedAll("DEALLOCATE p1; SELECT 1/0", [0]), { text: 'DEALLOCATE "_abc_s1"; SELECT 1/0', statements: ['DEALLOCATE "_abc_s1"', "SELECT 1/0"] });
  assert.equal(renamedAll("SELECT 1 ;\n deallocate  prepare \"P 1\" /* c */ ;", [1])?.text, 'SELECT 1 ;\n deallocate  prepare "_abc_s1" /* c */ ;');
  assert.equal(renamedAll("  DEALLOCATE p1;  ", [0])?.text, '  DEALLOCATE "_abc_s1";  ', "a lone statement with its semicolon");
  assert.equal(renamedAll("DEALLOCATE prepare", [0])?.text, 'DEALLOCATE "_abc_s1"', "a keyword as the name");
  assert.equal(renamedAll("DEALLOCATE a; SELECT 'DEALLOCATE b'; DEALLOCATE b", [0, 2])?.text, "DEALLOCATE \"_abc_s1\"; SELECT 'DEALLOCATE b'; DEALLOCATE \"_abc_s2\"");
  assert.equal(renamedAll("DEALLOCATE p1; PREPARE p2 AS SELECT 1", [0, 1])?.text, 'DEALLOCATE "_abc_s1"; PREPARE "_abc_s2" AS SELECT 1');
});

test("DEALLOCATE ALL, or a statement that is neither, is not rewritten", () => {
  assert.equal(renamedAll("DEALLOCATE ALL; SELECT 1", [0]), undefined);
  assert.equal(renamedAll("SELECT 1; DEALLOCATE x", [0]), undefined);
});
