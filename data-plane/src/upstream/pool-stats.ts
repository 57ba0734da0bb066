/**
 * What the upstream side of a node holds, for /metrics. The seam for the connection pool: today the
 * data plane fills it from the warm spares (a spare is opened ahead for the next session and never
 * serves two, so `reused` stays 0); a pool that hands a connection to more than one session or
 * transaction reports its own figures through the same shape.
 */
export interface UpstreamPoolStats {
  /** upstream connections serving a client now */
  inUse: number;
  /** open upstream connections waiting for a client (warm spares, idle pooled connections) */
  idle: number;
  /** upstream connections opened since start */
  opened: number;
  /** times a client got a connection that had served another client before */
  reused: number;
}
