/**
 * Where a client's connection set-up spends its time, phase by phase (issue 15: "report where the
 * time goes"). The connection handler observes each phase once per connection that reaches it; the
 * node's /metrics shows them as one histogram labelled by phase, and the bench reads their sums.
 */
import { FixedHistogram, LATENCY_SECONDS_BUCKETS } from "@sluice/shared/metrics";

export const CONNECT_PHASES = [
  /** accept → TLS handshake done (the client's SSLRequest, the 'S', the handshake) */
  "tls",
  /** TLS done → StartupMessage read */
  "startup",
  /** password asked for → the client's password message (a client round trip) */
  "password",
  /** the token's verification (signature, claims, groups; the verified-token cache) */
  "token",
  /** snapshot, resource and policy look-up, startup settings */
  "policy",
  /** an upstream connection: an idle pooled one, a spare, or a new backend */
  "upstream",
  /** session.started and session.authenticated recorded (with ack durability: stored) */
  "audit",
  /** accept → ReadyForQuery sent */
  "total",
] as const;
export type ConnectPhase = (typeof CONNECT_PHASES)[number];

export class ConnectPhases {
  readonly histograms = Object.fromEntries(CONNECT_PHASES.map((p) => [p, new FixedHistogram(LATENCY_SECONDS_BUCKETS)])) as Record<ConnectPhase, FixedHistogram>;

  /** `ms` milliseconds spent in `phase` */
  observe(phase: ConnectPhase, ms: number): void {
    this.histograms[phase].observe(ms / 1000);
  }
}
