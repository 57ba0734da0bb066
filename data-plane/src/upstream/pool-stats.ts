/**
 * What the upstream side of a node holds and has done, for /metrics (upstream-pool.ts fills it).
 */

/** Why the pool closed an upstream connection rather than hand it to another session. */
export const CLOSE_REASONS = [
  /** its session did not end provably clean (vanished client, error, transaction, COPY, cancel, FATAL) */
  "not_clean",
  /** reuse is off (`dataPlane.upstreamPool.reuse: false`) */
  "reuse_off",
  /** the reset (DISCARD ALL or the resource's resetQuery) failed, timed out or left it unclean */
  "reset_failed",
  /** it did not answer the health check before reuse */
  "health_check_failed",
  /** unused for the idle time-out */
  "idle_timeout",
  /** older than the maximum lifetime */
  "lifetime",
  /** the idle limit of its resource or of the node was reached */
  "limit",
  /** the backend hung up or spoke while idle */
  "backend_closed",
  /** the node is draining or stopping */
  "stopped",
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

export interface UpstreamPoolStats {
  /** upstream connections serving a client now */
  inUse: number;
  /** open upstream connections waiting for a client (reset connections and warm spares) */
  idle: number;
  /** warm spares still connecting */
  opening: number;
  /** connections being reset after their session */
  resetting: number;
  /** upstream connections opened since start */
  opened: number;
  /** times a client got a connection that had served another client before */
  reused: number;
  /** resets started (one per cleanly ended session while reuse is on) */
  resets: number;
  /** health checks run before reuse */
  healthChecks: number;
  /** connections closed by the pool, by reason */
  closed: Record<CloseReason, number>;
}
