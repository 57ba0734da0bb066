/**
 * `sluice policy simulate` against a live control plane (PolicyService.Get, no --policy) agrees with
 * what the proxy does to the same statement from the same identity.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bundle } from "@sluice/shared/policy";
import { runSimulate } from "../../bin/lib/policy-simulate.js";
import { startStack } from "./harness.js";
import { corpusResource, corpusSchemaSql, loadCorpusPolicy } from "../fixtures/corpus/load-corpus.js";

test("policy simulate reads the control plane's bundle and predicts the proxy's decision", { timeout: 120_000 }, async (t) => {
  const policy: Bundle = { ...loadCorpusPolicy(), resources: [] };
  const stack = await startStack(t, { policy, resource: corpusResource, setupSql: corpusSchemaSql() });
  const dir = mkdtempSync(join(tmpdir(), "sluice-simulate-e2e-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Array<{ groups: string[]; sql: string; exit: number; rule: string }> = [
    { groups: ["ci"], sql: "select count(*) from orders", exit: 0, rule: "ci-read/allow:read" },
    { groups: ["ci"], sql: 'select * from "public"."secrets"', exit: 1, rule: "ci-read/tables.deny:public.secrets" },
    { groups: ["app"], sql: "with x as (delete from audit_log returning id) select count(*) from x", exit: 1, rule: "writers/deny:delete-without-where" },
    { groups: ["deployers"], sql: "truncate audit_log", exit: 3, rule: "deployers/requireApproval:truncate" },
  ];
  for (const [i, c] of cases.entries()) {
    // the claims of the token the proxy sees: the dev issuer's iss and its `groups` claim
    const claimsFile = join(dir, `claims-${i}.json`);
    writeFileSync(claimsFile, JSON.stringify({ iss: stack.issuer.issuer, aud: "sluice", sub: `sim-${i}`, groups: c.groups }));
    let out = "";
    const code = await runSimulate(
      ["--resource", corpusResource, "--claims", claimsFile, "--sql", c.sql, "--json", "--server", stack.controlPlane.grpcAddress, "--token", stack.adminToken],
      { out: (s) => void (out += s), err: (s) => void (out += s) },
    );
    assert.equal(code, c.exit, out);
    const j = JSON.parse(out);
    assert.equal(j.rule, c.rule);
    assert.equal(j.issuer, "dev");
    assert.match(j.bundle, /^revision \d+$/);

    // the proxy, same identity, same text
    const client = await stack.connect({ sub: `sim-${i}`, groups: c.groups });
    if (c.exit === 0) await client.query(c.sql);
    else if (c.exit === 3) {
      // held for approval: the client is told which request to approve (the approval flow has its own tests)
      const notice = new Promise<string>((resolve) => client.on("notice", (n) => resolve(n.message ?? "")));
      client.query(c.sql).catch(() => undefined);
      assert.match(await notice, new RegExp(`approval required: request \\S+ for ${c.rule.replace(/[/:]/g, "\\$&")}`));
      await client.end().catch(() => undefined);
      continue;
    } else await assert.rejects(client.query(c.sql), (e: { code?: string; message?: string }) => e.code === "42501" && (e.message ?? "").includes(`rule "${c.rule}"`));
    await client.end();
  }
});
