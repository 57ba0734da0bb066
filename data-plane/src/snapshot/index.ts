export * from "./snapshot-source.js";
export * from "./kv-snapshot-watcher.js";
