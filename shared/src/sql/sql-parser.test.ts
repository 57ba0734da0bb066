import { test } from "node:test";
import assert from "node:assert/strict";
import { ParserFailure, ParserUnavailable, SqlSyntaxError, WasmParser } from "./sql-parser.js";

/** A left-deep chain of casts: the parse tree's output overflows the WASM stack (measured: ~7 000 levels). */
const OVERFLOW = "SELECT 1" + "::int".repeat(20_000);

test("a syntax error is reported as such and leaves the instance in use", async () => {
  const p = await WasmParser.create();
  assert.throws(() => p.parse("selec 1"), (e: unknown) => e instanceof SqlSyntaxError && /syntax error/.test(e.message) && e.cursorPosition === 0);
  assert.equal(p.failures, 0);
  assert.equal(p.parse("select 1").stmts.length, 1);
  assert.equal(p.fingerprint("select 1"), p.fingerprint("SELECT 2"));
  assert.deepEqual(p.scan("a := 1").map((t) => t.text), ["a", ":=", "1"]);
  assert.ok(p.parsePlpgsql("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$").plpgsql_funcs);
});

test("a client's unfinished literal, identifier, dollar quote or comment is a scan error, never a parser failure", async () => {
  // a client could otherwise retire an instance per message and leave every session without a parser
  const p = await WasmParser.create();
  for (const sql of ["SELECT 'abc", 'SELECT U&"x', "SELECT $$abc", "SELECT /* x", "SELECT E'\\", 'SELECT "x']) {
    assert.throws(() => p.scan(sql), SqlSyntaxError, sql);
  }
  assert.equal(p.failures, 0);
  assert.deepEqual(p.scan("SELECT 1").map((t) => t.text), ["SELECT", "1"]);
});

test("the shared-instance failure: dozens of stack overflows used to break every later parse; here each retires one instance", async () => {
  const p = await WasmParser.create();
  for (let i = 0; i < 60; i++) {
    assert.throws(() => p.parse(OVERFLOW), ParserFailure);
    // another session's statement right after, once the spare is in place (a few ms, off the hot path)
    await p.ensureSpare();
    assert.equal(p.parse("SELECT a FROM t WHERE b = 1").stmts.length, 1, `after overflow ${i + 1}`);
  }
  assert.equal(p.failures, 60);
});

test("two failures before a spare is ready: the parser says it is unavailable (a deny), then recovers", async () => {
  const p = await WasmParser.create();
  assert.throws(() => p.parse(OVERFLOW), ParserFailure);
  assert.throws(() => p.parse(OVERFLOW), ParserFailure);
  assert.throws(() => p.parse("select 1"), ParserUnavailable);
  await p.ensureSpare();
  assert.equal(p.parse("select 1").stmts.length, 1);
});
