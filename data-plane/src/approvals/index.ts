export * from "./nats-approval-gate.js";
export * from "./approval-audit-events.js";
export * from "./node-approval-gate.js";
