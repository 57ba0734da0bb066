/**
 * The approval aggregate (one per held statement): pure. Time and actor come in with the command.
 *
 * Rules:
 *  - a request binds to the statement fingerprint + bound-parameters hash + session id + resource;
 *    a grant carries that binding so the data plane forwards only the statement it asked about;
 *  - only members of the request's approver groups may approve or reject;
 *  - the requester (same subject AND issuer) can never approve or reject its own request;
 *  - a decided or expired request cannot be decided again; nothing is decided at or after expiry;
 *  - expiry happens once the request's timeout has passed (the expirer sends Expire with its clock);
 *  - a request whose statement can no longer run is cancelled: by the node that filed it (its client
 *    left or its session ended while held) or by the control plane (that node is gone: its fleet
 *    heartbeat expired, or it restarted). Only those two may cancel — a human decides with approve or
 *    reject. A cancelled request can never be approved: the node holding it is gone, so a grant would
 *    record an approval for a statement nobody can run, or worse, one a restarted session could match.
 *  - cancel twice is a no-op (no event): the node and the control plane race to cancel the same
 *    request, and both want the same outcome. Cancel after a decision (approved, rejected, expired) is
 *    refused: the decision is what happened (a grant may have run the statement) and is not rewritten.
 * One command → at most one event, so each append is safe on its own (nats-server 2.9: no batches).
 */
import { SluiceError } from "@sluice/shared/errors";
import type { Actor, CommandMeta } from "../command-meta.js";

export const APPROVAL_AGGREGATE = "approval";

/** What a grant is valid for. */
export interface ApprovalBinding {
  fingerprint: string;
  paramsHash: string;
  sessionId: string;
  resource: string;
}

/** The held statement, as the data plane describes it (no parameter values, only their hash). */
export interface ApprovalSubjectMatter {
  binding: ApprovalBinding;
  /** SQL text as recorded (masked by the resource's rules on the data plane) */
  sql: string;
  statementClass: string;
  /** the rule that required approval, e.g. `deployers/approve:ddl` */
  rule: string;
  policy: string;
  /** approver groups named by the policy */
  approvers: string[];
  timeoutMs: number;
  node: string;
  region: string;
  /** per-session statement number */
  statementId: number;
  /**
   * when the filing node process started, as its fleet heartbeat says (`startedAt`): another start
   * in the heartbeat means the node restarted, so the held statement is gone (absent from old nodes)
   */
  nodeStartedAt?: string;
}

export type ApprovalCommand =
  | { type: "RequestApproval"; approvalId: string; requester: Actor; request: ApprovalSubjectMatter; meta: CommandMeta }
  | { type: "Approve"; approvalId: string; reason: string; meta: CommandMeta }
  | { type: "Reject"; approvalId: string; reason: string; meta: CommandMeta }
  | { type: "Expire"; approvalId: string; meta: CommandMeta }
  | { type: "Cancel"; approvalId: string; reason: CancelReason; detail?: string; meta: CommandMeta };

/** Why a held statement was abandoned. */
export type CancelReason = "client_left" | "session_ended" | "node_gone" | "node_restarted";
export const CANCEL_REASONS: readonly CancelReason[] = ["client_left", "session_ended", "node_gone", "node_restarted"];

/** The identities that may cancel (issuer `sluice` is never a configured token issuer's name). */
export const SYSTEM_ISSUER = "sluice";
export const CONTROL_PLANE_SUBJECT = "control-plane";
/** The data plane `node` as an actor: it may cancel the requests it filed, nothing else. */
export function nodeActor(node: string): Actor {
  return { subject: `data-plane:${node}`, issuer: SYSTEM_ISSUER, groups: [] };
}

export interface ApprovalRequested extends ApprovalSubjectMatter {
  type: "ApprovalRequested";
  approvalId: string;
  commandId: string;
  requester: Actor;
  requestedAt: string;
  expiresAt: string;
}

export interface ApprovalGranted {
  type: "ApprovalGranted";
  approvalId: string;
  commandId: string;
  approver: Actor;
  reason: string;
  /** copied from the request: the data plane checks it against what it holds */
  binding: ApprovalBinding;
  at: string;
}

export interface ApprovalRejected {
  type: "ApprovalRejected";
  approvalId: string;
  commandId: string;
  approver: Actor;
  reason: string;
  at: string;
}

export interface ApprovalExpired {
  type: "ApprovalExpired";
  approvalId: string;
  commandId: string;
  at: string;
}

