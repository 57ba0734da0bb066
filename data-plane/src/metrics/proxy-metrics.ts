/**
 * The proxy's figures on its /metrics registry, all read at scrape time from the numbers the proxy
 * keeps anyway (DataPlaneStats, ProxyCounters, the added-latency histogram, the upstream pool).
 */
import { counterFrom, countersFrom, gaugeFrom, gaugesFrom, histogramFrom, histogramsFrom, type FixedHistogram, type Registry } from "@sluice/shared/metrics";
import type { ConnectPhases } from "./connect-phases.js";
import type { UpstreamPoolStats } from "../upstream/pool-stats.js";
import type { ProxyCounters } from "./proxy-counters.js";

export interface ProxyFigures {
  connecting: number;
  sessions: number;
  bytesIn: number;
  bytesOut: number;
  cancels: number;
}

/** `read` once per scrape: every collector of one scrape runs in the same turn of the event loop. */
export function oncePerScrape<T>(read: () => T): () => T {
  let value: T;
  let valid = false;
  return () => {
    if (!valid) {
      value = read();
      valid = true;
      queueMicrotask(() => (valid = false));
    }
    return value;
  };
}

export function registerProxyMetrics(
  registry: Registry,
  o: {
    stats: () => ProxyFigures;
    counters: ProxyCounters;
    addedLatency: FixedHistogram;
    pool: () => UpstreamPoolStats;
    revision: () => number;
    connectPhases: ConnectPhases;
    /** the failed-handshake limiter's counts (net/handshake-limiter.ts), when it runs */
    handshakes?: () => { failed: number; limited: number; dropped: number; unrecorded: number };
  },
): void {
  const stats = oncePerScrape(o.stats);
  const pool = oncePerScrape(o.pool);
  const c = o.counters;
  gaugeFrom(registry, "sluice_dp_connections_connecting", "client connections accepted and not yet relaying (TLS, startup, token check, upstream connect)", () => stats().connecting);
  gaugeFrom(registry, "sluice_dp_sessions", "sessions relaying now", () => stats().sessions);
  countersFrom(registry, "sluice_dp_sessions_total", "connections that sent a StartupMessage, by outcome (established, denied, failed)", "outcome", () => ({ ...c.sessions }));
  countersFrom(registry, "sluice_dp_statements_total", "statement executions by decision (allowed, denied, approved, rejected, timeout, failed)", "decision", () => ({ ...c.decisions }));
  histogramFrom(registry, "sluice_dp_statement_added_seconds", "time an allowed statement spends in the proxy before it goes upstream: policy decision and, with ack durability, the audit acknowledgement", o.addedLatency);
  gaugeFrom(registry, "sluice_dp_approvals_waiting", "statements held for an approval now", () => c.approvalsWaiting);
  counterFrom(registry, "sluice_dp_client_bytes_in_total", "bytes received from clients", () => stats().bytesIn);
  counterFrom(registry, "sluice_dp_client_bytes_out_total", "bytes sent to clients", () => stats().bytesOut);
  counterFrom(registry, "sluice_dp_cancels_total", "cancel requests sent upstream", () => stats().cancels);
  const hs = o.handshakes;
  if (hs) {
    countersFrom(registry, "sluice_dp_failed_handshakes_total", "failed handshakes (failed: the client's fault, recorded within the budget; unrecorded: beyond it; limited: refused 53300 for their source; dropped: closed at accept)", "kind", () => ({ ...hs() }));
  }
  gaugesFrom(registry, "sluice_dp_upstream_connections", "upstream connections by state (in_use, idle: reset or warm spare, opening: a spare connecting, resetting)", "state", () => {
    const p = pool();
    return { in_use: p.inUse, idle: p.idle, opening: p.opening, resetting: p.resetting };
  });
  counterFrom(registry, "sluice_dp_upstream_connections_opened_total", "upstream connections opened", () => pool().opened);
  counterFrom(registry, "sluice_dp_upstream_connections_reused_total", "times a client got an upstream connection that had served another client", () => pool().reused);
  counterFrom(registry, "sluice_dp_upstream_resets_total", "resets (DISCARD ALL or the resource's resetQuery) of connections whose session ended cleanly", () => pool().resets);
  counterFrom(registry, "sluice_dp_upstream_health_checks_total", "health checks of idle connections before reuse", () => pool().healthChecks);
  countersFrom(registry, "sluice_dp_upstream_connections_closed_total", "upstream connections the pool closed instead of reusing, by reason", "reason", () => ({ ...pool().closed }));
  histogramsFrom(registry, "sluice_dp_connect_phase_seconds", "client connection set-up by phase (tls, startup, password, token, policy, upstream, audit) and in all (total)", "phase", o.connectPhases.histograms);
  gaugeFrom(registry, "sluice_dp_policy_revision", "policy snapshot revision this node enforces", o.revision);
}
