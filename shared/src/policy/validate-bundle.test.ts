import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, normalizeBundle, parseDurationMs, toPointer, validateBundle } from "./validate-bundle.js";
import type { Bundle } from "./bundle.js";

/** A valid bundle as the control plane receives it (JSON, no positions). */
function base(): Bundle {
  return {
    issuers: [
      {
        name: "github",
        issuer: "https://token.actions.githubusercontent.com",
        audience: "sluice",
        jwksUrl: "https://token.actions.githubusercontent.com/.well-known/jwks",
        groups: [{ group: "ci", when: { repository_owner: "acme" } }, { claim: "groups" }],
      },
    ],
    groups: ["dba"],
    resources: [{ name: "orders", upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "svc", password: "env:ORDERS_PW" } }],
    policies: [
      {
        name: "ci",
        groups: ["ci"],
        resources: ["orders"],
        allow: ["read", "write"],
        requireApproval: ["delete-without-where"],
        approval: { approvers: ["dba"], timeout: "10m" },
      },
    ],
    masking: [{ resources: ["orders"], columns: ["customers.email"], strategy: "partial" }],
  };
}

/** Applies a mutation to a fresh valid bundle and returns "pointer: message" lines. */
function problemsOf(mutate: (b: any) => void): string[] {
  const b = base() as any;
  mutate(b);
  return validateBundle(b).map((p) => `${p.pointer}: ${p.message}`);
}

test("a valid bundle has no problems; without a document, problems carry no position", () => {
  assert.deepEqual(validateBundle(base()), []);
  const [p] = validateBundle({ ...base(), policies: [{ ...base().policies[0]!, allow: ["reed"] }] }, { source: "<grpc>" });
  assert.deepEqual(p, { path: "<grpc>", line: 0, column: 0, pointer: "/policies/0/allow/0", message: 'unknown statement class "reed" in policies[0].allow (expected one of read, write, ddl, admin, utility, copy)' });
  assert.equal(formatProblem(p!), '<grpc>: /policies/0/allow/0: unknown statement class "reed" in policies[0].allow (expected one of read, write, ddl, admin, utility, copy)');
});

test("sections may be absent (an empty mapping is a deny-everything bundle)", () => {
  assert.deepEqual(validateBundle({}), []);
  assert.deepEqual(validateBundle({ issuers: null, policies: [] }), []);
});

test("wrong types are named with what was found", () => {
  assert.deepEqual(problemsOf((b) => (b.issuers = { name: "x" })), ["/issuers: issuers must be a list, got a mapping"]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].groups = "ci")), ["/policies/0/groups: policies[0].groups must be a list of strings, got a string"]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].allow = [1])), ["/policies/0/allow/0: policies[0].allow[0] must be a non-empty string, got a number"]);
  // a broken defining section does not cascade into "unknown resource" everywhere
  assert.deepEqual(problemsOf((b) => (b.resources[0] = "orders")), ["/resources/0: resources[0] must be a mapping, got a string"]);
  assert.deepEqual(validateBundle("issuers: []").map((p) => p.message), ["the bundle must be a mapping with issuers, resources, policies, masking; got a string"]);
});

test("unknown keys anywhere, with the allowed ones listed", () => {
  assert.deepEqual(problemsOf((b) => (b.polices = [])), ['/polices: unknown key "polices" at the top level (did you mean "policies"? expected one of issuers, resources, policies, masking, groups, notifications)']);
  assert.match(problemsOf((b) => (b.resources[0].upstream.passwd = "env:X"))[0]!, /^\/resources\/0\/upstream\/passwd: unknown key "passwd" in resources\[0\]\.upstream/);
  assert.match(problemsOf((b) => (b.issuers[0].groups[0].extra = 1))[0]!, /unknown key "extra" in issuers\[0\]\.groups\[0\] \(expected one of group, when\)/);
  assert.match(problemsOf((b) => (b.policies[0]["we/ird~"] = 1))[0]!, /^\/policies\/0\/we~1ird~0: unknown key "we\/ird~" in policies\[0\]/);
});

