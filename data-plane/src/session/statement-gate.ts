/**
 * Whether a decided statement goes upstream now: forward, poison (it is replaced by a statement that
 * fails upstream, and the client gets `error` in its place, in order) or hold (wait for an audit ack,
 * an approval or an asynchronous decision, then ask again). The gate runs the audit and approval
 * hooks; it never touches the wire. Pure: the hooks are its only doors.
 */
import { SluiceError, toSqlState } from "@sluice/shared/errors";
import type { Decision } from "@sluice/shared/policy";
import { errorResponse } from "../wire/encode.js";
import type { ApprovalGate, AuditSink, EnforcerDecision, SessionInfo, StatementRecord } from "./session-hooks.js";

export type Verdict =
  | { readonly do: "forward" }
  /** `error` is the ErrorResponse the client gets in the statement's place */
  | { readonly do: "poison"; readonly error: Buffer }
  /**
   * Wait for `until`, then apply the verdict it resolves to. `long` (an approval, minutes): what was
   * forwarded before goes upstream now and the client is paused at once; otherwise (an audit ack,
   * about one NATS round trip) the frames before wait in the outbox and leave with this statement.
   */
  | { readonly do: "hold"; readonly until: Promise<Verdict>; readonly long: boolean };

export const FORWARD: Verdict = { do: "forward" };

export const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === "function";

/** the rule of a decision the enforcer could not make (its promise rejected) */
const ENFORCER_FAILED = "enforcer-failed";
type FailedDecision = Decision & { sqlstate?: string };

/** the enforcer's failures that say why in their own words, with their own SQLSTATE */
const OWN_WORDS = new Set(["unavailable", "deadline_exceeded", "resource_exhausted"]);

/**
 * A rejected decision is a deny: 57P03 when the enforcer was unavailable, 57014 when the statement
 * could not be classified in time, 53300 when too many waited to be, else 42501.
 */
export function failedDecision(e: unknown): Decision {
  const err = SluiceError.from(e, "internal");
  const own = OWN_WORDS.has(err.code);
  const d: FailedDecision = {
    action: "deny",
    rule: ENFORCER_FAILED,
    reason: own ? err.message : `the statement could not be decided: ${err.message}`,
    statementClass: "unknown",
    statementIndex: 0,
    statements: [],
    sqlstate: own ? toSqlState(err.code) : "42501",
  };
  return d;
}

/** An enforcer answer as a promise that never rejects (a rejection becomes `failedDecision`). */
export function settledDecision(d: EnforcerDecision): Decision | Promise<Decision> {
  return isPromise(d) ? d.then((x) => x, failedDecision) : d;
}

/** The ErrorResponse of a denied statement: 42501 naming the rule (or the enforcer's failure). */
export function denialError(d: Decision): Buffer {
  const sqlstate = (d as FailedDecision).sqlstate ?? "42501";
  const why = d.action === "approve" ? "requires approval and no approval service is configured" : d.reason;
  const message = d.rule === ENFORCER_FAILED ? d.reason : `permission denied by sluice policy: rule "${d.rule}" (${d.statementClass}): ${why}`;
  return errorResponse({ severity: "ERROR", sqlstate, message, detail: `sluice rule: ${d.rule}` });
}

/** The ErrorResponse of a statement the audit (ack) or the approval refused. */
function refusalError(err: unknown): Buffer {
  const e = SluiceError.from(err, "unavailable");
  return errorResponse({ severity: "ERROR", sqlstate: toSqlState(e.code), message: e.message });
}

export interface StatementGateOptions {
  info: SessionInfo;
  audit: AuditSink;
  approvals?: ApprovalGate;
  /** a NoticeResponse to the client now (the approval request's id and how to approve) */
  notice(message: string): void;
}

export class StatementGate {
  /** held approvals still waiting (aborted by dispose) */
  private readonly approvalAborts = new Set<AbortController>();

  constructor(private readonly o: StatementGateOptions) {}

  /**
   * A statement about to be forwarded: recorded as allowed (and approved first when it must be).
   * `parts`: the records of a multi-statement Query's statements, each recorded as allowed in its
   * place once the message as a whole may go (asked only then: they take statement numbers).
   */
  admit(rec: StatementRecord, parts?: () => readonly StatementRecord[]): Verdict {
    const action = rec.decision.action;
    if (action === "deny" || (action === "approve" && !this.o.approvals)) return this.deny(rec);
    const { audit, info } = this.o;
    if (action === "approve") {
      // a held approval ends with the session: dispose() aborts it (the gate records it cancelled)
      const abort = new AbortController();
      this.approvalAborts.add(abort);
      const until = this.o.approvals!
        .request(info, rec, this.o.notice, abort.signal)
        .finally(() => this.approvalAborts.delete(abort))
        .then(async (r): Promise<Verdict> => {
          if (r !== "approved") throw new SluiceError("permission_denied", `statement ${r === "timeout" ? "approval timed out" : "was rejected by an approver"}`);
          await this.allowed(rec, parts);
          return FORWARD;
        })
        .catch((e: unknown): Verdict => ({ do: "poison", error: refusalError(e) }));
      return { do: "hold", until, long: true };
    }
    const p = this.allowed(rec, parts);
    if (!isPromise(p)) return FORWARD;
    // an audit ack takes about a NATS round trip: hold lightly
    return { do: "hold", until: p.then((): Verdict => FORWARD, (e: unknown): Verdict => ({ do: "poison", error: refusalError(e) })), long: false };
  }

  /**
   * statement.allowed of `rec`, or of each of its parts. When the record of one part is refused the
   * message does not run: every part already recorded gets a completion saying so (the recorder
   * ignores those it has no allowed event of).
   */
  private allowed(rec: StatementRecord, parts?: () => readonly StatementRecord[]): void | Promise<void> {
    const { audit, info } = this.o;
    const list = parts?.() ?? [rec];
    if (list.length === 1) return audit.statementAllowed(info, list[0]!);
    let pending: Array<void | Promise<void>> | undefined;
    for (const part of list) {
      const p = audit.statementAllowed(info, part);
      if (isPromise(p)) (pending ??= []).push(p);
    }
    if (pending === undefined) return undefined;
    return Promise.all(pending).then(
      () => undefined,
      (e: unknown) => {
        const err = SluiceError.from(e, "unavailable");
        for (const part of list) audit.statementCompleted(info, { seq: part.seq, rows: 0, durationMs: 0, error: { sqlstate: toSqlState(err.code), message: err.message } });
        throw err;
      },
    );
  }

  /** A denied statement: recorded as blocked first, then its 42501 (a failing recorder still denies). */
  deny(rec: StatementRecord): Verdict {
    const poison: Verdict = { do: "poison", error: denialError(rec.decision) };
    const p = this.o.audit.statementBlocked(this.o.info, rec);
    if (!isPromise(p)) return poison;
    return { do: "hold", until: p.then(() => poison, () => poison), long: true };
  }

  /** the session ended: stop waiting for approvals */
  dispose(): void {
    for (const a of this.approvalAborts) a.abort();
    this.approvalAborts.clear();
  }
}
