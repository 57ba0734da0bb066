/**
 * The approval's session events (statement.approval_requested / statement.approved /
 * statement.rejected) on the session's own recorder, so they sit in its hash chain between the
 * statement's request and its statement.allowed (decision `approve`) or the client's 42501.
 * SQL text and bound parameters pass the same InputMasker the audit observer uses.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { StatementApprovalRequestedData } from "@sluice/shared/events";
import { statementEventData } from "../recorder/audit-event-data.js";
import type { InputMasker } from "../recorder/input-masker.js";
import type { SessionRecorder } from "../recorder/session-recorder.js";
import type { SessionInfo, StatementRecord } from "../session/session-hooks.js";
import type { ApprovalAuditEvents } from "./nats-approval-gate.js";

export interface ApprovalAuditEventsOptions {
  /** the audit observer (its live recorder per session) */
  observer: { recorderFor(sessionId: string): SessionRecorder | undefined };
  masker: InputMasker;
}

export function approvalAuditEvents(o: ApprovalAuditEventsOptions): ApprovalAuditEvents {
  const rev = (session: SessionInfo, stmt: StatementRecord) => (stmt.decision as { revision?: number }).revision ?? session.policyRevision;
  const recorder = (session: SessionInfo) => o.observer.recorderFor(session.sessionId);
  return {
    requested(session, stmt, r) {
      const rec = recorder(session);
      if (!rec) return;
      const data: StatementApprovalRequestedData = {
        ...statementEventData(o.masker, session, stmt),
        decision: "approve",
        approvalId: r.approvalId,
        approvers: r.approvers,
        timeoutMs: r.timeoutMs,
        fingerprint: r.fingerprint,
      };
      try {
        return rec.record("statement.approval_requested", data, { policyRev: rev(session, stmt) });
      } catch (e) {
        // the buffer is full (fail closed): the statement is refused before anyone is asked
        throw SluiceError.from(e, "unavailable");
      }
    },
    approved(session, stmt, r) {
      const rec = recorder(session);
      if (!rec) return;
      try {
        // gating in ack durability: the statement is forwarded only after this is acknowledged
        return rec.record("statement.approved", { statementId: stmt.seq, approvalId: r.approvalId, approver: r.approver }, { policyRev: rev(session, stmt) });
      } catch (e) {
        return Promise.reject(SluiceError.from(e, "unavailable"));
      }
    },
    rejected(session, stmt, r) {
      const rec = recorder(session);
      if (!rec) return;
      try {
        rec.record(
          "statement.rejected",
          { statementId: stmt.seq, approvalId: r.approvalId, reason: r.reason, sqlstate: "42501", ...(r.approver ? { approver: r.approver } : {}) },
          { policyRev: rev(session, stmt) },
        );
      } catch {
        // the client gets 42501 either way; a full buffer is the observer's to report
      }
    },
  };
}
