import { before, test } from "node:test";
import assert from "node:assert/strict";
import { loadSqlParser } from "@sluice/shared/sql";
import { volatileTypeNames } from "./type-names.js";

before(loadSqlParser);

const types = new Set(["checked", "public.checked", "pair", "public.pair"]);

test("the volatile types a statement names: casts, CAST, typed literals, arrays, qualified names; not a string that spells one", () => {
  assert.deepEqual(volatileTypeNames("SELECT 'x'::checked", types), ["checked"]);
  assert.deepEqual(volatileTypeNames("SELECT CAST(1 AS pair), checked 'y'", types), ["pair", "checked"]);
  assert.deepEqual(volatileTypeNames("SELECT ARRAY['x']::Checked[]", types), ["checked"]);
  assert.deepEqual(volatileTypeNames("SELECT 'x'::public.checked", types), ["public.checked"]);
  assert.deepEqual(volatileTypeNames("SELECT 'x'::other.checked", types), [], "another schema's type of that name");
  assert.deepEqual(volatileTypeNames("SELECT 'checked', 1::int, 'x'::text FROM checked", types), []);
  assert.deepEqual(volatileTypeNames("PREPARE q AS SELECT $1::pair", types), ["pair"]);
});

test("a DO block: any mention of the name in its body; text that does not parse: undefined (the caller fails closed)", () => {
  assert.deepEqual(volatileTypeNames("DO $$ DECLARE v checked; BEGIN v := 'x'; END $$", types), ["checked"]);
  assert.deepEqual(volatileTypeNames("DO $$ BEGIN PERFORM 1; END $$", types), []);
  assert.equal(volatileTypeNames("SELEC 1", types), undefined);
});