export interface ApprovalCancelled {
  type: "ApprovalCancelled";
  approvalId: string;
  commandId: string;
  /** the node that filed the request, or the control plane */
  by: Actor;
  reason: CancelReason;
  /** one line for humans, e.g. which heartbeat was missed */
  detail: string;
  at: string;
}

export type ApprovalEvent = ApprovalRequested | ApprovalGranted | ApprovalRejected | ApprovalExpired | ApprovalCancelled;

export type ApprovalStatus = "none" | "pending" | "approved" | "rejected" | "expired" | "cancelled";

export interface ApprovalState {
  status: ApprovalStatus;
  request?: ApprovalRequested;
  decision?: ApprovalGranted | ApprovalRejected | ApprovalExpired | ApprovalCancelled;
}

export const initialApprovalState = (): ApprovalState => ({ status: "none" });

const MAX_TIMEOUT_MS = 7 * 24 * 3_600_000;
const MAX_SQL_CHARS = 64 * 1024;

function sameIdentity(a: Actor, b: Actor): boolean {
  return a.subject === b.subject && a.issuer === b.issuer;
}

function problemsOf(req: ApprovalSubjectMatter): string[] {
  const p: string[] = [];
  const b = req.binding;
  if (!b || !b.fingerprint) p.push("binding.fingerprint is required");
  if (!b || !b.paramsHash) p.push("binding.paramsHash is required");
  if (!b || !b.sessionId) p.push("binding.sessionId is required");
  if (!b || !b.resource) p.push("binding.resource is required");
  if (!req.approvers?.length) p.push("a request needs at least one approver group (policy approval.approvers)");
  if (!Number.isFinite(req.timeoutMs) || req.timeoutMs <= 0 || req.timeoutMs > MAX_TIMEOUT_MS) p.push(`timeoutMs must be in (0, ${MAX_TIMEOUT_MS}]`);
  if (typeof req.sql !== "string" || req.sql.length > MAX_SQL_CHARS) p.push(`sql must be text of at most ${MAX_SQL_CHARS} characters`);
  if (!req.rule) p.push("rule is required");
  return p;
}

/** Who may decide: a member of an approver group who is not the requester. Throws permission_denied. */
export function assertMayDecide(state: ApprovalState, actor: Actor, verb: "approve" | "reject"): void {
  const refusal = refusalToDecide(state.request!, actor, verb);
  if (refusal) throw new SluiceError("permission_denied", refusal);
}

/** Why `actor` may not decide this request, or undefined when they may (the console asks before offering the buttons). */
export function refusalToDecide(req: Pick<ApprovalRequested, "requester" | "approvers" | "approvalId">, actor: Actor, verb: "approve" | "reject"): string | undefined {
  if (sameIdentity(actor, req.requester)) return `the requester cannot ${verb} their own request`;
  if (!actor.groups.some((g) => req.approvers.includes(g))) return `only members of ${req.approvers.join(", ")} may ${verb} ${req.approvalId}`;
  return undefined;
}

/** Who may cancel: the control plane, or the node that filed the request. Undefined when `actor` may. */
function refusalToCancel(req: ApprovalRequested, actor: Actor): string | undefined {
  if (actor.issuer === SYSTEM_ISSUER && actor.subject === CONTROL_PLANE_SUBJECT) return undefined;
  if (sameIdentity(actor, nodeActor(req.node))) return undefined;
  return `only the control plane or the node that filed ${req.approvalId} (${req.node}) may cancel it`;
}

function notPending(state: ApprovalState, approvalId: string): string {
  const d = state.decision;
  // a cancel says why: the approver should know the statement is gone, not just that it is too late
  if (d?.type === "ApprovalCancelled") return `approval request ${approvalId} was cancelled (${d.reason}: ${d.detail}); the held statement will never run`;
  return `approval request ${approvalId} is already ${state.status}`;
}

function assertPending(state: ApprovalState, approvalId: string, now: Date): void {
  if (state.status === "none") throw new SluiceError("not_found", `no approval request ${approvalId}`);
  if (state.status !== "pending") throw new SluiceError("failed_precondition", notPending(state, approvalId), { status: state.status });
  if (now.getTime() >= Date.parse(state.request!.expiresAt)) {
    throw new SluiceError("failed_precondition", `approval request ${approvalId} expired at ${state.request!.expiresAt}`);
  }
}

