/**
 * The approval's session events (statement.approval_requested / statement.approved /
 * statement.rejected) on the session's own recorder, so they sit in its hash chain between the
 * statement's request and its statement.allowed (decision `approve`) or the client's 42501.
 * SQL text and bound parameters pass the same InputMasker the audit observer uses.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { StatementApprovalRequestedData, StatementPart } from "@sluice/shared/events";
import type { InputMasker } from "../recorder/audit-observer.js";
import type { SessionRecorder } from "../recorder/session-recorder.js";
import type { BoundParam, SessionInfo, StatementRecord } from "../session/session-hooks.js";
import type { ApprovalAuditEvents } from "./nats-approval-gate.js";

export interface ApprovalAuditEventsOptions {
  /** the audit observer (its live recorder per session) */
  observer: { recorderFor(sessionId: string): SessionRecorder | undefined };
  masker: InputMasker;
}

function renderParam(p: BoundParam): string | null {
  if (p.value === null) return null;
  return p.format === "binary" ? "\\x" + p.value.toString("hex") : p.value.toString("utf8");
}

export function approvalAuditEvents(o: ApprovalAuditEventsOptions): ApprovalAuditEvents {
  const rev = (session: SessionInfo, stmt: StatementRecord) => (stmt.decision as { revision?: number }).revision ?? session.policyRevision;
  const recorder = (session: SessionInfo) => o.observer.recorderFor(session.sessionId);
  return {
    requested(session, stmt, r) {
      const rec = recorder(session);
      if (!rec) return;
      const d = stmt.decision;
      const read = new Set<string>(), write = new Set<string>(), risks = new Set<StatementPart["risks"][number]>();
      const statements: StatementPart[] = d.statements.map((s) => {
        s.tables.read.forEach((t) => read.add(t));
        s.tables.write.forEach((t) => write.add(t));
        s.risks.forEach((x) => risks.add(x));
        return { kind: s.kind, class: s.class, tables: { read: [...s.tables.read], write: [...s.tables.write] }, functions: [...s.functions], risks: [...s.risks] };
      });
      const data: StatementApprovalRequestedData = {
        statementId: stmt.seq,
        sql: o.masker.text(session, stmt.sql),
        protocol: stmt.protocol === "simple" ? "simple" : "extended",
        class: d.statementClass,
        tables: { read: [...read], write: [...write] },
        risks: [...risks],
        statements,
        decision: "approve",
        rule: d.rule,
        reason: d.reason,
        approvalId: r.approvalId,
        approvers: r.approvers,
        timeoutMs: r.timeoutMs,
        fingerprint: r.fingerprint,
      };
      if (d.policy !== undefined) data.policy = d.policy;
      if (stmt.params) data.params = o.masker.params(session, stmt.params.map(renderParam));
      if (stmt.statementName) data.preparedName = stmt.statementName;
      if (stmt.portalName) data.portal = stmt.portalName;
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
