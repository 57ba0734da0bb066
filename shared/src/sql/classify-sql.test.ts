import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, fingerprint, loadSqlParser, MAX_STATEMENTS_PER_MESSAGE } from "./classify-sql.js";
import type { StatementInfo } from "./statement-info.js";

before(loadSqlParser);

function one(sql: string): StatementInfo {
  const c = classifySql(sql);
  assert.ok(c.ok, `expected ${sql} to parse: ${!c.ok ? c.error : ""}`);
  assert.equal(c.statements.length, 1, sql);
  return c.statements[0];
}

test("a plain SELECT is a read of its tables, however it is spelled", () => {
  for (const sql of [
    "select * from secrets",
    "SeLeCt * FrOm SECRETS",
    "select * from /* a /* nested */ comment */ secrets -- trailing",
    'select * from "secrets"',
    'select * from U&"sec\\0072ets"',
    "TABLE secrets",
  ]) {
    const s = one(sql);
    assert.equal(s.class, "read", sql);
    assert.deepEqual(s.tables.read, ["secrets"], sql);
  }
  assert.deepEqual(one('select * from "public"."secrets"').tables.read, ["public.secrets"]);
});

test("writes are found through CTEs, subqueries, RETURNING and EXPLAIN ANALYZE", () => {
  const cte = one("with gone as (delete from audit returning *) select count(*) from gone");
  assert.equal(cte.class, "write");
  assert.deepEqual(cte.tables.write, ["audit"]);
  assert.ok(cte.risks.includes("delete-without-where"));

  const ins = one("insert into archive select * from orders where id in (select id from old) returning (select 1 from secrets)");
  assert.deepEqual(ins.tables.write, ["archive"]);
  assert.deepEqual(ins.tables.read.sort(), ["old", "orders", "secrets"]);

  const ea = one("EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET x = 1");
  assert.equal(ea.class, "write");
  assert.ok(ea.risks.includes("update-without-where"));
  const e = one("EXPLAIN UPDATE orders SET x = 1");
  assert.equal(e.class, "read");
  assert.deepEqual(e.risks, []);
  assert.equal(one("explain (analyze false) delete from t").class, "read");

  const lock = one("select * from orders o join items i on true for update of o");
  assert.equal(lock.class, "write");
  assert.deepEqual(lock.tables.write, ["orders"]);
});

test("a CTE name shadows a table only where Postgres scoping says so", () => {
  const s = one("with secrets as (select * from secrets) select * from secrets");
  assert.deepEqual(s.tables.read, ["secrets"]); // the real table, read inside the CTE
  const r = one("with x as (select 1) select * from x");
  assert.deepEqual(r.tables.read, []);
  const q = one("with x as (select 1) select * from public.x");
  assert.deepEqual(q.tables.read, ["public.x"]);
  // a DML target is always a real table, even when a CTE has its name
  assert.deepEqual(one("with secrets as (select 1) delete from secrets where id = 1").tables.write, ["secrets"]);
  assert.deepEqual(one("with a as (select * from b), b as (select 1) select * from a").tables.read, ["b"]);
});

test("risks: where-less deletes/updates (also constant WHERE), truncate, drops, copy, grants, role changes", () => {
  assert.deepEqual(one("delete from t where 1 = 1").risks, ["delete-without-where"]);
  assert.deepEqual(one("delete from t where id = 3").risks, []);
  assert.deepEqual(one("update t set a = 1 where true").risks, ["update-without-where"]);
  assert.deepEqual(one("truncate t, u").tables.write, ["t", "u"]);
  assert.ok(one("drop table public.secrets").risks.includes("drop-table"));
  assert.deepEqual(one("drop table public.secrets").tables.write, ["public.secrets"]);
  assert.ok(one("drop schema s cascade").risks.includes("drop-schema"));
  assert.ok(one("DROP DATABASE prod").risks.includes("drop-database"));
  assert.ok(one("drop role bob").risks.includes("drop-role"));
  assert.equal(one("copy t from program 'curl x'").risks[0], "copy-program");
  assert.equal(one("copy t to '/tmp/x'").risks[0], "copy-file");
  assert.deepEqual(one("copy t to stdout").risks, []);
  assert.equal(one("copy t from stdin").tables.write[0], "t");
  assert.equal(one("grant all on secrets to public").class, "admin");
  for (const sql of ["set role postgres", "SET SESSION AUTHORIZATION postgres", "reset role", "set local role x", "select set_config('role', 'postgres', false)"]) {
    const s = one(sql);
    assert.ok(s.risks.includes("role-change"), sql);
    assert.equal(s.class, "admin", sql);
  }
  assert.ok(one("alter system set fsync = off").risks.includes("alter-system"));
});

