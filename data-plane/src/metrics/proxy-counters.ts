/**
 * The proxy's own counts for /metrics, as plain numbers (read at scrape time by proxy-metrics.ts),
 * kept by decorating the session hooks at the composition root: every statement decision goes
 * through the audit sink and every held statement through the approval gate, so no room of the
 * session needs a counter of its own. A counted call costs one increment: no allocation, no label.
 */
import type { ApprovalGate, AuditSink } from "../session/session-hooks.js";

/** Statement decisions, one per statement execution (a simple Query, or an Execute). */
export interface DecisionCounts {
  /** allowed by policy and forwarded (or refused by a failing audit: see the audit's own counters) */
  allowed: number;
  /** denied: policy, parse failure, too large, or approval required without an approval service */
  denied: number;
  /** held for approval, approved, then forwarded */
  approved: number;
  /** held for approval and rejected by an approver */
  rejected: number;
  /** held for approval and not decided in time */
  timeout: number;
  /** held for approval and given up: the client left, or the control plane could not be reached */
  failed: number;
}

/** How connections that sent a StartupMessage ended up. */
export interface SessionOutcomeCounts {
  /** authenticated, upstream connected: relaying */
  established: number;
  /** refused for who the client is or what it asked for (token, policy, TLS, settings, unknown resource) */
  denied: number;
  /** refused because the node could not serve it (no snapshot, upstream or audit unavailable, protocol error, internal) */
  failed: number;
}

export class ProxyCounters {
  readonly decisions: DecisionCounts = { allowed: 0, denied: 0, approved: 0, rejected: 0, timeout: 0, failed: 0 };
  readonly sessions: SessionOutcomeCounts = { established: 0, denied: 0, failed: 0 };
  /** statements held for approval right now */
  approvalsWaiting = 0;
}

/** SQLSTATEs of a connection refused for its identity or its request (the rest: the node could not serve). */
function deniedAtConnect(sqlstate: string): boolean {
  const cls = sqlstate.slice(0, 2);
  return cls === "28" || cls === "3D" || cls === "42" || cls === "0A" || sqlstate === "08004";
}

/** The audit sink, counting statement decisions and refused connections on the way. */
export function countingAudit(inner: AuditSink, c: ProxyCounters): AuditSink {
  return {
    sessionStarted: (conn) => inner.sessionStarted(conn),
    sessionAuthenticated: (session) => inner.sessionAuthenticated(session),
    sessionDenied(conn, denial) {
      if ((denial.outcome ?? (deniedAtConnect(denial.sqlstate) ? "denied" : "failed")) === "denied") c.sessions.denied++;
      else c.sessions.failed++;
      inner.sessionDenied(conn, denial);
    },
    sessionEnded: (info, end) => inner.sessionEnded(info, end),
    statementAllowed(session, stmt) {
      // an approved statement is recorded as allowed once its approval came (statement-gate.ts)
      if (stmt.decision.action === "approve") c.decisions.approved++;
      else c.decisions.allowed++;
      return inner.statementAllowed(session, stmt);
    },
    statementBlocked(session, stmt) {
      c.decisions.denied++;
      return inner.statementBlocked(session, stmt);
    },
    statementCompleted: (session, done) => inner.statementCompleted(session, done),
    resultRows: (session, seq, fields, rows, masks) => inner.resultRows(session, seq, fields, rows, masks),
  };
}

/** The approval gate, counting what is waiting and how the waits end (rare: allocation is fine here). */
export function countingApprovals(inner: ApprovalGate, c: ProxyCounters): ApprovalGate {
  return {
    request(session, stmt, notice, signal) {
      c.approvalsWaiting++;
      let p: Promise<"approved" | "rejected" | "timeout">;
      try {
        p = inner.request(session, stmt, notice, signal);
      } catch (e) {
        c.approvalsWaiting--;
        c.decisions.failed++;
        throw e;
      }
      return p.then(
        (r) => {
          c.approvalsWaiting--;
          if (r === "rejected") c.decisions.rejected++;
          else if (r === "timeout") c.decisions.timeout++;
          return r;
        },
        (e: unknown) => {
          c.approvalsWaiting--;
          c.decisions.failed++;
          throw e;
        },
      );
    },
  };
}
