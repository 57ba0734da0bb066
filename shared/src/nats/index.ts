export * from "./nats-names.js";
