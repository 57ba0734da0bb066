import { test } from "node:test";
import assert from "node:assert/strict";
import type { Decision } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import { decodeErrorFields } from "../wire/decode.js";
import { failedDecision, FORWARD, settledDecision, StatementGate, type Verdict } from "./statement-gate.js";
import { noopAudit, type ApprovalGate, type AuditSink, type SessionInfo, type StatementRecord } from "./session-hooks.js";

const info = { sessionId: "s", resource: "app" } as SessionInfo;
const decision = (action: Decision["action"]): Decision => ({ action, rule: `t/${action}`, reason: "because", statementClass: "write", statementIndex: 0, statements: [] });
const rec = (action: Decision["action"], sql = "DELETE FROM t"): StatementRecord => ({ seq: 1, protocol: "parse", sql, decision: decision(action) });

function gate(audit: AuditSink = noopAudit, approvals?: ApprovalGate) {
  const notices: string[] = [];
  return { notices, g: new StatementGate({ info, audit, approvals, notice: (m) => void notices.push(m) }) };
}

async function settle(v: Verdict): Promise<Verdict> {
  while (v.do === "hold") v = await v.until;
  return v;
}
const errOf = (v: Verdict) => (v.do === "poison" ? decodeErrorFields(v.error) : undefined);

test("an allowed statement with a synchronous recorder is forwarded at once, recorded once", () => {
  const allowed: number[] = [];
  const { g } = gate({ ...noopAudit, statementAllowed: (_s, r) => void allowed.push(r.seq) });
  assert.equal(g.admit(rec("allow")), FORWARD);
  assert.deepEqual(allowed, [1]);
});

test("ack durability: a short hold that forwards on the ack and poisons with 57P03 when the recorder refuses", async () => {
  let fail = false;
  const { g } = gate({ ...noopAudit, statementAllowed: async () => { if (fail) throw new SluiceError("unavailable", "audit stream unavailable"); } });
  const ok = g.admit(rec("allow"));
  assert.equal(ok.do, "hold");
  assert.equal(ok.do === "hold" && ok.long, false);
  assert.equal(await settle(ok), FORWARD);
  fail = true;
  const refused = await settle(g.admit(rec("allow")));
  assert.equal(errOf(refused)?.C, "57P03");
});

test("a denied statement is recorded blocked, then poisoned with 42501 naming the rule, also when the recorder fails", async () => {
  const blocked: string[] = [];
  const { g } = gate({ ...noopAudit, statementBlocked: (_s, r) => void blocked.push(r.decision.rule) });
  const v = g.admit(rec("deny"));
  assert.equal(errOf(v)?.C, "42501");
  assert.match(errOf(v)!.M!, /rule "t\/deny" \(write\): because/);
  assert.deepEqual(blocked, ["t/deny"]);
  const failing = gate({ ...noopAudit, statementBlocked: () => Promise.reject(new Error("down")) }).g;
  assert.equal(errOf(await settle(failing.deny(rec("deny"))))?.C, "42501");
});

test("approval: without a gate it is a deny; with one a long hold that forwards when approved and 42501 otherwise", async () => {
  assert.match(errOf(gate().g.admit(rec("approve")))!.M!, /requires approval and no approval service is configured/);
  const answers: Array<"approved" | "rejected" | "timeout"> = ["approved", "rejected", "timeout"];
  const approvals: ApprovalGate = { request: async (_s, _r, notice) => (notice("asked"), answers.shift()!) };
  const allowed: number[] = [];
  const { g, notices } = gate({ ...noopAudit, statementAllowed: (_s, r) => void allowed.push(r.seq) }, approvals);
  const v = g.admit(rec("approve"));
  assert.equal(v.do === "hold" && v.long, true);
  assert.equal(await settle(v), FORWARD);
  assert.deepEqual(allowed, [1], "approved, then recorded as allowed");
  assert.match(errOf(await settle(g.admit(rec("approve"))))!.M!, /rejected by an approver/);
  assert.match(errOf(await settle(g.admit(rec("approve"))))!.M!, /approval timed out/);
  assert.deepEqual(notices, ["asked", "asked", "asked"]);
  assert.deepEqual(allowed, [1]);
});

test("dispose aborts waiting approvals", async () => {
  let signal: AbortSignal | undefined;
  const approvals: ApprovalGate = {
    request: (_s, _r, _n, sig) => new Promise((_res, rej) => { signal = sig; sig?.addEventListener("abort", () => rej(new Error("client gone"))); }),
  };
  const { g } = gate(noopAudit, approvals);
  const v = g.admit(rec("approve"));
  g.dispose();
  assert.equal(signal?.aborted, true);
  assert.equal((await settle(v)).do, "poison");
});

test("a rejected decision is a deny: 57P03 for unavailable, 57014 for a classification out of time, 53300 for too many waiting, 42501 otherwise; settledDecision never rejects", async () => {
  const unavailable = failedDecision(new SluiceError("unavailable", "the SQL classifier is shutting down"));
  assert.equal(unavailable.action, "deny");
  const { g } = gate();
  assert.equal(errOf(g.deny({ ...rec("deny"), decision: unavailable }))?.C, "57P03");
  const late = errOf(g.deny({ ...rec("deny"), decision: failedDecision(new SluiceError("deadline_exceeded", "the statement could not be classified within 50 ms")) }));
  assert.equal(late?.C, "57014");
  assert.equal(late?.M, "the statement could not be classified within 50 ms");
  assert.equal(errOf(g.deny({ ...rec("deny"), decision: failedDecision(new SluiceError("resource_exhausted", "too many waiting")) }))?.C, "53300");
  assert.equal(errOf(g.deny({ ...rec("deny"), decision: failedDecision(new Error("boom")) }))?.C, "42501");
  const d = await settledDecision(Promise.reject(new Error("boom")));
  assert.equal(d.action, "deny");
  assert.equal((await settledDecision(decision("allow"))).action, "allow");
});
