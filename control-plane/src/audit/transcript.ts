import type { CloudEvent } from "@sluice/shared/events";
import {
  sessionEventName,
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

/**
 * Renders a session's (de-chunked) events as a readable transcript for `sluice sessions replay`:
 * each statement with its decision and rule, timing, and the recorded (masked) result rows. Pure:
 * events in, lines out.
 */
export interface TranscriptOptions {
  /** rows of a result shown at most (the recorded ones; default 10) */
  maxRows?: number;
  /** cut SQL longer than this many characters (default 2000) */
  maxSqlChars?: number;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s;
}

function indent(text: string, pad: string): string {
  return text.split("\n").map((l) => pad + l).join("\n");
}

function table(cols: string[], rows: Array<Array<string | null>>): string[] {
  const cells = rows.map((r) => r.map((v) => (v === null ? "NULL" : v.replace(/\s+/g, " "))));
  const w = cols.map((c, i) => Math.min(40, Math.max(c.length, ...cells.map((r) => (r[i] ?? "").length))));
  const fmt = (r: string[]) => r.map((v, i) => clip(v, 40).padEnd(w[i]!)).join(" | ").trimEnd();
  return [fmt(cols), w.map((n) => "-".repeat(n)).join("-+-"), ...cells.map(fmt)];
}

/** A rule as the transcript shows it: the built-in allowances say what they are. */
function ruleText(rule: string): string {
  return rule.startsWith("implicit:") ? `${rule} (built in: every connected identity may)` : rule;
}

export class TranscriptRenderer {
  /** A captured result set as a small table. */
  private rows(d: CapturedResult): string[] {
    const shown = d.values.slice(0, this.o.maxRows);
    const cols = d.columns.map((c) => (c.masked ? `${c.name} (masked)` : c.name));
    const lines = table(cols, shown).map((l) => `    | ${l}`);
    const more = d.rows - shown.length;
    if (more > 0) lines.push(`    | … ${more} more row${more === 1 ? "" : "s"} (${d.recorded} recorded${d.truncated ? ", capped" : ""})`);
    return lines;
  }

  private t0: number | undefined;
  private done = false;
  private readonly o: Required<TranscriptOptions>;

  constructor(o: TranscriptOptions = {}) {
    this.o = { maxRows: o.maxRows ?? 10, maxSqlChars: o.maxSqlChars ?? 2000 };
  }

  /** True once session.ended or session.denied was rendered (replay --follow stops there). */
  get ended(): boolean {
    return this.done;
  }

  private at(ev: CloudEvent): string {
    const t = Date.parse(ev.time);
    this.t0 ??= t;
    return `+${((t - this.t0) / 1000).toFixed(3)}s`;
  }

  push(ev: CloudEvent): string[] {
    const name = sessionEventName(ev.type);
    if (!name) return [];
    const at = this.at(ev);
    const rev = ev.sluicepolicyrev !== undefined ? ` (policy rev ${ev.sluicepolicyrev})` : "";
    switch (name) {
      case "session.started": {
        const d = ev.data as SessionStartedData;
        return [
          `session ${ev.subject}  ${ev.time}`,
          `${at}  connect from ${d.clientAddress}${d.clientPort ? `:${d.clientPort}` : ""} to resource ${d.resource} via ${d.region}/${d.node}` +
            `${d.tls.enabled ? `, TLS${d.tls.protocol ? ` ${d.tls.protocol}` : ""}` : ", no TLS"}${d.applicationName ? `, application ${d.applicationName}` : ""}`,
        ];
      }
      case "session.authenticated": {
        const d = ev.data as SessionAuthenticatedData;
        return [`${at}  authenticated ${d.subject} (issuer ${d.issuer}; groups ${d.groups.join(", ") || "none"})${rev}`];
      }
      case "session.denied": {
        const d = ev.data as SessionDeniedData;
        this.done = true;
        return [`${at}  REFUSED at ${d.stage}: ${d.reason}: ${d.message} (SQLSTATE ${d.sqlstate})${d.subject ? ` for ${d.subject}` : ""}`];
      }
      case "statement.allowed":
      case "statement.blocked":
      case "statement.approval_requested": {
        const d = ev.data as StatementData;
        const part = d.part !== undefined && d.parts !== undefined ? `, statement ${d.part} of ${d.parts} of one Query` : "";
        const lines = [`${at}  #${d.statementId} [${d.protocol}, ${d.class}${part}]`, indent(clip(d.sql, this.o.maxSqlChars), "    ")];
        if (d.params?.length) lines.push(`    params: ${JSON.stringify(d.params)}`);
        if (name === "statement.allowed") lines.push(`    allowed by ${ruleText(d.rule)}${rev}`);
        else if (name === "statement.blocked") {
          const b = d as StatementBlockedData;
          lines.push(`    BLOCKED by ${d.rule}${d.reason ? `: ${d.reason}` : ""} (SQLSTATE ${b.sqlstate})${rev}`);
        } else {
          const a = d as StatementApprovalRequestedData;
          lines.push(`    HELD for approval ${a.approvalId} by ${d.rule} (approvers: ${a.approvers.join(", ")})${rev}`);
        }
        // a message of several statements: what decided each of them
        if ((d.statements?.length ?? 0) > 1 && d.statements.some((p) => p.rule !== undefined)) {
          d.statements.forEach((p, i) => lines.push(`      ${i + 1}. ${p.kind} (${p.class}): ${p.rule === undefined ? "not judged (an earlier statement decided)" : ruleText(p.rule)}`));
        }
        return lines;
      }
      case "statement.approved": {
        const d = ev.data as StatementApprovedData;
        return [`${at}  #${d.statementId} approved by ${d.approver} (approval ${d.approvalId})`];
      }
      case "statement.rejected": {
        const d = ev.data as StatementRejectedData;
        return [`${at}  #${d.statementId} ${d.reason.toUpperCase()}${d.approver ? ` by ${d.approver}` : ""} (approval ${d.approvalId}, SQLSTATE ${d.sqlstate})`];
      }
      case "result.rows":
        return this.rows(ev.data as ResultRowsData);
      case "statement.completed": {
        const d = ev.data as StatementCompletedData;
        // captures up to 64 KiB ride inside the completion; larger ones came as result.rows before it
        const rows = (d.results ?? []).flatMap((r) => this.rows(r));
        if (d.error) return [...rows, `${at}  #${d.statementId} failed after ${d.durationMs} ms: ${d.error.sqlstate} ${d.error.message}`];
        return [...rows, `${at}  #${d.statementId} ${d.commandTag ?? "done"}: ${d.rows} row${d.rows === 1 ? "" : "s"} in ${d.durationMs} ms`];
      }
      case "session.ended": {
        const d = ev.data as SessionEndedData;
        this.done = true;
        return [`${at}  ended: ${d.reason} after ${d.durationMs} ms, ${d.statements} statement${d.statements === 1 ? "" : "s"}, ${d.bytesIn} bytes in / ${d.bytesOut} out${d.error ? ` (${d.error})` : ""}`];
      }
    }
  }
}
