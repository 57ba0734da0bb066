// The audit pieces: everything clients use (client.ts: verify, the JSON-lines copy, OCSF,
// transcripts, checkpoints) plus the control plane's stream reader and component.
export * from "./client.js";
export { readAuditMessages, readCheckpoints, readStreamMessages, toAuditMessage, type ReadOptions } from "./stream-reader.js";
export { auditComponent, readModelConfig, signingKeyFor, type AuditApi } from "./audit-component.js";
