export * from "./bundle.js";
export * from "./decision.js";
