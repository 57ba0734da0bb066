import test from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Actor } from "../command-meta.js";
import { specFor } from "../testing/given-when-then.js";
import {
  APPROVAL_ID,
  approvalIdFor,
  decideApproval,
  evolveApproval,
  foldApproval,
  initialApprovalState,
  nodeActor,
  type ApprovalCommand,
  type CancelReason,
  type ApprovalEvent,
  type ApprovalRequested,
  type ApprovalSubjectMatter,
} from "./approval-decider.js";

const spec = specFor({ decide: decideApproval, evolve: evolveApproval, initial: initialApprovalState });

const t0 = new Date("2026-03-01T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);
const pipeline: Actor = { subject: "repo:acme/orders", issuer: "github", groups: ["deployers"] };
const dba: Actor = { subject: "carol", issuer: "dev", groups: ["dba"] };
const otherDba: Actor = { subject: "dave", issuer: "dev", groups: ["dba", "ops"] };
const stranger: Actor = { subject: "mallory", issuer: "dev", groups: ["ops"] };
const ID = "apr-0123456789";

const matter: ApprovalSubjectMatter = {
  binding: { fingerprint: "a1b2c3d4e5f60718", paramsHash: "e3b0c442", sessionId: "0190-session", resource: "orders" },
  sql: "CREATE TABLE t (id int)",
  statementClass: "ddl",
  rule: "deployers/approve:ddl",
  policy: "deployers",
  approvers: ["dba"],
  timeoutMs: 600_000,
  node: "dp-1",
  region: "local",
  statementId: 3,
};

let n = 0;
const meta = (actor: Actor, now: Date) => ({ commandId: `cmd-${++n}`, actor, now });

const request = (now = t0, over: Partial<ApprovalSubjectMatter> = {}): ApprovalCommand => ({
  type: "RequestApproval",
  approvalId: ID,
  requester: pipeline,
  request: { ...matter, ...over },
  meta: { commandId: "req-1", actor: pipeline, now },
});
const approve = (actor: Actor, now = at(1000)): ApprovalCommand => ({ type: "Approve", approvalId: ID, reason: "looks fine", meta: meta(actor, now) });
const reject = (actor: Actor, now = at(1000)): ApprovalCommand => ({ type: "Reject", approvalId: ID, reason: "not now", meta: meta(actor, now) });
const expire = (now: Date): ApprovalCommand => ({ type: "Expire", approvalId: ID, meta: meta({ subject: "control-plane", issuer: "sluice", groups: [] }, now) });

const requested = (): ApprovalRequested => decideApproval(request(), initialApprovalState())[0] as ApprovalRequested;
const first = (cmd: ApprovalCommand, given: ApprovalEvent[]) => decideApproval(cmd, foldApproval(given))[0]!;

test("a request opens a pending approval bound to fingerprint, parameters, session and resource, expiring after the timeout", () => {
  spec.given([]).when(request()).then([
    {
      type: "ApprovalRequested",
      approvalId: ID,
      commandId: "req-1",
      requester: pipeline,
      ...matter,
      requestedAt: "2026-03-01T10:00:00.000Z",
      expiresAt: "2026-03-01T10:10:00.000Z",
    },
  ]);
  assert.equal(foldApproval([requested()]).status, "pending");
});

test("a request is refused without approvers, with a bad timeout or an incomplete binding, and twice", () => {
  spec.given([]).when(request(t0, { approvers: [] })).thenThrows("invalid_argument", /approver/);
  spec.given([]).when(request(t0, { timeoutMs: 0 })).thenThrows("invalid_argument", /timeoutMs/);
  spec.given([]).when(request(t0, { binding: { ...matter.binding, fingerprint: "" } })).thenThrows("invalid_argument", /fingerprint/);
  spec.given([requested()]).when(request()).thenThrows("already_exists");
});

test("an approver approves: the grant carries the request's binding", () => {
  spec.given([requested()]).when(approve(dba)).then((evs) => {
    assert.equal(evs.length, 1);
    const ev = evs[0]!;
    assert.equal(ev.type, "ApprovalGranted");
    if (ev.type !== "ApprovalGranted") return;
    assert.deepEqual(ev.approver, dba);
    assert.deepEqual(ev.binding, matter.binding);
    assert.equal(ev.reason, "looks fine");
    assert.equal(ev.at, at(1000).toISOString());
  });
  assert.equal(foldApproval([requested(), first(approve(dba), [requested()])]).status, "approved");
});

test("an approver rejects", () => {
  spec.given([requested()]).when(reject(otherDba)).then((evs) => {
    assert.equal(evs[0]!.type, "ApprovalRejected");
  });
});

test("the requester can never approve or reject its own request, even as a member of an approver group", () => {
  const requesterInDba: Actor = { ...pipeline, groups: ["deployers", "dba"] };
  spec.given([requested()]).when(approve(requesterInDba)).thenThrows("permission_denied", /the requester cannot approve their own request/);
  spec.given([requested()]).when(reject(requesterInDba)).thenThrows("permission_denied", /the requester cannot reject their own request/);
  // same subject under another issuer is another identity
  spec.given([requested()]).when(approve({ subject: pipeline.subject, issuer: "dev", groups: ["dba"] })).then((evs) => assert.equal(evs[0]!.type, "ApprovalGranted"));
});

test("a non-approver can neither approve nor reject", () => {
  spec.given([requested()]).when(approve(stranger)).thenThrows("permission_denied", /only members of dba may approve/);
  spec.given([requested()]).when(reject(stranger)).thenThrows("permission_denied", /only members of dba may reject/);
});

test("a decided request cannot be decided again", () => {
  const granted = first(approve(dba), [requested()]);
  const rejected = first(reject(dba), [requested()]);
  spec.given([requested(), granted]).when(approve(otherDba)).thenThrows("failed_precondition", /already approved/);
  spec.given([requested(), granted]).when(reject(otherDba)).thenThrows("failed_precondition", /already approved/);
  spec.given([requested(), rejected]).when(approve(otherDba)).thenThrows("failed_precondition", /already rejected/);
  spec.given([requested(), granted]).when(expire(at(700_000))).thenThrows("failed_precondition", /already approved/);
});

test("expiry: not before the timeout; afterwards the request is expired and cannot be decided", () => {
  spec.given([requested()]).when(expire(at(599_999))).thenThrows("failed_precondition", /does not expire before/);
  spec.given([requested()]).when(expire(at(600_000))).then((evs) => assert.equal(evs[0]!.type, "ApprovalExpired"));
  // past the deadline but not yet marked: no late decision
  spec.given([requested()]).when(approve(dba, at(600_001))).thenThrows("failed_precondition", /expired at/);
  const expired = first(expire(at(600_000)), [requested()]);
  spec.given([requested(), expired]).when(approve(dba, at(600_001))).thenThrows("failed_precondition", /already expired/);
  spec.given([requested(), expired]).when(expire(at(700_000))).thenThrows("failed_precondition", /already expired/);
});

test("deciding an unknown request is not_found", () => {
  spec.given([]).when(approve(dba)).thenThrows("not_found");
  spec.given([]).when(expire(at(1))).thenThrows("not_found");
});

test("ids are short, typeable and deterministic per digest", () => {
  const d = createHash("sha256").update("key").digest("hex");
  const id = approvalIdFor(d);
  assert.match(id, APPROVAL_ID);
  assert.equal(id.length, 14);
  assert.equal(approvalIdFor(d), id);
  assert.notEqual(approvalIdFor(createHash("sha256").update("key2").digest("hex")), id);
});

// ---- cancellation: a held statement that can no longer run ----------------------------------

const controlPlane: Actor = { subject: "control-plane", issuer: "sluice", groups: [] };
const cancel = (actor: Actor, reason: CancelReason = "node_gone", now = at(2000), detail = "no fleet heartbeat from dp-1 for 31 s"): ApprovalCommand => ({
  type: "Cancel",
  approvalId: ID,
  reason,
  detail,
  meta: meta(actor, now),
});

test("cancel of a pending request: by the control plane (node gone) or by the node that filed it (client left)", () => {
  spec.given([requested()]).when(cancel(controlPlane)).then((evs) => {
    assert.equal(evs.length, 1);
    const ev = evs[0]!;
    assert.equal(ev.type, "ApprovalCancelled");
    if (ev.type !== "ApprovalCancelled") return;
    assert.deepEqual(ev.by, controlPlane);
    assert.equal(ev.reason, "node_gone");
    assert.equal(ev.detail, "no fleet heartbeat from dp-1 for 31 s");
    assert.equal(ev.at, at(2000).toISOString());
  });
  spec.given([requested()]).when(cancel(nodeActor("dp-1"), "client_left", at(2000), "")).then((evs) => {
    assert.equal(evs[0]!.type, "ApprovalCancelled");
  });
  const cancelled = first(cancel(controlPlane), [requested()]);
  assert.equal(foldApproval([requested(), cancelled]).status, "cancelled");
  // a detail is one line and short, whatever the caller sent
  spec.given([requested()]).when(cancel(controlPlane, "node_gone", at(2000), `line one\nline two${"x".repeat(1000)}`)).then((evs) => {
    const ev = evs[0]!;
    assert.ok(ev.type === "ApprovalCancelled" && ev.detail === "line one");
  });
});

test("only the control plane or the filing node may cancel; humans (approvers, the requester) and other nodes may not", () => {
  spec.given([requested()]).when(cancel(dba)).thenThrows("permission_denied", /only the control plane or the node that filed apr-0123456789 \(dp-1\) may cancel it/);
  spec.given([requested()]).when(cancel(pipeline)).thenThrows("permission_denied");
  spec.given([requested()]).when(cancel(nodeActor("dp-2"), "client_left")).thenThrows("permission_denied");
  // the same subject under a token issuer is not the node
  spec.given([requested()]).when(cancel({ subject: "data-plane:dp-1", issuer: "dev", groups: [] })).thenThrows("permission_denied");
  spec.given([requested()]).when(cancel({ subject: "control-plane", issuer: "dev", groups: ["dba"] })).thenThrows("permission_denied");
  spec.given([requested()]).when(cancel(controlPlane, "because" as CancelReason)).thenThrows("invalid_argument", /cancel reason/);
  spec.given([]).when(cancel(controlPlane)).thenThrows("not_found");
});

test("approve or reject after cancel is refused with failed_precondition, saying it was cancelled and why", () => {
  const cancelled = first(cancel(controlPlane), [requested()]);
  spec.given([requested(), cancelled]).when(approve(dba)).thenThrows("failed_precondition", /apr-0123456789 was cancelled \(node_gone: no fleet heartbeat from dp-1 for 31 s\); the held statement will never run/);
  spec.given([requested(), cancelled]).when(reject(dba)).thenThrows("failed_precondition", /was cancelled/);
  spec.given([requested(), cancelled]).when(expire(at(700_000))).thenThrows("failed_precondition", /was cancelled/);
  // the error carries the status for clients that branch on it
  assert.throws(() => decideApproval(approve(dba), foldApproval([requested(), cancelled])), (e: unknown) => (e as { details?: { status?: string } }).details?.status === "cancelled");
  // a stranger still learns nothing beyond permission_denied
  spec.given([requested(), cancelled]).when(approve(stranger)).thenThrows("permission_denied");
});

test("cancel after cancel is a no-op (the node and the control plane race to cancel the same request)", () => {
  const cancelled = first(cancel(nodeActor("dp-1"), "session_ended"), [requested()]);
  spec.given([requested(), cancelled]).when(cancel(controlPlane)).then([]);
  spec.given([requested(), cancelled]).when(cancel(nodeActor("dp-1"), "client_left")).then([]);
  // the no-op is not a way around who may cancel
  spec.given([requested(), cancelled]).when(cancel(dba)).thenThrows("permission_denied");
});

test("cancel after a decision is refused: the decision stands (a grant may have run the statement) and is not rewritten", () => {
  const granted = first(approve(dba), [requested()]);
  const rejected = first(reject(dba), [requested()]);
  const expired = first(expire(at(600_000)), [requested()]);
  spec.given([requested(), granted]).when(cancel(controlPlane)).thenThrows("failed_precondition", /already approved/);
  spec.given([requested(), rejected]).when(cancel(nodeActor("dp-1"), "client_left")).thenThrows("failed_precondition", /already rejected/);
  spec.given([requested(), expired]).when(cancel(controlPlane)).thenThrows("failed_precondition", /already expired/);
  // past the deadline but not yet marked: it is expired, not cancelled
  spec.given([requested()]).when(cancel(controlPlane, "node_gone", at(600_000))).thenThrows("failed_precondition", /expired at/);
});
