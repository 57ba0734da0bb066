/**
 * The console's JSON API under /console/api/. Every answer comes from the control plane's own gRPC
 * service implementations, called in-process as the signed-in person (InProcessCalls): the same
 * authorisation, filters and errors as the CLI, and a decision taken here is the same command, so it
 * lands in the stream exactly like `sluice approvals approve`. What the services do not offer is
 * composed here from what they return, never from a second copy of the rules:
 *  - an approval's context (the held statement's masked parameters, the requester's session and
 *    recorded claims): read with the control plane's own identity, and only after ApprovalService.Get
 *    has shown that the person may read that approval;
 *  - the fleet, from the heartbeat bucket (the CLI reads it straight from NATS);
 *  - a simulation, decided by the shared policy code over PolicyService.Get's bundle;
 *  - a verification, by the same verifier `sluice audit verify` runs over AuditService.Read.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type {
  ApprovalRequestView, ApprovalServiceServer, AuditRecord as AuditRecordMsg, AuditServiceServer, GetApprovalResponse, GetPolicyResponse,
  GetSealerResponse, GetSessionResponse, ListApprovalsResponse, ListSessionsRequest, ListSessionsResponse, PolicyDiffResponse,
  PolicyHistoryResponse, PolicyServiceServer, ReadAuditRequest, SessionServiceServer, DecideApprovalResponse,
} from "@sluice/proto";
import { groupsFromClaims, pickIssuer } from "@sluice/shared/auth";
import { SluiceError } from "@sluice/shared/errors";
import type { CloudEvent } from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { loadSqlParser, simulateSql } from "@sluice/shared/sql";
import { AuditVerifier } from "../audit/verify.js";
import { messageFromWire } from "../audit/audit-record.js";
import { ChunkJoiner } from "../audit/chunk-joiner.js";
import { parseCheckpoint, publicKeyFromPem } from "../sealer/checkpoint.js";
import type { Actor } from "../domain/command-meta.js";
import { refusalToDecide } from "../domain/approval/approval-decider.js";
import type { InProcessCalls } from "./in-process-calls.js";
import { readFleetView } from "./fleet-view.js";
import { buildReplay } from "./session-replay.js";
import { readJson, sendJson } from "./http-kit.js";

export interface ConsoleServices {
  approvals: ApprovalServiceServer;
  sessions: SessionServiceServer;
  audit: AuditServiceServer;
  policy: PolicyServiceServer;
}

export interface ConsoleApiDeps {
  calls: InProcessCalls;
  services: ConsoleServices;
  nc: NatsConnection;
  /** the fleet bucket's name and handle */
  fleet: { bucket: string; kv: KV };
  adminGroups: () => readonly string[];
  now: () => Date;
}

const READ_ALL: Omit<ReadAuditRequest, "sessionId" | "follow" | "includeCheckpoints"> = { fromSeq: 0, fromEnd: false, control: false, toSeq: 0 };

/** The events of `sessionId` in a message of a session read (the server narrowed the batch to them). */
function sessionEvents(m: AuditRecordMsg, sessionId: string): CloudEvent[] {
  return m.event ? (messageFromWire(m.event).events ?? []).filter((e) => e.subject === sessionId) : [];
}

/** Each decision a page could offer, and the reason it is not offered (the decider's own rule). */
function decidable(v: ApprovalRequestView, actor: Actor): { approve: boolean; reject: boolean; why?: string } {
  if (v.status !== "pending") return { approve: false, reject: false, why: `already ${v.status}` };
  const req = { requester: { subject: v.requester?.subject ?? "", issuer: v.requester?.issuer ?? "", groups: v.requester?.groups ?? [] }, approvers: v.approvers, approvalId: v.id };
  const why = refusalToDecide(req, actor, "approve");
  return why ? { approve: false, reject: false, why } : { approve: true, reject: true };
}

function approvalOut(v: ApprovalRequestView, actor: Actor) {
  return { ...v, statementId: Number(v.statementId), decidable: decidable(v, actor) };
}

const isStr = (v: unknown): v is string => typeof v === "string";

export class ConsoleApi {
  constructor(private readonly d: ConsoleApiDeps) {}

  /** The control plane's own identity for the scoped reads described above (admin groups, no person). */
  private get system(): Actor {
    return { subject: "console", issuer: "sluice", groups: [...this.d.adminGroups()] };
  }

  isAdmin(actor: Actor): boolean {
    return actor.groups.some((g) => this.d.adminGroups().includes(g));
  }

