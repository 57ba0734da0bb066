/**
 * The data-plane node's default ApprovalGate: the NATS gate with the approval events on the audit
 * observer's session recorders, SQL text and parameters masked by the same rules as the audit trail.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsNames } from "@sluice/shared/nats";
import { rulesInputMasker, type InputMasker } from "../recorder/input-masker.js";
import type { SessionRecorder } from "../recorder/session-recorder.js";
import type { ApprovalGate, SnapshotSource } from "../session/session-hooks.js";
import { approvalAuditEvents } from "./approval-audit-events.js";
import { createNatsApprovalGate, type NatsApprovalGateOptions } from "./nats-approval-gate.js";

export interface NodeApprovalGateOptions {
  nc: NatsConnection;
  names: NatsNames;
  /** the node's audit observer; without one no approval events are recorded */
  observer?: { recorderFor(sessionId: string): SessionRecorder | undefined };
  /** for the default masker: the resource's masking rules */
  snapshots?: SnapshotSource;
  /** the `hash` strategy's key (the node's masking key, so hashed values agree with the audit trail) */
  hashKey: Buffer;
  masker?: InputMasker;
  logger?: NatsApprovalGateOptions["logger"];
  nodeStartedAt?: string;
}

export function createNodeApprovalGate(o: NodeApprovalGateOptions): ApprovalGate {
  const masker = o.masker ?? rulesInputMasker(o.snapshots, o.hashKey);
  return createNatsApprovalGate({
    nc: o.nc,
    names: o.names,
    logger: o.logger,
    ...(o.nodeStartedAt ? { nodeStartedAt: o.nodeStartedAt } : {}),
    maskSql: (session, sql) => masker.text(session, sql),
    ...(o.observer ? { events: approvalAuditEvents({ observer: o.observer, masker }) } : {}),
  });
}
