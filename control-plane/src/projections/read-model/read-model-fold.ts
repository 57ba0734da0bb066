/**
 * The read model's fold, pure: a batch of (logical) audit events plus the rows they touch that
 * already exist, in; the rows to insert and update, out. read-model.ts loads what `touchedKeys`
 * names, runs the fold and writes its result in one transaction with the position, so a batch of
 * thousands of events costs a handful of multi-row statements instead of several per event.
 */
import { sessionEventName, type CloudEvent } from "@sluice/shared/events";
import type {
  SessionAuthenticatedData, SessionDeniedData, SessionEndedData, SessionStartedData, StatementApprovalRequestedData,
  StatementApprovedData, StatementBlockedData, StatementCompletedData, StatementData, StatementRejectedData,
} from "@sluice/shared/events";
import type { ApprovalsTable, DecisionsTable, SessionMessagesTable, SessionsTable, StatementsTable } from "./schema.js";

/** A logical event (chunks already joined) and the stream sequence of the message it came in. */
export interface FoldEvent {
  ev: CloudEvent;
  seq: number;
}

/** The rows a batch touches that exist before it (keys as `touchedKeys` names them). */
export interface ExistingRows {
  sessions: ReadonlyMap<string, SessionsTable>;
  /** key `${session_id}/${statement_id}` */
  statements: ReadonlyMap<string, StatementsTable>;
  approvals: ReadonlyMap<string, ApprovalsTable>;
}

export interface FoldResult {
  sessions: { insert: SessionsTable[]; update: SessionsTable[] };
  statements: { insert: StatementsTable[]; update: StatementsTable[] };
  approvals: { insert: ApprovalsTable[]; update: ApprovalsTable[] };
  decisions: DecisionsTable[];
  /** where each session's events are: one row per (session, message) */
  index: SessionMessagesTable[];
}

export const statementKey = (sessionId: string, statementId: number): string => `${sessionId}/${statementId}`;

/** Which existing rows the fold of these events may need. */
export function touchedKeys(events: readonly FoldEvent[]): { sessions: string[]; statements: Array<{ sessionId: string; statementId: number }>; approvals: string[] } {
  const sessions = new Set<string>();
  const statements = new Map<string, { sessionId: string; statementId: number }>();
  const approvals = new Set<string>();
  for (const { ev } of events) {
    const name = sessionEventName(ev.type);
    if (!name) continue;
    sessions.add(ev.subject);
    const d = ev.data as { statementId?: unknown; approvalId?: unknown };
    if (typeof d?.statementId === "number") statements.set(statementKey(ev.subject, d.statementId), { sessionId: ev.subject, statementId: d.statementId });
    if ((name === "statement.approved" || name === "statement.rejected") && typeof d.approvalId === "string") approvals.add(d.approvalId);
  }
  return { sessions: [...sessions], statements: [...statements.values()], approvals: [...approvals] };
}

interface Tracked<R> {
  row: R;
  isNew: boolean;
  dirty: boolean;
}

class Rows<R> {
  private readonly m = new Map<string, Tracked<R>>();
  constructor(private readonly existing: ReadonlyMap<string, R>) {}
  get(key: string): R | undefined {
    const t = this.m.get(key);
    if (t) return t.row;
    const e = this.existing.get(key);
    if (!e) return undefined;
    this.m.set(key, { row: { ...e }, isNew: false, dirty: false });
    return this.m.get(key)!.row;
  }
  /** inserts unless present (ON CONFLICT DO NOTHING) */
  add(key: string, row: R): void {
    if (this.get(key) === undefined) this.m.set(key, { row, isNew: true, dirty: true });
  }
  /** changes an existing row; nothing when absent (an UPDATE that matches no row) */
  change(key: string, patch: Partial<R>): R | undefined {
    const row = this.get(key);
    if (!row) return undefined;
    Object.assign(row as object, patch);
    this.m.get(key)!.dirty = true;
    return row;
  }
  result(): { insert: R[]; update: R[] } {
    const insert: R[] = [];
    const update: R[] = [];
    for (const t of this.m.values()) {
      if (t.isNew) insert.push(t.row);
      else if (t.dirty) update.push(t.row);
    }
    return { insert, update };
  }
}