  async approvals(actor: Actor, all: boolean) {
    const r = await this.d.calls.unary<{ all: boolean }, ListApprovalsResponse>(this.d.services.approvals.list, { all }, actor);
    // pending first (oldest first, the service's order), then the decided ones, newest first
    const pending = r.approvals.filter((a) => a.status === "pending");
    const done = r.approvals.filter((a) => a.status !== "pending").reverse();
    return { now: this.d.now().toISOString(), approvals: [...pending, ...done].map((v) => approvalOut(v, actor)) };
  }

  async approval(actor: Actor, id: string) {
    const r = await this.d.calls.unary<{ id: string }, GetApprovalResponse>(this.d.services.approvals.get, { id }, actor);
    const v = r.approval!;
    return { now: this.d.now().toISOString(), approval: approvalOut(v, actor), context: await this.approvalContext(v) };
  }

  /** The held statement as recorded (masked parameters), and who asked: session and recorded claims. */
  private async approvalContext(v: ApprovalRequestView) {
    const sessionId = v.binding?.sessionId ?? "";
    if (!sessionId || this.d.adminGroups().length === 0) return undefined;
    let session: GetSessionResponse | undefined;
    try {
      session = await this.d.calls.unary<{ sessionId: string }, GetSessionResponse>(this.d.services.sessions.get, { sessionId }, this.system);
    } catch {
      session = undefined; // the read model may not have folded the session yet
    }
    const st = session?.statements.find((s) => Number(s.statementId) === Number(v.statementId));
    let claims: Record<string, unknown> | undefined;
    const ac = new AbortController();
    try {
      const joiner = new ChunkJoiner();
      for await (const m of this.d.calls.serverStream<ReadAuditRequest, AuditRecordMsg>(this.d.services.audit.read, { ...READ_ALL, sessionId, follow: false, includeCheckpoints: false }, this.system, ac.signal)) {
        const ev = sessionEvents(m, sessionId).map((e) => joiner.push(e)).find((e) => e?.type.endsWith(".session.authenticated.v1"));
        if (ev) {
          claims = (ev.data as { claims?: Record<string, unknown> }).claims;
          break;
        }
      }
    } catch {
      claims = undefined;
    } finally {
      ac.abort();
    }
    const s = session?.session;
    return {
      ...(s ? { session: { sessionId: s.sessionId, resource: s.resource, node: s.node, region: s.region, clientAddress: s.clientAddress, applicationName: s.applicationName, clientUser: s.clientUser, startedAt: s.startedAt, statements: Number(s.statements) } } : {}),
      ...(st ? { statement: { params: st.paramsJson ? (JSON.parse(st.paramsJson) as Array<string | null>) : [], protocol: st.protocol, tables: JSON.parse(st.tablesJson || "{}") as unknown } } : {}),
      ...(claims ? { claims } : {}),
    };
  }

  async decide(actor: Actor, id: string, verdict: "approve" | "reject", body: Record<string, unknown>) {
    const reason = isStr(body.reason) ? body.reason.trim() : "";
    if (!reason) throw new SluiceError("invalid_argument", "a reason is required");
    const commandId = isStr(body.commandId) ? body.commandId : "";
    const handler = verdict === "approve" ? this.d.services.approvals.approve : this.d.services.approvals.reject;
    const r = await this.d.calls.unary<{ id: string; reason: string; commandId: string }, DecideApprovalResponse>(handler, { id, reason, commandId }, actor);
    return { approval: approvalOut(r.approval!, actor), duplicate: r.duplicate };
  }

  async sessions(actor: Actor, q: URLSearchParams) {
    const limit = Number(q.get("limit") ?? 100);
    const time = (k: string) => {
      const v = q.get(k);
      if (!v) return "";
      const t = Date.parse(v);
      if (Number.isNaN(t)) throw new SluiceError("invalid_argument", `${k} must be a time`);
      return new Date(t).toISOString();
    };
    const req: ListSessionsRequest = {
      identity: q.get("identity") ?? "",
      resource: q.get("resource") ?? "",
      node: q.get("node") ?? "",
      since: time("since"),
      until: time("until"),
      decision: q.get("decision") ?? "",
      status: q.get("status") ?? "",
      limit: Number.isInteger(limit) && limit > 0 ? Math.min(limit, 1000) : 100,
    };
    const r = await this.d.calls.unary<ListSessionsRequest, ListSessionsResponse>(this.d.services.sessions.list, req, actor);
    return { sessions: r.sessions.map((s) => ({ ...s, statements: Number(s.statements), blocked: Number(s.blocked), policyRevision: Number(s.policyRevision) })) };
  }

