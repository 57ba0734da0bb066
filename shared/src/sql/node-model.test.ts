import { before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { NEVER_FROM_PARSER, PLPGSQL_NODES, STATEMENT_CLASS, WALKED_NODES, WALK_SPECIAL_NODES } from "./node-model.js";
import { INTERPRETED_FIELDS } from "./statement-walker.js";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { loadedParser, type SqlParser } from "./sql-parser.js";

before(loadSqlParser);

/** The type definitions libpg-query itself bundles (not the copy another package may resolve). */
function pgsqlTypes(): string {
  const fromLibpgQuery = createRequire(createRequire(import.meta.url).resolve("libpg-query"));
  return readFileSync(fromLibpgQuery.resolve("@pgsql/types/types.d.ts"), "utf8");
}

/** The members of `export type Node = { A: A } | { B: B } | …`. */
function nodeTypes(src: string): string[] {
  const start = src.indexOf("export type Node =");
  const end = src.indexOf(";\n", src.indexOf("}", start) + 1);
  const union = src.slice(start, src.indexOf("\nexport", start + 1));
  const names = [...union.matchAll(/^\s+([A-Za-z_]+): [A-Za-z_]+;$/gm)].map((m) => m[1]);
  assert.ok(end > start && names.length > 200, `found ${names.length} node types`);
  return names;
}

function interfaceFields(src: string, name: string): string[] {
  const m = new RegExp(`export interface ${name} \\{\\n([\\s\\S]*?)\\n\\}`).exec(src);
  assert.ok(m, `interface ${name}`);
  return [...m[1].matchAll(/^\s+([A-Za-z_]+)\??:/gm)].map((x) => x[1]);
}

test("every node type libpg-query can produce is modelled or denied, and in one table only", () => {
  const tables: Array<[string, ReadonlySet<string>]> = [
    ["STATEMENT_CLASS", new Set(Object.keys(STATEMENT_CLASS))],
    ["WALKED_NODES", WALKED_NODES],
    ["WALK_SPECIAL_NODES", WALK_SPECIAL_NODES],
    ["NEVER_FROM_PARSER", NEVER_FROM_PARSER],
  ];
  const types = nodeTypes(pgsqlTypes());
  const problems: string[] = [];
  for (const t of types) {
    const inTables = tables.filter(([, s]) => s.has(t)).map(([n]) => n);
    if (inTables.length !== 1) problems.push(`${t}: ${inTables.length ? inTables.join(" and ") : "in no table"}`);
  }
  // and nothing is modelled that the parser does not know
  const known = new Set(types);
  for (const [n, s] of tables) for (const x of s) if (!known.has(x)) problems.push(`${x} in ${n} is not a node type`);
  assert.deepEqual(problems, []);
});

test("the statement kinds whose handlers read flags list exactly the fields the type definitions declare", () => {
  const src = pgsqlTypes();
  for (const [kind, fields] of Object.entries(INTERPRETED_FIELDS)) {
    assert.deepEqual([...fields].sort(), interfaceFields(src, kind).sort(), kind);
  }
});

/** A parser that returns a given tree: what a future libpg-query could produce. */
function fakeParser(tree: unknown): SqlParser {
  const real = loadedParser()!;
  return { parse: () => tree, parsePlpgsql: (s) => real.parsePlpgsql(s), scan: (s) => real.scan(s), fingerprint: (s) => real.fingerprint(s) };
}

test("a node, statement or field the classifier does not model denies the statement", () => {
  const select = (target: unknown) => ({ stmts: [{ stmt: { SelectStmt: { targetList: [{ ResTarget: { val: target } }] } } }] });
  const unknownNode = classifySql("select x", fakeParser(select({ BrandNewExpr: { arg: { A_Const: { ival: { ival: 1 } } } } })));
  assert.deepEqual(unknownNode, { ok: false, error: "unmodelled node BrandNewExpr" });
  const plannerNode = classifySql("select x", fakeParser(select({ FuncExpr: { funcid: 1 } })));
  assert.deepEqual(plannerNode, { ok: false, error: "unexpected node FuncExpr" });
  const unknownStmt = classifySql("x", fakeParser({ stmts: [{ stmt: { TeleportStmt: {} } }] }));
  assert.deepEqual(unknownStmt, { ok: false, error: "unmodelled statement TeleportStmt" });
  const newFlag = classifySql("copy t to stdout", fakeParser({ stmts: [{ stmt: { CopyStmt: { relation: { relname: "t" }, is_remote: true } } }] }));
  assert.deepEqual(newFlag, { ok: false, error: "CopyStmt has a field sluice does not model (is_remote)" });
  // and the real parser's trees pass through the same checks
  assert.equal(classifySql("select a from t where b in (select 1) order by 1").ok, true);
});

/**
 * One body per PL/pgSQL statement type (PLpgSQL_stmt_type in the server's plpgsql.h), each reading
 * a table of its own in every expression it has: the walker must report all of them.
 */
const PLPGSQL_CASES: Record<string, { body: string; tables: string[] }> = {
  PLpgSQL_stmt_block: { body: "BEGIN BEGIN PERFORM 1 FROM b1; EXCEPTION WHEN others THEN PERFORM 1 FROM b2; END; END", tables: ["b1", "b2"] },
  PLpgSQL_stmt_assign: { body: "DECLARE a int[]; BEGIN a[(SELECT 1 FROM s1):(SELECT 2 FROM s2)][(SELECT 3 FROM s3)] := (SELECT 4 FROM s4); END", tables: ["s1", "s2", "s3", "s4"] },
  PLpgSQL_stmt_if: { body: "BEGIN IF (SELECT true FROM i1) THEN PERFORM 1 FROM i2; ELSIF (SELECT true FROM i3) THEN PERFORM 1 FROM i4; ELSE PERFORM 1 FROM i5; END IF; END", tables: ["i1", "i2", "i3", "i4", "i5"] },
  PLpgSQL_stmt_case: { body: "BEGIN CASE (SELECT 1 FROM c1) WHEN (SELECT 1 FROM c2) THEN PERFORM 1 FROM c3; ELSE PERFORM 1 FROM c4; END CASE; END", tables: ["c1", "c2", "c3", "c4"] },
  PLpgSQL_stmt_loop: { body: "BEGIN LOOP PERFORM 1 FROM l1; EXIT; END LOOP; END", tables: ["l1"] },
  PLpgSQL_stmt_while: { body: "BEGIN WHILE (SELECT false FROM w1) LOOP PERFORM 1 FROM w2; END LOOP; END", tables: ["w1", "w2"] },
  PLpgSQL_stmt_fori: { body: "BEGIN FOR i IN (SELECT 1 FROM f1)..(SELECT 2 FROM f2) BY (SELECT 1 FROM f3) LOOP PERFORM 1 FROM f4; END LOOP; END", tables: ["f1", "f2", "f3", "f4"] },
  PLpgSQL_stmt_fors: { body: "DECLARE r record; BEGIN FOR r IN SELECT * FROM q1 LOOP PERFORM 1 FROM q2; END LOOP; END", tables: ["q1", "q2"] },
  PLpgSQL_stmt_forc: { body: "DECLARE c CURSOR (p int) FOR SELECT * FROM k1 WHERE id = p; BEGIN FOR r IN c((SELECT 1 FROM k2)) LOOP PERFORM 1 FROM k3; END LOOP; END", tables: ["k1", "k2", "k3"] },
  PLpgSQL_stmt_foreach_a: { body: "DECLARE x int; BEGIN FOREACH x IN ARRAY (SELECT array[1] FROM e1) LOOP PERFORM 1 FROM e2; END LOOP; END", tables: ["e1", "e2"] },
  PLpgSQL_stmt_exit: { body: "BEGIN LOOP EXIT WHEN (SELECT true FROM x1); CONTINUE WHEN (SELECT false FROM x2); END LOOP; END", tables: ["x1", "x2"] },
  PLpgSQL_stmt_raise: { body: "BEGIN RAISE NOTICE 'a % b', (SELECT 1 FROM n1) USING DETAIL = (SELECT 'd' FROM n2), HINT = (SELECT 'h' FROM n3); END", tables: ["n1", "n2", "n3"] },
  PLpgSQL_stmt_assert: { body: "BEGIN ASSERT (SELECT true FROM a1), (SELECT 'm' FROM a2); END", tables: ["a1", "a2"] },
  PLpgSQL_stmt_execsql: { body: "DECLARE v int; BEGIN SELECT id INTO v FROM q3; INSERT INTO q4 VALUES (1); END", tables: ["q3", "q4"] },
  PLpgSQL_stmt_dynexecute: { body: "BEGIN EXECUTE 'SELECT 1 FROM d1' USING (SELECT 1 FROM d2); END", tables: ["d1", "d2"] },
  PLpgSQL_stmt_dynfors: { body: "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1 FROM y1' USING (SELECT 1 FROM y2) LOOP PERFORM 1 FROM y3; END LOOP; END", tables: ["y1", "y2", "y3"] },
  PLpgSQL_stmt_getdiag: { body: "DECLARE n int; BEGIN PERFORM 1 FROM g1; GET DIAGNOSTICS n = ROW_COUNT; END", tables: ["g1"] },
  PLpgSQL_stmt_open: { body: "DECLARE c1 refcursor; c2 refcursor; c3 CURSOR (p int) FOR SELECT 1 FROM o1; BEGIN OPEN c1 FOR SELECT 1 FROM o2; OPEN c2 FOR EXECUTE 'SELECT 1 FROM o3' USING (SELECT 1 FROM o4); OPEN c3((SELECT 1 FROM o5)); END", tables: ["o1", "o2", "o3", "o4", "o5"] },
  PLpgSQL_stmt_fetch: { body: "DECLARE c refcursor; v int; BEGIN OPEN c FOR SELECT 1 FROM h1; FETCH ABSOLUTE (SELECT 1 FROM h2) FROM c INTO v; MOVE RELATIVE (SELECT 1 FROM h3) IN c; END", tables: ["h1", "h2", "h3"] },
  PLpgSQL_stmt_close: { body: "DECLARE c refcursor; BEGIN OPEN c FOR SELECT 1 FROM z1; CLOSE c; END", tables: ["z1"] },
  PLpgSQL_stmt_perform: { body: "BEGIN PERFORM x FROM p1 WHERE y IN (SELECT y FROM p2); END", tables: ["p1", "p2"] },
  PLpgSQL_stmt_call: { body: "BEGIN CALL some_proc((SELECT 1 FROM u1)); END", tables: ["u1"] },
  PLpgSQL_stmt_commit: { body: "BEGIN PERFORM 1 FROM m1; COMMIT; END", tables: ["m1"] },
  PLpgSQL_stmt_rollback: { body: "BEGIN PERFORM 1 FROM m2; ROLLBACK; END", tables: ["m2"] },
};
/** Cases that need a function returning something (no DO block form). */
const RETURNING_CASES: Record<string, { body: string; tables: string[]; returns: string }> = {
  PLpgSQL_stmt_return: { body: "BEGIN RETURN (SELECT 1 FROM r1); END", tables: ["r1"], returns: "int" },
  PLpgSQL_stmt_return_next: { body: "BEGIN RETURN NEXT (SELECT 1 FROM rn1); RETURN; END", tables: ["rn1"], returns: "SETOF int" },
  PLpgSQL_stmt_return_query: {
    body: "BEGIN RETURN QUERY SELECT 1 FROM rq1; RETURN QUERY EXECUTE 'SELECT 1 FROM rq2' USING (SELECT 1 FROM rq3); END",
    tables: ["rq1", "rq2", "rq3"],
    returns: "SETOF int",
  },
};

/** The node kinds that occur in a PL/pgSQL dump. */
function plpgsqlKinds(tree: unknown, out = new Set<string>()): Set<string> {
  if (tree && typeof tree === "object") {
    for (const [k, v] of Object.entries(tree)) {
      if (k.startsWith("PLpgSQL_")) out.add(k);
      plpgsqlKinds(v, out);
    }
  }
  return out;
}

test("every PL/pgSQL statement type is modelled, with every expression it holds", () => {
  const parser = loadedParser()!;
  const all: Record<string, { body: string; tables: string[]; returns?: string }> = { ...PLPGSQL_CASES, ...RETURNING_CASES };
  // the statement types of plpgsql.h, all covered here and modelled
  for (const k of [...PLPGSQL_NODES].filter((n) => n.startsWith("PLpgSQL_stmt_"))) assert.ok(all[k], `no case for ${k}`);
  const wrong: string[] = [];
  for (const [kind, { body, tables }] of Object.entries(all)) {
    const returns = all[kind].returns;
    const fn = `CREATE FUNCTION f() RETURNS ${returns ?? "void"} LANGUAGE plpgsql AS $fn$${body}$fn$`;
    const kinds = plpgsqlKinds(parser.parsePlpgsql(fn));
    if (!kinds.has(kind)) wrong.push(`${kind}: not in the dump of its case`);
    for (const k of kinds) if (!PLPGSQL_NODES.has(k)) wrong.push(`${kind}: ${k} unmodelled`);
    const sqls = returns ? [fn] : [fn, `DO $do$${body}$do$`];
    for (const sql of sqls) {
      const c = classifySql(sql);
      if (!c.ok) {
        wrong.push(`${kind}: ${c.error}`);
        continue;
      }
      const read = new Set([...c.statements[0].tables.read, ...c.statements[0].tables.write]);
      const missing = tables.filter((t) => !read.has(t));
      if (missing.length) wrong.push(`${kind} (${sql.slice(0, 6)}): missed ${missing.join(", ")}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("a PL/pgSQL node or parse mode the walker does not model denies", () => {
  const real = loadedParser()!;
  const withTree = (tree: unknown): SqlParser => ({ ...real, parse: (s) => real.parse(s), parsePlpgsql: () => tree, scan: (s) => real.scan(s), fingerprint: (s) => real.fingerprint(s) });
  const fn = (action: unknown) => ({ plpgsql_funcs: [{ PLpgSQL_function: { datums: [], action: { PLpgSQL_stmt_block: { body: [action] } } } }] });
  assert.deepEqual(classifySql("DO $$ BEGIN END $$", withTree(fn({ PLpgSQL_stmt_teleport: { lineno: 1 } }))), { ok: false, error: "unmodelled PL/pgSQL node PLpgSQL_stmt_teleport" });
  const oddMode = fn({ PLpgSQL_stmt_perform: { expr: { PLpgSQL_expr: { query: "int", parseMode: 1 } } } });
  assert.deepEqual(classifySql("DO $$ BEGIN END $$", withTree(oddMode)), { ok: false, error: "unmodelled PL/pgSQL expression mode 1" });
});
