import { test } from "node:test";
import assert from "node:assert/strict";
import type { StatementInfo } from "@sluice/shared/sql";
import { asWrite, describeUses, functionFactsFrom, needsFunctionFacts, volatileUses } from "./volatile-calls.js";

const facts = functionFactsFrom({
  builtins: ["count", "lower", "now", "nextval"],
  user: [
    ["public", "purge", true],
    ["public", "item_count", false],
    ["app", "lower", true], // a user function shadowing a built-in's name
    ["app", "report", false],
    ["public", "report", true], // overloads in two schemas: unqualified, one of them is volatile
  ],
  operators: [JSON.stringify(["public", "==="])],
  relations: [["public", "purging"]],
});

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
