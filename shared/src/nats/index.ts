export * from "./nats-names.js";
export * from "./jetstream-setup.js";
