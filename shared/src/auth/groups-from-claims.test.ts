import { test } from "node:test";
import assert from "node:assert/strict";
import { groupsFromClaims } from "./groups-from-claims.js";
import type { GroupRule } from "../policy/bundle.js";

// Claims as GitHub Actions issues them (token.actions.githubusercontent.com).
const gha = {
  sub: "repo:acme/orders:ref:refs/heads/main",
  repository: "acme/orders",
  repository_owner: "acme",
  ref: "refs/heads/main",
  workflow: "deploy",
  environment: "production",
  run_attempt: "1",
};

const rules: GroupRule[] = [
  { group: "deployers", when: { repository: "acme/orders", ref: "refs/heads/main" } },
  { group: "prod-deployers", when: { repository: "acme/orders", environment: "production", workflow: ["deploy", "release"] } },
  { group: "ci", when: { repository_owner: "acme" } },
  { group: "other-org", when: { repository_owner: "evil" } },
];

test("when-rules grant a group only when every listed claim matches", () => {
  assert.deepEqual(groupsFromClaims(gha, rules), ["deployers", "prod-deployers", "ci"]);
  assert.deepEqual(groupsFromClaims({ ...gha, ref: "refs/heads/feature" }, rules), ["prod-deployers", "ci"]);
  assert.deepEqual(groupsFromClaims({ ...gha, environment: "staging", ref: "refs/pull/1/merge" }, rules), ["ci"]);
  assert.deepEqual(groupsFromClaims({ repository_owner: "someone" }, rules), []);
});

test("an array of expected values is 'one of'; an array claim matches when it includes a value", () => {
  assert.deepEqual(groupsFromClaims({ ...gha, workflow: "release" }, rules), ["deployers", "prod-deployers", "ci"]);
  assert.deepEqual(groupsFromClaims({ ...gha, workflow: "lint" }, rules), ["deployers", "ci"]);
  const r: GroupRule[] = [{ group: "admins", when: { roles: "admin" } }];
  assert.deepEqual(groupsFromClaims({ roles: ["reader", "admin"] }, r), ["admins"]);
  assert.deepEqual(groupsFromClaims({ roles: ["reader"] }, r), []);
});

test("a missing claim never matches, and a rule with no conditions grants nothing (fail closed)", () => {
  assert.deepEqual(groupsFromClaims({}, [{ group: "x", when: { repository: "acme/orders" } }]), []);
  assert.deepEqual(groupsFromClaims(gha, [{ group: "everyone", when: {} }]), []);
  // prototype keys are not claims
  assert.deepEqual(groupsFromClaims({}, [{ group: "x", when: { constructor: "[object Function]" } }]), []);
});

test("numbers and booleans compare by their text", () => {
  assert.deepEqual(groupsFromClaims({ attempt: 1, ok: true }, [{ group: "g", when: { attempt: "1", ok: "true" } }]), ["g"]);
});

test("claim rules take groups from a string or string[] claim, with an optional prefix", () => {
  assert.deepEqual(groupsFromClaims({ groups: ["ci", "dba", 7, ""] }, [{ claim: "groups" }]), ["ci", "dba"]);
  assert.deepEqual(groupsFromClaims({ team: "payments" }, [{ claim: "team", prefix: "team:" }]), ["team:payments"]);
  assert.deepEqual(groupsFromClaims({}, [{ claim: "groups" }]), []);
  assert.deepEqual(groupsFromClaims({ groups: { a: 1 } }, [{ claim: "groups" }]), []);
});

test("groups from several rules are merged without duplicates, in rule order", () => {
  const r: GroupRule[] = [{ claim: "groups" }, { group: "ci", when: { repository_owner: "acme" } }];
  assert.deepEqual(groupsFromClaims({ ...gha, groups: ["ci", "dba"] }, r), ["ci", "dba"]);
});

test("dotted claim names reach nested claims (Keycloak realm_access.roles); a literal dotted key wins", () => {
  const claims = { realm_access: { roles: ["dba", "reader"] }, "a.b": "flat", a: { b: "nested" }, org: { name: "acme" } };
  assert.deepEqual(groupsFromClaims(claims, [{ claim: "realm_access.roles", prefix: "kc:" }]), ["kc:dba", "kc:reader"]);
  assert.deepEqual(groupsFromClaims(claims, [{ claim: "a.b" }]), ["flat"]);
  assert.deepEqual(groupsFromClaims(claims, [{ group: "acme", when: { "org.name": "acme" } }]), ["acme"]);
  assert.deepEqual(groupsFromClaims(claims, [{ claim: "org.name.length" }, { claim: "realm_access.__proto__" }, { claim: "toString" }]), []);
});
