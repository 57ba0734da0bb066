import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { locateProblems, parseBundle, parseBundleFile } from "./parse-bundle.js";
import { formatProblem } from "./validate-bundle.js";

const fixtures = fileURLToPath(new URL("../../../test/fixtures/policies/", import.meta.url));
const invalid = (f: string) => join(fixtures, "invalid", f);

test("the contract's example bundle parses, with defaults filled", async () => {
  const { bundle, problems } = await parseBundleFile(join(fixtures, "valid-contract.yaml"));
  assert.deepEqual(problems, []);
  assert.ok(bundle);
  assert.deepEqual(bundle.issuers.map((i) => i.name), ["github"]);
  assert.equal(bundle.issuers[0]!.groups.length, 3);
  assert.deepEqual(bundle.resources[0]!.upstream, { host: "127.0.0.1", port: 5432, database: "orders", user: "sluice_svc", password: "env:ORDERS_DB_PASSWORD", tls: "disable" });
  assert.deepEqual(bundle.policies[1]!.approval, { approvers: ["dba"], timeout: "10m" });
  assert.deepEqual(bundle.masking[0]!.classifiers, ["email", "credit-card", "jwt"]);
  assert.deepEqual(bundle.groups, ["dba"]);
});

test("a bundle using every optional feature parses; port defaults to 5432", async () => {
  const { bundle, problems } = await parseBundleFile(join(fixtures, "valid-full.yaml"));
  assert.deepEqual(problems.map(formatProblem), []);
  assert.equal(bundle!.resources[1]!.upstream.port, 5432);
  assert.equal(bundle!.resources[1]!.upstream.auth, "trust");
  assert.deepEqual(bundle!.policies[1]!.issuers, ["github"]);
  assert.equal(bundle!.policies[0]!.issuers, undefined);
  assert.deepEqual(bundle!.issuers.map((i) => [i.name, i.discovery ?? false]), [["github", false], ["dev", false], ["gitlab", true]]);
});

test("the reported line format is file:line:col: reason", async () => {
  const { bundle, problems } = await parseBundleFile(invalid("unknown-statement-class.yaml"));
  assert.equal(bundle, undefined);
  assert.equal(problems.length, 1);
  assert.equal(
    formatProblem(problems[0]!),
    `${invalid("unknown-statement-class.yaml")}:20:13: unknown statement class "reed" in policies[1].allow (expected one of read, write, ddl, admin, utility, copy)`,
  );
  assert.equal(problems[0]!.pointer, "/policies/1/allow/0");
});