test("superuser functions make any statement admin, wherever they hide", () => {
  for (const sql of [
    "select pg_read_file('/etc/passwd')",
    "select * from pg_catalog.pg_ls_dir('.')",
    "select length(PG_READ_FILE('x'))",
    "select 1 where exists (select lo_import('/etc/passwd'))",
    "select pg_terminate_backend(pid) from pg_stat_activity",
    "insert into t values (pg_read_binary_file('x'))",
  ]) {
    const s = one(sql);
    assert.ok(s.risks.includes("superuser-functions"), sql);
    assert.equal(s.class, "admin", sql);
  }
  const x = one("select query_to_xml('select * from secrets', true, true, '')");
  assert.ok(x.risks.includes("dynamic-sql"));
});

test("DO blocks are parsed with the PL/pgSQL parser, nested and EXECUTEd SQL included", () => {
  const d = one("DO $$ BEGIN DELETE FROM t; END $$");
  assert.equal(d.class, "write");
  assert.ok(d.risks.includes("delete-without-where"));
  const n = one("DO $a$ BEGIN DO $b$ BEGIN EXECUTE 'DROP TABLE x'; END $b$; END $a$");
  assert.ok(n.risks.includes("drop-table") && n.risks.includes("dynamic-sql"));
  const f = one("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'x'); END $$");
  assert.equal(f.class, "admin"); // computed SQL: unknowable
  // no SQL of any class inside: it computes like a SELECT of expressions
  const none = one("DO $$ BEGIN RAISE NOTICE 'hi'; END $$");
  assert.equal(none.class, "read");
  // a harmless SET LOCAL inside adds no class (as at top level); SET ROLE inside does
  assert.deepEqual(one("DO $$ BEGIN SET LOCAL client_min_messages = 'ERROR'; RAISE WARNING 'x'; END $$").classes, ["read"]);
  assert.deepEqual(one("DO $$ BEGIN SET LOCAL ROLE postgres; END $$").classes, ["admin"]);
  assert.deepEqual(one("DO $$ BEGIN SET LOCAL myapp.tenant = '1'; END $$").classes, ["utility"]);
  assert.deepEqual(one("DO $$ BEGIN SET LOCAL search_path = x; END $$").risks, ["search-path"]);
  assert.equal(one("DO LANGUAGE plpython3u $$ import os $$").class, "admin");
  assert.equal(classifySql("DO $$ BEGIN this is not plpgsql; END $$").ok, false);
});

test("function bodies carry their tables and risks; the definition itself is ddl", () => {
  const p = one("create function f() returns void language plpgsql as $$ begin execute 'delete from t'; end $$");
  assert.equal(p.class, "ddl");
  assert.ok(p.risks.includes("dynamic-sql") && p.risks.includes("delete-without-where"));
  const s = one("create function g() returns bigint language sql as 'select count(*) from secrets'");
  assert.deepEqual(s.tables.read, ["secrets"]);
  assert.equal(one("create function h() returns int language c as 'lib', 'sym'").class, "admin");
});

