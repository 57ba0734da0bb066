import { test } from "node:test";
import assert from "node:assert/strict";
import { loadSqlParser } from "@sluice/shared/sql";
import { ReservedNames } from "./reserved-names.js";

const names = new ReservedNames("_0123456789ab_");
const rule = (sql: string) => names.check(sql)?.rule;

test("the proxy's names in any spelling are reserved; the same characters inside a literal or comment are not escapes", async () => {
  await loadSqlParser();
  assert.equal(rule("EXECUTE _0123456789ab_s1"), "reserved-name");
  assert.equal(rule('FETCH ALL FROM "_0123456789AB_P2"'), "reserved-name", "in any case");
  assert.equal(rule("SELECT '_0123456789ab_s1'"), "reserved-name", "even in a literal: no client needs to write it");
  // U&"\005f…" spells an underscore without writing one
  assert.equal(rule('EXECUTE U&"\\005f0123456789ab\\005fs1"'), "unicode-escaped-identifier");
  assert.equal(rule('select u&"!005fx" uescape \'!\''), "unicode-escaped-identifier");
  for (const harmless of ["SELECT $$U&\"$$", "SELECT 'u&\"x'", "SELECT 1 -- U&\"x\"", "SELECT 1 /* u&\"x\" */", 'SELECT "u&""x"', "SELECT U&'\\0061'", "SELECT 1"]) {
    assert.equal(rule(harmless), undefined, harmless);
  }
});
