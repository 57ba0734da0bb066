import { test } from "node:test";
import assert from "node:assert/strict";
import { PINNED_SETTINGS, pinnedSettingViolation } from "./pinned-settings.js";

test("the pinned values pass, any other value of a pinned setting is a violation, other settings are free", () => {
  for (const [name, values] of Object.entries(PINNED_SETTINGS)) for (const v of values) assert.equal(pinnedSettingViolation(name, v), undefined, name);
  assert.equal(pinnedSettingViolation("client_encoding", "utf8"), undefined, "names and values compare without case");
  assert.match(pinnedSettingViolation("standard_conforming_strings", "off")!, /standard_conforming_strings = "off".*= on/);
  assert.match(pinnedSettingViolation("client_encoding", "SJIS")!, /SJIS/);
  assert.match(pinnedSettingViolation("backslash_quote", "on")!, /backslash_quote/);
  assert.equal(pinnedSettingViolation("TimeZone", "UTC"), undefined);
  assert.equal(pinnedSettingViolation("application_name", "anything"), undefined);
});
