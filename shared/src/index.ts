// Public entry of @sluice/shared. Pure modules and the few I/O helpers both planes share.
export * from "./errors/index.js";
export * from "./events/index.js";
export * from "./nats/index.js";
export * from "./policy/index.js";
export * from "./sql/index.js";
export * from "./config/index.js";
export * from "./logging/index.js";
