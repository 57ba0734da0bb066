export * from "./schema.js";
export * from "./read-model.js";
export * from "./read-model-projector.js";
