import { test } from "node:test";
import assert from "node:assert/strict";
import { SluiceError } from "@sluice/shared/errors";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import { parameterStatus } from "../wire/encode.js";
import { WireError } from "../wire/frame-scanner.js";
import { admit, admitStartup, tokenRefusal, upstreamRefusal } from "./admission.js";
import { REFUSALS, RefusalError, refusal, refusalOf } from "./refusals.js";

const bundle: Bundle = {
  issuers: [],
  resources: [{ name: "orders", upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "svc", auth: "trust" } }],
  masking: [],
  policies: [
    { name: "ci-read", groups: ["ci"], resources: ["orders"], allow: ["read"] },
    { name: "restricted", groups: ["narrow"], resources: ["orders"], allow: ["read"], tables: { allow: ["public.items"] } },
  ],
};
const snapshot: PolicySnapshot = { revision: 7, bundle, hash: "h", appliedBy: "t", appliedAt: "2026-12-01T00:00:00Z" };
const conn = { sessionId: "s1", nodeId: "n1", region: "r", clientAddress: "127.0.0.1:5", tls: true, resource: "orders" };
const id = (groups: string[]) => ({ subject: "repo:acme/x", issuer: "github", claims: { sub: "repo:acme/x" }, groups });

test("before the password: TLS where required, no replication, a user name", () => {
  assert.equal(admitStartup({ user: "ci" }, { tlsRequired: true, tls: true }), null);
  assert.equal(admitStartup({ user: "ci" }, { tlsRequired: false, tls: false }), null);
  assert.equal(admitStartup({ user: "ci" }, { tlsRequired: true, tls: false })?.code, "tls_required");
  assert.equal(admitStartup({ user: "ci", replication: "database" }, { tlsRequired: true, tls: true })?.code, "replication_refused");
  assert.equal(admitStartup({ user: "ci", replication: "false" }, { tlsRequired: true, tls: true }), null);
  assert.equal(admitStartup({}, { tlsRequired: true, tls: true })?.code, "no_user");
});

test("a token that does not verify is token_rejected with verifyToken's message; an unreachable issuer is the node's failure", () => {
  const r = tokenRefusal(new SluiceError("unauthenticated", "token expired"));
  assert.deepEqual([r.code, r.message], ["token_rejected", "token expired"]);
  // another code's message is not the client's to read
  assert.deepEqual([tokenRefusal(new SluiceError("permission_denied", "signing key k1 not allowed")).message], ["token rejected"]);
  const u = tokenRefusal(new SluiceError("unavailable", "JWKS at https://x unreachable"));
  assert.deepEqual([u.code, u.message, REFUSALS[u.code].outcome], ["issuer_unavailable", "token rejected", "failed"]);
  assert.match(u.logReason!, /unreachable/);
});

test("after the token: the resource, a policy to connect by, and the startup settings", () => {
  const ok = admit(conn, { user: "ci", application_name: "deploy", TimeZone: "UTC" }, id(["ci"]), snapshot);
  assert.ok(ok.ok);
  assert.equal(ok.resource.name, "orders");
  assert.deepEqual([ok.info.subject, ok.info.policyRevision, ok.info.applicationName], ["repo:acme/x", 7, "deploy"]);
  assert.equal(ok.forward.application_name, "deploy");

  const unknown = admit({ ...conn, resource: "billing" }, { user: "ci" }, id(["ci"]), snapshot);
  assert.ok(!unknown.ok && unknown.refusal.code === "unknown_resource" && unknown.info === undefined);
  assert.equal(unknown.refusal.message, 'database "billing" does not exist');

  // the denial names the identity it refused
  const nobody = admit(conn, { user: "ci" }, id(["nobody"]), snapshot);
  assert.ok(!nobody.ok && nobody.refusal.code === "no_policy" && nobody.info?.subject === "repo:acme/x");

  const cases: Array<[Record<string, string>, string[], string]> = [
    [{ user: "ci", client_encoding: "SJIS" }, ["ci"], "parser_setting"],
    [{ user: "ci", role: "postgres" }, ["ci"], "identity_setting"],
    [{ user: "ci", search_path: "evil" }, ["narrow"], "search_path_setting"],
  ];
  for (const [params, groups, code] of cases) {
    const a = admit(conn, params, id(groups), snapshot);
    assert.ok(!a.ok, JSON.stringify(params));
    assert.equal(a.refusal.code, code, JSON.stringify(params));
  }
});

test("an upstream that starts with a pinned setting changed is refused", () => {
  assert.equal(upstreamRefusal([parameterStatus("standard_conforming_strings", "on"), parameterStatus("client_encoding", "UTF8")]), null);
  assert.equal(upstreamRefusal([parameterStatus("standard_conforming_strings", "off")])?.code, "pinned_setting");
});

test("one table: every refusal code has a SQLSTATE, a stage and an outcome; errors thrown during set-up map onto it", () => {
  for (const [code, k] of Object.entries(REFUSALS)) {
    assert.match(k.sqlstate, /^[0-9A-Z]{5}$/, code);
    assert.ok(["startup", "authentication", "authorization", "upstream", "audit"].includes(k.stage), code);
    assert.ok(k.outcome === "denied" || k.outcome === "failed", code);
  }
  assert.equal(refusalOf(new RefusalError(refusal("no_policy", "x"))).code, "no_policy");
  assert.equal(refusalOf(new WireError("connection closed during startup")).code, "protocol_violation");
  assert.equal(refusalOf(new WireError("unsupported frontend protocol 3.2", "0A000")).code, "unsupported_protocol");
  assert.equal(refusalOf(new SluiceError("unavailable", "audit stream unreachable")).code, "audit_unavailable");
  const internal = refusalOf(new TypeError("boom"));
  assert.deepEqual([internal.code, internal.message], ["internal", "internal error while setting up the session"]);
});