// One fixture per bad input: [file, line, column, pointer, message fragment]. The first problem is checked.
const cases: Array<[string, number, number, string, RegExp]> = [
  ["yaml-syntax.yaml", 15, 5, "/policies/0/groups/0", /^YAML syntax error: Flow sequence/],
  ["yaml-duplicate-key.yaml", 17, 5, "/policies/0/allow", /^YAML syntax error: Map keys must be unique$/],
  ["unknown-risk.yaml", 17, 27, "/policies/0/deny/1", /^unknown statement class or risk "drop-everything" in policies\[0\]\.deny \(expected a class: read, .*; or a risk: delete-without-where, /],
  ["duplicate-resource.yaml", 12, 11, "/resources/1/name", /^duplicate resource name "orders" \(also resources\[0\]\)$/],
  ["duplicate-issuer.yaml", 9, 11, "/issuers/1/name", /^duplicate issuer name "github"/],
  ["duplicate-policy.yaml", 17, 11, "/policies/1/name", /^duplicate policy name "ci-read"/],
  ["unknown-group.yaml", 13, 14, "/policies/0/groups/0", /^unknown group "ci" in policies\[0\]\.groups: no issuer rule produces it; issuer "github" takes groups from a claim, so declare .* top-level "groups:"/],
  ["unknown-approver-group.yaml", 18, 29, "/policies/0/approval/approvers/0", /^unknown group "dba" in policies\[0\]\.approval\.approvers: no issuer rule produces it/],
  ["unknown-resource.yaml", 15, 25, "/policies/0/resources/1", /^unknown resource "invoices" in policies\[0\]\.resources/],
  ["unknown-issuer.yaml", 23, 23, "/policies/0/issuers/1", /^unknown issuer "gitlab" in policies\[0\]\.issuers \(known: github, dev\)$/],
  ["unknown-masking-resource.yaml", 13, 17, "/masking/0/resources/0", /^unknown resource "ordrs" in masking\[0\]\.resources/],
  ["missing-credential.yaml", 12, 7, "/resources/0/upstream", /^resources\[0\]\.upstream is missing the credential reference "password" \(env:NAME or file:\/absolute\/path/],
  ["literal-password.yaml", 15, 17, "/resources/0/upstream/password", /looks like a literal password: use a reference \(env:NAME or file:\/absolute\/path\)/],
  ["malformed-credential.yaml", 11, 71, "/resources/0/upstream/password", /^malformed credential reference in resources\[0\]\.upstream\.password: env: needs a variable name/],
  ["unknown-strategy.yaml", 15, 15, "/masking/0/strategy", /^unknown masking strategy "scramble" in masking\[0\]\.strategy \(expected one of partial, redact, hash\)$/],
  ["unknown-classifier.yaml", 14, 26, "/masking/0/classifiers/1", /^unknown classifier "passport-number" in masking\[0\]\.classifiers \(expected one of email, credit-card/],
  ["bad-duration.yaml", 19, 44, "/policies/0/approval/timeout", /^bad duration "ten minutes" in policies\[0\]\.approval\.timeout/],
  ["bad-regex.yaml", 16, 18, "/masking/0/custom/0/pattern", /^bad regular expression in masking\[0\]\.custom\[0\]\.pattern: Unterminated group$/],
  ["issuer-without-keys.yaml", 2, 5, "/issuers/0", /^issuers\[0\] needs jwksUrl or jwks when discovery is false/],
  ["alg-none.yaml", 6, 25, "/issuers/0/algorithms/1", /^algorithm "none" in issuers\[0\]\.algorithms is never accepted/],
  ["alg-hs256.yaml", 6, 18, "/issuers/0/algorithms/0", /^algorithm "HS256" in issuers\[0\]\.algorithms is never accepted \(symmetric/],
  ["unknown-key.yaml", 13, 5, "/policies/0", /^policies\[0\] is missing "allow"$/],
  ["wrong-type.yaml", 16, 12, "/policies/0/allow", /^policies\[0\]\.allow must be a list of strings, got a string$/],
  ["bad-port.yaml", 11, 40, "/resources/0/upstream/port", /must be a port number \(1-65535\), got a string/],
  ["private-jwk.yaml", 7, 11, "/issuers/0/jwks/keys/0", /contains private key material: publish only the public key$/],
  ["plain-http-jwks.yaml", 5, 14, "/issuers/0/jwksUrl", /must be an https URL \(plain http only on loopback\)$/],
  ["empty-when.yaml", 8, 15, "/issuers/0/groups/0/when", /is empty: it would grant the group to every token/],
  ["approval-without-approvers.yaml", 13, 5, "/policies/0", /has requireApproval but no approval/],
  ["empty.yaml", 1, 1, "", /^the bundle is empty/],
  ["not-a-mapping.yaml", 1, 1, "", /^the bundle must be a mapping/],
];

for (const [file, line, column, pointer, message] of cases) {
  test(`rejects ${file} with its location and a one-line reason`, async () => {
    const { bundle, problems } = await parseBundleFile(invalid(file));
    assert.equal(bundle, undefined);
    assert.ok(problems.length >= 1);
    const p = problems[0]!;
    assert.equal(p.path, invalid(file));
    assert.deepEqual([p.line, p.column, p.pointer], [line, column, pointer], formatProblem(p));
    assert.match(p.message, message);
    for (const q of problems) assert.ok(!q.message.includes("\n"), "one line");
  });
}

test("every invalid fixture is covered by a case", async () => {
  const { readdirSync } = await import("node:fs");
  const files = readdirSync(join(fixtures, "invalid")).filter((f) => f.endsWith(".yaml"));
  const covered = new Set([...cases.map((c) => c[0]), "unknown-statement-class.yaml"]);
  assert.deepEqual(files.filter((f) => !covered.has(f)), []);
});

test("an unknown key points at the key and suggests the closest one", async () => {
  const { problems } = await parseBundleFile(invalid("unknown-key.yaml"));
  const p = problems.find((x) => x.pointer === "/policies/0/alow")!;
  assert.deepEqual([p.line, p.column], [16, 5]);
  assert.match(p.message, /^unknown key "alow" in policies\[0\] \(did you mean "allow"\? expected one of name, groups/);
});

test("secrets are never echoed: a literal password, a private JWK", async () => {
  const lit = await parseBundleFile(invalid("literal-password.yaml"));
  assert.ok(!JSON.stringify(lit.problems).includes("Sup3rS3cret"));
  assert.ok(!JSON.stringify(lit.problems).includes("hunter2"));
  const mal = await parseBundleFile(invalid("malformed-credential.yaml"));
  assert.equal(mal.problems.length, 2);
  assert.ok(!JSON.stringify(mal.problems).includes("ORDERS DB"));
  assert.match(mal.problems[1]!.message, /file: needs an absolute file path/);
  const jwk = await parseBundleFile(invalid("private-jwk.yaml"));
  assert.ok(!JSON.stringify(jwk.problems).includes("jpsQnnGQ"));
});

test("positions follow flow and block style, anchors and aliases", () => {
  const text = [
    "resources:",
    "  - &r { name: a, upstream: { host: h, database: d, user: u, password: env:P } }",
    "policies:",
    "  - name: p",
    "    groups: [g]",
    "    resources: [a, b]",
    "    allow: [read]",
    "groups: [g]",
  ].join("\n");
  const { problems } = parseBundle(text, "<stdin>");
  assert.deepEqual(problems.map(formatProblem), ['<stdin>:6:20: unknown resource "b" in policies[0].resources (no entry in resources has that name)']);
});

test("an unreadable file is a problem, not a throw", async () => {
  const r = await parseBundleFile(join(fixtures, "does-not-exist.yaml"));
  assert.equal(r.bundle, undefined);
  assert.equal(formatProblem(r.problems[0]!), `${join(fixtures, "does-not-exist.yaml")}: cannot read the policy file: no such file`);
});

test("a YAML bomb of aliases is refused, not expanded", () => {
  const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 0; i < 8; i++) lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill("*" + String.fromCharCode(97 + i)).join(", ")}]`);
  const r = parseBundle(lines.join("\n"), "bomb.yaml");
  assert.equal(r.bundle, undefined);
  assert.match(r.problems[0]!.message, /YAML error: .*alias/i);
});

test("parseBundle is pure: the same text gives the same result", () => {
  const text = readFileSync(join(fixtures, "valid-contract.yaml"), "utf8");
  assert.deepEqual(parseBundle(text, "x.yaml"), parseBundle(text, "x.yaml"));
});

test("problems found without the document (server side) get positions back from the YAML text", () => {
  const text = readFileSync(join(fixtures, "valid-contract.yaml"), "utf8");
  const located = locateProblems(
    [
      { pointer: "/issuers/0/issuer", message: "issuer URL is listed twice" },
      { pointer: "/policies/1/approval/timeout", message: "too long" },
      { pointer: "/policies/9", message: "beyond the document" },
    ],
    text,
    "contract.yaml",
  );
  assert.deepEqual(located.map(formatProblem), ["contract.yaml:5:13: issuer URL is listed twice", "contract.yaml:31:44: too long", "contract.yaml:20:3: beyond the document"]);
});

test("odd YAML: several documents, tagged values, collection keys, tabs, unresolved aliases", () => {
  const f = (t: string) => parseBundle(t, "f.yaml").problems.map(formatProblem);
  assert.deepEqual(f("issuers: []\n---\npolicies: []\n"), ["f.yaml:2:1: YAML syntax error: the file holds several YAML documents (---); a bundle is one document"]);
  assert.deepEqual(f("!!binary abc"), ["f.yaml:1:10: the bundle must be a mapping with issuers, resources, policies, masking; got a tagged value"]);
  assert.deepEqual(f("policies:\n\t- name: x\n"), ["f.yaml:2:1: YAML syntax error: Tabs are not allowed as indentation"]);
  assert.deepEqual(f("policies: *nope\n"), ["f.yaml:1:1: YAML error: Unresolved alias (the anchor must be set before the alias): nope"]);
  assert.match(f("? [a]\n: b\n")[0]!, /^f\.yaml:1:1: unknown key "\[ a \]" at the top level/);
});
