import { test } from "node:test";
import assert from "node:assert/strict";
import { filterStartupParams, PARAMETER_STATUS_WATCH, startupRefusalMessage } from "./startup-params.js";

const PINNED = { client_encoding: "UTF8", standard_conforming_strings: "on", backslash_quote: "safe_encoding", escape_string_warning: "on" };

test("safe settings pass, unknown ones are dropped, identity switches are refused", () => {
  const r = filterStartupParams({ user: "ci", database: "app", application_name: "job", client_encoding: "UTF8", search_path: "app", jit: "off" });
  assert.deepEqual(r, { ok: true, forward: { application_name: "job", search_path: "app", ...PINNED }, dropped: ["jit"] });
  assert.deepEqual(filterStartupParams({ user: "ci", role: "admin" }), { ok: false, setting: "role", refusal: "identity", value: undefined });
  assert.deepEqual(filterStartupParams({ user: "ci", options: "-c statement_timeout=5s --session-authorization=postgres" }), {
    ok: false,
    setting: "session_authorization",
    refusal: "identity",
    value: undefined,
  });
  assert.deepEqual(filterStartupParams({ user: "ci", options: "-crole=admin" }), { ok: false, setting: "role", refusal: "identity", value: undefined });
  const o = filterStartupParams({ user: "ci", options: "-c search_path=a\\ b -c work_mem=64MB -c shared_preload_libraries=x -x" });
  assert.deepEqual(o, { ok: true, forward: { options: "-c search_path=a\\ b -c work_mem=64MB", ...PINNED }, dropped: ["options:shared_preload_libraries", "options:-x"] });
});

test("every upstream session starts with the pinned reading, whatever the client left out", () => {
  const r = filterStartupParams({ user: "ci", database: "app" });
  assert.deepEqual(r, { ok: true, forward: PINNED, dropped: [] });
  // a client asking for the pinned values (in any spelling), or for SQL_ASCII, gets them
  const asked: Array<Record<string, string>> = [{ client_encoding: "utf-8" }, { client_encoding: "SQL_ASCII" }, { standard_conforming_strings: "true" }, { options: "-c client_encoding=UNICODE" }];
  for (const params of asked) {
    const x = filterStartupParams({ user: "ci", ...params });
    assert.ok(x.ok, JSON.stringify(params));
    assert.deepEqual(x.ok && x.forward, PINNED);
  }
  for (const [k, v] of PARAMETER_STATUS_WATCH) assert.equal(PINNED[k as keyof typeof PINNED], v);
});

test("another reading of SQL is refused at connect: a top-level parameter, options -c / --name, PGOPTIONS", () => {
  const cases: Array<[Record<string, string>, string, string]> = [
    [{ client_encoding: "SJIS" }, "client_encoding", "SJIS"],
    [{ client_encoding: "BIG5" }, "client_encoding", "BIG5"],
    [{ client_encoding: "GBK" }, "client_encoding", "GBK"],
    [{ client_encoding: "GB18030" }, "client_encoding", "GB18030"],
    [{ client_encoding: "UHC" }, "client_encoding", "UHC"],
    [{ client_encoding: "LATIN1" }, "client_encoding", "LATIN1"],
    [{ standard_conforming_strings: "off" }, "standard_conforming_strings", "off"],
    [{ Standard_Conforming_Strings: "0" }, "standard_conforming_strings", "0"],
    [{ backslash_quote: "on" }, "backslash_quote", "on"],
    [{ escape_string_warning: "off" }, "escape_string_warning", "off"],
    // what PGOPTIONS="-c standard_conforming_strings=off" makes libpq send
    [{ options: "-c standard_conforming_strings=off" }, "standard_conforming_strings", "off"],
    [{ options: "-cclient_encoding=SJIS" }, "client_encoding", "SJIS"],
    [{ options: "--client-encoding=BIG5" }, "client_encoding", "BIG5"],
    [{ options: "-c work_mem=1MB -c backslash_quote=on" }, "backslash_quote", "on"],
  ];
  for (const [params, setting, value] of cases) {
    const r = filterStartupParams({ user: "ci", ...params });
    assert.deepEqual(r, { ok: false, setting, refusal: "parser-setting", value }, JSON.stringify(params));
    assert.match(startupRefusalMessage(r as Extract<typeof r, { ok: false }>), /reads SQL as the server does only with client_encoding=UTF8, standard_conforming_strings=on/);
  }
});

test("a startup search_path is refused where table patterns apply, forwarded elsewhere", () => {
  assert.deepEqual(filterStartupParams({ user: "ci", search_path: "vault" }, { restrictsTables: true }), { ok: false, setting: "search_path", refusal: "search-path", value: undefined });
  assert.equal(filterStartupParams({ user: "ci", options: "-c search_path=vault" }, { restrictsTables: true }).ok, false);
  const r = filterStartupParams({ user: "ci", search_path: "vault" }, { restrictsTables: false });
  assert.ok(r.ok && r.forward.search_path === "vault");
});
