/**
 * The NATS ApprovalGate against real NATS/JetStream with a scripted control plane on the request
 * subject: it answers (or not) and appends decisions to SLUICE_CONTROL on the request's subject.
 */
import test, { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { NatsApprovalReply, NatsApprovalRequest, type ApprovalBinding } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import { CONTROL_PLANE_SOURCE, encodeEvent, eventType, makeEvent } from "@sluice/shared/events";
import { deleteAll, ensureControlStream, natsNames, type NatsNames } from "@sluice/shared/nats";
import { loadSqlParser } from "@sluice/shared/sql";
import type { SessionInfo, StatementRecord } from "../session/session-hooks.js";
import { bindingOf, createNatsApprovalGate, paramsHashOf, type ApprovalAuditEvents } from "./nats-approval-gate.js";

const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

const session: SessionInfo = {
  sessionId: "0190aaaa-0000-7000-8000-000000000001",
  nodeId: "dp-1",
  region: "local",
  resource: "orders",
  clientUser: "ci",
  clientAddress: "127.0.0.1",
  subject: "pipeline",
  issuer: "dev",
  groups: ["deployers"],
  claims: {},
  policyRevision: 3,
};

const stmt = (sql: string, params?: StatementRecord["params"]): StatementRecord => ({
  seq: 7,
  protocol: params ? "parse" : "simple",
  sql,
  ...(params ? { params } : {}),
  decision: {
    action: "approve",
    rule: "deployers/approve:ddl",
    policy: "deployers",
    reason: "policy deployers requires approval for ddl",
    statementClass: "ddl",
    statementIndex: 0,
    statements: [],
    approval: { approvers: ["dba"], timeoutMs: 60_000 },
  },
});

async function setup(t: TestContext) {
  await loadSqlParser();
  const names = natsNames("t" + randomBytes(5).toString("hex"));
  const nc = await connect({ servers: NATS_URL });
  t.after(async () => {
    await deleteAll(nc, names).catch(() => undefined);
    await nc.close();
  });
  await ensureControlStream(nc, names, { storage: "memory" });
  return { nc, names };
}

/** Appends a control event for approval `id` as the control plane would. */
async function appendDecision(nc: NatsConnection, names: NatsNames, id: string, name: "approval_granted" | "approval_rejected" | "approval_expired", data: object) {
  const ce = makeEvent({ source: CONTROL_PLANE_SOURCE, type: eventType(`control.approval.${name}`), subject: `approval/${id}`, data });
  await jetstream(nc).publish(names.controlSubject("approval", id), encodeEvent(ce));
}

/** A scripted control plane: records each request, answers per `answer`. */
function fakeControlPlane(nc: NatsConnection, names: NatsNames, answer: (req: NatsApprovalRequest, n: number) => NatsApprovalReply | null) {
  const seen: NatsApprovalRequest[] = [];
  const sub = nc.subscribe(names.approvalRequestSubject, {
    callback: (_e, m) => {
      const req = NatsApprovalRequest.decode(m.data);
      seen.push(req);
      const r = answer(req, seen.length);
      if (r) m.respond(NatsApprovalReply.encode(r).finish());
    },
  });
  return { seen, stop: () => sub.unsubscribe() };
}

const ok = (id: string, inMs = 60_000): NatsApprovalReply => ({ id, expiresAt: new Date(Date.now() + inMs).toISOString(), errorCode: "", errorMessage: "" });

function recordingEvents() {
  const calls: string[] = [];
  const events: ApprovalAuditEvents = {
    requested: (_s, st, r) => void calls.push(`requested ${r.approvalId} ${st.seq} ${r.approvers.join(",")}`),
    approved: (_s, _st, r) => void calls.push(`approved ${r.approvalId} ${r.approver}`),
    rejected: (_s, _st, r) => void calls.push(`rejected ${r.approvalId} ${r.reason}${r.approver ? " " + r.approver : ""}`),
  };
  return { calls, events };
}

test("approved: the request carries the binding (no parameter values), the notice names the id, the grant releases it", async (t) => {
  const { nc, names } = await setup(t);
  const st = stmt("INSERT INTO t VALUES ($1)", [{ format: "text", value: Buffer.from("secret-value") }]);
  const cp = fakeControlPlane(nc, names, () => ok("apr-aaaaaaaaaa"));
  t.after(cp.stop);
  const { calls, events } = recordingEvents();
  const gate = createNatsApprovalGate({ nc, names, events });
  const notices: string[] = [];
  const p = gate.request(session, st, (m) => {
    notices.push(m);
    // decide once the client was told, as a human would
    void appendDecision(nc, names, "apr-aaaaaaaaaa", "approval_granted", { approvalId: "apr-aaaaaaaaaa", approver: { subject: "carol", issuer: "dev", groups: ["dba"] }, binding: bindingOf(session, st) });
  });
  assert.equal(await p, "approved");
  assert.deepEqual(notices, ["approval required: request apr-aaaaaaaaaa for deployers/approve:ddl; approve with: sluice approvals approve apr-aaaaaaaaaa"]);
  const req = cp.seen[0]!;
  assert.deepEqual(req.requester, { subject: "pipeline", issuer: "dev", groups: ["deployers"] });
  assert.equal(req.binding!.sessionId, session.sessionId);
  assert.equal(req.binding!.resource, "orders");
  assert.equal(req.binding!.paramsHash, paramsHashOf(st));
  assert.ok(req.binding!.fingerprint.length > 0);
  assert.deepEqual(req.approvers, ["dba"]);
  assert.equal(req.timeoutMs, 60_000);
  assert.ok(!NatsApprovalRequest.encode(req).finish().toString().includes("secret-value"), "parameter values never leave the data plane");
  assert.deepEqual(calls, ["requested apr-aaaaaaaaaa 7 dba", "approved apr-aaaaaaaaaa dev:carol"]);
});

test("the binding changes with parameters, text literals, session and resource", () => {
  const a = stmt("INSERT INTO t VALUES ($1)", [{ format: "text", value: Buffer.from("1") }]);
  const b = stmt("INSERT INTO t VALUES ($1)", [{ format: "text", value: Buffer.from("2") }]);
  assert.notEqual(paramsHashOf(a), paramsHashOf(b));
  assert.notEqual(paramsHashOf(stmt("DELETE FROM t WHERE id = 1")), paramsHashOf(stmt("DELETE FROM t WHERE id = 2")));
  assert.notEqual(bindingOf(session, a).sessionId, bindingOf({ ...session, sessionId: "other" }, a).sessionId);
});

test("a grant for another statement (binding mismatch) is treated as a rejection", async (t) => {
  const { nc, names } = await setup(t);
  const cp = fakeControlPlane(nc, names, () => ok("apr-bbbbbbbbbb"));
  t.after(cp.stop);
  const st = stmt("CREATE TABLE x (id int)");
  const other: ApprovalBinding = { ...bindingOf(session, st), paramsHash: "0".repeat(64) };
  // decided before the gate even watches: the watch replays the subject from its start
  const gate = createNatsApprovalGate({ nc, names });
  const r = await gate.request(session, st, () => {
    void appendDecision(nc, names, "apr-bbbbbbbbbb", "approval_granted", { approvalId: "apr-bbbbbbbbbb", approver: { subject: "carol", issuer: "dev" }, binding: other });
  });
  assert.equal(r, "rejected");
});

test("rejected and expired decisions", async (t) => {
  const { nc, names } = await setup(t);
  let n = 0;
  const cp = fakeControlPlane(nc, names, () => ok(`apr-cccccccc0${++n}`));
  t.after(cp.stop);
  const { calls, events } = recordingEvents();
  const gate = createNatsApprovalGate({ nc, names, events });
  const r1 = await gate.request(session, stmt("CREATE TABLE a (id int)"), () => {
    void appendDecision(nc, names, "apr-cccccccc01", "approval_rejected", { approvalId: "apr-cccccccc01", approver: { subject: "dave", issuer: "dev" }, reason: "no" });
  });
  assert.equal(r1, "rejected");
  const r2 = await gate.request(session, stmt("CREATE TABLE b (id int)"), () => {
    void appendDecision(nc, names, "apr-cccccccc02", "approval_expired", { approvalId: "apr-cccccccc02" });
  });
  assert.equal(r2, "timeout");
  assert.deepEqual(calls.filter((c) => c.startsWith("rejected")), ["rejected apr-cccccccc01 rejected dev:dave", "rejected apr-cccccccc02 timeout"]);
});

test("a silent control plane: the gate times out on its own after the deadline and grace", async (t) => {
  const { nc, names } = await setup(t);
  const cp = fakeControlPlane(nc, names, () => ok("apr-dddddddddd", 200));
  t.after(cp.stop);
  const gate = createNatsApprovalGate({ nc, names, graceMs: 100 });
  const started = Date.now();
  assert.equal(await gate.request(session, stmt("CREATE TABLE c (id int)"), () => undefined), "timeout");
  assert.ok(Date.now() - started >= 250);
});

test("a lost reply is retried with the same idempotency key; no responder at all is 'unavailable'; a refusal keeps its code", async (t) => {
  const { nc, names } = await setup(t);
  const cp = fakeControlPlane(nc, names, (_r, n) => (n === 1 ? null : ok("apr-eeeeeeeeee", 200)));
  const gate = createNatsApprovalGate({ nc, names, requestTimeoutMs: 300, graceMs: 50 });
  assert.equal(await gate.request(session, stmt("CREATE TABLE d (id int)"), () => undefined), "timeout");
  assert.equal(cp.seen.length, 2);
  assert.equal(cp.seen[0]!.idempotencyKey, cp.seen[1]!.idempotencyKey);
  cp.stop();

  await assert.rejects(gate.request(session, stmt("CREATE TABLE e (id int)"), () => assert.fail("no notice without a request")), (e: unknown) => {
    assert.ok(SluiceError.is(e, "unavailable"));
    assert.match((e as Error).message, /not reachable/);
    return true;
  });

  const refusing = fakeControlPlane(nc, names, () => ({ id: "", expiresAt: "", errorCode: "invalid_argument", errorMessage: "a request needs at least one approver group" }));
  t.after(refusing.stop);
  await assert.rejects(gate.request(session, stmt("CREATE TABLE f (id int)"), () => undefined), (e: unknown) => SluiceError.is(e, "invalid_argument"));
});

test("a decision without approvers in the policy is refused before anything is asked", async (t) => {
  const { nc, names } = await setup(t);
  const gate = createNatsApprovalGate({ nc, names });
  const st = stmt("CREATE TABLE g (id int)");
  const noApprovers = { ...st, decision: { ...st.decision, approval: { approvers: [], timeoutMs: 1000 } } };
  await assert.rejects(gate.request(session, noApprovers, () => undefined), (e: unknown) => SluiceError.is(e, "permission_denied"));
});
