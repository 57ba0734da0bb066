// Public entry of @sluice/proto: the generated messages, service definitions and clients.
export * from "./gen/sluice/v1/common.js";
export * from "./gen/sluice/v1/policy.js";
export * from "./gen/sluice/v1/audit.js";
export * from "./gen/sluice/v1/session.js";
export * from "./gen/sluice/v1/approval.js";
export * from "./gen/sluice/v1/events.js";
