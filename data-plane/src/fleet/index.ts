export * from "./fleet-heartbeat.js";
