export * from "./nats-names.js";
export * from "./jetstream-setup.js";
export * from "./nats-connect.js";
