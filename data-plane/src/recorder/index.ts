export * from "./audit-lanes.js";
export * from "./jetstream-lane-transport.js";
export * from "./audit-publisher.js";
export * from "./session-recorder.js";
export * from "./audit-event-data.js";
export * from "./input-masker.js";
export * from "./audit-observer.js";
