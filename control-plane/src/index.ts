// Public entry of @sluice/control-plane.
export * from "./control-plane.js";
export { PolicyApp, type ApplyInput, type ApplyResult, type RevisionView } from "./app/policy-app.js";
export { JetStreamEventStore, ConcurrencyConflict, controlEventType } from "./infra/jetstream-event-store.js";
export { createAuthenticator, requireAnyGroup, bearerToken, type Authenticator } from "./grpc/authenticate.js";
export { unary, toServiceError, PROBLEMS_METADATA_KEY, type UnaryContext } from "./grpc/service-error.js";
export type { GrpcServiceRegistration } from "./grpc/grpc-server.js";
export type { HttpRoutes, HttpMount } from "./http/http-server.js";
export { writeSnapshotCas } from "./projections/snapshot-kv-writer.js";
export type { Actor, CommandMeta } from "./domain/command-meta.js";
export * from "./audit/index.js";
export * from "./sealer/index.js";
export * from "./projections/read-model/index.js";
export { ApprovalNotifier, NOTIFIER_DURABLE } from "./notifications/approval-notifier.js";
export { signWebhook, verifyWebhookSignature, SIGNATURE_HEADERS } from "./notifications/webhook-signature.js";
