import { test } from "node:test";
import assert from "node:assert/strict";
import type { CloudEvent } from "@sluice/shared/events";
import { buildReplay } from "./session-replay.js";

let n = 0;
const ev = (type: string, data: unknown, subject = "s-1", ms = n * 10): CloudEvent =>
  ({ specversion: "1.0", id: `e${++n}`, source: "sluice://local/dp", type: `dev.sluice.${type}.v1`, subject, time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ms)).toISOString(), datacontenttype: "application/json", data, sluicepolicyrev: 3 }) as unknown as CloudEvent;

const stmt = (id: number, sql: string, decision: string, rule: string, extra: object = {}) => ({ statementId: id, sql, protocol: "simple", class: "read", tables: { read: ["customers"], write: [] }, risks: [], statements: [], decision, rule, ...extra });

test("replay: a session's statements with decisions, approval, completion and masked rows; other sessions ignored", () => {
  n = 0;
  const r = buildReplay("s-1", [
    ev("session.started", { clientAddress: "127.0.0.1", resource: "app", node: "dp", region: "local", tls: { enabled: true } }),
    ev("session.authenticated", { subject: "pipeline", issuer: "dev", groups: ["deployers"], claims: { repository: "acme/orders" } }),
    ev("statement.allowed", stmt(1, "SELECT email FROM customers", "allow", "ci/allow:read")),
    ev("result.rows", { statementId: 1, columns: [{ name: "email", typeOid: 25, masked: true, maskStrategy: "partial" }], values: [["a***@example.com"]], rows: 1, recorded: 1, truncated: false, recordedBytes: 16 }),
    ev("statement.completed", { statementId: 1, commandTag: "SELECT 1", rows: 1, durationMs: 1.5 }),
    ev("statement.allowed", stmt(9, "SELECT 1", "allow", "x"), "s-other"),
    ev("statement.approval_requested", stmt(2, "CREATE TABLE t (id int)", "approve", "deployers/approve:ddl", { approvalId: "apr-1", approvers: ["dba"], timeoutMs: 60000 })),
    ev("statement.approved", { statementId: 2, approvalId: "apr-1", approver: "carol" }),
    ev("statement.allowed", stmt(2, "CREATE TABLE t (id int)", "approve", "deployers/approve:ddl")),
    ev("statement.completed", { statementId: 2, commandTag: "CREATE TABLE", rows: 0, durationMs: 3 }),
    ev("statement.approval_requested", stmt(3, "DROP TABLE t", "approve", "deployers/approve:ddl", { approvalId: "apr-2", approvers: ["dba"], timeoutMs: 60000 })),
    ev("statement.rejected", { statementId: 3, approvalId: "apr-2", reason: "rejected", approver: "carol", sqlstate: "42501" }),
    ev("session.ended", { reason: "client_terminate", durationMs: 120, statements: 3, bytesIn: 1, bytesOut: 2 }),
  ]);
  assert.equal(r.events, 12);
  assert.deepEqual(r.policyRevisions, [3]);
  assert.equal(r.authenticated?.claims.repository, "acme/orders");
  assert.deepEqual(r.statements.map((s) => [s.statementId, s.outcome]), [[1, "completed"], [2, "completed"], [3, "rejected"]]);
  assert.deepEqual(r.statements[0]!.result, { columns: [{ name: "email", masked: true, maskStrategy: "partial" }], values: [["a***@example.com"]], rows: 1, recorded: 1, truncated: false });
  assert.equal(r.statements[0]!.offsetMs, 20);
  assert.deepEqual(r.statements[1]!.approval, { id: "apr-1", approvers: ["dba"], timeoutMs: 60000, by: "carol", verdict: "approved", at: r.statements[1]!.approval!.at });
  assert.equal(r.statements[1]!.decision, "approve");
  assert.deepEqual([r.statements[2]!.approval?.verdict, r.statements[2]!.sqlstate], ["rejected", "42501"]);
  assert.equal(r.ended?.reason, "client_terminate");
});

test("replay: rows carried by statement.completed itself (batched format) are shown like result.rows", () => {
  n = 0;
  const r = buildReplay("s-1", [
    ev("statement.allowed", stmt(1, "SELECT 1 AS x", "allow", "r")),
    ev("statement.completed", { statementId: 1, commandTag: "SELECT 1", rows: 1, durationMs: 1, results: [{ columns: [{ name: "x", typeOid: 23 }], values: [["1"]], rows: 1, recorded: 1, truncated: false, recordedBytes: 1 }] }),
  ]);
  assert.deepEqual(r.statements[0]!.result?.values, [["1"]]);
});
