import { test } from "node:test";
import assert from "node:assert/strict";
import { filterStartupParams } from "./startup-params.js";

test("safe settings pass, unknown ones are dropped, identity switches are refused", () => {
  const r = filterStartupParams({ user: "ci", database: "app", application_name: "job", client_encoding: "UTF8", search_path: "app", jit: "off" });
  assert.deepEqual(r, { ok: true, forward: { application_name: "job", client_encoding: "UTF8", search_path: "app" }, dropped: ["jit"] });
  assert.deepEqual(filterStartupParams({ user: "ci", role: "admin" }), { ok: false, setting: "role" });
  assert.deepEqual(filterStartupParams({ user: "ci", options: "-c statement_timeout=5s --session-authorization=postgres" }), { ok: false, setting: "session_authorization" });
  assert.deepEqual(filterStartupParams({ user: "ci", options: "-crole=admin" }), { ok: false, setting: "role" });
  const o = filterStartupParams({ user: "ci", options: "-c search_path=a\\ b -c work_mem=64MB -c shared_preload_libraries=x -x" });
  assert.deepEqual(o, { ok: true, forward: { options: "-c search_path=a\\ b -c work_mem=64MB" }, dropped: ["options:shared_preload_libraries", "options:-x"] });
});
