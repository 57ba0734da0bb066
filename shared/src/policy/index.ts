export * from "./bundle.js";
export * from "./decision.js";
export * from "./validate-bundle.js";
export * from "./parse-bundle.js";
export * from "./evaluate.js";
export * from "./decision-cache.js";
export * from "./bundle-warnings.js";
