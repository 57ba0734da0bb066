/**
 * The ApprovalGate (session-hooks.ts) over NATS: holds a statement whose decision is `approve` until a
 * human decides (design: data path 6).
 *
 *  1. Ask the control plane to open a request: core-NATS request/reply on
 *     natsNames().approvalRequestSubject (no admin token: NATS is the data planes' trust boundary),
 *     retried with the same idempotency key, so a lost reply never opens a second request.
 *  2. Tell the client with a NoticeResponse naming the id and the command to approve it (never the
 *     parameters or any secret).
 *  3. Watch the request's own subject on SLUICE_CONTROL with a live consumer (replaced when it goes
 *     silent: its server died, its first pull was lost; it replays the subject, so no decision is missed) until
 *     ApprovalGranted / ApprovalRejected / ApprovalExpired. A grant counts only when its binding
 *     (fingerprint + parameters hash + session + resource) is exactly the held statement's.
 *  4. If the control plane is silent past the deadline (+ grace), the gate times out by itself.
 *  5. A held statement that will never run (the client left, the session ended) is cancelled on the
 *     control plane too (natsNames().approvalCancelSubject(node)), so nobody can approve it later; a
 *     cancel the control plane made (it took this node for gone) ends the hold as a refusal.
 */
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { NatsApprovalCancel, NatsApprovalReply, NatsApprovalRequest, type ApprovalBinding } from "@sluice/proto";
import { SluiceError, isErrorCode } from "@sluice/shared/errors";
import { decodeEvent, eventType, uuidv7 } from "@sluice/shared/events";
import { startLiveConsumer, type LiveConsumer, type NatsNames } from "@sluice/shared/nats";
import { fingerprint } from "@sluice/shared/sql";
import type { ApprovalGate, SessionInfo, StatementRecord } from "../session/session-hooks.js";

export type ApprovalOutcome = "approved" | "rejected" | "timeout";

/** The approval's audit trail (statement.approval_requested / approved / rejected); see approvalAuditEvents. */
export interface ApprovalAuditEvents {
  /** a rejected Promise or a throw refuses the statement (nothing was requested yet that ran) */
  requested?(session: SessionInfo, stmt: StatementRecord, r: { approvalId: string; approvers: string[]; timeoutMs: number; fingerprint: string }): void | Promise<void>;
  /** awaited before the statement is forwarded (ack durability) */
  approved?(session: SessionInfo, stmt: StatementRecord, r: { approvalId: string; approver: string }): void | Promise<void>;
  rejected?(session: SessionInfo, stmt: StatementRecord, r: { approvalId: string; reason: "rejected" | "timeout" | "cancelled"; approver?: string }): void | Promise<void>;
}

interface GateLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface NatsApprovalGateOptions {
  nc: NatsConnection;
  names: NatsNames;
  events?: ApprovalAuditEvents;
  /** masks the SQL text shown to approvers (default: as sent) */
  maskSql?: (session: SessionInfo, sql: string) => string;
  logger?: GateLogger;
  /** per attempt of the NATS request (default 5000 ms), 3 attempts */
  requestTimeoutMs?: number;
  /** how long after the request's deadline the gate gives up on its own (default 3000 ms) */
  graceMs?: number;
  /** this node process's start (its fleet heartbeat's `startedAt`): the control plane cancels a request whose node restarted */
  nodeStartedAt?: string;
}

const GRANTED = eventType("control.approval.approval_granted");
const REJECTED = eventType("control.approval.approval_rejected");
const EXPIRED = eventType("control.approval.approval_expired");
const CANCELLED = eventType("control.approval.approval_cancelled");

/**
 * What the approval binds to beyond fingerprint/session/resource: the bound parameters (extended
 * protocol) or, for a simple Query, the exact text (the fingerprint ignores literal values).
 */
export function paramsHashOf(stmt: StatementRecord): string {
  const h = createHash("sha256");
  h.update(stmt.protocol).update("\0").update(stmt.sql).update("\0");
  for (const p of stmt.params ?? []) {
    if (p.value === null) h.update("N");
    else h.update(p.format === "binary" ? "B" : "T").update(String(p.value.length)).update(":").update(p.value);
  }
  return h.digest("hex");
}

function fingerprintOf(sql: string): string {
  try {
    return fingerprint(sql);
  } catch {
    // the parser could not fingerprint it: bind to the exact text instead
    return "sha256:" + createHash("sha256").update(sql).digest("hex");
  }
}

export function bindingOf(session: SessionInfo, stmt: StatementRecord): ApprovalBinding {
  return { fingerprint: fingerprintOf(stmt.sql), paramsHash: paramsHashOf(stmt), sessionId: session.sessionId, resource: session.resource };
}

