import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser, type StatementInfo } from "@sluice/shared/sql";
import { asWrite, describeUses, functionFactsFrom, needsFunctionFacts, volatileUses, type FunctionFacts, type FunctionFactsDoc } from "./volatile-calls.js";
import { mentionsAny } from "./type-names.js";

before(loadSqlParser);

/** facts as functionFactsFrom would give them */
const facts: FunctionFacts = {
  builtins: new Set(["count", "lower", "now", "nextval"]),
  user: new Map([
    ["purge", true], ["public.purge", true],
    ["item_count", false], ["public.item_count", false],
    ["lower", true], ["app.lower", true], // a user function shadowing a built-in's name
    ["report", true], ["app.report", false], ["public.report", true], // overloads in two schemas
  ]),
  volatileOperators: new Set(["===", "public.==="]),
  volatileReads: new Set(["purging", "public.purging"]),
};

const info = (o: Partial<StatementInfo>): StatementInfo => ({
  text: "", kind: "SelectStmt", class: "read", classes: ["read"], tables: { read: [], write: [] }, functions: [], risks: [], ...o,
});

const names = (s: Partial<StatementInfo>) => volatileUses(facts, info(s)).map((u) => `${u.name}:${u.why}`);

test("volatile user functions, names the catalog does not know, volatile operators and relations that run volatile code", () => {
  assert.deepEqual(names({ functions: ["purge", "count", "now"] }), ["purge:volatile"]);
  assert.deepEqual(names({ functions: ["public.purge", "public.item_count", "item_count"] }), ["public.purge:volatile"]);
  assert.deepEqual(names({ functions: ["nosuch", "public.nosuch", "pg_catalog.nosuch"] }), ["nosuch:unknown", "public.nosuch:unknown", "pg_catalog.nosuch:unknown"]);
  assert.deepEqual(names({ functions: ["lower", "pg_catalog.lower"] }), ["lower:volatile"], "unqualified, a user function of the name may be chosen");
  assert.deepEqual(names({ functions: ["report", "app.report"] }), ["report:volatile"]);
  assert.deepEqual(names({ operators: ["===", "=", "public.==="] }), ["===:operator", "public.===:operator"]);
  assert.deepEqual(names({ tables: { read: ["purging", "PUBLIC.PURGING", "items"], write: [] } }), ["purging:reads-volatile", "PUBLIC.PURGING:reads-volatile"]);
  // `calls` (not a function body's functions) decides when the classifier gave it
  assert.deepEqual(names({ functions: ["purge"], calls: [] }), []);
});

test("needsFunctionFacts: only statements that call, use operators or read relations look at the catalog", () => {
  assert.equal(needsFunctionFacts(info({})), false);
  assert.equal(needsFunctionFacts(info({ functions: ["count"] })), true);
  assert.equal(needsFunctionFacts(info({ tables: { read: ["t"], write: [] } })), true);
  assert.equal(needsFunctionFacts(info({ operators: ["+"] })), true);
});

test("asWrite adds write (dropping read), keeps more privileged classes on top; describeUses names the first use", () => {
  assert.deepEqual(asWrite(info({})).classes, ["write"]);
  assert.equal(asWrite(info({})).class, "write");
  const copy = asWrite(info({ class: "copy", classes: ["read", "copy"] }));
  assert.deepEqual(copy.classes, ["write", "copy"]);
  assert.equal(copy.class, "copy");
  const w = info({ class: "write", classes: ["write"] });
  assert.equal(asWrite(w), w);
  assert.match(describeUses([{ name: "purge", why: "volatile" }, { name: "x", why: "unknown" }]), /^it calls purge\(\), a function pg_proc marks volatile \(it may write\), and 1 more$/);
  assert.match(describeUses([{ name: "v", why: "reads-volatile" }]), /reads v/);
});