test("names must be valid and present", () => {
  assert.deepEqual(problemsOf((b) => delete b.policies[0].name), ['/policies/0: policies[0] is missing "name"']);
  assert.deepEqual(problemsOf((b) => (b.policies[0].name = "has space")), ['/policies/0/name: policy name "has space" is not valid (letters, digits, _ . -; at most 63 characters)']);
  assert.deepEqual(problemsOf((b) => (b.masking[1] = { ...b.masking[0], name: "m" }) && (b.masking[0].name = "m")), ['/masking/1/name: duplicate masking rule name "m" (also masking[0])']);
});

test("issuer checks: keys, URLs, audience, algorithms, group rules", () => {
  assert.deepEqual(problemsOf((b) => (b.issuers[0].jwks = { keys: [{ kty: "RSA", n: "x", e: "AQAB" }] })), ["/issuers/0/jwks: issuers[0] has both jwksUrl and jwks: give one"]);
  assert.deepEqual(
    problemsOf((b) => {
      delete b.issuers[0].jwksUrl;
      b.issuers[0].jwks = { keys: [{ kty: "oct", k: "c2VjcmV0" }] };
    }),
    ["/issuers/0/jwks/keys/0: issuers[0].jwks.keys[0] is a symmetric key: issuers must publish public keys", "/issuers/0/jwks/keys/0: issuers[0].jwks.keys[0] contains private key material: publish only the public key"],
  );
  assert.deepEqual(problemsOf((b) => (b.issuers[0].jwks = undefined) ?? (b.issuers[0].jwksUrl = "http://127.0.0.1:7481/jwks")), []);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].issuer = "not a url")), ["/issuers/0/issuer: issuers[0].issuer must be an https URL"]);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].audience = [])), ["/issuers/0/audience: issuers[0].audience must not be empty"]);
  assert.deepEqual(problemsOf((b) => delete b.issuers[0].audience), ['/issuers/0: issuers[0] is missing "audience" (the aud its tokens must carry)']);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].algorithms = ["RS256", "XYZ"])), ['/issuers/0/algorithms/1: unknown algorithm "XYZ" in issuers[0].algorithms (expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519)']);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].algorithms = ["hs512"]))[0], '/issuers/0/algorithms/0: algorithm "hs512" in issuers[0].algorithms is never accepted (symmetric: anyone holding the issuer\'s public key could sign)');
  assert.deepEqual(problemsOf((b) => (b.issuers[0].groups[0] = { name: "x" })), ["/issuers/0/groups/0: issuers[0].groups[0] must be either {group, when} or {claim, prefix?}"]);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].groups[0].when = { run_attempt: 1 })), ["/issuers/0/groups/0/when/run_attempt: issuers[0].groups[0].when.run_attempt must be a string or a non-empty list of strings, got a number (quote numbers and booleans)"]);
  assert.deepEqual(problemsOf((b) => (b.issuers[0].groups[0].when = { workflow: ["a", "b"] })), []);
  assert.deepEqual(problemsOf((b) => delete b.issuers[0].groups[0].when), ['/issuers/0/groups/0: issuers[0].groups[0] is missing "when" (the claims that grant "ci")']);
});

test("a group is known only through a group: rule or the top-level groups list", () => {
  // a claim: rule alone does not make "dba" valid
  const msgs = problemsOf((b) => delete b.groups);
  assert.deepEqual(msgs, ['/policies/0/approval/approvers/0: unknown group "dba" in policies[0].approval.approvers: no issuer rule produces it; issuer "github" takes groups from a claim, so declare the names it may carry in the top-level "groups:" list']);
  assert.deepEqual(problemsOf((b) => (b.groups = "dba")), ["/groups: groups must be a list of strings, got a string"]);
  assert.deepEqual(problemsOf((b) => b.policies[0].groups.push("ops")), ['/policies/0/groups/1: unknown group "ops" in policies[0].groups: no issuer rule produces it; issuer "github" takes groups from a claim, so declare the names it may carry in the top-level "groups:" list']);
  assert.deepEqual(
    problemsOf((b) => { b.issuers[0].groups = [{ group: "ci", when: { a: "b" } }]; b.policies[0].groups.push("ops"); }),
    ['/policies/0/groups/1: unknown group "ops" in policies[0].groups: no issuer rule produces it; add a "group:" rule to an issuer or list it under the top-level "groups:"'],
  );
});

