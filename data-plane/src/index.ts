// Public entry of @sluice/data-plane.
export { startDataPlane, type DataPlane, type DataPlaneOptions, type DataPlaneStats } from "./data-plane.js";
export * from "./session/session-hooks.js";
export type { VerifiedIdentity } from "./net/client-connection.js";
export { encodeClientPid, nodeOfClientPid, nodeNumberFromId, MAX_NODE_NUMBER } from "./session/cancel-keys.js";
export { mayConnect } from "./session/may-connect.js";
export { resolveSecret } from "./upstream/resolve-secret.js";
export { snapshotEnforcer } from "./session/snapshot-enforcer.js";
// the node's other parts (B2: snapshot watcher, fleet, cancel routing; E1: recorder), for composers such as `sluice data-plane`
export { startKvSnapshotWatcher, parseSnapshot, staticSnapshotSource, type KvSnapshotWatcher, type KvSnapshotWatcherOptions, type SnapshotWatcherStatus } from "./snapshot/index.js";
export { startFleetHeartbeat, readFleet, withBehind, dataPlaneVersion, type FleetHeartbeat, type FleetHeartbeatOptions, type FleetBeat, type FleetMember } from "./fleet/index.js";
export { startNatsCancelRouter, encodeCancelKey, decodeCancelKey, type NatsCancelRouter, type NatsCancelRouterOptions, type LocalCancelKey } from "./cancel-router.js";
export { AuditPublisher, SessionRecorder, createAuditObserver, type AuditObserver, type AuditObserverOptions, type AuditDurability } from "./recorder/index.js";
// masking (issue 6): the session's ResultMasker over bundle rules + side-connection catalog; startDataPlane wires it by default
export { createResultMasker, type SluiceResultMasker, type ResultMaskerOptions } from "./masking/result-masker.js";
export { createPgCatalog, pgCatalogConnector, type PgCatalog, type PgCatalogOptions } from "./catalog/pg-catalog.js";
export { createDataPlaneMasker, type DataPlaneMasker, type DataPlaneMaskerOptions } from "./catalog/data-plane-masker.js";
export { summarizePlan, type MaskSummary } from "./masking/mask-rules.js";
export { decodeDataRow } from "./wire/decode.js";
export { encodeDataRow } from "./wire/encode.js";
// approvals: the NATS ApprovalGate (request via the control plane, decision watched on SLUICE_CONTROL) and its audit events
export { createNatsApprovalGate, createNodeApprovalGate, approvalAuditEvents, bindingOf, paramsHashOf, type NatsApprovalGateOptions, type NodeApprovalGateOptions, type ApprovalAuditEvents, type ApprovalOutcome } from "./approvals/index.js";
// the composed node (snapshot watcher, proxy, recorder, approvals, cancel routing, heartbeat)
export { startDataPlaneNode, type DataPlaneNode, type DataPlaneNodeOptions, type DataPlaneHooks } from "./data-plane-node.js";