test("functionFactsFrom: what may write, to a fixed point — a stable function calling a volatile one, built-ins with effects in a body, views, policies, aggregates, operators", async () => {
  const def = (name: string, body: string, lang = "plpgsql", vol = "STABLE") =>
    `CREATE OR REPLACE FUNCTION public.${name}() RETURNS integer LANGUAGE ${lang} ${vol} AS $function$${body}$function$`;
  const doc: FunctionFactsDoc = {
    builtins: ["count", "nextval", "lower"],
    functions: [
      [1, "public", "purge", "v", "f", "plpgsql", null, null],
      [2, "public", "wrap", "s", "f", "sql", def("wrap", "SELECT purge()", "sql"), null],
      [3, "public", "wrap_wrap", "s", "f", "plpgsql", def("wrap_wrap", "BEGIN RETURN wrap(); END"), null],
      [4, "public", "counter", "s", "f", "sql", def("counter", "SELECT nextval('s')::int", "sql"), null],
      [5, "public", "honest", "s", "f", "sql", def("honest", "SELECT count(*)::int FROM items WHERE lower(name) = 'x'", "sql"), null],
      [6, "public", "dyn", "s", "f", "plpgsql", def("dyn", "BEGIN EXECUTE 'SELECT ' || 1; RETURN 0; END"), null],
      [7, "public", "garbled", "s", "f", "plpgsql", "not a definition", null],
      [8, "public", "c_thing", "s", "f", "c", null, null],
      [9, "public", "step", "i", "f", "sql", def("step", "SELECT wrap()", "sql", "IMMUTABLE"), null],
      [10, "public", "agg", "i", "a", "internal", null, [9]],
      [11, "public", "clean_step", "i", "f", "sql", def("clean_step", "SELECT 1", "sql", "IMMUTABLE"), null],
      [12, "public", "clean_agg", "i", "a", "internal", null, [11]],
      [13, "public", "opfn", "s", "f", "sql", def("opfn", "SELECT wrap_wrap()", "sql"), null],
      [14, "public", "uses_op", "s", "f", "sql", def("uses_op", "SELECT (1 ### 2)::int", "sql"), null],
      [15, "public", "reads_view", "s", "f", "sql", def("reads_view", "SELECT count(*)::int FROM v_purge", "sql"), null],
    ],
    operators: [["public", "###", 13]],
    views: [
      ["public", "v_purge", "SELECT wrap() AS w"],
      ["public", "v_on_v", "SELECT w FROM v_purge"],
      ["public", "v_seq", "SELECT nextval('s'::regclass) AS n"],
      ["public", "v_clean", "SELECT honest() AS h"],
    ],
    policies: [["public", "guarded", "(agg(1) > 0)"], ["public", "fine", "(id > 0)"]],
  };
  const f = await functionFactsFrom(doc, (sql) => classifySql(sql));
  const writes = (n: string) => f.user.get(n);
  for (const n of ["purge", "wrap", "wrap_wrap", "counter", "dyn", "garbled", "step", "agg", "opfn", "uses_op", "reads_view"]) assert.equal(writes(n), true, n);
  for (const n of ["honest", "c_thing", "clean_step", "clean_agg"]) assert.equal(writes(n), false, n);
  assert.ok(f.volatileOperators.has("###"));
  for (const r of ["v_purge", "public.v_on_v", "v_seq", "guarded"]) assert.ok(f.volatileReads.has(r), r);
  for (const r of ["v_clean", "fine"]) assert.ok(!f.volatileReads.has(r), r);
});