test("PREPARE is what it prepares; EXECUTE names it; DEALLOCATE forgets", () => {
  const c = classifySql("PREPARE wipe(int) AS DELETE FROM t WHERE id = $1; EXECUTE wipe(1); DEALLOCATE wipe");
  assert.ok(c.ok);
  const [p, e, d] = c.statements;
  assert.equal(p.prepares, "wipe");
  assert.equal(p.class, "write");
  assert.deepEqual(e.executes, ["wipe"]);
  assert.deepEqual(d.deallocates, { all: false, name: "wipe" });
  assert.deepEqual(one("explain analyze execute wipe(1)").executes, ["wipe"]);
});

test("multi-statement strings are split by byte offsets, multibyte text included", () => {
  const c = classifySql("select 'héllo ✓'; /* x */ DROP TABLE t;select 2");
  assert.ok(c.ok);
  assert.deepEqual(c.statements.map((s) => s.text), ["select 'héllo ✓'", "DROP TABLE t", "select 2"]);
  assert.deepEqual(c.statements.map((s) => s.class), ["read", "ddl", "read"]);
});

test("transaction control is tagged for the session's bookkeeping", () => {
  const c = classifySql("BEGIN; SAVEPOINT a; ROLLBACK TO a; COMMIT; START TRANSACTION; ROLLBACK");
  assert.ok(c.ok);
  assert.deepEqual(c.statements.map((s) => s.txn), ["begin", "savepoint", "rollback_to", "commit", "begin", "rollback"]);
});

test("garbage, truncated and empty input", () => {
  // pathological nesting: the parser's limit or the walk's, a deny either way, never a crash
  assert.equal(classifySql(`select ${"(".repeat(50_000)}1${")".repeat(50_000)}`).ok, false);
  assert.equal(classifySql(`select 1 ${" + (select 1)".repeat(20_000)}`).ok, false);
  const bad = classifySql("selec * from t");
  assert.equal(bad.ok, false);
  assert.equal(classifySql("select 'unterminated").ok, false);
  assert.equal(classifySql("select 1; drop").ok, false);
  assert.deepEqual(classifySql("  -- only a comment\n"), { ok: true, statements: [] });
  assert.deepEqual(classifySql(""), { ok: true, statements: [] });
});

test("fingerprint ignores literal values and formatting", () => {
  assert.equal(fingerprint("select * from t where id = 1"), fingerprint("SELECT *\n FROM t WHERE id = 42"));
  assert.notEqual(fingerprint("select * from t"), fingerprint("select * from u"));
});

test("built-ins with side effects called from a read are not a read", () => {
  const nv = one("select nextval('public.orders_id_seq'), currval('x')");
  assert.equal(nv.class, "write");
  assert.deepEqual(nv.tables.write, ["public.orders_id_seq"]);
  assert.deepEqual(one(`select setval('"Odd Seq"', 1)`).tables.write, ["Odd Seq"]);
  for (const sql of ["select pg_advisory_lock(1)", "select pg_try_advisory_xact_lock(1, 2)", "select 1 where pg_advisory_unlock_all() is null", "select brin_summarize_new_values('i')"]) {
    assert.equal(one(sql).class, "write", sql);
  }
  assert.deepEqual(one("select pg_notify('chan', 'x')").classes, ["read", "utility"]);
  assert.deepEqual(one("select set_config('myapp.tenant', '7', false)").classes, ["read", "utility"], "a custom setting row-level security may read");
  assert.deepEqual(one("select set_config('statement_timeout', '5s', false)").classes, ["read"], "a harmless setting");
  // inside a function being defined they are the function's business, not the CREATE's class
  assert.deepEqual(one("create function f() returns bigint language sql as $$ select nextval('s') $$").classes, ["ddl"]);
  assert.equal(one("select pg_sleep(1), random(), clock_timestamp()").class, "read", "volatile but without effects on others");
});

