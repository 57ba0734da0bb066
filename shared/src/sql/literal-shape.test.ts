import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { decideSql } from "./decide-sql.js";
import { decidedByShape, decisionForText, literalShape, SHAPE_MAX_BYTES } from "./literal-shape.js";
import { BODY_INLINE_MAX_BYTES, INLINE_MAX_BYTES } from "./classifier-pool.js";
import { loadedParser } from "./sql-parser.js";
import { SqlPrepared } from "./sql-prepared.js";
import { evaluate } from "../policy/evaluate.js";
import { DecisionCache } from "../policy/decision-cache.js";
import type { Decision } from "../policy/decision.js";
import { loadCorpus, loadCorpusPolicy, corpusResource } from "../../../test/fixtures/corpus/load-corpus.js";

before(loadSqlParser);

/** Everything a decision says, texts included (what a session, the recorder and masking read). */
function said(d: Decision): string {
  const { decidedAs: _shared, ...rest } = d;
  return JSON.stringify(rest);
}

const fresh = (sql: string, groups: string[]) =>
  evaluate(loadCorpusPolicy(), { resource: corpusResource, groups }, classifySql(sql), new SqlPrepared());

/** Decides through one shared cache, as a data-plane node does for all its sessions. */
function cachedDecider() {
  const bundle = loadCorpusPolicy();
  const cache = new DecisionCache();
  return {
    cache,
    decide: (sql: string, groups: string[]) =>
      decideSql(cache, 1, bundle, { resource: corpusResource, groups }, DecisionCache.contextKey(corpusResource, groups, undefined), sql, new SqlPrepared()),
  };
}

// the scanner's token types (libpg-query ScanToken.tokenType) of the constants whose values are replaced below
const FCONST = 260, SCONST = 261, USCONST = 262, BCONST = 263, XCONST = 264, ICONST = 266;

/**
 * `sql` with every constant's value changed and its kind kept, found by the PostgreSQL scanner (the
 * tokens' byte offsets): integers and floats get other numbers, strings another plain string, bit
 * and hex strings other bits. `n` varies the values.
 */
function withOtherLiterals(sql: string, n: number): string {
  const bytes = Buffer.from(sql, "utf8");
  let out = "";
  let at = 0;
  let tokens: Array<{ start: number; end: number; tokenType?: number }>;
  try {
    // only statements that parse: the scanner takes a text it cannot read for a failure of its own
    loadedParser()!.parse(sql);
    tokens = loadedParser()!.scan(sql);
  } catch {
    return sql;
  }
  for (const t of tokens) {
    let v: string | undefined;
    if (t.tokenType === ICONST) v = String(7 + n);
    else if (t.tokenType === FCONST) v = `${n}.25`;
    else if (t.tokenType === SCONST || t.tokenType === USCONST) v = `'v${n}'`;
    else if (t.tokenType === BCONST) v = n % 2 ? "B'1'" : "B'10'";
    else if (t.tokenType === XCONST) v = "X'0f'";
    if (v === undefined) continue;
    out += bytes.subarray(at, t.start).toString("utf8") + v;
    at = t.end;
  }
  return out + bytes.subarray(at).toString("utf8");
}

