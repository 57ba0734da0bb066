/**
 * ApprovalService over the approval application service. Every call is authenticated (bearer token,
 * like PolicyService). Reading: admins see every request; anyone else the requests they may decide
 * (a member of one of its approver groups) or made themselves. Deciding: the decider's rules
 * (approver groups only, never the requester, one decision, not after expiry).
 */
import { ApprovalServiceService, type ApprovalRequestView, type ApprovalServiceServer } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import type { Logger } from "@sluice/shared/logging";
import { gaugeFrom } from "@sluice/shared/metrics";
import type { Actor } from "../domain/command-meta.js";
import { ApprovalApp, type ApprovalView } from "../app/approval-app.js";
import type { ControlPlaneComponent } from "../control-plane.js";
import type { Authenticator } from "./authenticate.js";
import { unary } from "./service-error.js";

export interface ApprovalServiceDeps {
  app: ApprovalApp;
  auth: Authenticator;
  adminGroups: () => readonly string[];
  logger: Logger;
}

export function approvalViewOut(v: ApprovalView): ApprovalRequestView {
  const r = v.request;
  return {
    id: v.id,
    status: v.status,
    requester: { ...v.requester },
    binding: { ...r.binding },
    sql: r.sql,
    statementClass: r.statementClass,
    rule: r.rule,
    policy: r.policy,
    approvers: [...r.approvers],
    requestedAt: v.requestedAt,
    expiresAt: v.expiresAt,
    decidedAt: v.decidedAt ?? "",
    decidedBy: v.decidedBy ? { ...v.decidedBy } : undefined,
    reason: v.reason ?? "",
    node: r.node,
    region: r.region,
    statementId: r.statementId,
  };
}

function mayRead(actor: Actor, v: ApprovalView, admins: readonly string[]): boolean {
  if (actor.groups.some((g) => admins.includes(g))) return true;
  if (actor.groups.some((g) => v.request.approvers.includes(g))) return true;
  return actor.subject === v.requester.subject && actor.issuer === v.requester.issuer;
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

function checkId(id: string): string {
  const s = (id ?? "").trim();
  if (!ID.test(s)) throw new SluiceError("invalid_argument", "an approval id looks like apr-xxxxxxxxxx");
  return s;
}

export function approvalService(d: ApprovalServiceDeps): ApprovalServiceServer {
  const base = (method: string) => ({ auth: d.auth, logger: d.logger, method: `ApprovalService/${method}` });
  const decide = (verdict: "approve" | "reject") =>
    unary(base(verdict === "approve" ? "Approve" : "Reject"), async (req: { id: string; reason: string; commandId: string }, { actor }) => {
      const r = await d.app.decide(checkId(req.id), verdict, actor, (req.reason ?? "").slice(0, 1000), req.commandId || undefined);
      return { approval: approvalViewOut(r.view), duplicate: r.duplicate };
    });
  return {
    list: unary(base("List"), async (req, { actor }) => {
      const all = await d.app.list({ all: req.all });
      return { approvals: all.filter((v) => mayRead(actor, v, d.adminGroups())).map(approvalViewOut) };
    }),
    get: unary(base("Get"), async (req, { actor }) => {
      const id = checkId(req.id);
      const v = await d.app.get(id);
      // a stranger learns nothing, not even that the id exists
      if (!mayRead(actor, v, d.adminGroups())) throw new SluiceError("not_found", `no approval request ${id}`);
      return { approval: approvalViewOut(v) };
    }),
    approve: decide("approve"),
    reject: decide("reject"),
  };
}

/**
 * The approval component of startControlPlane: the application service with its NATS request
 * listener and expirer, and ApprovalService. Its in-process api is the ApprovalApp.
 */
export const approvalComponent: ControlPlaneComponent = {
  name: "approvals",
  async start(ctx) {
    const logger = ctx.logger.child({ component: "approvals" });
    // with the fleet bucket: the requests of a node that died or restarted are cancelled (never approvable)
    const app = new ApprovalApp({ store: ctx.store, nc: ctx.nc, names: ctx.names, logger, now: ctx.now, fleet: ctx.kv.fleet });
    await app.start();
    gaugeFrom(ctx.metrics, "sluice_control_approvals_pending", "approval requests waiting for a decision", () => app.pendingCount);
    return {
      grpcServices: [
        {
          definition: ApprovalServiceService,
          implementation: approvalService({ app, auth: ctx.auth, adminGroups: ctx.adminGroups, logger: ctx.logger.child({ component: "grpc" }) }),
        },
      ],
      stop: () => app.stop(),
      api: app,
    };
  },
};