/** Folds the events, in stream order, onto the rows they touch. */
export function foldEvents(events: readonly FoldEvent[], existing: ExistingRows): FoldResult {
  const sessions = new Rows<SessionsTable>(existing.sessions);
  const statements = new Rows<StatementsTable>(existing.statements);
  const approvals = new Rows<ApprovalsTable>(existing.approvals);
  const decisions = new Map<string, DecisionsTable>();
  const index = new Map<string, SessionMessagesTable>();

  for (const { ev, seq } of events) {
    const name = sessionEventName(ev.type);
    if (!name) continue;
    const sid = ev.subject;
    const at = ev.time;
    const rev = ev.sluicepolicyrev ?? null;
    // every event makes sure its session row exists, moves its last position and indexes its message
    sessions.add(sid, {
      session_id: sid, region: null, node: null, resource: null, client_address: null, client_user: null, application_name: null,
      subject: null, issuer: null, groups: null, status: "connecting", deny_reason: null, end_reason: null,
      started_at: at, authenticated_at: null, ended_at: null, statements: 0, blocked: 0, policy_rev: rev,
      first_stream_seq: seq, last_stream_seq: seq,
    });
    const s = sessions.change(sid, { last_stream_seq: seq })!;
    const ik = `${sid}/${seq}`;
    if (!index.has(ik)) index.set(ik, { session_id: sid, stream_seq: seq });

    switch (name) {
      case "session.started": {
        const d = ev.data as SessionStartedData;
        sessions.change(sid, { region: d.region, node: d.node, resource: d.resource, client_address: d.clientAddress, client_user: d.user ?? null,
          application_name: d.applicationName ?? null, started_at: at });
        break;
      }
      case "session.authenticated": {
        const d = ev.data as SessionAuthenticatedData;
        sessions.change(sid, { subject: d.subject, issuer: d.issuer, groups: JSON.stringify(d.groups), status: "active", authenticated_at: at, policy_rev: rev });
        break;
      }
      case "session.denied": {
        const d = ev.data as SessionDeniedData;
        sessions.change(sid, { status: "denied", deny_reason: `${d.stage}: ${d.reason}`, ended_at: at, policy_rev: rev,
          ...(d.subject ? { subject: d.subject, issuer: d.issuer ?? null, groups: d.groups ? JSON.stringify(d.groups) : null } : {}) });
        break;
      }
      case "session.ended": {
        const d = ev.data as SessionEndedData;
        if (s.status !== "denied") sessions.change(sid, { status: "ended", end_reason: d.reason, ended_at: at });
        break;
      }
      case "statement.allowed":
      case "statement.blocked":
      case "statement.approval_requested": {
        const d = ev.data as StatementData;
        const outcome = name === "statement.allowed" ? "allowed" : name === "statement.blocked" ? "blocked" : "pending_approval";
        statements.add(statementKey(sid, d.statementId), {
          session_id: sid, statement_id: d.statementId, sql: d.sql, params: d.params ? JSON.stringify(d.params) : null,
          protocol: d.protocol, class: d.class, tables: JSON.stringify(d.tables ?? { read: [], write: [] }), decision: d.decision,
          rule: d.rule, policy: d.policy ?? null, outcome, command_tag: null, rows: null, duration_ms: null,
          error_sqlstate: name === "statement.blocked" ? (d as StatementBlockedData).sqlstate : null,
          error_message: name === "statement.blocked" ? (d.reason ?? null) : null,
          policy_rev: rev, decided_at: at, completed_at: null, stream_seq: seq,
        });
        if (!decisions.has(ev.id)) {
          decisions.set(ev.id, { event_id: ev.id, session_id: sid, statement_id: d.statementId, decision: d.decision, rule: d.rule, actor: null, policy_rev: rev, at, stream_seq: seq });
        }
        sessions.change(sid, { statements: s.statements + 1, blocked: s.blocked + (name === "statement.blocked" ? 1 : 0) });
        if (name === "statement.approval_requested") {
          const a = d as StatementApprovalRequestedData;
          approvals.add(a.approvalId, { approval_id: a.approvalId, session_id: sid, statement_id: a.statementId,
            requester: s.subject ?? null, resource: s.resource ?? null, sql: a.sql, approvers: JSON.stringify(a.approvers), status: "pending",
            decided_by: null, requested_at: at, decided_at: null, timeout_ms: a.timeoutMs });
        }
        break;
      }
      case "statement.approved":
      case "statement.rejected": {
        const d = ev.data as StatementApprovedData | StatementRejectedData;
        const approved = name === "statement.approved";
        if (!decisions.has(ev.id)) {
          decisions.set(ev.id, { event_id: ev.id, session_id: sid, statement_id: d.statementId, decision: approved ? "approved" : "rejected",
            rule: approved ? null : (d as StatementRejectedData).reason, actor: d.approver ?? null, policy_rev: rev, at, stream_seq: seq });
        }
        approvals.change(d.approvalId, { status: approved ? "approved" : (d as StatementRejectedData).reason, decided_by: d.approver ?? null, decided_at: at });
        statements.change(statementKey(sid, d.statementId), approved ? { outcome: "approved" } : { outcome: "rejected", error_sqlstate: (d as StatementRejectedData).sqlstate });
        if (!approved) sessions.change(sid, { blocked: s.blocked + 1 });
        break;
      }
      case "statement.completed": {
        const d = ev.data as StatementCompletedData;
        statements.change(statementKey(sid, d.statementId), {
          outcome: d.error ? "failed" : "completed", command_tag: d.commandTag ?? null, rows: d.rows, duration_ms: d.durationMs,
          error_sqlstate: d.error?.sqlstate ?? null, error_message: d.error?.message ?? null, completed_at: at,
        });
        break;
      }
      case "result.rows":
        break; // result values stay in the stream (replay reads them there); counts come with statement.completed
    }
  }
  return {
    sessions: sessions.result(),
    statements: statements.result(),
    approvals: approvals.result(),
    decisions: [...decisions.values()],
    index: [...index.values()],
  };
}