test("resource checks: credential references, port, tls, ca, auth", () => {
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.password = "file:/run/secrets/pw")), []);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.password = 1234)), ["/resources/0/upstream/password: resources[0].upstream.password must be a credential reference (env:NAME or file:/absolute/path), got a number"]);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.password = "file:/run/secrets/")), ["/resources/0/upstream/password: malformed credential reference in resources[0].upstream.password: file: needs an absolute file path"]);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.password = "env:")), ["/resources/0/upstream/password: malformed credential reference in resources[0].upstream.password: env: needs a variable name (letters, digits, _)"]);
  assert.deepEqual(problemsOf((b) => { delete b.resources[0].upstream.password; b.resources[0].upstream.auth = "trust"; }), []);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.auth = "trust")), ["/resources/0/upstream/password: resources[0].upstream.password must be absent with auth: trust"]);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.auth = "kerberos")), ['/resources/0/upstream/auth: unknown upstream auth "kerberos" in resources[0].upstream.auth (expected one of password, trust)']);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.port = 70000)), ["/resources/0/upstream/port: resources[0].upstream.port must be a port number (1-65535), got a number"]);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.tls = "prefer")), ['/resources/0/upstream/tls: unknown upstream tls mode "prefer" in resources[0].upstream.tls (expected one of disable, require, verify-full)']);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.ca = "/etc/ca.pem")), ["/resources/0/upstream/ca: resources[0].upstream.ca must be a file reference (file:/absolute/path)"]);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.resetQuery = "SELECT pg_advisory_unlock_all(); RESET ALL")), []);
  assert.deepEqual(problemsOf((b) => (b.resources[0].upstream.resetQuery = " ")), ["/resources/0/upstream/resetQuery: resources[0].upstream.resetQuery must be SQL of 1 to 4096 characters (leave it out for DISCARD ALL)"]);
  assert.deepEqual(problemsOf((b) => delete b.resources[0].upstream), ['/resources/0: resources[0] is missing "upstream"']);
  assert.deepEqual(problemsOf((b) => delete b.resources[0].upstream.host), ['/resources/0/upstream: resources[0].upstream is missing "host"']);
});

test("a literal password is never echoed, whatever it looks like", () => {
  for (const pw of ["hunter2", "env:has space", "file:relative/pw", "p@ss:word"]) {
    const ps = validateBundle({ ...base(), resources: [{ name: "orders", upstream: { host: "h", database: "d", user: "u", password: pw } }] });
    assert.equal(ps.length, 1);
    assert.ok(!ps[0]!.message.includes(pw) && !ps[0]!.message.includes(pw.slice(4)), ps[0]!.message);
  }
});

