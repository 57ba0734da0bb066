// Public entry of @sluice/data-plane.
export { startDataPlane, type DataPlane, type DataPlaneOptions, type DataPlaneStats } from "./data-plane.js";
export * from "./session/session-hooks.js";
export type { VerifiedIdentity } from "./net/client-connection.js";
export { encodeClientPid, nodeOfClientPid, nodeNumberFromId, MAX_NODE_NUMBER } from "./session/cancel-keys.js";
export { mayConnect } from "./session/may-connect.js";
export { resolveSecret } from "./upstream/resolve-secret.js";
