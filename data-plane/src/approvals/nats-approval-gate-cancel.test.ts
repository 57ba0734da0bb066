/**
 * The gate's cancel path against real NATS, with a scripted control plane: a held statement whose
 * client goes away is cancelled on the control plane too (on the node's own cancel subject), and a
 * cancel the control plane made (it took the node for gone) ends the hold as a refusal, never a run.
 */
import test, { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { NatsApprovalCancel, NatsApprovalReply, NatsApprovalRequest } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import { CONTROL_PLANE_SOURCE, encodeEvent, eventType, makeEvent } from "@sluice/shared/events";
import { deleteAll, ensureControlStream, natsNames, type NatsNames } from "@sluice/shared/nats";
import { loadSqlParser } from "@sluice/shared/sql";
import type { SessionInfo, StatementRecord } from "../session/session-hooks.js";
import { createNatsApprovalGate, type ApprovalAuditEvents } from "./nats-approval-gate.js";

const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

const session: SessionInfo = {
  sessionId: "0190aaaa-0000-7000-8000-0000000000c1",
  nodeId: "dp-7",
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

const stmt = (sql: string): StatementRecord => ({
  seq: 4,
  protocol: "simple",
  sql,
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

async function setup(t: TestContext, id: string) {
  await loadSqlParser();
  const names = natsNames("t" + randomBytes(5).toString("hex"));
  const nc = await connect({ servers: NATS_URL });
  await ensureControlStream(nc, names, { storage: "memory" });
  const requests: NatsApprovalRequest[] = [];
  const cancels: Array<{ subject: string; cancel: NatsApprovalCancel }> = [];
  const reply = (m: { respond(b: Uint8Array): boolean }, r: Partial<NatsApprovalReply>) =>
    m.respond(NatsApprovalReply.encode({ id: "", expiresAt: "", errorCode: "", errorMessage: "", ...r }).finish());
  const subs = [
    nc.subscribe(names.approvalRequestSubject, {
      callback: (_e, m) => {
        requests.push(NatsApprovalRequest.decode(m.data));
        reply(m, { id, expiresAt: new Date(Date.now() + 60_000).toISOString() });
      },
    }),
    nc.subscribe(names.approvalCancelAll, {
      callback: (_e, m) => {
        cancels.push({ subject: m.subject, cancel: NatsApprovalCancel.decode(m.data) });
        reply(m, { id });
      },
    }),
  ];
  t.after(async () => {
    for (const s of subs) s.unsubscribe();
    await deleteAll(nc, names).catch(() => undefined);
    await nc.close();
  });
  const calls: string[] = [];
  const events: ApprovalAuditEvents = {
    requested: (_s, _st, r) => void calls.push(`requested ${r.approvalId}`),
    approved: (_s, _st, r) => void calls.push(`approved ${r.approvalId}`),
    rejected: (_s, _st, r) => void calls.push(`rejected ${r.approvalId} ${r.reason}`),
  };
  return { nc, names, requests, cancels, calls, events };
}

async function appendControl(nc: NatsConnection, names: NatsNames, id: string, name: string, data: object) {
  const ce = makeEvent({ source: CONTROL_PLANE_SOURCE, type: eventType(`control.approval.${name}`), subject: `approval/${id}`, data });
  await jetstream(nc).publish(names.controlSubject("approval", id), encodeEvent(ce));
}

async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the client leaves while held: the gate cancels the request on the control plane, on its own node's subject", async (t) => {
  const h = await setup(t, "apr-ccccccccc1");
  const gate = createNatsApprovalGate({ nc: h.nc, names: h.names, events: h.events, nodeStartedAt: "2026-12-01T18:00:00.000Z" });
  const abort = new AbortController();
  const p = gate.request(session, stmt("CREATE TABLE left_behind (id int)"), () => setTimeout(() => abort.abort(), 100), abort.signal);
  await assert.rejects(p, (e: unknown) => SluiceError.is(e, "aborted"));
  await until("the cancel", () => h.cancels.length > 0);
  assert.equal(h.cancels.length, 1);
  assert.equal(h.cancels[0]!.subject, h.names.approvalCancelSubject("dp-7"));
  assert.equal(h.cancels[0]!.cancel.id, "apr-ccccccccc1");
  assert.equal(h.cancels[0]!.cancel.reason, "client_left");
  assert.match(h.cancels[0]!.cancel.commandId, /^[0-9a-f-]{36}$/);
  // the request said which process of the node filed it (the control plane tells a restart by it)
  assert.equal(h.requests[0]!.nodeStartedAt, "2026-12-01T18:00:00.000Z");
  assert.deepEqual(h.calls, ["requested apr-ccccccccc1", "rejected apr-ccccccccc1 cancelled"]);
});

test("a cancel on the control plane (the node taken for gone) ends the hold: refused with permission_denied, recorded cancelled", async (t) => {
  const h = await setup(t, "apr-ccccccccc2");
  const gate = createNatsApprovalGate({ nc: h.nc, names: h.names, events: h.events });
  const p = gate.request(session, stmt("CREATE TABLE never_run (id int)"), () => {
    void appendControl(h.nc, h.names, "apr-ccccccccc2", "approval_cancelled", {
      approvalId: "apr-ccccccccc2",
      by: { subject: "control-plane", issuer: "sluice", groups: [] },
      reason: "node_gone",
      detail: "no fleet heartbeat from dp-7 for 31 s",
    });
  });
  await assert.rejects(p, (e: unknown) => {
    assert.ok(SluiceError.is(e, "permission_denied"), String(e));
    assert.match((e as Error).message, /approval request apr-ccccccccc2 was cancelled \(node_gone: no fleet heartbeat from dp-7 for 31 s\); the statement was not run/);
    return true;
  });
  assert.deepEqual(h.calls, ["requested apr-ccccccccc2", "rejected apr-ccccccccc2 cancelled"]);
  // the control plane made that cancel: the node does not send one of its own
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(h.cancels.length, 0);
});