test("policy checks: classes and risks, tables, approval", () => {
  assert.deepEqual(problemsOf((b) => (b.policies[0].requireApproval = ["ddl", "truncate", "nope"])), [
    '/policies/0/requireApproval/2: unknown statement class or risk "nope" in policies[0].requireApproval (expected a class: read, write, ddl, admin, utility, copy; or a risk: delete-without-where, update-without-where, truncate, drop-database, drop-schema, drop-table, drop-role, drop, copy-program, copy-file, superuser-functions, role-change, dynamic-sql, alter-system, grant, search-path, session-replication-role, parser-setting)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].allow = ["truncate"])), ['/policies/0/allow/0: unknown statement class "truncate" in policies[0].allow (expected one of read, write, ddl, admin, utility, copy)']);
  assert.deepEqual(problemsOf((b) => (b.policies[0].tables = { deny: ["public.secrets", "a.b.c", "x;drop"] })), [
    '/policies/0/tables/deny/1: table pattern "a.b.c" in policies[0].tables.deny must be table, schema.table, or a glob with * (e.g. public.*)',
    '/policies/0/tables/deny/2: table pattern "x;drop" in policies[0].tables.deny must be table, schema.table, or a glob with * (e.g. public.*)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].approval.timeout = "0s")), ["/policies/0/approval/timeout: policies[0].approval.timeout must be longer than zero"]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].approval.timeout = 600)), ["/policies/0/approval/timeout: policies[0].approval.timeout must be a duration like 30s, 10m or 1h, got a number"]);
  assert.deepEqual(problemsOf((b) => delete b.policies[0].approval.timeout), ['/policies/0/approval: policies[0].approval is missing "timeout" (e.g. 10m)']);
  assert.deepEqual(problemsOf((b) => (b.policies[0].approval.approvers = [])), ["/policies/0/approval/approvers: policies[0].approval.approvers must not be empty"]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].groups = [])), ["/policies/0/groups: policies[0].groups must not be empty"]);
  // `*` means any group / any resource (evaluate.ts, masking); never "any approver"
  assert.deepEqual(problemsOf((b) => { b.policies[0].groups = ["*"]; b.policies[0].resources = ["*"]; b.masking[0].resources = ["*"]; }), []);
  assert.match(problemsOf((b) => (b.policies[0].approval.approvers = ["*"]))[0]!, /^\/policies\/0\/approval\/approvers\/0: unknown group "\*"/);
});

test("masking checks: strategy, classifiers (built-in and custom), regexes, something to mask", () => {
  assert.deepEqual(problemsOf((b) => delete b.masking[0].strategy), ['/masking/0: masking[0] is missing "strategy" (one of partial, redact, hash)']);
  assert.deepEqual(problemsOf((b) => (b.masking[0] = { resources: ["orders"], strategy: "redact" })), ["/masking/0: masking[0] selects nothing to mask: give columns, types, classifiers or custom"]);
  assert.deepEqual(problemsOf((b) => (b.masking[0].custom = [{ name: "email", pattern: "x" }])), ['/masking/0/custom/0/name: custom classifier "email" shadows a built-in classifier']);
  assert.deepEqual(problemsOf((b) => (b.masking[0].custom = [{ name: "a", pattern: "x" }, { name: "a", pattern: "y" }])), ['/masking/0/custom/1/name: duplicate custom classifier name "a" (also masking[0].custom[0])']);
  assert.deepEqual(problemsOf((b) => (b.masking[0].custom = [{ name: "a", pattern: "(?<x>a)(?<x>b)" }])), ["/masking/0/custom/0/pattern: bad regular expression in masking[0].custom[0].pattern: Duplicate capture group name"]);
  assert.deepEqual(problemsOf((b) => (b.masking[0].classifiers = ["iban", "x"])), ['/masking/0/classifiers/1: unknown classifier "x" in masking[0].classifiers (expected one of email, credit-card, iban, us-ssn, jwt, aws-key, private-key)']);
  assert.deepEqual(problemsOf((b) => (b.masking[0].columns = ["a.b.c.d"])), ['/masking/0/columns/0: column "a.b.c.d" in masking[0].columns must be column, table.column or schema.table.column']);
});

test("durations and pointers", () => {
  assert.equal(parseDurationMs("10m"), 600_000);
  assert.equal(parseDurationMs("1.5h"), 5_400_000);
  assert.equal(parseDurationMs("250ms"), 250);
  assert.equal(parseDurationMs("10 minutes"), undefined);
  assert.equal(parseDurationMs("-1s"), undefined);
  assert.equal(toPointer(["policies", 1, "a/b~c"]), "/policies/1/a~1b~0c");
  assert.equal(toPointer([]), "");
});

test("normalizeBundle fills defaults without changing its input", () => {
  const raw = { resources: [{ name: "r", upstream: { host: "h", database: "d", user: "u", auth: "trust" } }], issuers: [{ name: "i", issuer: "https://x", audience: "a", jwksUrl: "https://x/j" }] };
  const copy = structuredClone(raw);
  const b = normalizeBundle(raw);
  assert.deepEqual(raw, copy);
  assert.deepEqual(b.policies, []);
  assert.deepEqual(b.masking, []);
  assert.deepEqual(b.issuers[0]!.groups, []);
  assert.equal(b.resources[0]!.upstream.port, 5432);
});

test("a policy may be scoped to issuers by name; an unknown, empty or mistyped list is located", () => {
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = ["github"])), []);
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = null)), []);
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = ["github", "gitlab"])), [
    '/policies/0/issuers/1: unknown issuer "gitlab" in policies[0].issuers (known: github)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = [])), ["/policies/0/issuers: policies[0].issuers must not be empty"]);
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = "github")), ["/policies/0/issuers: policies[0].issuers must be a list of strings, got a string"]);
  // `*` is no wildcard for issuers: an unscoped policy leaves the key out
  assert.deepEqual(problemsOf((b) => (b.policies[0].issuers = ["*"])), ['/policies/0/issuers/0: unknown issuer "*" in policies[0].issuers (known: github)']);
  assert.deepEqual(problemsOf((b) => ((b.issuers = []), (b.groups = ["ci", "dba"]), (b.policies[0].issuers = ["github"]))), [
    '/policies/0/issuers/0: unknown issuer "github" in policies[0].issuers (the bundle has no issuers)',
  ]);
  // an issuer whose name is unreadable is reported once, not again at every reference
  const broken = problemsOf((b) => ((b.issuers[0].name = 7), (b.policies[0].issuers = ["github"])));
  assert.ok(broken.length >= 1 && !broken.some((m) => m.includes("unknown issuer")), broken.join("\n"));
  // masking rules take no issuers
  assert.match(problemsOf((b) => (b.masking[0].issuers = ["github"]))[0]!, /unknown key "issuers" in masking\[0\]/);
});

