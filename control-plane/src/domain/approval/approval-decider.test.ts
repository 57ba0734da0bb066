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
  type ApprovalCommand,
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