  /** Summary from the read model, replay from the session's events (both as the person: admin only, like the CLI). */
  async session(actor: Actor, sessionId: string) {
    const r = await this.d.calls.unary<{ sessionId: string }, GetSessionResponse>(this.d.services.sessions.get, { sessionId }, actor);
    const events: CloudEvent[] = [];
    const joiner = new ChunkJoiner();
    const ac = new AbortController();
    try {
      for await (const m of this.d.calls.serverStream<ReadAuditRequest, AuditRecordMsg>(this.d.services.audit.read, { ...READ_ALL, sessionId, follow: false, includeCheckpoints: false }, actor, ac.signal)) {
        // an unreadable message is a verify finding, not a replay line
        for (const e of sessionEvents(m, sessionId)) {
          const ev = joiner.push(e);
          if (ev) events.push(ev);
        }
      }
    } finally {
      ac.abort();
    }
    const s = r.session!;
    return {
      session: { ...s, statements: Number(s.statements), blocked: Number(s.blocked), policyRevision: Number(s.policyRevision) },
      replay: buildReplay(sessionId, events),
    };
  }

  /** Calls `onEvent` for each new event of a session until `signal` aborts (SSE live follow). */
  /** Refuses like SessionService.Get when the person may not read the session (or it is unknown). */
  async checkSession(actor: Actor, sessionId: string): Promise<void> {
    await this.d.calls.unary<{ sessionId: string }, GetSessionResponse>(this.d.services.sessions.get, { sessionId }, actor);
  }

  async followSession(actor: Actor, sessionId: string, signal: AbortSignal, onEvent: (ev: CloudEvent) => void): Promise<void> {
    const joiner = new ChunkJoiner();
    for await (const m of this.d.calls.serverStream<ReadAuditRequest, AuditRecordMsg>(this.d.services.audit.read, { ...READ_ALL, sessionId, follow: true, includeCheckpoints: false }, actor, signal)) {
      for (const e of sessionEvents(m, sessionId)) {
        const ev = joiner.push(e);
        if (ev) onEvent(ev);
      }
    }
  }

  async fleet() {
    return { now: this.d.now().toISOString(), nodes: await readFleetView(this.d.nc, this.d.fleet.bucket, this.d.fleet.kv, this.d.now()) };
  }

  async policy(actor: Actor) {
    const r = await this.d.calls.unary<object, GetPolicyResponse>(this.d.services.policy.get, {}, actor);
    const s = r.snapshot;
    if (!s) return { snapshot: null };
    return { snapshot: { revision: Number(s.revision), hash: s.hash, appliedBy: s.appliedBy, appliedAt: s.appliedAt, sourcePath: s.sourcePath, bundleYaml: s.bundleYaml } };
  }

  async policyHistory(actor: Actor, limit: number) {
    const r = await this.d.calls.unary<{ limit: number }, PolicyHistoryResponse>(this.d.services.policy.history, { limit }, actor);
    return { revisions: r.revisions.map((v) => ({ ...v, revision: Number(v.revision) })) };
  }

  async policyDiff(actor: Actor, from: number, to: number) {
    const r = await this.d.calls.unary<{ fromRevision: number; toRevision: number }, PolicyDiffResponse>(this.d.services.policy.diff, { fromRevision: from, toRevision: to }, actor);
    return { fromRevision: Number(r.fromRevision), toRevision: Number(r.toRevision), changes: r.changes, diff: r.diff };
  }

  /** Decides SQL for an identity as the data plane would, against the current bundle. */
  async simulate(actor: Actor, body: Record<string, unknown>) {
    const r = await this.d.calls.unary<object, GetPolicyResponse>(this.d.services.policy.get, {}, actor);
    if (!r.snapshot) throw new SluiceError("failed_precondition", "no policy applied yet");
    const bundle = JSON.parse(r.snapshot.bundleJson) as Bundle;
    const resource = isStr(body.resource) ? body.resource.trim() : "";
    const sql = isStr(body.sql) ? body.sql : "";
    if (!resource) throw new SluiceError("invalid_argument", "resource is required");
    if (!sql.trim()) throw new SluiceError("invalid_argument", "sql is required");
    const issuerName = isStr(body.issuer) && body.issuer ? body.issuer : undefined;
    let groups: string[];
    let issuer: string | undefined = issuerName;
    if (isStr(body.claims) && body.claims.trim()) {
      let claims: unknown;
      try {
        claims = JSON.parse(body.claims);
      } catch {
        throw new SluiceError("invalid_argument", "claims must be a JSON object");
      }
      if (!claims || typeof claims !== "object" || Array.isArray(claims)) throw new SluiceError("invalid_argument", "claims must be a JSON object");
      const spec = pickIssuer(bundle, claims as Record<string, unknown>, issuerName);
      issuer = spec.name;
      groups = groupsFromClaims(claims as Record<string, unknown>, spec.groups);
    } else {
      groups = (Array.isArray(body.groups) ? body.groups : isStr(body.groups) ? body.groups.split(",") : []).filter(isStr).map((g) => g.trim()).filter(Boolean);
      if (issuer && !bundle.issuers.some((i) => i.name === issuer)) throw new SluiceError("not_found", `no issuer named ${JSON.stringify(issuer)} in the bundle`);
    }
    await loadSqlParser();
    const { decision, classification, perStatement } = simulateSql(bundle, { resource, groups, issuer }, sql);
    return {
      revision: Number(r.snapshot.revision),
      decision: decision.action,
      rule: decision.rule,
      policy: decision.policy ?? null,
      reason: decision.reason,
      approval: decision.approval ?? null,
      groups,
      issuer: issuer ?? null,
      parseError: classification.ok ? null : classification.error,
      statements: classification.ok
        ? classification.statements.map((s, i) => ({ text: s.text, class: s.class, tables: s.tables, risks: s.risks, decision: perStatement[i]!.action, rule: perStatement[i]!.rule }))
        : [],
    };
  }

