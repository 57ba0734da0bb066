export * from "./fixed-histogram.js";
export * from "./prometheus.js";
