import test from "node:test";
import assert from "node:assert/strict";
import type { Bundle } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import { specFor } from "../testing/given-when-then.js";
import {
  bundleChanges,
  bundleHash,
  decidePolicy,
  evolvePolicy,
  initialPolicyState,
  type BundleApplied,
  type PolicyCommand,
} from "./policy-decider.js";

const spec = specFor({ decide: decidePolicy, evolve: evolvePolicy, initial: initialPolicyState });
const admin = { subject: "alice", issuer: "dev", groups: ["sluice-admins"] };
const now = new Date("2026-01-02T03:04:05.000Z");

function bundle(over: Partial<Bundle> = {}): Bundle {
  return {
    issuers: [{ name: "dev", issuer: "http://127.0.0.1:7481/dev", audience: "sluice", jwksUrl: "http://127.0.0.1:7481/dev/jwks", groups: [{ group: "ci", when: { repository_owner: "acme" } }] }],
    resources: [{ name: "orders", upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "svc", password: "env:ORDERS_PW", tls: "disable" } }],
    policies: [{ name: "ci-read", groups: ["ci"], resources: ["orders"], allow: ["read"] }],
    masking: [],
    ...over,
  };
}

const apply = (b: Bundle, expectedRevision = 0, commandId = "c-" + Math.random()): PolicyCommand => ({
  type: "ApplyBundle",
  bundle: b,
  expectedRevision,
  sourcePath: "policy.yaml",
  meta: { commandId, actor: admin, now },
});

function applied(b: Bundle, revision: number, commandId: string, changes: BundleApplied["changes"] = []): BundleApplied {
  return { type: "BundleApplied", revision, hash: bundleHash(b), bundle: b, actor: admin, appliedAt: now.toISOString(), sourcePath: "policy.yaml", commandId, changes };
}

test("applying a first bundle records revision 1 with every item added", () => {
  const b = bundle();
  spec.given([]).when(apply(b, 0, "c1")).then([
    applied(b, 1, "c1", [
      { kind: "issuer", name: "dev", op: "added" },
      { kind: "resource", name: "orders", op: "added" },
      { kind: "policy", name: "ci-read", op: "added" },
    ]),
  ]);
});

test("applying on top of the expected revision records the next revision and only what changed", () => {
  const b1 = bundle();
  const b2 = bundle({ policies: [{ name: "ci-read", groups: ["ci"], resources: ["orders"], allow: ["read", "write"] }] });
  spec.given([applied(b1, 1, "c1")]).when(apply(b2, 1, "c2")).then([applied(b2, 2, "c2", [{ kind: "policy", name: "ci-read", op: "changed" }])]);
});

test("removing a resource and its policy records both removals", () => {
  const b1 = bundle();
  const b2 = bundle({ resources: [], policies: [] });
  spec.given([applied(b1, 1, "c1")]).when(apply(b2, 0, "c2")).then([
    applied(b2, 2, "c2", [
      { kind: "resource", name: "orders", op: "removed" },
      { kind: "policy", name: "ci-read", op: "removed" },
    ]),
  ]);
});

test("a stale expected revision is aborted with a clear message", () => {
  spec.given([applied(bundle(), 1, "c1"), applied(bundle({ masking: [] , groups: ["x"] }), 2, "c2")])
    .when(apply(bundle(), 1))
    .thenThrows("aborted", /policy changed since revision 1 \(now 2\); re-run with the current revision/);
});

test("revision 0 means on top of whatever is current", () => {
  const b2 = bundle({ groups: ["extra"] });
  spec.given([applied(bundle(), 1, "c1")]).when(apply(b2, 0, "c2")).then((evs) => {
    assert.equal(evs.length, 1);
    assert.equal(evs[0]!.revision, 2);
  });
});

test("a re-sent command (same id) decides nothing", () => {
  spec.given([applied(bundle(), 1, "c1")]).when(apply(bundle({ groups: ["other"] }), 1, "c1")).then([]);
});

