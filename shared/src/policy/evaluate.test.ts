import { before, test } from "node:test";
import assert from "node:assert/strict";
import { classifySql, loadSqlParser } from "../sql/classify-sql.js";
import { SqlPrepared } from "../sql/sql-prepared.js";
import type { Bundle } from "./bundle.js";
import { canConnect, evaluate, tableMatches } from "./evaluate.js";

before(loadSqlParser);

const bundle: Bundle = {
  issuers: [],
  resources: [{ name: "orders", upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "svc" } }],
  masking: [],
  policies: [
    { name: "ci-read", groups: ["ci"], resources: ["orders"], allow: ["read"] },
    {
      name: "deployers",
      groups: ["deployers"],
      resources: ["orders"],
      allow: ["read", "write", "ddl"],
      requireApproval: ["ddl", "delete-without-where", "update-without-where", "truncate"],
      deny: ["drop-database", "copy-program", "superuser-functions"],
      tables: { deny: ["public.secrets"] },
      approval: { approvers: ["dba"], timeout: "10m" },
    },
    { name: "reporting", groups: ["reports"], resources: ["orders"], allow: ["read"], tables: { allow: ["public.orders", "reporting.*"] } },
  ],
};

const decide = (groups: string[], sql: string, prepared?: SqlPrepared) =>
  evaluate(bundle, { resource: "orders", groups }, classifySql(sql), prepared);

test("connect needs a policy for one of the identity's groups on the resource", () => {
  assert.equal(canConnect(bundle, { resource: "orders", groups: ["ci"] }), true);
  assert.equal(canConnect(bundle, { resource: "orders", groups: ["nobody"] }), false);
  assert.equal(canConnect(bundle, { resource: "billing", groups: ["ci"] }), false);
});

test("allow, default deny, parse error", () => {
  assert.deepEqual(pick(decide(["ci"], "select * from orders")), ["allow", "ci-read/allow:read"]);
  assert.deepEqual(pick(decide(["ci"], "delete from orders where id = 1")), ["deny", "default-deny"]);
  assert.deepEqual(pick(decide(["nobody"], "select 1")), ["deny", "default-deny"]);
  const bad = decide(["ci"], "selec 1");
  assert.deepEqual(pick(bad), ["deny", "parse-error"]);
  assert.equal(bad.statementClass, "unknown");
  assert.deepEqual(pick(decide(["ci"], "select pg_read_file('x')")), ["deny", "default-deny"]);
});

test("deny rules come first, then approval, then allow", () => {
  assert.deepEqual(pick(decide(["deployers"], "drop database orders")), ["deny", "deployers/deny:drop-database"]);
  assert.deepEqual(pick(decide(["deployers"], "vacuum orders")), ["deny", "default-deny"]); // admin is allowed by no policy
  assert.deepEqual(pick(decide(["deployers"], "select pg_ls_dir('.')")), ["deny", "deployers/deny:superuser-functions"]);
  assert.deepEqual(pick(decide(["deployers"], "copy orders to program 'x'")), ["deny", "deployers/deny:copy-program"]);
  assert.deepEqual(pick(decide(["deployers"], 'select * from "public"."secrets"')), ["deny", "deployers/tables.deny:public.secrets"]);
  assert.deepEqual(pick(decide(["deployers"], "select * from secrets")), ["deny", "deployers/tables.deny:public.secrets"]);
  const ap = decide(["deployers"], "delete from orders");
  assert.deepEqual(pick(ap), ["approve", "deployers/requireApproval:delete-without-where"]);
  assert.deepEqual(ap.approval, { approvers: ["dba"], timeoutMs: 600_000 });
  assert.deepEqual(pick(decide(["deployers"], "create index on orders(id)")), ["approve", "deployers/requireApproval:ddl"]);
  assert.deepEqual(pick(decide(["deployers"], "delete from orders where id = 1")), ["allow", "deployers/allow:write"]);
  // a deny in one applicable policy beats an allow in another
  assert.deepEqual(pick(decide(["ci", "deployers"], "select * from secrets")), ["deny", "deployers/tables.deny:public.secrets"]);
});

test("every statement of a message must be allowed; the first deny decides; approval is contagious", () => {
  const d = decide(["ci"], "select 1; select 2; drop table orders; delete from x");
  assert.deepEqual(pick(d), ["deny", "default-deny"]);
  assert.equal(d.statementIndex, 2);
  assert.equal(d.statementClass, "ddl");
  const a = decide(["deployers"], "select 1; truncate orders; select 2");
  assert.deepEqual(pick(a), ["approve", "deployers/requireApproval:truncate"]);
  assert.equal(a.statementIndex, 1);
});

