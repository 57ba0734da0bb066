import { test } from "node:test";
import assert from "node:assert/strict";
import { DecisionCache } from "./decision-cache.js";
import type { Decision } from "./decision.js";

const d = (rule: string): Decision => ({
  action: "allow",
  rule,
  reason: rule,
  statementClass: "read",
  statementIndex: 0,
  statements: [],
});

test("keys on revision, resource, groups (order-insensitive) and text", () => {
  const c = new DecisionCache(10);
  c.set(1, { resource: "orders", groups: ["b", "a"] }, "select 1", d("x"));
  assert.equal(c.get(1, { resource: "orders", groups: ["a", "b"] }, "select 1")?.rule, "x");
  assert.equal(c.get(1, { resource: "orders", groups: ["a"] }, "select 1"), undefined);
  assert.equal(c.get(1, { resource: "billing", groups: ["a", "b"] }, "select 1"), undefined);
  assert.equal(c.get(1, { resource: "orders", groups: ["a", "b"] }, "select 2"), undefined);
  assert.equal(c.hits, 1);
  assert.equal(c.misses, 3);
});

test("keeps issuers apart: the same groups from another issuer (or none) are another identity", () => {
  const c = new DecisionCache(10);
  c.set(1, { resource: "orders", groups: ["deployers"], issuer: "github" }, "drop table t", d("github"));
  assert.equal(c.get(1, { resource: "orders", groups: ["deployers"], issuer: "github" }, "drop table t")?.rule, "github");
  assert.equal(c.get(1, { resource: "orders", groups: ["deployers"], issuer: "dev" }, "drop table t"), undefined);
  assert.equal(c.get(1, { resource: "orders", groups: ["deployers"] }, "drop table t"), undefined);
  const keys = new Set([
    DecisionCache.contextKey("orders", ["deployers"], "github"),
    DecisionCache.contextKey("orders", ["deployers"], "dev"),
    DecisionCache.contextKey("orders", ["deployers"], undefined),
    // a name must not be able to smuggle itself across the separators
    DecisionCache.contextKey("orders", ["github", "deployers"], undefined),
    DecisionCache.contextKey("orders\u0000github", ["deployers"], undefined),
  ]);
  assert.equal(keys.size, 5);
});

test("a new snapshot revision invalidates everything; an older one neither reads nor writes", () => {
  const c = new DecisionCache(10);
  const who = { resource: "r", groups: ["g"] };
  c.set(3, who, "q", d("old"));
  assert.equal(c.get(4, who, "q"), undefined);
  assert.equal(c.size, 0);
  assert.equal(c.revision, 4);
  c.set(3, who, "q", d("stale"));
  assert.equal(c.size, 0);
  assert.equal(c.get(3, who, "q"), undefined);
});

test("bounded: an entry unused for a generation goes first, a used one survives", () => {
  const c = new DecisionCache(2);
  const k = DecisionCache.contextKey("r", ["g"], undefined);
  c.setByKey(1, k, "a", d("a"));
  c.setByKey(1, k, "b", d("b"));
  assert.ok(c.getByKey(1, k, "a")); // a is now the most recent
  c.setByKey(1, k, "c", d("c"));
  assert.equal(c.size, 2);
  assert.equal(c.getByKey(1, k, "b"), undefined);
  assert.equal(c.getByKey(1, k, "a")?.rule, "a");
  assert.equal(c.getByKey(1, k, "c")?.rule, "c");
});

test("never holds more than maxEntries decisions; the most recent ones are kept", () => {
  const c = new DecisionCache(100);
  const k = DecisionCache.contextKey("r", ["g"], undefined);
  for (let i = 0; i < 1000; i++) c.setByKey(1, k, `select ${i}`, d(String(i)));
  assert.ok(c.size <= 100, `size ${c.size}`);
  for (let i = 950; i < 1000; i++) assert.equal(c.getByKey(1, k, `select ${i}`)?.rule, String(i));
  assert.equal(c.getByKey(1, k, "select 0"), undefined);
});
