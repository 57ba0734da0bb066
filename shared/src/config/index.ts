export * from "./config.js";
export * from "./secret-ref.js";
export * from "./probe-listen.js";
