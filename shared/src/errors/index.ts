export * from "./sluice-error.js";
export * from "./translate.js";
