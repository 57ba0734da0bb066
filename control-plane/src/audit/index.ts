// The audit pieces clients use (pure where possible): verify, the JSON-lines copy, OCSF, transcripts.
export * from "./audit-record.js";
export * from "./audit-jsonl.js";
export * from "./verify.js";
export * from "./ocsf.js";
export * from "./chunk-joiner.js";
export * from "./transcript.js";
export { readAuditRecords, readCheckpoints, readStreamMessages, toAuditRecord, type ReadOptions } from "./stream-reader.js";
export { auditComponent, readModelConfig, signingKeyFor, type AuditApi } from "./audit-component.js";
