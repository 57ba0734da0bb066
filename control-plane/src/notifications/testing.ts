/** A held statement and its decisions, for the notification tests. */
import type { ApprovalGranted, ApprovalRequested } from "../domain/approval/approval-decider.js";

export function requested(over: Partial<ApprovalRequested> = {}): ApprovalRequested {
  return {
    type: "ApprovalRequested",
    approvalId: "apr-0123456789",
    commandId: "018f0000-0000-7000-8000-000000000001",
    requester: { subject: "repo:acme/shop:ref:refs/heads/main", issuer: "github", groups: ["deployers"] },
    binding: { fingerprint: "fp", paramsHash: "ph", sessionId: "018f0000-0000-7000-8000-00000000abcd", resource: "orders" },
    sql: "ALTER TABLE orders ADD COLUMN shipped_at timestamptz",
    statementClass: "ddl",
    rule: "deployers/requireApproval:ddl",
    policy: "deployers",
    approvers: ["dba"],
    timeoutMs: 600_000,
    node: "dp-1",
    region: "eu-west",
    statementId: 7,
    requestedAt: "2026-12-01T10:00:00.000Z",
    expiresAt: "2026-12-01T10:10:00.000Z",
    ...over,
  };
}

export function granted(over: Partial<ApprovalGranted> = {}): ApprovalGranted {
  return {
    type: "ApprovalGranted",
    approvalId: "apr-0123456789",
    commandId: "018f0000-0000-7000-8000-000000000002",
    approver: { subject: "alice", issuer: "okta", groups: ["dba"] },
    reason: "additive, reviewed",
    binding: requested().binding,
    at: "2026-12-01T10:03:00.000Z",
    ...over,
  };
}
