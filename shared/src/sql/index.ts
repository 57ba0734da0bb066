export * from "./statement-info.js";
export * from "./classify-sql.js";
export * from "./sql-prepared.js";
export * from "./decide-sql.js";
// evaluation and the cache are pure policy code; re-exported here so the data plane takes its
// whole decision path from one subpath (policy/index.ts exports them as well).
export * from "../policy/evaluate.js";
export * from "../policy/decision-cache.js";
export * from "./simulate-sql.js";
export * from "./sql-parser.js";
export * from "./session-settings.js";
export * from "./pre-scan.js";
export * from "./classifier-pool.js";
export * from "./literal-shape.js";
export { sideEffectClass, isSuperuserFunction, isDynamicSqlFunction } from "./function-tables.js";
