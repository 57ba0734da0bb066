import { test } from "node:test";
import assert from "node:assert/strict";
import { loadSqlParser } from "@sluice/shared/sql";
import type { PolicySnapshot } from "@sluice/shared/policy";
import { snapshotEnforcer } from "./snapshot-enforcer.js";
import { staticSnapshots, type SessionInfo } from "./session-hooks.js";

const snap: PolicySnapshot = {
  revision: 3, hash: "h", appliedBy: "test", appliedAt: new Date(0).toISOString(),
  bundle: { issuers: [], groups: ["ci"], resources: [], masking: [], policies: [{ name: "ci-read", groups: ["ci"], resources: ["app"], allow: ["read"] }] },
};
const session: SessionInfo = {
  sessionId: "s1", nodeId: "n1", region: "r", resource: "app", clientUser: "ci", clientAddress: "127.0.0.1:1",
  subject: "sub", issuer: "dev", groups: ["ci"], claims: {}, policyRevision: 3,
};

test("a statement above maxStatementBytes is denied unparsed, naming the limit; one at the limit is decided", async () => {
  await loadSqlParser();
  const e = snapshotEnforcer(staticSnapshots(snap), undefined, { maxStatementBytes: 4096 });
  const pad = (n: number) => `SELECT 1 /* ${"x".repeat(n)} */`;
  const fits = pad(4096 - pad(0).length);
  assert.equal(Buffer.byteLength(fits), 4096);
  assert.equal(e.decide(fits, "simple", session).action, "allow");
  const big = e.decide(pad(4097 - pad(0).length), "simple", session);
  assert.equal(big.action, "deny");
  assert.equal(big.rule, "statement-too-large");
  assert.match(big.reason, /4097 bytes; sluice evaluates statements of at most 4096 bytes \(dataPlane.maxStatementBytes\)/);
  // counted in UTF-8 bytes, not characters
  const wide = e.decide(`SELECT '${"é".repeat(2100)}'`, "simple", session);
  assert.equal(wide.rule, "statement-too-large");
});
