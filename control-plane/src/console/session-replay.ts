/**
 * A session's (de-chunked) audit events folded into what the console's replay shows: the connection,
 * the identity with its recorded claims, and per statement its SQL and masked parameters, decision,
 * approval, completion and masked result rows, with timings. Pure: events in, a view out. It holds
 * only what the events hold, and events never hold an unmasked value, a token or a credential.
 */
import {
  sessionEventName,
  type CloudEvent,
  type ResultColumn,
  type CapturedResult,
  type ResultRowsData,
  type SessionAuthenticatedData,
  type SessionDeniedData,
  type SessionEndedData,
  type SessionStartedData,
  type StatementApprovalRequestedData,
  type StatementApprovedData,
  type StatementBlockedData,
  type StatementCompletedData,
  type StatementData,
  type StatementRejectedData,
} from "@sluice/shared/events";

export interface ReplayResult {
  columns: Array<Pick<ResultColumn, "name" | "masked" | "maskStrategy">>;
  values: Array<Array<string | null>>;
  rows: number;
  recorded: number;
  truncated: boolean;
}

export interface ReplayStatement {
  statementId: number;
  sql: string;
  /** a statement of a multi-statement simple Query: its position from 1 and how many it has */
  part?: { index: number; of: number };
  params?: Array<string | null>;
  protocol: string;
  statementClass: string;
  tables: { read: string[]; write: string[] };
  decision: string;
  rule: string;
  policy?: string;
  reason?: string;
  /** allowed | blocked | held | approved | rejected | timeout | cancelled | completed | failed */
  outcome: string;
  decidedAt: string;
  /** ms from the session's first event */
  offsetMs: number;
  approval?: { id: string; approvers: string[]; timeoutMs: number; by?: string; verdict?: string; at?: string };
  completed?: { commandTag?: string; rows: number; durationMs: number; error?: { sqlstate: string; message: string }; at: string };
  result?: ReplayResult;
  sqlstate?: string;
}

export interface SessionReplay {
  sessionId: string;
  started?: SessionStartedData & { at: string };
  authenticated?: SessionAuthenticatedData & { at: string };
  denied?: SessionDeniedData & { at: string };
  ended?: SessionEndedData & { at: string };
  statements: ReplayStatement[];
  events: number;
  /** policy revisions that decided something in this session */
  policyRevisions: number[];
}

/** The (first) result set statement.completed carries itself (captures up to 64 KiB), or undefined. */
function embeddedResult(d: StatementCompletedData): CapturedResult | undefined {
  return d.results?.[0];
}

function resultOf(d: CapturedResult): ReplayResult {
  return {
    columns: d.columns.map((c) => ({ name: c.name, ...(c.masked ? { masked: true } : {}), ...(c.maskStrategy ? { maskStrategy: c.maskStrategy } : {}) })),
    values: d.values,
    rows: d.rows ?? d.values.length,
    recorded: d.recorded ?? d.values.length,
    truncated: Boolean(d.truncated),
  };
}

export function buildReplay(sessionId: string, events: readonly CloudEvent[]): SessionReplay {
  const out: SessionReplay = { sessionId, statements: [], events: 0, policyRevisions: [] };
  const byId = new Map<number, ReplayStatement>();
  const revs = new Set<number>();
  let t0: number | undefined;
  for (const ev of events) {
    const name = sessionEventName(ev.type);
    if (!name || ev.subject !== sessionId) continue;
    out.events++;
    const t = Date.parse(ev.time);
    t0 ??= t;
    if (typeof ev.sluicepolicyrev === "number") revs.add(ev.sluicepolicyrev);
    const at = ev.time;
    switch (name) {
      case "session.started":
        out.started = { ...(ev.data as SessionStartedData), at };
        break;
      case "session.authenticated":
        out.authenticated = { ...(ev.data as SessionAuthenticatedData), at };
        break;
      case "session.denied":
        out.denied = { ...(ev.data as SessionDeniedData), at };
        break;
      case "session.ended":
        out.ended = { ...(ev.data as SessionEndedData), at };
        break;
      case "statement.allowed":
      case "statement.blocked":
      case "statement.approval_requested": {
        const d = ev.data as StatementData;
        const existing = byId.get(d.statementId);
        // an approved statement is recorded twice (held, then allowed with decision approve): one row
        if (existing) {
          if (name === "statement.allowed") {
            existing.decision = d.decision;
            existing.rule = d.rule;
            // a multi-statement Query approved as a whole: this row is its first statement now
            if (d.part !== undefined && d.parts !== undefined) {
              existing.sql = d.sql;
              existing.part = { index: d.part, of: d.parts };
            }
            if (existing.outcome === "held") existing.outcome = "approved";
          }
          break;
        }
        const st: ReplayStatement = {
          statementId: d.statementId,
          sql: d.sql,
          ...(d.part !== undefined && d.parts !== undefined ? { part: { index: d.part, of: d.parts } } : {}),
          ...(d.params ? { params: d.params } : {}),
          protocol: d.protocol,
          statementClass: d.class,
          tables: d.tables ?? { read: [], write: [] },
          decision: d.decision,
          rule: d.rule,
          ...(d.policy ? { policy: d.policy } : {}),
          ...(d.reason ? { reason: d.reason } : {}),
          outcome: name === "statement.allowed" ? "allowed" : name === "statement.blocked" ? "blocked" : "held",
          decidedAt: at,
          offsetMs: t - t0,
        };
        if (name === "statement.blocked") st.sqlstate = (d as StatementBlockedData).sqlstate;
        if (name === "statement.approval_requested") {
          const a = d as StatementApprovalRequestedData;
          st.approval = { id: a.approvalId, approvers: a.approvers, timeoutMs: a.timeoutMs };
        }
        byId.set(d.statementId, st);
        out.statements.push(st);
        break;
      }
      case "statement.approved": {
        const d = ev.data as StatementApprovedData;
        const st = byId.get(d.statementId);
        if (st) {
          st.approval = { ...(st.approval ?? { id: d.approvalId, approvers: [], timeoutMs: 0 }), by: d.approver, verdict: "approved", at };
          st.outcome = "approved";
        }
        break;
      }
      case "statement.rejected": {
        const d = ev.data as StatementRejectedData;
        const st = byId.get(d.statementId);
        if (st) {
          st.approval = { ...(st.approval ?? { id: d.approvalId, approvers: [], timeoutMs: 0 }), ...(d.approver ? { by: d.approver } : {}), verdict: d.reason, at };
          st.outcome = d.reason;
          st.sqlstate = d.sqlstate;
        }
        break;
      }
      case "result.rows": {
        const d = ev.data as ResultRowsData;
        const st = byId.get(d.statementId);
        if (st) st.result = resultOf(d);
        break;
      }
      case "statement.completed": {
        const d = ev.data as StatementCompletedData;
        const st = byId.get(d.statementId);
        if (!st) break;
        st.completed = { ...(d.commandTag ? { commandTag: d.commandTag } : {}), rows: d.rows, durationMs: d.durationMs, ...(d.error ? { error: d.error } : {}), at };
        st.outcome = d.error ? "failed" : "completed";
        const embedded = embeddedResult(d);
        if (embedded && !st.result) st.result = resultOf(embedded);
        break;
      }
    }
  }
  out.policyRevisions = [...revs].sort((a, b) => a - b);
  return out;
}
