/**
 * Decisions by statement shape through the real proxy (pg, simple protocol, real PostgreSQL and
 * JetStream): statements that differ only in their literals are decided once per shape, and each
 * still gets what it would get on its own: its rows masked, its denial when it reads what the
 * policy denies (however the literals are spelled), and its own SQL text on the audit stream.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionEventType, type StatementData } from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { DecisionCache, loadSqlParser } from "@sluice/shared/sql";
import { snapshotEnforcer } from "../../data-plane/src/session/snapshot-enforcer.js";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack } from "./proxy-stack.js";
import { readStream, recorderOn, sharedAuditStream } from "./audit-recording-support.js";

test("statements of one shape share a decision through the proxy; each keeps its own text, masking and denial", async (t) => {
  await loadSqlParser();
  const { nc, names } = await sharedAuditStream(t);
  let bundle!: Bundle;
  const snaps = { current: () => ({ revision: 1, bundle, hash: "x", appliedBy: "t", appliedAt: new Date(0).toISOString() }), onChange: () => () => {} };
  const cache = new DecisionCache();
  const publisher = recorderOn(t, nc, names, "ack");
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 10, maxBytesPerStatement: 65536, snapshots: snaps });
  const ended = new Promise<void>((resolve) => {
    const orig = audit.sessionEnded!.bind(audit);
    audit.sessionEnded = (info, end) => {
      orig(info, end);
      resolve();
    };
  });
  const stack = await startProxyStack(t, {
    bundle: (b) => {
      bundle = {
        ...b,
        policies: [{ name: "ci-read", groups: ["ci"], resources: ["app"], allow: ["read"], tables: { deny: ["public.secrets"] } }],
        masking: [{ resources: ["app"], columns: ["customers.email"], strategy: "redact" }],
      };
      return bundle;
    },
    dp: { audit, auditFeatures: { decodeParams: true, captureRows: 10 }, enforcer: snapshotEnforcer(snaps, cache) },
  });
  await stack.direct(
    "CREATE TABLE customers (id int, email text); INSERT INTO customers SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 20) i;" +
      "CREATE TABLE secrets (id int, v text); INSERT INTO secrets SELECT i, 'secret ' || i FROM generate_series(1, 20) i",
  );
  const client = await stack.pgClient();
  const sent: Array<{ sql: string; decision: "allow" | "deny" }> = [];
  for (let i = 1; i <= 20; i++) {
    const read = `SELECT id, email FROM customers WHERE id = ${i}`;
    const r = await client.query(read);
    assert.equal(r.rows[0].id, i);
    assert.notEqual(r.rows[0].email, `user${i}@example.com`, "masked like the first of its shape");
    sent.push({ sql: read, decision: "allow" });

    const secret = `SELECT v FROM secrets WHERE id = ${i}`;
    await assert.rejects(client.query(secret), { code: "42501" });
    sent.push({ sql: secret, decision: "deny" });

    // in an E'' string the backslash escapes the quote: `FROM secrets` is inside the literal
    const escaped = `SELECT E'x${i}\\' FROM secrets --' AS a FROM customers WHERE id = ${i}`;
    assert.equal((await client.query(escaped)).rows[0].a, `x${i}' FROM secrets --`);
    sent.push({ sql: escaped, decision: "allow" });
    // in a plain one it does not: this one reads secrets and the rest is a comment
    const plain = `SELECT 'x${i}\\' FROM secrets --' AS a FROM customers WHERE id = ${i}`;
    await assert.rejects(client.query(plain), { code: "42501" });
    sent.push({ sql: plain, decision: "deny" });
  }
  await client.end();
  // three shapes, each decided once: every later statement of a shape was decided by it (the fourth
  // differs in its comment, which holds `id = ${i}`: a comment is text, so each is a shape of its own)
  assert.equal(cache.shapeHits, 3 * 19);

  await ended;
  await publisher.flush(10_000);
  const decided = (await readStream(nc, names.auditStream))
    .map((s) => s.ev)
    .filter((e) => e.type === SessionEventType["statement.allowed"] || e.type === SessionEventType["statement.blocked"])
    .map((e) => e.data as StatementData)
    .filter((d) => d.protocol === "simple" && sent.some((s) => s.sql === d.sql))
    .map((d) => ({ sql: d.sql, decision: d.decision, tables: d.tables.read.join(",") }));
  assert.deepEqual(
    decided.map(({ sql, decision }) => ({ sql, decision })),
    sent,
    "each statement is on the stream with its own text and decision, in order",
  );
  // and with what it reads: the shared decision's tables are the same for every statement of a shape
  assert.deepEqual([...new Set(decided.map((d) => d.tables))].sort(), ["customers", "secrets"]);
});
