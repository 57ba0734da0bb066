/** SessionService over the read model: list/get sessions, rebuild the model. Admin groups only. */
import type { SessionServiceServer, SessionSummary, StatementView, ApprovalView } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import type { Logger } from "@sluice/shared/logging";
import type { ReadModel, SessionRow } from "../projections/read-model/read-model.js";
import type { ProjectorHandle } from "../audit/audit-fold.js";
import type { ReadModelDb } from "../projections/read-model/schema.js";
import { requireAnyGroup, type Authenticator } from "./authenticate.js";
import { unary } from "./service-error.js";

export interface SessionServiceDeps {
  model: ReadModel;
  projector: ProjectorHandle;
  auth: Authenticator;
  adminGroups: () => readonly string[];
  logger: Logger;
}

export function sessionSummary(s: SessionRow): SessionSummary {
  return {
    sessionId: s.session_id,
    region: s.region ?? "",
    node: s.node ?? "",
    resource: s.resource ?? "",
    clientAddress: s.client_address ?? "",
    identity: s.subject ?? "",
    issuer: s.issuer ?? "",
    groups: s.groupsList,
    status: s.status,
    denyReason: s.deny_reason ?? "",
    endReason: s.end_reason ?? "",
    startedAt: s.started_at ?? "",
    authenticatedAt: s.authenticated_at ?? "",
    endedAt: s.ended_at ?? "",
    statements: s.statements,
    blocked: s.blocked,
    policyRevision: s.policy_rev ?? 0,
    clientUser: s.client_user ?? "",
    applicationName: s.application_name ?? "",
  };
}

function statementView(s: ReadModelDb["statements"]): StatementView {
  return {
    statementId: s.statement_id,
    sql: s.sql,
    paramsJson: s.params ?? "",
    protocol: s.protocol,
    statementClass: s.class,
    tablesJson: s.tables,
    decision: s.decision,
    rule: s.rule,
    policy: s.policy ?? "",
    outcome: s.outcome,
    commandTag: s.command_tag ?? "",
    rows: s.rows ?? undefined,
    durationMs: s.duration_ms ?? undefined,
    errorSqlstate: s.error_sqlstate ?? "",
    errorMessage: s.error_message ?? "",
    policyRevision: s.policy_rev ?? 0,
    decidedAt: s.decided_at,
    completedAt: s.completed_at ?? "",
  };
}

function approvalView(a: ReadModelDb["approvals"]): ApprovalView {
  return {
    approvalId: a.approval_id,
    statementId: a.statement_id,
    requester: a.requester ?? "",
    resource: a.resource ?? "",
    sql: a.sql,
    approvers: JSON.parse(a.approvers) as string[],
    status: a.status,
    decidedBy: a.decided_by ?? "",
    requestedAt: a.requested_at,
    decidedAt: a.decided_at ?? "",
  };
}

export function sessionService(d: SessionServiceDeps): SessionServiceServer {
  const base = (method: string) => ({
    auth: d.auth,
    logger: d.logger,
    method: `SessionService/${method}`,
    authorize: (a: Parameters<typeof requireAnyGroup>[0]) => requireAnyGroup(a, d.adminGroups(), `SessionService/${method}`),
  });
  return {
    list: unary(base("List"), async (req) => {
      const rows = await d.model.listSessions({
        identity: req.identity || undefined,
        resource: req.resource || undefined,
        since: req.since || undefined,
        until: req.until || undefined,
        decision: req.decision || undefined,
        status: req.status || undefined,
        node: req.node || undefined,
        limit: req.limit > 0 ? Math.min(req.limit, 10_000) : 100,
      });
      return { sessions: rows.map(sessionSummary) };
    }),
    get: unary(base("Get"), async (req) => {
      if (!req.sessionId) throw new SluiceError("invalid_argument", "session id required");
      const s = await d.model.getSession(req.sessionId);
      if (!s) throw new SluiceError("not_found", `no session ${req.sessionId} in the read model`);
      return { session: sessionSummary(s.session), statements: s.statements.map(statementView), approvals: s.approvals.map(approvalView) };
    }),
    rebuildReadModel: unary(base("RebuildReadModel"), async () => {
      const r = await d.projector.rebuild();
      d.logger.info({ position: r.position, ms: r.ms }, "read model rebuilt");
      return {
        position: r.position,
        sessions: r.counts.sessions ?? 0,
        statements: r.counts.statements ?? 0,
        decisions: r.counts.decisions ?? 0,
        approvals: r.counts.approvals ?? 0,
        durationMs: r.ms,
      };
    }),
  };
}