export function decideApproval(cmd: ApprovalCommand, state: ApprovalState): ApprovalEvent[] {
  const at = cmd.meta.now.toISOString();
  switch (cmd.type) {
    case "RequestApproval": {
      if (state.status !== "none") throw new SluiceError("already_exists", `approval request ${cmd.approvalId} already exists`);
      const problems = problemsOf(cmd.request);
      if (problems.length) throw new SluiceError("invalid_argument", problems[0]!, { problems: problems.map((message) => ({ pointer: "", message })) });
      if (!cmd.requester.subject || !cmd.requester.issuer) throw new SluiceError("invalid_argument", "the requester needs a subject and an issuer");
      return [
        {
          type: "ApprovalRequested",
          approvalId: cmd.approvalId,
          commandId: cmd.meta.commandId,
          requester: cmd.requester,
          ...cmd.request,
          requestedAt: at,
          expiresAt: new Date(cmd.meta.now.getTime() + cmd.request.timeoutMs).toISOString(),
        },
      ];
    }
    case "Approve":
    case "Reject": {
      const verb = cmd.type === "Approve" ? "approve" : "reject";
      if (state.status === "none") throw new SluiceError("not_found", `no approval request ${cmd.approvalId}`);
      // who first: a stranger learns nothing about the request's state
      assertMayDecide(state, cmd.meta.actor, verb);
      assertPending(state, cmd.approvalId, cmd.meta.now);
      const base = { approvalId: cmd.approvalId, commandId: cmd.meta.commandId, approver: cmd.meta.actor, reason: cmd.reason, at };
      return cmd.type === "Approve" ? [{ type: "ApprovalGranted", ...base, binding: state.request!.binding }] : [{ type: "ApprovalRejected", ...base }];
    }
    case "Expire": {
      if (state.status === "none") throw new SluiceError("not_found", `no approval request ${cmd.approvalId}`);
      if (state.status !== "pending") throw new SluiceError("failed_precondition", notPending(state, cmd.approvalId), { status: state.status });
      if (cmd.meta.now.getTime() < Date.parse(state.request!.expiresAt)) {
        throw new SluiceError("failed_precondition", `approval request ${cmd.approvalId} does not expire before ${state.request!.expiresAt}`);
      }
      return [{ type: "ApprovalExpired", approvalId: cmd.approvalId, commandId: cmd.meta.commandId, at }];
    }
    case "Cancel": {
      if (state.status === "none") throw new SluiceError("not_found", `no approval request ${cmd.approvalId}`);
      const refusal = refusalToCancel(state.request!, cmd.meta.actor);
      if (refusal) throw new SluiceError("permission_denied", refusal);
      if (!CANCEL_REASONS.includes(cmd.reason)) throw new SluiceError("invalid_argument", `cancel reason must be one of ${CANCEL_REASONS.join(", ")}`);
      if (state.status === "cancelled") return [];
      // past the deadline the request is expired, whether or not the expirer has marked it yet
      assertPending(state, cmd.approvalId, cmd.meta.now);
      const detail = (cmd.detail ?? "").split("\n")[0]!.slice(0, 300);
      return [{ type: "ApprovalCancelled", approvalId: cmd.approvalId, commandId: cmd.meta.commandId, by: cmd.meta.actor, reason: cmd.reason, detail, at }];
    }
    default: {
      const never: never = cmd;
      throw new Error(`unhandled ${(never as { type: string }).type}`);
    }
  }
}

export function evolveApproval(state: ApprovalState, ev: ApprovalEvent): ApprovalState {
  switch (ev.type) {
    case "ApprovalRequested":
      return { status: "pending", request: ev };
    case "ApprovalGranted":
      return { ...state, status: "approved", decision: ev };
    case "ApprovalRejected":
      return { ...state, status: "rejected", decision: ev };
    case "ApprovalExpired":
      return { ...state, status: "expired", decision: ev };
    case "ApprovalCancelled":
      return { ...state, status: "cancelled", decision: ev };
  }
}

export function foldApproval(events: readonly ApprovalEvent[]): ApprovalState {
  return events.reduce(evolveApproval, initialApprovalState());
}

/**
 * The short, typeable request id: `apr-` + 10 Crockford base32 characters (50 bits) of a hex digest
 * (the app digests the request's idempotency key, so a retried request maps to the same id).
 */
export function approvalIdFor(digestHex: string): string {
  const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford: no i, l, o, u
  let bits = BigInt("0x" + digestHex.slice(0, 16));
  let out = "";
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[Number(bits & 31n)]! + out;
    bits >>= 5n;
  }
  return `apr-${out}`;
}

export const APPROVAL_ID = /^apr-[0-9a-hjkmnp-tv-z]{10}$/;
