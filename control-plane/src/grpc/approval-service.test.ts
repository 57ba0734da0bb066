/**
 * The approval component on a real control plane and real NATS: requests arrive over NATS
 * request/reply (as a data plane sends them), decisions over gRPC with bearer tokens; the events land
 * on SLUICE_CONTROL; the expirer appends ApprovalExpired once the deadline passes.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import {
  ApprovalServiceClient,
  NatsApprovalReply,
  NatsApprovalRequest,
  type DecideApprovalResponse,
  type GetApprovalResponse,
  type ListApprovalsResponse,
} from "@sluice/proto";
import { startTestControlPlane, type TestControlPlane } from "../testing/test-control-plane.js";
import type { ApprovalApp } from "../app/approval-app.js";
import { JetStreamEventStore } from "../infra/jetstream-event-store.js";
import { APPROVAL_ID } from "../domain/approval/approval-decider.js";

function call<Res>(h: TestControlPlane, method: "list" | "get" | "approve" | "reject", req: object, token: string): Promise<Res> {
  // ts-proto encodes a missing string field as "undefined": send complete messages
  if (method === "approve" || method === "reject") req = { reason: "", commandId: randomUUID(), ...req };
  const client = new ApprovalServiceClient(h.address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  const fn = (client as unknown as Record<string, Function>)[method]!;
  return new Promise<Res>((resolve, reject) => {
    fn.call(client, req, md, { deadline: Date.now() + 20_000 }, (e: ServiceError | null, r: Res) => {
      client.close();
      if (e) reject(e);
      else resolve(r);
    });
  });
}

async function ask(h: TestControlPlane, over: Partial<NatsApprovalRequest> = {}): Promise<NatsApprovalReply> {
  const req: NatsApprovalRequest = {
    idempotencyKey: randomUUID(),
    requester: { subject: "pipeline", issuer: "dev", groups: ["deployers"] },
    binding: { fingerprint: "fp01", paramsHash: "ph01", sessionId: "s-1", resource: "orders" },
    sql: "CREATE TABLE t (id int)",
    statementClass: "ddl",
    rule: "deployers/approve:ddl",
    policy: "deployers",
    approvers: ["dba"],
    timeoutMs: 600_000,
    node: "dp-1",
    region: "local",
    statementId: 1,
    nodeStartedAt: "",
    ...over,
  };
  const m = await h.nc.request(h.names.approvalRequestSubject, NatsApprovalRequest.encode(req).finish(), { timeout: 10_000 });
  return NatsApprovalReply.decode(m.data);
}

test("approval service: NATS request, gRPC decisions, rules enforced, expiry", { timeout: 60_000 }, async (t) => {
  const h = await startTestControlPlane(t);
  const dba = await h.dev.mint({ sub: "carol", groups: ["dba"] });
  const dba2 = await h.dev.mint({ sub: "dave", groups: ["dba"] });
  const stranger = await h.dev.mint({ sub: "mallory", groups: ["ops"] });
  const requesterToken = await h.dev.mint({ sub: "pipeline", groups: ["deployers", "dba"] });

  await t.test("a request gets a short id; a retry with the same key gets the same id and appends nothing", async () => {
    const key = randomUUID();
    const a = await ask(h, { idempotencyKey: key });
    assert.equal(a.errorCode, "");
    assert.match(a.id, APPROVAL_ID);
    const b = await ask(h, { idempotencyKey: key });
    assert.equal(b.id, a.id);
    assert.ok(h.cp.api<ApprovalApp>("approvals"), "the component offers its app in-process");
    const stream = await new JetStreamEventStore(h.nc, h.names).read("approval", a.id);
    assert.equal(stream.events.length, 1);
    assert.equal(stream.events[0]!.cloudEvent.type, "dev.sluice.control.approval.approval_requested.v1");
  });

  await t.test("a request without approvers is refused with its reason", async () => {
    const r = await ask(h, { approvers: [] });
    assert.equal(r.errorCode, "invalid_argument");
    assert.match(r.errorMessage, /approver/);
  });

  await t.test("list/get: pending shown to approvers and admins, hidden from strangers", async () => {
    const r = await ask(h);
    const forDba = await call<ListApprovalsResponse>(h, "list", { all: false }, dba);
    assert.ok(forDba.approvals.some((v) => v.id === r.id && v.status === "pending" && v.sql.startsWith("CREATE TABLE")));
    const forAdmin = await call<ListApprovalsResponse>(h, "list", { all: false }, h.adminToken);
    assert.ok(forAdmin.approvals.some((v) => v.id === r.id));
    const forStranger = await call<ListApprovalsResponse>(h, "list", { all: true }, stranger);
    assert.equal(forStranger.approvals.length, 0);
    await assert.rejects(call(h, "get", { id: r.id }, stranger), (e: ServiceError) => e.code === status.NOT_FOUND);
    const got = await call<GetApprovalResponse>(h, "get", { id: r.id }, dba);
    assert.deepEqual(got.approval!.binding, { fingerprint: "fp01", paramsHash: "ph01", sessionId: "s-1", resource: "orders" });
  });

  await t.test("approve: not by the requester, not by a non-approver; once; then FAILED_PRECONDITION", async () => {
    const r = await ask(h);
    await assert.rejects(call(h, "approve", { id: r.id }, requesterToken), (e: ServiceError) => {
      assert.equal(e.code, status.PERMISSION_DENIED);
      assert.match(e.details, /the requester cannot approve their own request/);
      return true;
    });
    await assert.rejects(call(h, "approve", { id: r.id }, stranger), (e: ServiceError) => {
      assert.equal(e.code, status.PERMISSION_DENIED);
      assert.match(e.details, /only members of dba/);
      return true;
    });
    // the admin is not an approver unless the policy names its group
    await assert.rejects(call(h, "approve", { id: r.id }, h.adminToken), (e: ServiceError) => e.code === status.PERMISSION_DENIED);
    const commandId = randomUUID();
    const ok = await call<DecideApprovalResponse>(h, "approve", { id: r.id, reason: "ship it", commandId }, dba);
    assert.equal(ok.approval!.status, "approved");
    assert.equal(ok.approval!.decidedBy!.subject, "carol");
    // the same command re-sent: no second event
    const again = await call<DecideApprovalResponse>(h, "approve", { id: r.id, reason: "ship it", commandId }, dba);
    assert.equal(again.duplicate, true);
    await assert.rejects(call(h, "reject", { id: r.id }, dba2), (e: ServiceError) => {
      assert.equal(e.code, status.FAILED_PRECONDITION);
      assert.match(e.details, /already approved/);
      return true;
    });
    const all = await call<ListApprovalsResponse>(h, "list", { all: true }, dba);
    assert.equal(all.approvals.find((v) => v.id === r.id)?.status, "approved");
    const pending = await call<ListApprovalsResponse>(h, "list", { all: false }, dba);
    assert.ok(!pending.approvals.some((v) => v.id === r.id));
  });

  await t.test("unknown id: NOT_FOUND; malformed id: INVALID_ARGUMENT", async () => {
    await assert.rejects(call(h, "approve", { id: "apr-0000000000" }, dba), (e: ServiceError) => e.code === status.NOT_FOUND);
    await assert.rejects(call(h, "approve", { id: "no such.id" }, dba), (e: ServiceError) => e.code === status.INVALID_ARGUMENT);
    // command ids are Nats-Msg-Ids: a non-UUID (e.g. a client's "undefined") would de-duplicate unrelated commands
    const r = await ask(h);
    await assert.rejects(call(h, "approve", { id: r.id, commandId: "undefined" }, dba), (e: ServiceError) => e.code === status.INVALID_ARGUMENT);
    const bad = await ask(h, { idempotencyKey: "not-a-uuid" });
    assert.equal(bad.errorCode, "invalid_argument");
  });

  await t.test("the control plane expires a request after its timeout; it cannot be approved then", async () => {
    const r = await ask(h, { timeoutMs: 300 });
    const deadline = Date.now() + 10_000;
    let st = "";
    while (Date.now() < deadline) {
      st = (await call<GetApprovalResponse>(h, "get", { id: r.id }, dba)).approval!.status;
      if (st === "expired") break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(st, "expired");
    await assert.rejects(call(h, "approve", { id: r.id }, dba), (e: ServiceError) => {
      assert.equal(e.code, status.FAILED_PRECONDITION);
      assert.match(e.details, /already expired/);
      return true;
    });
  });
});
