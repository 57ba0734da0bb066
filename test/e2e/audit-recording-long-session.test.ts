/**
 * A session of 10,000 statements through the real proxy with a real client (psql): every statement is on the stream exactly once, in order, as two
 * events (its decision, and its completion carrying the capped result rows), and the session's hash chain verifies.
 */
import { test } from "node:test";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import assert from "node:assert/strict";
import {
  verifyChain, joinChunks, SessionEventType,
  type StatementAllowedData, type StatementCompletedData,
} from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { createAuditObserver, type AuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack } from "./proxy-stack.js";
import { readStream, bySession, recorderOn, sharedAuditStream } from "./audit-recording-support.js";

const execFileP = promisify(execFile);
const T = (n: string) => SessionEventType[n as keyof typeof SessionEventType];

// every 200th statement returns 50 rows (above the row cap), the others one row
const sqlOf = (i: number) => (i % 200 === 1 ? `SELECT id, label FROM items ORDER BY id` : `SELECT id, label FROM items WHERE id = ${(i % 50) + 1}`);

/** resolves when the observer recorded a session.ended */
function endedSignal(audit: AuditObserver): Promise<void> {
  return new Promise((resolve) => {
    const orig = audit.sessionEnded!.bind(audit);
    audit.sessionEnded = (info, end) => {
      orig(info, end);
      resolve();
    };
  });
}

test("a session of 10,000 statements through the proxy is on the stream exactly once, in order, with a valid chain", async (t) => {
  const { nc, names } = await sharedAuditStream(t);
  const publisher = recorderOn(t, nc, names, "ack", { region: "eu-1", node: "dp-a" });
  let bundle!: Bundle;
  const snaps = { current: () => ({ revision: 1, bundle, hash: "x", appliedBy: "t", appliedAt: new Date(0).toISOString() }), onChange: () => () => {} };
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 10, maxBytesPerStatement: 4096, snapshots: snaps });
  const ended = endedSignal(audit);
  const stack = await startProxyStack(t, { bundle: (b) => (bundle = b), dp: { audit, auditFeatures: { decodeParams: true, captureRows: 10 }, region: "eu-1", nodeId: "dp-a" } });
  await stack.direct("CREATE TABLE items (id int PRIMARY KEY, label text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g");
  // psql (its own process, so the client does not compete with the proxy for this process's CPU):
  // one session, 10,000 statements on the simple protocol, each waiting for its answer
  const N = 10_000;
  const dir = mkdtempSync(join(tmpdir(), "sluice-audit-long-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "statements.sql");
  writeFileSync(file, Array.from({ length: N }, (_, i) => sqlOf(i + 1) + ";\n").join(""));
  const { stdout } = await execFileP("psql", [`host=127.0.0.1 port=${stack.dp.port} dbname=app user=ci sslmode=require`, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-f", file], {
    env: { ...process.env, PGPASSWORD: await stack.token(), PGCONNECT_TIMEOUT: "10" },
    maxBuffer: 64 * 1024 * 1024,
  });
  const expectedLines = Array.from({ length: N }, (_, i) => ((i + 1) % 200 === 1 ? 50 : 1)).reduce((a, b) => a + b, 0);
  assert.equal(stdout.trim().split("\n").length, expectedLines, "psql got every answer");
  // session.ended is recorded when the proxy sees the connection close
  await ended;
  await publisher.flush(20_000);
  const sessions = bySession(await readStream(nc, names.auditStream));
  assert.equal(sessions.size, 1);
  const [events] = [...sessions.values()];
  assert.equal(verifyChain(events!), undefined);
  const logical = joinChunks(events!);
  const allowed = logical.filter((e) => e.type === T("statement.allowed"));
  assert.deepEqual(allowed.map((e) => (e.data as StatementAllowedData).statementId), Array.from({ length: N }, (_, i) => i + 1));
  const completed = logical.filter((e) => e.type === T("statement.completed")).map((e) => e.data as StatementCompletedData);
  assert.equal(completed.length, N);
  assert.ok(completed.every((c, i) => c.statementId === i + 1 && !c.error));
  // the SQL as sent, in the order sent, each with its decision
  allowed.forEach((e, i) => {
    const d = e.data as StatementAllowedData;
    assert.deepEqual([d.protocol, d.sql, d.decision, d.rule], ["simple", sqlOf(i + 1) + ";", "allow", "test/allow"]);
  });
  // two events per statement (its decision and its completion, which carries the captured rows)
  assert.equal(logical.length, 2 * N + 3, "session.started, session.authenticated, 2 per statement, session.ended");
  assert.equal(logical.filter((e) => e.type === T("result.rows")).length, 0, "captures under 64 KiB ride inside statement.completed");
  // result rows: capped by rows, counts exact
  const rows = completed.flatMap((c) => c.results ?? []);
  assert.equal(rows.length, N, "every statement's result set");
  const big = rows.find((r) => r.rows === 50)!;
  assert.ok(big, "a 50-row result was recorded");
  assert.equal(big.recorded, 10);
  assert.equal(big.truncated, true);
  assert.deepEqual(big.values[0], ["1", "item 1"]);
  assert.equal(logical[0]!.type, T("session.started"));
  assert.equal(logical.at(-1)!.type, T("session.ended"));
  assert.equal(logical[0]!.source, "sluice://eu-1/dp-a");
});
