export * from "./config.js";
export * from "./secret-ref.js";
