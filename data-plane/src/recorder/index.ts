export * from "./audit-publisher.js";
export * from "./session-recorder.js";
export * from "./audit-observer.js";