test("normalizeBundle drops `issuers: null` (not scoped) and keeps a list", () => {
  const nul = normalizeBundle({ ...base(), policies: [{ ...base().policies[0]!, issuers: null }] } as any);
  assert.equal("issuers" in nul.policies[0]!, false);
  const scoped = normalizeBundle({ ...base(), policies: [{ ...base().policies[0]!, issuers: ["github"] }] } as any);
  assert.deepEqual(scoped.policies[0]!.issuers, ["github"]);
});

test("an issuer's keys by OIDC discovery: discovery: true, or the issuer URL alone, instead of jwksUrl", () => {
  const noKeys = (b: any) => delete b.issuers[0].jwksUrl;
  assert.deepEqual(problemsOf((b) => { noKeys(b); b.issuers[0].discovery = true; }), []);
  assert.deepEqual(problemsOf(noKeys), [], "the issuer URL alone: discovered as a relying party would");
  assert.deepEqual(problemsOf((b) => (b.issuers[0].discovery = true)), [
    "/issuers/0/discovery: issuers[0] has discovery: true and jwksUrl: give one (discovery finds the JWKS URL itself)",
  ]);
  assert.deepEqual(problemsOf((b) => { noKeys(b); b.issuers[0].discovery = false; }), [
    "/issuers/0: issuers[0] needs jwksUrl or jwks when discovery is false (where its signing keys are published)",
  ]);
  assert.deepEqual(problemsOf((b) => { noKeys(b); b.issuers[0].discovery = "yes"; }), ["/issuers/0/discovery: issuers[0].discovery must be true or false, got a string"]);
  // discovery is fetched from the issuer URL: the same https rule as a jwksUrl
  assert.deepEqual(problemsOf((b) => { noKeys(b); b.issuers[0].issuer = "http://issuer.example/x"; }), [
    "/issuers/0/issuer: issuers[0].issuer must be an https URL (plain http only on loopback)",
  ]);

  const byUrl = normalizeBundle({ issuers: [{ name: "gh", issuer: "https://token.actions.githubusercontent.com", audience: "sluice" }] });
  assert.equal(byUrl.issuers[0]!.discovery, true, "normalized: said explicitly");
  const byJwksUrl = normalizeBundle({ issuers: [{ name: "gh", issuer: "https://x", audience: "a", jwksUrl: "https://x/j", discovery: false }] });
  assert.equal(byJwksUrl.issuers[0]!.discovery, undefined);
});