test("the same document again decides nothing", () => {
  spec.given([applied(bundle(), 1, "c1")]).when(apply(bundle(), 1, "c2")).then([]);
});

test("an unknown statement class is rejected with its pointer", () => {
  const b = bundle({ policies: [{ name: "p", groups: ["ci"], resources: ["orders"], allow: ["read", "delete" as never] }] });
  spec.given([]).when(apply(b)).thenThrows("invalid_argument", /^\/policies\/0\/allow\/1: .*"delete"/);
});

test("a duplicate resource is rejected", () => {
  const r = bundle().resources[0]!;
  spec.given([]).when(apply(bundle({ resources: [r, r] }))).thenThrows("invalid_argument", /^\/resources\/1\/name: duplicate resource .*"orders"/);
});

test("unknown group and unknown resource references are rejected", () => {
  spec.given([]).when(apply(bundle({ policies: [{ name: "p", groups: ["nobody"], resources: ["orders"], allow: ["read"] }] })))
    .thenThrows("invalid_argument", /unknown group "nobody"/);
  spec.given([]).when(apply(bundle({ policies: [{ name: "p", groups: ["ci"], resources: ["billing"], allow: ["read"] }] })))
    .thenThrows("invalid_argument", /^\/policies\/0\/resources\/0: unknown resource "billing"/);
  spec.given([]).when(apply(bundle({ masking: [{ resources: ["billing"], columns: ["a.b"], strategy: "redact" }] })))
    .thenThrows("invalid_argument", /^\/masking\/0\/resources\/0: unknown resource "billing"/);
});

test("a password that is not a credential reference is rejected without echoing it", () => {
  const b = bundle();
  b.resources[0]!.upstream.password = "hunter2-secret";
  try {
    decidePolicy(apply(b), initialPolicyState());
    assert.fail("expected a rejection");
  } catch (e) {
    assert.ok(e instanceof SluiceError && e.code === "invalid_argument");
    assert.match(e.message, /^\/resources\/0\/upstream\/password: .*reference \(env:NAME or file:/);
    assert.doesNotMatch(JSON.stringify({ m: e.message, d: e.details }), /hunter2/);
  }
});

test("every problem is reported, not only the first", () => {
  const r = bundle().resources[0]!;
  const b = bundle({ resources: [r, r], policies: [{ name: "p", groups: ["nobody"], resources: ["orders"], allow: ["nope" as never] }] });
  try {
    decidePolicy(apply(b), initialPolicyState());
    assert.fail("expected a rejection");
  } catch (e) {
    const problems = (e as SluiceError).details as { problems: { pointer: string }[] };
    assert.deepEqual(problems.problems.map((p) => p.pointer).sort(), ["/policies/0/allow/0", "/policies/0/groups/0", "/resources/1/name"]);
  }
});

test("evolve keeps the bundle, revision, hash and the command ids seen", () => {
  const b = bundle();
  const s = [applied(b, 1, "c1")].reduce(evolvePolicy, initialPolicyState());
  assert.equal(s.revision, 1);
  assert.equal(s.hash, bundleHash(b));
  assert.deepEqual(s.bundle, b);
  assert.ok(s.commandIds.has("c1"));
  assert.deepEqual([...s.resources.resources.keys()], ["orders"]);
  assert.deepEqual([...s.issuers.issuers.keys()], ["dev"]);
});

test("bundleChanges lists item changes between any two bundles", () => {
  assert.deepEqual(bundleChanges(null, bundle()), [
    { kind: "issuer", name: "dev", op: "added" },
    { kind: "resource", name: "orders", op: "added" },
    { kind: "policy", name: "ci-read", op: "added" },
  ]);
  assert.deepEqual(bundleChanges(bundle(), bundle({ policies: [] })), [{ kind: "policy", name: "ci-read", op: "removed" }]);
});
