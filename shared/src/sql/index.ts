export * from "./statement-info.js";