test("the shape is the text with its constants replaced, read by PostgreSQL's parser and scanner", () => {
  assert.equal(literalShape("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"), "SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
  assert.equal(literalShape("SELECT abalance FROM pgbench_accounts WHERE aid = 678;"), "SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
  // where a literal ends is the scanner's business: E'' escapes, dollar quotes, continued strings
  assert.equal(literalShape("SELECT E'x\\' FROM secrets --' AS a FROM orders"), "SELECT $1 AS a FROM orders");
  assert.equal(literalShape("SELECT 'x\\' FROM secrets --' AS a FROM orders"), "SELECT $1 FROM secrets --' AS a FROM orders");
  assert.equal(literalShape("SELECT $q$ ' $q$ AS a FROM orders"), "SELECT $1 AS a FROM orders");
  assert.equal(literalShape("select 'a'\n'b' from orders"), "select $1 from orders");
  // comments and the UESCAPE of an identifier stay as they are
  assert.equal(literalShape("SELECT 1 /* ' */ FROM orders -- 'x'"), "SELECT $1 /* ' */ FROM orders -- 'x'");
  assert.equal(literalShape(`select 1 from U&"sec!0072ets" UESCAPE '!'`), `select $1 from U&"sec!0072ets" UESCAPE '!'`);
});

test("no shape: no constants, a parameter-like $, unparseable, too long, too deep, too many or unreadable placeholders", () => {
  for (const sql of [
    "select * from orders", // the text is its own shape
    "select * from orders where id = $1 and total = 5", // a parameter: could be taken for a placeholder
    "select a$1 from orders where id = 5", // an identifier with $ and a digit, likewise
    "select int4 5", // does not parse
    "select E'\\\\'' from orders", // unterminated: normalize answers with an error message
    "select -(1) from orders", // normalize keeps the digits after its placeholder: `$11)`
    "select 1,2,3,4,5,6,7,8,9,10 from orders",
    `select ${"(".repeat(1200)}1${")".repeat(1200)}`,
    `select '${"x".repeat(SHAPE_MAX_BYTES)}' from orders`,
    `select '${"é".repeat(SHAPE_MAX_BYTES / 2)}' from orders`,
  ]) {
    assert.equal(literalShape(sql), undefined, sql);
  }
  // no more is normalized on the relay's thread than the classifier pool parses there for statements that recurse deeply
  assert.equal(SHAPE_MAX_BYTES, BODY_INLINE_MAX_BYTES);
  assert.ok(SHAPE_MAX_BYTES <= INLINE_MAX_BYTES);
});

test("the classifier says when it read a constant; only plain DML with unread constants is decided by shape", () => {
  const flagged = (sql: string) => {
    const c = classifySql(sql);
    assert.ok(c.ok, sql);
    return c.statements.some((s) => s.readsConstants === true);
  };
  for (const sql of [
    "select nextval('orders_id_seq')",
    "select set_config('statement_timeout', '0', false)",
    "select * from orders where id = 1 and set_config('search_path', 'vault', false) is not null",
    "do $$ begin perform 1; end $$",
    "explain (analyze false) delete from orders where id = 1",
    "set standard_conforming_strings = 'on'",
    "create function f() returns int language sql as 'select 1'",
  ]) {
    assert.equal(flagged(sql), true, sql);
    assert.equal(decidedByShape(classifySql(sql)), false, sql);
  }
  for (const sql of ["select * from orders where id = 5", "update orders set total = 1 where id = 2", "insert into orders (id) values (3)", "select 'secrets'::regclass"]) {
    assert.equal(flagged(sql), false, sql);
    assert.equal(decidedByShape(classifySql(sql)), true, sql);
  }
  // the session uses these beyond their decision, or they are not one statement of plain DML
  for (const sql of ["set application_name = 'x'", "prepare p as select * from orders where id = 1", "select 1; select 2", "begin isolation level serializable", "copy (select 1) to stdout"]) {
    assert.equal(decidedByShape(classifySql(sql)), false, sql);
  }
});

test("a decision served by shape carries the statement's own text and points at the decision it shares", () => {
  const { cache, decide } = cachedDecider();
  const first = decide("select * from orders where id = 1", ["ci"]);
  const second = decide("select * from orders where id = 2", ["ci"]);
  assert.equal(cache.shapeHits, 1);
  assert.equal(second.statements[0]!.text, "select * from orders where id = 2");
  assert.equal(second.decidedAs, first);
  assert.equal(said(second), said(fresh("select * from orders where id = 2", ["ci"])));
  // its own text again: the decision as it was made
  assert.equal(decisionForText(first, "  select * from orders where id = 1 "), first);
});

test("no corpus statement, with its literals changed, gets another statement's decision", () => {
  const corpus = loadCorpus();
  const { cache, decide } = cachedDecider();
  const wrong: string[] = [];
  const check = (sql: string, groups: string[]) => {
    const got = said(decide(sql, groups));
    const want = said(fresh(sql, groups));
    if (got !== want) wrong.push(`${JSON.stringify(sql)} [${groups}]: cached ${got}\n  fresh ${want}`);
  };
  // every statement, then every statement with other literals (twice), then the originals again:
  // each decision through the shared cache must be the one the statement gets on its own
  for (const e of corpus) check(e.sql, e.groups);
  for (const n of [1, 2]) for (const e of corpus) check(withOtherLiterals(e.sql, n), e.groups);
  for (const e of corpus) check(e.sql, e.groups);
  assert.deepEqual(wrong, []);
  // the property is not vacuous: many variants were decided by shape
  assert.ok(cache.shapeHits >= 50, `only ${cache.shapeHits} decisions served by shape`);
});

test("attacker: literals that change what a statement means never share a decision wrongly", () => {
  // pairs [a, b]: `a` is decided first (it fills the cache), then `b` must get its own decision
  const pairs: Array<[string, string, string[]]> = [
    // a string that is a relation name to the server
    ["select nextval('orders_id_seq')", "select nextval('secrets_id_seq')", ["app"]],
    ["select 'orders'::regclass::oid from orders where id = 1", "select 'secrets'::regclass::oid from orders where id = 2", ["ci"]],
    ["select * from orders where id = 1 and set_config('statement_timeout', '0', false) is not null", "select * from orders where id = 1 and set_config('role', 'postgres', false) is not null", ["ci"]],
    // E'' escapes: in b the backslash is no escape, so `from secrets` is outside the literal
    ["select E'x\\' from secrets --' as a from orders", "select 'x\\' from secrets --' as a from orders", ["ci"]],
    ["select 'x\\' from secrets --' as a from orders", "select E'x\\' from secrets --' as a from orders", ["ci"]],
    // dollar quoting: what looks like code in b is inside the literal (b reads orders only)
    ["select 'a' as x from orders", "select $q$a' as x from secrets --$q$ as x from orders", ["ci"]],
    ["select $q$a' as x from secrets --$q$ as x from orders", "select 'a' as x from secrets --$q$ as x from orders", ["ci"]],
    // quotes in comments
    ["select 1 /* ' */ as x from orders -- '", "select 1 /* '*/ as x from secrets -- '", ["ci"]],
    ["select '/*' as x from orders where id = 1 -- */", "select '/*' as x from secrets where id = 1 -- */", ["ci"]],
    // UESCAPE changes the identifier: sec!0072ets is `secrets` with `!`, a table of that odd name with `#`
    [`select 1 from U&"sec!0072ets" UESCAPE '#'`, `select 2 from U&"sec!0072ets" UESCAPE '!'`, ["ci"]],
    // another kind of constant where only a string parses
    ["select int4 '5' from orders", "select int4 5 from orders", ["ci"]],
    // a semicolon inside a literal, then outside it
    ["select 'a;' from orders where id = 1", "select 'a'; delete from orders; select '' from orders where id = 1", ["app"]],
    // a negative constant the normalizer reads oddly
    ["select -(1) from orders", "select -(1) from secrets", ["ci"]],
    // EXPLAIN ANALYZE runs what it explains: its option is read
    ["explain (analyze false) delete from orders where id = 1", "explain (analyze true) delete from orders where id = 1", ["ci"]],
    // DO bodies and SET values are constants the classifier reads
    ["do $$ begin perform 1; end $$", "do $$ begin delete from audit_log; end $$", ["app"]],
    ["set statement_timeout = '5s'", "set role = 'postgres'", ["ci"]],
  ];
  const wrong: string[] = [];
  for (const [a, b, groups] of pairs) {
    const { decide } = cachedDecider();
    decide(a, groups);
    const got = decide(b, groups);
    const want = fresh(b, groups);
    if (said(got) !== said(want)) wrong.push(`${JSON.stringify(b)} after ${JSON.stringify(a)}: ${got.action} ${got.rule}, alone ${want.action} ${want.rule}`);
  }
  assert.deepEqual(wrong, []);
});