test("functionFactsFrom: types whose coercion may write — a domain's CHECK, a domain over one, an input function, a cast's function; functions taking or returning them; tables a writing implicit cast reaches", async () => {
  const def = (name: string, body: string) => `CREATE OR REPLACE FUNCTION public.${name}() RETURNS integer LANGUAGE plpgsql STABLE AS $function$${body}$function$`;
  const doc: FunctionFactsDoc = {
    builtins: ["length", "textin"],
    functions: [
      [1, "public", "purge", "v", "f", "plpgsql", null, null, [25, 16]],
      [2, "public", "honest_in", "i", "f", "c", null, null, [2275, 900]],
      [3, "public", "sloppy_in", "v", "f", "c", null, null, [2275, 901]],
      [4, "public", "takes_checked", "s", "f", "sql", "CREATE FUNCTION public.takes_checked(x checked) RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$", null, [800, 23]],
      [5, "public", "assigning", "s", "f", "plpgsql", def("assigning", "DECLARE v Checked; BEGIN v := 'x'; RETURN 1; END"), null, [23]],
      [6, "public", "mentions_other", "s", "f", "plpgsql", def("mentions_other", "DECLARE v checked_not; BEGIN RETURN 1; END"), null, [23]],
      [7, "public", "to_pair", "v", "f", "plpgsql", null, null, [23, 902]],
      [8, "public", "honest_cast", "i", "f", "sql", "CREATE FUNCTION public.honest_cast(x int) RETURNS mild LANGUAGE sql IMMUTABLE AS $$ SELECT NULL::mild $$", null, [23, 903]],
    ],
    operators: [],
    views: [["public", "v_casting", " SELECT 'x'::checked AS v;"], ["public", "v_naming", " SELECT checked FROM t;"]],
    policies: [["public", "p_casting", "((name)::checked IS NOT NULL)"]],
    types: [
      [800, "public", "checked", "d", 25, 0, 0, ["purge(VALUE)"]],
      [804, "public", "via_cast", "d", 25, 0, 0, ["((VALUE)::checked IS NOT NULL)"]],
      [801, "public", "checked_too", "d", 800, 0, 0, null],
      [802, "public", "honest", "d", 25, 0, 0, ["(length(VALUE) < 100)"]],
      [900, "public", "fine_base", "b", 0, 2, 0, null],
      [901, "public", "sloppy_base", "b", 0, 3, 0, null],
      [902, "public", "pair", "c", 0, 0, 0, null],
      [903, "public", "mild", "c", 0, 0, 0, null],
    ],
    casts: [[23, 902, 7, "i"], [23, 903, 8, "e"]],
    typedColumns: [["public", "pairs", 902], ["public", "milds", 903]],
  };
  const f = await functionFactsFrom(doc, (sql) => classifySql(sql));
  for (const t of ["checked", "public.checked", "checked_too", "via_cast", "sloppy_base", "pair"]) assert.ok(f.volatileTypes?.has(t), t);
  assert.ok(f.volatileReads.has("v_casting"), "a view whose query casts to the domain");
  assert.ok(f.volatileReads.has("p_casting"), "a policy whose expression does");
  assert.ok(!f.volatileReads.has("v_naming"), "a column of the type's name is not a cast");
  for (const t of ["honest", "fine_base", "mild"]) assert.ok(!f.volatileTypes?.has(t), t);
  assert.equal(f.user.get("takes_checked"), true, "its call coerces its argument to the domain");
  assert.equal(f.user.get("assigning"), true, "its body names the type (a variable of it is assigned)");
  assert.equal(f.user.get("mentions_other"), false, "a name that merely begins the same is another");
  assert.equal(f.user.get("honest_cast"), false);
  assert.ok(f.volatileReads.has("pairs"), "a writing implicit cast targets a column's type");
  assert.ok(!f.volatileReads.has("milds"));
  assert.deepEqual(volatileUses(f, info({}), ["checked", "honest"]).map((u) => `${u.name}:${u.why}`), ["checked:type"]);
  assert.match(describeUses([{ name: "pair", why: "type" }]), /names the type pair/);
});

test("mentionsAny: whole words only, any case, qualified or not", () => {
  const names = new Set(["checked", "public.checked"]);
  assert.equal(mentionsAny("DECLARE v CHECKED;", names), true);
  assert.equal(mentionsAny("v public.checked := 'x'", names), true);
  assert.equal(mentionsAny("v checked_not; unchecked; checked2", names), false);
  assert.equal(mentionsAny("", names), false);
});