test("views of other sessions' SQL are admin reads; the session's own and lock views are not", () => {
  for (const sql of [
    "select query from pg_stat_activity",
    "select * from pg_catalog.pg_stat_activity where pid <> pg_backend_pid()",
    "select query from pg_stat_statements",
    "select query from public.pg_stat_statements",
    "select * from pg_stat_get_activity(null)",
    "select pg_stat_get_backend_activity(1)",
    "select 1 where exists (select 1 from pg_stat_activity)",
  ]) {
    assert.equal(one(sql).class, "admin", sql);
  }
  for (const sql of ["select * from pg_locks", "select * from pg_prepared_statements", "select * from pg_cursors", "select * from myapp.pg_stat_activity"]) {
    assert.equal(one(sql).class, "read", sql);
  }
});

test("the arms of a set operation are walked as SELECTs: their CTEs, writes and row locks count", () => {
  const u = one("select 1 from a union (with d as (delete from t returning 1) select 1 from d)");
  assert.equal(u.class, "write");
  assert.deepEqual(u.tables, { read: ["a"], write: ["t"] });
  assert.deepEqual(one("select * from a union select * from b except select * from c").tables.read, ["a", "b", "c"]);
});

test("nesting beyond the pre-scan's bound is denied before parsing; deep chains are denied by the contained parser", () => {
  const deep = classifySql(`select ${"(".repeat(1001)}1${")".repeat(1001)}`);
  assert.equal(deep.ok, false);
  assert.match(!deep.ok ? deep.error : "", /nesting too deep: 1001 levels/);
  assert.equal(classifySql(`select ${"(".repeat(900)}1${")".repeat(900)}`).ok, true);
  const chain = classifySql(`select 1${"::int".repeat(20_000)}`);
  assert.equal(chain.ok, false);
  assert.equal(one("select 1").class, "read", "and the next statement is classified");
});

test("the statistics views are admin reads: they sample column values, masked ones included", () => {
  for (const sql of ["select histogram_bounds from pg_stats", "select most_common_vals from pg_catalog.pg_stats", "select * from pg_stats_ext", "select * from pg_stats_ext_exprs"]) {
    assert.equal(one(sql).class, "admin", sql);
  }
  assert.equal(one("select * from myapp.pg_stats").class, "read", "a table of that name elsewhere");
});

test("calls are the functions that run with the statement, operators the operators it uses (for the data plane's pg_proc check)", () => {
  const s = one("select purge(), public.keep(x) from t where a === 1 and b between 1 and 2 order by c using <<<");
  assert.deepEqual(s.calls, ["purge", "public.keep"]);
  assert.deepEqual(s.operators?.sort(), ["<", "<<<", "<=", "===", ">", ">="], "BETWEEN runs the comparisons");
  assert.deepEqual(one("select 1 where x = any (select y from t)").operators?.sort(), ["="]);
  assert.deepEqual(one("select operator(myschema.===)(1, 2)").operators, ["myschema.==="]);
  const body = one("create function f() returns int language sql as $$ select purge() + 1 $$");
  assert.deepEqual(body.functions, ["purge"], "a body's functions are listed");
  assert.deepEqual(body.calls, [], "but do not run when the function is created");
  assert.deepEqual(body.operators, ["+"], "a body's operators are listed like its functions");
  assert.deepEqual(one("do $$ begin perform purge(); end $$").calls, ["purge"], "a DO block runs its body");
  assert.deepEqual(one("prepare p as select purge()").calls, ["purge"], "a prepared statement runs at EXECUTE");
});

test("a message of more than MAX_STATEMENTS_PER_MESSAGE statements is refused before it is walked; that many is classified", async () => {
  await loadSqlParser();
  const many = classifySql("SELECT 1;".repeat(MAX_STATEMENTS_PER_MESSAGE) + "DELETE FROM t");
  assert.equal(many.ok, false);
  if (!many.ok) assert.match(many.error, new RegExp(`${MAX_STATEMENTS_PER_MESSAGE + 1} statements; sluice decides at most ${MAX_STATEMENTS_PER_MESSAGE}`));
  const enough = classifySql("SELECT 1;".repeat(MAX_STATEMENTS_PER_MESSAGE - 1) + "DELETE FROM t");
  assert.ok(enough.ok);
  if (enough.ok) assert.equal(enough.statements.length, MAX_STATEMENTS_PER_MESSAGE);
});
