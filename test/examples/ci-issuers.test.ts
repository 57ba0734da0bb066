/**
 * The examples' issuer blocks (examples/github-actions, examples/gitlab-ci) against tokens shaped
 * like the providers' own — every claim their documentation lists — signed by a local RS256 key
 * that stands in for the provider's. The blocks are used exactly as shipped: the bundle file is
 * parsed and validated like `sluice policy apply` does, the issuer's jwksUrl is answered with the
 * local key (nothing else is fetched), and the real verification (verifyToken), group mapping and
 * policy evaluation decide.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair, type JWK } from "jose";
import { JwksCache, verifyToken } from "@sluice/shared/auth";
import { canConnect, evaluate, formatProblem, parseBundleFile, type Bundle } from "@sluice/shared/policy";
import { classifySql, loadSqlParser } from "@sluice/shared/sql";
import { readFileSync } from "node:fs";
import { repoRoot } from "../lib/run-sluice.js";

const examples = join(repoRoot, "examples");

async function bundleOf(path: string): Promise<Bundle> {
  const r = await parseBundleFile(join(examples, path));
  assert.deepEqual(r.problems.map(formatProblem), [], `${path} validates`);
  return r.bundle!;
}

/** A provider stand-in: one RSA key, its JWKS served only at the issuer block's jwksUrl. */
async function provider(jwksUrl: string) {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "local-test-key", alg: "RS256", use: "sig" };
  const fetched: string[] = [];
  const fetch = (async (url: string | URL) => {
    fetched.push(String(url));
    if (String(url) !== jwksUrl) return new Response("not found", { status: 404 });
    return new Response(JSON.stringify({ keys: [jwk] }), { status: 200, headers: { "content-type": "application/json" } });
  }) as typeof globalThis.fetch;
  const sign = (claims: Record<string, unknown>, o: { iss: string; aud: string; ttl?: number; key?: typeof privateKey } ) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "RS256", kid: "local-test-key", typ: "JWT" })
      .setIssuer(o.iss)
      .setAudience(o.aud)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + (o.ttl ?? 300))
      .setJti(crypto.randomUUID())
      .sign(o.key ?? privateKey);
  };
  return { sign, cache: new JwksCache({ fetch }), fetched };
}

/** GitHub Actions' claims for a job, as its OIDC reference lists them. */
function githubClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: "repo:acme/orders:environment:production",
    environment: "production",
    ref: "refs/heads/main",
    sha: "c040cae0f0dc81641728557b80f09cfa23b83fe5",
    repository: "acme/orders",
    repository_owner: "acme",
    repository_id: "424242",
    repository_owner_id: "2020",
    repository_visibility: "private",
    actor: "octocat",
    actor_id: "1001",
    workflow: "deploy-migrations",
    workflow_ref: "acme/orders/.github/workflows/deploy-migrations.yml@refs/heads/main",
    workflow_sha: "c040cae0f0dc81641728557b80f09cfa23b83fe5",
    job_workflow_ref: "acme/orders/.github/workflows/deploy-migrations.yml@refs/heads/main",
    job_workflow_sha: "c040cae0f0dc81641728557b80f09cfa23b83fe5",
    head_ref: "",
    base_ref: "",
    event_name: "push",
    ref_type: "branch",
    ref_protected: "true",
    run_id: "22259804324",
    run_number: "42",
    run_attempt: "1",
    runner_environment: "github-hosted",
    check_run_id: "90000001",
    ...over,
  };
}

/** GitLab CI's ID-token claims for a job, as its documentation lists them. */
function gitlabClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: "project_path:acme/orders:ref_type:branch:ref:main",
    namespace_id: "72",
    namespace_path: "acme",
    project_id: "20",
    project_path: "acme/orders",
    user_id: "1",
    user_login: "ada",
    user_email: "ada@acme.example",
    user_identities: [],
    pipeline_id: "574",
    pipeline_source: "push",
    job_id: "302",
    ref: "main",
    ref_type: "branch",
    ref_path: "refs/heads/main",
    ref_protected: "true",
    environment: "production",
    environment_protected: "true",
    deployment_tier: "production",
    environment_action: "start",
    runner_id: 1,
    runner_environment: "gitlab-hosted",
    sha: "714a629c0b401fdce83e847fc9589983fc6f46bc",
    project_visibility: "private",
    ci_config_ref_uri: "gitlab.com/acme/orders//.gitlab-ci.yml@refs/heads/main",
    ci_config_sha: "714a629c0b401fdce83e847fc9589983fc6f46bc",
    ...over,
  };
}

const MIGRATION = readFileSync(join(examples, "migrations/psql/001_orders_shipped_at.sql"), "utf8");

