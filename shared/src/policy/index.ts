export * from "./bundle.js";
