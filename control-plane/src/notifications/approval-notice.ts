/**
 * What an approval webhook says, built from the approval aggregate's events (pure): the held
 * statement as the data plane recorded it (already masked there), who asked, the rule, the expiry,
 * and the commands that decide it. Never a token, a credential or a parameter value (a request
 * carries only the parameters' hash).
 */
import type { Bundle, WebhookEvent, WebhookSpec } from "@sluice/shared/policy";
import type { Actor } from "../domain/command-meta.js";
import type { ApprovalEvent, ApprovalRequested } from "../domain/approval/approval-decider.js";

export interface ApprovalNotice {
  /** `requested` when the statement is held; `decided` when it was approved, rejected or expired */
  kind: WebhookEvent;
  /** the control event it tells of (CloudEvents id): one delivery per event and webhook */
  eventId: string;
  time: string;
  approvalId: string;
  status: "pending" | "approved" | "rejected" | "expired" | "cancelled";
  resource: string;
  sessionId: string;
  statementId: number;
  statement: string;
  statementClass: string;
  rule: string;
  policy: string;
  requester: Actor;
  approvers: string[];
  requestedAt: string;
  expiresAt: string;
  node: string;
  region: string;
  decidedAt?: string;
  decidedBy?: { subject: string; issuer: string };
  reason?: string;
  commands: { show: string; approve: string; reject: string };
}

const STATUS: Record<ApprovalEvent["type"], ApprovalNotice["status"]> = {
  ApprovalRequested: "pending",
  ApprovalGranted: "approved",
  ApprovalRejected: "rejected",
  ApprovalExpired: "expired",
  ApprovalCancelled: "cancelled",
};

/** The notice of `event` (the request itself, or its decision) on the request `req`. */
export function approvalNotice(req: ApprovalRequested, event: ApprovalEvent, meta: { eventId: string; time: string }): ApprovalNotice {
  const n: ApprovalNotice = {
    kind: event.type === "ApprovalRequested" ? "requested" : "decided",
    eventId: meta.eventId,
    time: meta.time,
    approvalId: req.approvalId,
    status: STATUS[event.type],
    resource: req.binding.resource,
    sessionId: req.binding.sessionId,
    statementId: req.statementId,
    statement: req.sql,
    statementClass: req.statementClass,
    rule: req.rule,
    policy: req.policy,
    requester: { subject: req.requester.subject, issuer: req.requester.issuer, groups: [...req.requester.groups] },
    approvers: [...req.approvers],
    requestedAt: req.requestedAt,
    expiresAt: req.expiresAt,
    node: req.node,
    region: req.region,
    commands: {
      show: `sluice approvals show ${req.approvalId}`,
      approve: `sluice approvals approve ${req.approvalId}`,
      reject: `sluice approvals reject ${req.approvalId}`,
    },
  };
  if (event.type !== "ApprovalRequested") {
    n.decidedAt = event.at;
    if (event.type === "ApprovalCancelled") {
      n.decidedBy = { subject: event.by.subject, issuer: event.by.issuer };
      n.reason = event.detail ? `${event.reason}: ${event.detail}` : event.reason;
    } else if (event.type !== "ApprovalExpired") {
      n.decidedBy = { subject: event.approver.subject, issuer: event.approver.issuer };
      if (event.reason) n.reason = event.reason;
    }
  }
  return n;
}

/**
 * The webhooks to tell (pure): the bundle's global `notifications.approvals` and the deciding
 * policy's `approval.notify`, each once, those whose `on` includes the notice's kind.
 */
export function webhooksFor(bundle: Bundle | undefined, policy: string, kind: WebhookEvent): WebhookSpec[] {
  const n = bundle?.notifications;
  if (!n?.webhooks.length) return [];
  const names = new Set([...(n.approvals ?? []), ...(bundle!.policies.find((p) => p.name === policy)?.approval?.notify ?? [])]);
  return n.webhooks.filter((w) => names.has(w.name) && (w.on ?? ["requested", "decided"]).includes(kind));
}