  async sealer(actor: Actor) {
    const r = await this.d.calls.unary<object, GetSealerResponse>(this.d.services.audit.getSealer, {}, actor);
    return {
      keyId: r.keyId,
      publicKeyPem: r.publicKeyPem,
      leader: r.leader,
      sealedThrough: Number(r.sealedThrough),
      lastCheckpoint: r.lastCheckpointJson ? (JSON.parse(r.lastCheckpointJson) as unknown) : null,
    };
  }

  /** `sluice audit verify` over the whole stream, signatures checked against the sealer's key. */
  async verify(actor: Actor) {
    const sealer = await this.d.calls.unary<object, GetSealerResponse>(this.d.services.audit.getSealer, {}, actor);
    // the key the control plane reports (a person pins their own with `sluice audit key`), and the
    // stream up to the last checkpoint: what is after it is seconds old and not proven yet
    const v = new AuditVerifier([], { publicKey: publicKeyFromPem(sealer.publicKeyPem), keyFromServer: true, maxProblems: 20, now: this.d.now().getTime() });
    const ac = new AbortController();
    const started = Date.now();
    try {
      const req = { ...READ_ALL, toSeq: Number(sealer.sealedThrough), sessionId: "", follow: false, includeCheckpoints: true };
      for await (const m of this.d.calls.serverStream<ReadAuditRequest, AuditRecordMsg>(this.d.services.audit.read, req, actor, ac.signal)) {
        if (m.event) v.add(messageFromWire(m.event));
        else if (m.checkpoint) v.addCheckpoint(parseCheckpoint(m.checkpoint.checkpointJson));
      }
    } finally {
      ac.abort();
    }
    const report = v.finish();
    return { ...report, keyId: sealer.keyId, durationMs: Date.now() - started, verifiedAt: this.d.now().toISOString() };
  }
}

/** Routes /console/api/<path> to the API; returns false for an unknown path. */
export async function routeApi(
  api: ConsoleApi,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  url: URL,
  actor: Actor,
): Promise<boolean> {
  const get = req.method === "GET" || req.method === "HEAD";
  const post = req.method === "POST";
  let m: RegExpExecArray | null;
  if (get && path === "approvals") return sendJson(res, 200, await api.approvals(actor, url.searchParams.get("all") === "1")), true;
  if (get && (m = /^approvals\/([A-Za-z0-9_-]{1,64})$/.exec(path))) return sendJson(res, 200, await api.approval(actor, m[1]!)), true;
  if (post && (m = /^approvals\/([A-Za-z0-9_-]{1,64})\/(approve|reject)$/.exec(path))) {
    return sendJson(res, 200, await api.decide(actor, m[1]!, m[2] as "approve" | "reject", await readJson(req))), true;
  }
  if (get && path === "sessions") return sendJson(res, 200, await api.sessions(actor, url.searchParams)), true;
  if (get && (m = /^sessions\/([A-Za-z0-9_.:-]{1,128})$/.exec(path))) return sendJson(res, 200, await api.session(actor, m[1]!)), true;
  if (get && path === "fleet") return sendJson(res, 200, await api.fleet()), true;
  if (get && path === "policy") return sendJson(res, 200, await api.policy(actor)), true;
  if (get && path === "policy/history") return sendJson(res, 200, await api.policyHistory(actor, Math.min(Number(url.searchParams.get("limit")) || 50, 500))), true;
  if (get && path === "policy/diff") {
    return sendJson(res, 200, await api.policyDiff(actor, Number(url.searchParams.get("from")) || 0, Number(url.searchParams.get("to")) || 0)), true;
  }
  if (post && path === "policy/simulate") return sendJson(res, 200, await api.simulate(actor, await readJson(req))), true;
  if (get && path === "evidence") return sendJson(res, 200, await api.sealer(actor)), true;
  if (get && path === "evidence/verify") return sendJson(res, 200, await api.verify(actor)), true;
  return false;
}
