import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadParser } from "@sluice/shared/sql";
import type { MaskingSpec } from "@sluice/shared/policy";
import type { MessageContext, SessionInfo } from "../session/session-hooks.js";
import type { CatalogLookup } from "./catalog-lookup.js";
import type { ExposureFacts } from "./exposure.js";
import { createResultMasker } from "./result-masker.js";

before(async () => {
  await loadParser();
});

const FACTS: ExposureFacts = {
  relations: [
    { oid: 1, schema: "public", name: "customers", kind: "r", columns: [["id", "int4", ""], ["email", "text", ""]], readCode: false, writeCode: false, reads: [], writes: [] },
    { oid: 2, schema: "public", name: "plain", kind: "r", columns: [["v", "text", ""]], readCode: false, writeCode: false, reads: [], writes: [] },
  ],
  functions: new Map([["set_config", false], ["replace", false], ["leak", true]]),
  userOperators: new Set(),
  userCastTypes: new Set(),
  implicitUserCast: false,
};

/** the catalog of a small database (masked customers, clean plain); `slow`: every answer is a promise of the next turn */
function catalog(slow = false): CatalogLookup {
  return {
    resolveFields: async (_r, fields) => fields.map(() => ({ origins: [], unknown: false })),
    typeNames: async () => new Map(),
    expandSources: async (_r, uses) => ({ uses: [...uses], unknown: false }),
    tableColumns: async () => null,
    exposureFacts: async () => (slow ? new Promise((r) => setImmediate(() => r(FACTS))) : FACTS),
    invalidate: () => {},
  };
}

const SPECS: MaskingSpec[] = [{ name: "pii", resources: ["app"], columns: ["customers.email"], classifiers: ["email"], strategy: "hash" }];
const masker = (specs: MaskingSpec[] = SPECS) => createResultMasker({ masking: () => ({ revision: 1, specs }), catalog: catalog(), hashKey: Buffer.from("k") });
const session = { sessionId: "s", resource: "app" } as SessionInfo;
const statementOf = (sql: string): MessageContext => {
  const r = classifySql(sql);
  assert.ok(r.ok);
  return { session, source: "statement", statements: r.statements };
};
const SETS_FROM_MASKED = "SELECT set_config('application_name', replace(email, '@', '#'), false) FROM customers";

test("a reported setting changed by a statement that read masked columns is withheld (an empty value)", async () => {
  const m = masker();
  assert.equal(await m.screenParameter("application_name", "zq#example.com", statementOf(SETS_FROM_MASKED)), "");
  assert.equal(await m.screenParameter("TimeZone", "UTC", statementOf("SELECT leak()")), "", "user code may have set it");
  // a message that cannot be tied to a statement (a Sync past the bound, a Bind) is withheld too
  assert.equal(await m.screenParameter("application_name", "x", { session, source: "unattributed" }), "");
});

test("a reported setting of a clean statement passes, scanned by the classifiers; enumerated settings always pass", async () => {
  const m = masker();
  assert.equal(await m.screenParameter("application_name", "orders-abc", statementOf("SELECT set_config('application_name', 'orders-' || v, false) FROM plain")), null);
  assert.match((await m.screenParameter("application_name", "ci carol@example.org", statementOf("SET application_name = 'ci carol@example.org'")))!, /^ci h:[A-Za-z0-9_-]{16}$/);
  for (const [name, value] of [["DateStyle", "ISO, DMY"], ["client_encoding", "UTF8"], ["IntervalStyle", "postgres"], ["is_superuser", "off"]])
    assert.equal(m.screenParameter(name, value, statementOf(SETS_FROM_MASKED)), null, `${name} takes its value from a fixed set`);
});

test("a resource without masking rules: every reported setting passes untouched", () => {
  const m = masker([{ name: "pii", resources: ["other"], columns: ["customers.email"], strategy: "hash" }]);
  assert.equal(m.screenParameter("application_name", "zq@example.com", statementOf(SETS_FROM_MASKED)), null);
});

test("the exposure is judged once the catalog answers: a promise, then the same verdict", async () => {
  const m = createResultMasker({ masking: () => ({ revision: 1, specs: SPECS }), catalog: catalog(true), hashKey: Buffer.from("k") });
  const r = m.screenParameter("application_name", "zq#example.com", statementOf(SETS_FROM_MASKED));
  assert.ok(r instanceof Promise);
  assert.equal(await r, "");
  assert.equal(m.screenParameter("application_name", "zq#example.com", statementOf(SETS_FROM_MASKED)), "", "cached: at once");
});
