export * from "./nats-names.js";
export * from "./jetstream-setup.js";
export * from "./nats-permissions.js";
export * from "./nats-auth.js";
export * from "./nats-connect.js";
export * from "./live-consumer.js";
export * from "./nats-failure.js";
