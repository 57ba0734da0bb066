import { test } from "node:test";
import assert from "node:assert/strict";
import type { Decision } from "@sluice/shared/policy";
import { noopAudit, type ApprovalGate, type SessionInfo, type StatementRecord, type ConnectionInfo } from "../session/session-hooks.js";
import { countingApprovals, countingAudit, ProxyCounters } from "./proxy-counters.js";

const session = { sessionId: "s" } as SessionInfo;
const conn = { sessionId: "s" } as ConnectionInfo;
const rec = (action: Decision["action"]): StatementRecord => ({
  seq: 1, protocol: "simple", sql: "SELECT 1",
  decision: { action, rule: "r", reason: "", statementClass: "read", statementIndex: 0, statements: [] },
});

test("the counting audit sink counts decisions and refused connections, and passes every call and its answer on", async () => {
  const c = new ProxyCounters();
  const seen: string[] = [];
  const ack = Promise.resolve();
  const audit = countingAudit({
    ...noopAudit,
    statementAllowed: () => { seen.push("allowed"); return ack; },
    statementBlocked: () => { seen.push("blocked"); },
    sessionDenied: (_c, d) => { seen.push(`denied ${d.sqlstate}`); },
  }, c);
  assert.equal(audit.statementAllowed(session, rec("allow")), ack, "the ack promise is the inner one");
  audit.statementAllowed(session, rec("approve"));
  audit.statementBlocked(session, rec("deny"));
  for (const sqlstate of ["28P01", "28000", "3D000", "42501", "08004", "0A000", "57P03", "08006", "08P01", "XX000"]) {
    audit.sessionDenied(conn, { sqlstate, reason: "x" });
  }
  assert.deepEqual(c.decisions, { allowed: 1, denied: 1, approved: 1, rejected: 0, timeout: 0, failed: 0 });
  assert.deepEqual(c.sessions, { established: 0, denied: 6, failed: 4 });
  assert.equal(seen.length, 13);
});

test("the counting approval gate counts what waits and how each wait ended", async () => {
  const c = new ProxyCounters();
  const answers: Array<Promise<"approved" | "rejected" | "timeout">> = [];
  const inner: ApprovalGate = { request: () => answers.shift()! };
  const gate = countingApprovals(inner, c);
  let release!: (r: "rejected") => void;
  answers.push(new Promise((r) => (release = r)), Promise.resolve("timeout"), Promise.resolve("approved"), Promise.reject(new Error("gone")));
  const held = gate.request(session, rec("approve"), () => undefined);
  assert.equal(c.approvalsWaiting, 1);
  assert.equal(await gate.request(session, rec("approve"), () => undefined), "timeout");
  assert.equal(await gate.request(session, rec("approve"), () => undefined), "approved");
  await assert.rejects(gate.request(session, rec("approve"), () => undefined), /gone/);
  assert.equal(c.approvalsWaiting, 1);
  release("rejected");
  assert.equal(await held, "rejected");
  assert.equal(c.approvalsWaiting, 0);
  // approved is counted when the statement is recorded as allowed (countingAudit), not here
  assert.deepEqual(c.decisions, { allowed: 0, denied: 0, approved: 0, rejected: 1, timeout: 1, failed: 1 });
});
