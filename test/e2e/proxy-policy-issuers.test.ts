/**
 * Issuer-scoped policies through the real proxy: the dev issuer takes groups from a `groups` claim,
 * so a dev token can name any group; a policy with `issuers:` must not be reachable that way, at
 * connect (28000) or at a statement (42501).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import type { Bundle, IssuerSpec } from "@sluice/shared/policy";
import { startStack, randomId } from "./harness.js";

const refusedWith = (code: string) => (e: { code?: string }) => {
  assert.equal(e.code, code, String((e as Error).message));
  return true;
};

test("a policy scoped to another issuer neither lets a dev token connect nor run what it allows", { timeout: 90_000 }, async (t) => {
  // a second trusted issuer (inline keys: no network), standing in for e.g. GitHub Actions
  const ciIdp = await createDevIssuer({ issuer: `https://ci-idp.sluice.test/${randomId()}`, audience: "sluice" });
  const ciSpec: IssuerSpec = { ...devIssuerSpec(ciIdp), name: "ci-idp" };
  const deployersOnlyFromCi: Bundle["policies"][number] = {
    name: "deployers",
    groups: ["deployers"],
    resources: ["*"],
    issuers: ["ci-idp"],
    allow: ["read", "write", "ddl"],
  };
  const policy = (extra: Bundle["policies"]): Bundle => ({ issuers: [ciSpec], resources: [], masking: [], policies: [deployersOnlyFromCi, ...extra] });

  const s = await startStack(t, { policy: policy([]), setupSql: "CREATE TABLE t (x int); INSERT INTO t VALUES (1)" });

  // a dev token claiming `deployers`: the only policy for that group is scoped to ci-idp
  await assert.rejects(s.connect({ sub: "mallory", groups: ["deployers"] }), (e: { code?: string; message?: string }) => {
    assert.equal(e.code, "28000");
    assert.match(e.message ?? "", /no policy allows "mallory" to connect/);
    return true;
  });

  // an unscoped read policy for the same group: now it connects, but the scoped DDL stays out of reach
  await s.apply(policy([{ name: "deployers-read", groups: ["deployers"], resources: ["*"], allow: ["read"] }]));
  const c = await s.connect({ sub: "mallory", groups: ["deployers"] });
  assert.equal((await c.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 1);
  await assert.rejects(c.query("CREATE TABLE made_by_dev (y int)"), (e: { code?: string; message?: string }) => {
    assert.equal(e.code, "42501");
    assert.match(e.message ?? "", /ddl/);
    return true;
  });
  await assert.rejects(c.query("INSERT INTO t VALUES (2)"), refusedWith("42501"));
  assert.equal((await s.pgAdmin.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 1);
  assert.equal((await s.pgAdmin.query("SELECT to_regclass('made_by_dev') IS NULL AS gone")).rows[0].gone, true);

  // the scoped policy does work for its issuer: statements are decided with the session's issuer
  // (connect alone would pass here through the unscoped read policy)
  const fromCi = new pg.Client({ ...(await s.clientConfig({ sub: "pipeline" })), password: await ciIdp.mint({ sub: "pipeline", groups: ["deployers"], ttlSec: 600 }) });
  // the stack's own teardown runs first (registered first): a late socket error must not fail the test
  fromCi.on("error", () => undefined);
  t.after(() => fromCi.end().catch(() => undefined));
  await fromCi.connect();
  await fromCi.query("CREATE TABLE made_by_ci (y int)");
  await fromCi.query("INSERT INTO t VALUES (3)");
  assert.equal((await s.pgAdmin.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 2);
  await fromCi.end();
});

test(
  "a policy scoped to the token's own issuer lets it connect",
  { timeout: 60_000 },
  async (t) => {
    const s = await startStack(t, {
      policy: { issuers: [], resources: [], masking: [], policies: [{ name: "dev-only", groups: ["deployers"], resources: ["*"], issuers: ["dev"], allow: ["read"] }] },
    });
    const c = await s.connect({ groups: ["deployers"] });
    assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
  },
);
