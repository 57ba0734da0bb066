import { test } from "node:test";
import assert from "node:assert/strict";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import { selectClaims } from "./audit-event-data.js";
import { rulesInputMasker } from "./input-masker.js";
import { staticSnapshots, type SessionInfo } from "../session/session-hooks.js";

const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

test("selected claims keep identity facts and drop anything token-like", () => {
  const out = selectClaims({ sub: "repo:acme/orders", repository: "acme/orders", run_attempt: 2, ok: true, groups: ["ci"], nonce: "n", id_token: jwt, nested: { a: 1 }, list: [jwt] });
  assert.deepEqual(out, { sub: "repo:acme/orders", repository: "acme/orders", run_attempt: 2, ok: true, groups: ["ci"] });
});

function session(resource: string): SessionInfo {
  return { sessionId: "s", nodeId: "n", region: "r", resource, clientUser: "u", clientAddress: "127.0.0.1", subject: "x", issuer: "i", groups: [], claims: {}, policyRevision: 1 };
}

test("parameters and SQL text follow the resource's masking rules", () => {
  const bundle: Bundle = { issuers: [], resources: [], policies: [], masking: [{ resources: ["app"], columns: ["customers.email"], strategy: "redact" }] };
  const snap: PolicySnapshot = { revision: 1, bundle, hash: "h", appliedBy: "t", appliedAt: "2026-01-01T00:00:00Z" };
  const m = rulesInputMasker(staticSnapshots(snap), Buffer.alloc(32, 1));
  // a parameter's target column is unknown: on a masked resource every value is masked
  assert.deepEqual(m.params(session("app"), ["alice@example.com", "42", null]), ["[REDACTED]", "[REDACTED]", null]);
  assert.ok(!m.text(session("app"), "SELECT 1 WHERE email = 'alice@example.com'").includes("alice@example.com"));
  // no rules for the resource: recorded as sent
  assert.deepEqual(m.params(session("other"), ["alice@example.com"]), ["alice@example.com"]);
  // no snapshot yet: nothing is known, so nothing is trusted
  assert.deepEqual(rulesInputMasker(undefined, Buffer.alloc(32)).params(session("app"), ["v"]), ["[REDACTED]"]);
});