for (const p of [
  { name: "GitHub Actions", dir: "github-actions", claims: githubClaims, issuerName: "github" },
  { name: "GitLab CI", dir: "gitlab-ci", claims: gitlabClaims, issuerName: "gitlab" },
] as const) {
  test(`${p.name}: the example's issuer block maps the deploy job to the migrator, everything else to less`, async () => {
    await loadSqlParser();
    const bundle = await bundleOf(`${p.dir}/sluice-policy.yaml`);
    const spec = bundle.issuers.find((i) => i.name === p.issuerName)!;
    assert.equal(spec.audience, "sluice");
    const idp = await provider(spec.jwksUrl!);
    const sign = (claims: Record<string, unknown>, o: { aud?: string; ttl?: number } = {}) => idp.sign(claims, { iss: spec.issuer, aud: o.aud ?? "sluice", ttl: o.ttl });
    const verify = (token: string) => verifyToken(token, bundle.issuers, { jwksFetcher: idp.cache });
    const decide = (groups: string[], sql: string) =>
      evaluate(bundle, { resource: "orders", groups, issuer: p.issuerName }, classifySql(sql)).action;

    // the deploy job itself: the migrator, whose migration runs and whose DROP waits for a DBA
    const deploy = await verify(await sign(p.claims()));
    assert.equal(deploy.issuer, p.issuerName);
    assert.deepEqual(deploy.groups, ["orders-migrator", "orders-ci"]);
    assert.equal(canConnect(bundle, { resource: "orders", groups: deploy.groups, issuer: p.issuerName }), true);
    // the example migration, as one message (both statements classified, every one must pass)
    assert.equal(decide(deploy.groups, MIGRATION), "allow");
    assert.equal(decide(deploy.groups, "DROP TABLE orders"), "approve");
    assert.equal(decide(deploy.groups, "TRUNCATE orders"), "approve");
    assert.equal(decide(deploy.groups, "DROP DATABASE orders"), "deny");
    assert.equal(decide(deploy.groups, "GRANT ALL ON orders TO PUBLIC"), "deny");
    assert.equal(idp.fetched.every((u) => u === spec.jwksUrl), true, "only the block's jwksUrl is fetched");

    // each condition of the migrator rule matters: change one claim and only the read-only group is left
    const gh = p.dir === "github-actions";
    const variants: Array<[string, Record<string, unknown>]> = gh
      ? [
          ["a pull request", { ref: "refs/pull/7/merge", environment: undefined, sub: "repo:acme/orders:pull_request", event_name: "pull_request" }],
          ["another branch", { ref: "refs/heads/feature-x" }],
          ["no environment", { environment: undefined, sub: "repo:acme/orders:ref:refs/heads/main" }],
          ["another workflow of the repository", { job_workflow_ref: "acme/orders/.github/workflows/ci.yml@refs/heads/main", workflow_ref: "acme/orders/.github/workflows/ci.yml@refs/heads/main" }],
          ["a reusable workflow from elsewhere", { job_workflow_ref: "evil/actions/.github/workflows/deploy-migrations.yml@refs/heads/main" }],
        ]
      : [
          ["a merge request pipeline", { ref: "feature-x", ref_path: "refs/heads/feature-x", ref_protected: "false", environment: undefined, pipeline_source: "merge_request_event" }],
          ["an unprotected ref", { ref_protected: "false" }],
          ["a tag called main", { ref_type: "tag", ref_path: "refs/tags/main" }],
          ["no environment", { environment: undefined }],
          ["another pipeline definition", { ci_config_ref_uri: "gitlab.com/evil/ci//.gitlab-ci.yml@refs/heads/main" }],
        ];
    for (const [what, over] of variants) {
      const claims = p.claims(over);
      for (const [k, v] of Object.entries(over)) if (v === undefined) delete claims[k];
      const v = await verify(await sign(claims));
      assert.deepEqual(v.groups, ["orders-ci"], what);
      assert.equal(decide(v.groups, MIGRATION), "deny", `${what}: no DDL`);
      assert.equal(decide(v.groups, "SELECT count(*) FROM orders"), "allow", `${what}: reads`);
    }

    // another repository or project: no group, so no connection at all (default deny)
    const stranger = await verify(await sign(p.claims(gh ? { repository: "acme/other", repository_owner: "acme" } : { project_path: "acme/other" })));
    assert.deepEqual(stranger.groups, []);
    assert.equal(canConnect(bundle, { resource: "orders", groups: stranger.groups, issuer: p.issuerName }), false);

    // what the provider's real token would fail on is refused before any claim counts
    await assert.rejects(verify(await sign(p.claims(), { aud: gh ? "https://github.com/acme" : "https://gitlab.com" })), /token rejected: wrong audience/);
    await assert.rejects(verify(await sign(p.claims(), { ttl: -120 })), /token rejected: expired/);
    const { privateKey: otherKey } = await generateKeyPair("RS256");
    await assert.rejects(verify(await idp.sign(p.claims(), { iss: spec.issuer, aud: "sluice", key: otherKey })), /token rejected: unverifiable/);
    await assert.rejects(verify(await idp.sign(p.claims(), { iss: "https://token.example.com", aud: "sluice" })), /token rejected: unknown issuer/);
  });
}

test("the workflows request the token the way each provider documents, with the sluice audience", () => {
  const gh = readFileSync(join(examples, "github-actions/deploy-migrations.yml"), "utf8");
  assert.match(gh, /^permissions:\n(?:\s+.*\n)*?\s+id-token: write/m);
  assert.match(gh, /ACTIONS_ID_TOKEN_REQUEST_URL&audience=sluice/);
  assert.match(gh, /environment: production/);
  assert.match(gh, /sluice connect-info --resource "\$SLUICE_RESOURCE" --region "\$SLUICE_REGION" --format env/);
  assert.match(gh, /psql -v ON_ERROR_STOP=1/);
  assert.match(gh, /dbmate --migrations-dir db\/migrations --no-dump-schema up/);
  const gl = readFileSync(join(examples, "gitlab-ci/.gitlab-ci.yml"), "utf8");
  assert.match(gl, /id_tokens:\n\s+SLUICE_ID_TOKEN:\n\s+aud: sluice/);
  assert.match(gl, /environment: production/);
  assert.match(gl, /sluice connect-info --resource "\$SLUICE_RESOURCE" --region "\$SLUICE_REGION" --format env/);
});