function sameBinding(a: Partial<ApprovalBinding> | undefined, b: ApprovalBinding): boolean {
  return !!a && a.fingerprint === b.fingerprint && a.paramsHash === b.paramsHash && a.sessionId === b.sessionId && a.resource === b.resource;
}

export function createNatsApprovalGate(o: NatsApprovalGateOptions): ApprovalGate {
  const attemptMs = o.requestTimeoutMs ?? 5000;
  const graceMs = o.graceMs ?? 3000;

  async function open(req: NatsApprovalRequest): Promise<{ id: string; expiresAt: string }> {
    const body = NatsApprovalRequest.encode(req).finish();
    let last: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const m = await o.nc.request(o.names.approvalRequestSubject, body, { timeout: attemptMs });
        const r = NatsApprovalReply.decode(m.data);
        if (r.errorCode) throw new SluiceError(isErrorCode(r.errorCode) ? r.errorCode : "internal", `approval request refused: ${r.errorMessage}`);
        return { id: r.id, expiresAt: r.expiresAt };
      } catch (e) {
        if (e instanceof SluiceError) throw e;
        last = e;
        // no responder / timeout: the same key again appends nothing twice
        await new Promise((res) => setTimeout(res, 200 * attempt));
      }
    }
    throw new SluiceError("unavailable", "the approval service (control plane) is not reachable; the statement was not run", undefined, { cause: last });
  }

  /**
   * Tells the control plane the held statement of `id` will never run. Fire and forget: the session's
   * end never waits for it; if it is lost (NATS down, node stopping) the control plane still cancels
   * the request once this node's heartbeat says it is gone or restarted.
   */
  function cancelOnControlPlane(node: string, id: string, reason: "client_left" | "session_ended"): void {
    if (o.nc.isClosed()) return;
    const body = NatsApprovalCancel.encode({ id, reason, commandId: uuidv7() }).finish();
    void (async () => {
      for (let attempt = 1; attempt <= 3 && !o.nc.isClosed(); attempt++) {
        try {
          const r = NatsApprovalReply.decode((await o.nc.request(o.names.approvalCancelSubject(node), body, { timeout: attemptMs })).data);
          // refused because it was decided or expired meanwhile: nothing left to cancel
          if (r.errorCode && r.errorCode !== "failed_precondition") o.logger?.warn({ approvalId: id, code: r.errorCode, err: r.errorMessage }, "approval cancel refused");
          return;
        } catch {
          await new Promise((res) => setTimeout(res, 200 * attempt));
        }
      }
      o.logger?.warn({ approvalId: id }, "could not cancel the approval request on the control plane; it cancels it when this node's heartbeat shows it gone");
    })();
  }

  /**
   * Watches the request's subject until a decision or the deadline. The consumer replays the subject
   * from its start, and a live consumer replaces one whose NATS server died or whose first pull was
   * lost (nobody noticed before: the held statement waited out its whole timeout), so a decision is
   * never missed.
   */
  async function await_(id: string, expiresAt: string, binding: ApprovalBinding, signal?: AbortSignal): Promise<{ outcome: ApprovalOutcome; approver?: string; cancelled?: string }> {
    const deadline = Date.parse(expiresAt) + graceMs;
    type Ending = { outcome: ApprovalOutcome; approver?: string; cancelled?: string } | "aborted" | "closed";
    let settle!: (r: Ending) => void;
    const ended = new Promise<Ending>((r) => (settle = r));
    const onMessage = (m: { data: Uint8Array }) => {
      const ev = decodeEvent(m.data) as { type: string; data: { approver?: { subject?: string; issuer?: string }; binding?: ApprovalBinding } };
      if (ev.type === GRANTED) {
        if (!sameBinding(ev.data.binding, binding)) {
          o.logger?.error({ approvalId: id }, "approval grant does not match the held statement; treated as rejected");
          settle({ outcome: "rejected" });
        } else settle({ outcome: "approved", approver: label(ev.data.approver) });
      } else if (ev.type === REJECTED) settle({ outcome: "rejected", approver: label(ev.data.approver) });
      else if (ev.type === EXPIRED) settle({ outcome: "timeout" });
      else if (ev.type === CANCELLED) {
        // the control plane took this node for gone (or this node cancelled it): never run it
        const d = ev.data as { reason?: string; detail?: string };
        settle({ outcome: "rejected", cancelled: `${d.reason ?? "cancelled"}${d.detail ? `: ${d.detail}` : ""}` });
      }
    };
    let watch: LiveConsumer | undefined;
    for (let round = 0; !watch; round++) {
      if (signal?.aborted) throw clientGone();
      if (Date.now() >= deadline) return { outcome: "timeout" };
      // a closed connection (node stopping) never reconnects: stop watching instead of retrying until
      // the deadline, which for a 10-minute approval would keep a stopped node's timers alive
      if (o.nc.isClosed()) throw shuttingDown();
      if (round > 0) {
        o.logger?.warn({ approvalId: id, round }, "cannot watch the approval request (NATS failing over?); trying again");
        await new Promise((r) => setTimeout(r, Math.min(1000, 100 * round)));
      }
      try {
        watch = await startLiveConsumer({ nc: o.nc, stream: o.names.controlStream, filter: o.names.controlSubject("approval", id), what: `approval ${id}`, logger: o.logger, onMessage });
      } catch {
        // placed again next round
      }
    }
    const timer = setTimeout(() => settle({ outcome: "timeout" }), Math.max(0, deadline - Date.now()));
    const closedCheck = setInterval(() => o.nc.isClosed() && settle("closed"), 1_000);
    const onAbort = () => settle("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) settle("aborted");
    try {
      const r = await ended;
      if (r === "aborted") throw clientGone();
      if (r === "closed") throw shuttingDown();
      return r;
    } finally {
      clearTimeout(timer);
      clearInterval(closedCheck);
      signal?.removeEventListener("abort", onAbort);
      await watch.stop();
    }
  }

  return {
    async request(session, stmt, notice, signal) {
      const approval = stmt.decision.approval;
      if (!approval || approval.approvers.length === 0) {
        throw new SluiceError("permission_denied", `rule "${stmt.decision.rule}" requires approval but names no approver group`);
      }
      const binding = bindingOf(session, stmt);
      const { id, expiresAt } = await open({
        idempotencyKey: uuidv7(),
        requester: { subject: session.subject, issuer: session.issuer, groups: [...session.groups] },
        binding,
        sql: o.maskSql ? o.maskSql(session, stmt.sql) : stmt.sql,
        statementClass: stmt.decision.statementClass,
        rule: stmt.decision.rule,
        policy: stmt.decision.policy ?? "",
        approvers: [...approval.approvers],
        timeoutMs: approval.timeoutMs,
        node: session.nodeId,
        region: session.region,
        statementId: stmt.seq,
        nodeStartedAt: o.nodeStartedAt ?? "",
      });
      await o.events?.requested?.(session, stmt, { approvalId: id, approvers: [...approval.approvers], timeoutMs: approval.timeoutMs, fingerprint: binding.fingerprint });
      o.logger?.info({ sessionId: session.sessionId, approvalId: id, rule: stmt.decision.rule }, "statement held for approval");
      notice(`approval required: request ${id} for ${stmt.decision.rule}; approve with: sluice approvals approve ${id}`);
      // recorded once, whichever comes first: the client going away, or the watch failing
      let cancelled = false;
      const cancel = () => {
        if (cancelled) return;
        cancelled = true;
        cancelOnControlPlane(session.nodeId, id, signal?.aborted ? "client_left" : "session_ended");
        // synchronously on abort: the session's end is recorded right after, and this belongs before it
        void Promise.resolve(o.events?.rejected?.(session, stmt, { approvalId: id, reason: "cancelled" })).catch(() => undefined);
      };
      if (signal?.aborted) cancel();
      signal?.addEventListener("abort", cancel, { once: true });
      let r: { outcome: ApprovalOutcome; approver?: string; cancelled?: string };
      try {
        if (cancelled) throw clientGone();
        r = await await_(id, expiresAt, binding, signal);
      } catch (e) {
        cancel();
        throw SluiceError.from(e, "unavailable");
      } finally {
        signal?.removeEventListener("abort", cancel);
      }
      if (cancelled) throw clientGone();
      if (r.cancelled !== undefined) {
        await o.events?.rejected?.(session, stmt, { approvalId: id, reason: "cancelled" });
        o.logger?.warn({ sessionId: session.sessionId, approvalId: id, why: r.cancelled }, "approval request cancelled on the control plane");
        throw new SluiceError("permission_denied", `approval request ${id} was cancelled (${r.cancelled}); the statement was not run`);
      }
      if (r.outcome === "approved") {
        await o.events?.approved?.(session, stmt, { approvalId: id, approver: r.approver ?? "" });
      } else {
        await o.events?.rejected?.(session, stmt, { approvalId: id, reason: r.outcome, ...(r.approver ? { approver: r.approver } : {}) });
      }
      o.logger?.info({ sessionId: session.sessionId, approvalId: id, outcome: r.outcome }, "approval decided");
      return r.outcome;
    },
  };
}

function shuttingDown(): SluiceError {
  return new SluiceError("unavailable", "the data plane is shutting down; the held statement was not run");
}

/** the held statement's client went away (the request's AbortSignal) */
function clientGone(): SluiceError {
  return new SluiceError("aborted", "the client disconnected; the held statement was not run");
}

function label(a: { subject?: string; issuer?: string } | undefined): string {
  return a?.subject ? `${a.issuer ?? "?"}:${a.subject}` : "";
}
