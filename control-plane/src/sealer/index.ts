export * from "./checkpoint.js";
export * from "./stream-chain.js";
export * from "./signing-key.js";
export * from "./lease.js";
export * from "./kv-lease.js";
export * from "./sealer-core.js";
export * from "./sealer.js";
