export * from "./canonical-json.js";
export * from "./uuid-v7.js";
export * from "./cloud-event.js";
export * from "./session-events.js";
export * from "./cloud-event-batch.js";
