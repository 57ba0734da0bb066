// What audit clients (the CLI) need, without the control plane's server side: verify, the JSON-lines
// copy, OCSF, transcripts, checkpoints. Pure apart from hashing; loads fast
// (`@sluice/control-plane/audit-client`).
export * from "./audit-record.js";
export * from "./audit-jsonl.js";
export * from "./verify.js";
export * from "./ocsf.js";
export * from "./chunk-joiner.js";
export * from "./transcript.js";
export { parseCheckpoint, publicKeyFromPem, checkpointSignatureValid, checkpointHash, keyIdOf, type Checkpoint } from "../sealer/checkpoint.js";