test("table allow patterns: schema globs, bare names as public, search_path changes refused", () => {
  assert.deepEqual(pick(decide(["reports"], "select * from orders")), ["allow", "reporting/allow:read"]);
  assert.deepEqual(pick(decide(["reports"], "select * from reporting.daily")), ["allow", "reporting/allow:read"]);
  assert.deepEqual(pick(decide(["reports"], "select * from customers")), ["deny", "reporting/tables.allow:customers"]);
  assert.deepEqual(pick(decide(["reports"], "set search_path = reporting, public")), ["deny", "reporting/tables:search_path"]);
  assert.equal(tableMatches("secrets", "public.secrets", false), true);
  assert.equal(tableMatches("secrets", "other.secrets", false), false);
  assert.equal(tableMatches("private.secrets", "secrets", true), true); // deny: bare could resolve anywhere
  assert.equal(tableMatches("private.secrets", "secrets", false), false);
  assert.equal(tableMatches("vault.*", "keys", true), false); // a bare name reaches vault only through a search_path
  assert.equal(tableMatches("vault.*", "vault.keys", true), true);
  assert.equal(tableMatches("*", "x.y", false), true);
  assert.equal(tableMatches("public.*", "Public.Orders", false), true);
});

test("transaction control is allowed to anyone who can connect; the message's rule is the policy's", () => {
  // the built-in allowances are tested in sql/client-baseline.test.ts
  const d = decide(["ci"], "begin; select 1; commit");
  assert.deepEqual(pick(d), ["allow", "ci-read/allow:read"]);
  assert.deepEqual(d.statementRules, ["implicit:transaction-control", "ci-read/allow:read", "implicit:transaction-control"]);
  assert.deepEqual(pick(decide(["ci"], "begin; commit")), ["allow", "implicit:transaction-control"]);
});

test("SQL-level EXECUTE is judged as what it runs; unknown names deny", () => {
  const prepared = new SqlPrepared();
  assert.deepEqual(pick(decide(["ci"], "execute nope")), ["deny", "unknown-prepared-statement"]);
  const p = decide(["ci"], "prepare q as select * from orders");
  assert.equal(p.action, "allow");
  prepared.observe(p.statements);
  assert.deepEqual(pick(decide(["ci"], "execute q", prepared)), ["allow", "ci-read/allow:read"]);
  // a write prepared in the same message is seen by its EXECUTE
  assert.deepEqual(pick(decide(["ci"], "prepare w as delete from orders; execute w")), ["deny", "default-deny"]);
  prepared.observe(decide(["ci"], "deallocate q").statements);
  assert.deepEqual(pick(decide(["ci"], "execute q", prepared)), ["deny", "unknown-prepared-statement"]);
});

test("empty query is allowed for a connected identity", () => {
  assert.deepEqual(pick(decide(["ci"], "-- nothing")), ["allow", "empty-query"]);
});

function pick(d: { action: string; rule: string }): [string, string] {
  return [d.action, d.rule];
}

test("a policy scoped to issuers applies only to identities verified by one of them (fail closed without an issuer)", () => {
  // the dev issuer takes groups from a `groups` claim, so a dev token can carry `deployers` too
  const scoped: Bundle = {
    ...bundle,
    policies: [
      { name: "deployers", groups: ["deployers"], resources: ["orders"], issuers: ["github"], allow: ["read", "write", "ddl"] },
      { name: "anyone-read", groups: ["readers"], resources: ["orders"], allow: ["read"] },
      { name: "all-dev", groups: ["*"], resources: ["*"], issuers: ["dev"], allow: ["read"] },
    ],
  };
  const at = (issuer: string | undefined, groups: string[], sql: string) =>
    pick(evaluate(scoped, { resource: "orders", groups, issuer }, classifySql(sql)));

  assert.equal(canConnect(scoped, { resource: "orders", groups: ["deployers"], issuer: "github" }), true);
  assert.deepEqual(at("github", ["deployers"], "create table t (id int)"), ["allow", "deployers/allow:ddl"]);

  // a dev token claiming `deployers` gets only what dev-scoped or unscoped policies give it
  assert.deepEqual(at("dev", ["deployers"], "create table t (id int)"), ["deny", "default-deny"]);
  assert.deepEqual(at("dev", ["deployers"], "select 1"), ["allow", "all-dev/allow:read"]);
  // a third issuer with the same group: no policy at all, so it cannot even connect
  assert.equal(canConnect(scoped, { resource: "orders", groups: ["deployers"], issuer: "gitlab" }), false);
  assert.deepEqual(at("gitlab", ["deployers"], "select 1"), ["deny", "default-deny"]);
  // no issuer known: scoped policies do not apply, unscoped ones still do
  assert.equal(canConnect(scoped, { resource: "orders", groups: ["deployers"] }), false);
  assert.equal(canConnect(scoped, { resource: "orders", groups: ["readers"] }), true);
  assert.deepEqual(at(undefined, ["readers"], "select 1"), ["allow", "anyone-read/allow:read"]);
  // `groups: ["*"]` scoped to dev: every dev identity, and nobody else
  assert.equal(canConnect(scoped, { resource: "orders", groups: [], issuer: "dev" }), true);
  assert.equal(canConnect(scoped, { resource: "orders", groups: [], issuer: "github" }), false);
  // a bundle that skipped normalizeBundle may say `issuers: null`: not scoped
  const nul = { ...bundle, policies: [{ name: "p", groups: ["ci"], resources: ["orders"], issuers: null as unknown as string[], allow: ["read" as const] }] };
  assert.equal(canConnect(nul, { resource: "orders", groups: ["ci"] }), true);
});
