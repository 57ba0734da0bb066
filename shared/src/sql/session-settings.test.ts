import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { keepsPinnedReading, PARAMETER_STATUS_WATCH, PINNED_SETTINGS } from "./session-settings.js";

before(loadSqlParser);

function risks(sql: string): string[] {
  const c = classifySql(sql);
  assert.ok(c.ok, `${sql}: ${!c.ok ? c.error : ""}`);
  return c.statements.flatMap((s) => s.risks);
}

test("the values the classifier assumes are the only ones a pinned setting may be set to", () => {
  for (const v of ["UTF8", "utf8", "UTF-8", "utf_8", "Unicode"]) assert.ok(keepsPinnedReading("client_encoding", v), v);
  for (const v of ["SJIS", "BIG5", "GBK", "GB18030", "UHC", "JOHAB", "SHIFT_JIS_2004", "LATIN1", "SQL_ASCII", "EUC_JP", "WIN1252", ""]) {
    assert.ok(!keepsPinnedReading("client_encoding", v), v);
  }
  for (const v of ["on", "true", "yes", "1", "t", "ON"]) assert.ok(keepsPinnedReading("standard_conforming_strings", v), v);
  for (const v of ["off", "false", "no", "0", "of", "o", "maybe"]) assert.ok(!keepsPinnedReading("standard_conforming_strings", v), v);
  assert.ok(keepsPinnedReading("backslash_quote", "safe_encoding"));
  assert.ok(!keepsPinnedReading("backslash_quote", "on") && !keepsPinnedReading("backslash_quote", "off"));
  assert.ok(!keepsPinnedReading("escape_string_warning", "off"));
  assert.ok(!keepsPinnedReading("standard_conforming_strings", undefined), "a value computed at run time is never safe");
  assert.ok(keepsPinnedReading("work_mem", "64MB"), "other settings are not pinned");
  // the watch list names only settings the server reports, with their pinned values
  for (const [k, v] of PARAMETER_STATUS_WATCH) assert.equal(PINNED_SETTINGS[k], v);
});

test("every statement form that would change a pinned setting carries parser-setting", () => {
  for (const sql of [
    "SET client_encoding = 'SJIS'",
    "SET client_encoding TO 'BIG5'",
    "SET NAMES 'GBK'",
    "set session client_encoding = 'GB18030'",
    "SET LOCAL client_encoding = 'UHC'",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings TO false",
    "set local standard_conforming_strings = 0",
    "SET backslash_quote = on",
    "SET escape_string_warning = off",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT set_config('client_encoding', 'SJIS', true)",
    "SELECT set_config('client_encoding', lower('GBK'), false)",
    "SELECT set_config(lower('STANDARD_CONFORMING_STRINGS'), 'off', false)",
    "SELECT set_config(current_setting('x.y'), 'off', false)",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "update pg_catalog.pg_settings set setting = 'SJIS' where name = 'client_encoding'",
    "ALTER ROLE ci SET standard_conforming_strings = off",
    "ALTER ROLE ALL IN DATABASE app SET client_encoding = 'SJIS'",
    "ALTER DATABASE app SET client_encoding = 'BIG5'",
    "ALTER SYSTEM SET standard_conforming_strings = off",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'select 1'",
    "CREATE PROCEDURE p() LANGUAGE plpgsql SET client_encoding = 'SJIS' AS $$ BEGIN END $$",
    "ALTER FUNCTION f() SET standard_conforming_strings = off",
    "ALTER PROCEDURE p() SET backslash_quote = on",
    "DO $$ BEGIN SET standard_conforming_strings = off; END $$",
    "DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END $$",
    "DO $$ BEGIN EXECUTE 'SET client_encoding = ''SJIS'''; END $$",
    "PREPARE p AS SELECT set_config('standard_conforming_strings', 'off', false)",
    "select 1; set standard_conforming_strings = off",
  ]) {
    assert.ok(risks(sql).includes("parser-setting"), sql);
  }
});

test("keeping or restoring the pinned values, and other settings, carry no parser-setting", () => {
  for (const sql of [
    "SET client_encoding = 'UTF8'",
    "SET NAMES 'utf-8'",
    "SET standard_conforming_strings = on",
    "SET standard_conforming_strings TO DEFAULT",
    "RESET standard_conforming_strings",
    "RESET client_encoding",
    "RESET ALL",
    "DISCARD ALL",
    "SELECT set_config('client_encoding', 'UTF8', false)",
    "SELECT set_config('application_name', 'job', false)",
    "SET application_name = 'x'",
    "SHOW standard_conforming_strings",
    "SELECT current_setting('client_encoding')",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET work_mem = '1MB' AS 'select 1'",
  ]) {
    assert.ok(!risks(sql).includes("parser-setting"), sql);
  }
});
