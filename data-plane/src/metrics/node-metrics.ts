/**
 * A node's figures beyond the proxy's: the audit publisher (its stats object and the batch
 * histograms it feeds through `onBatchStored`) and the policy snapshot watcher (revision and how long
 * the current one took to arrive). Read at scrape time.
 */
import { counterFrom, FixedHistogram, gaugeFrom, histogramFrom, LATENCY_SECONDS_BUCKETS, SIZE_BUCKETS, type Registry } from "@sluice/shared/metrics";
import type { AuditPublisherStats } from "../recorder/audit-publisher.js";
import type { SnapshotWatcherStatus } from "../snapshot/kv-snapshot-watcher.js";
import { oncePerScrape } from "./proxy-metrics.js";

/** The batch histograms, fed by the publisher's `onBatchStored` (once per batch, allocation-free). */
export class AuditBatchFigures {
  readonly events = new FixedHistogram(SIZE_BUCKETS);
  readonly seconds = new FixedHistogram(LATENCY_SECONDS_BUCKETS);
  readonly onBatchStored = (events: number, ms: number): void => {
    this.events.observe(events);
    this.seconds.observe(ms / 1000);
  };
}

export function registerAuditMetrics(registry: Registry, o: { stats: () => AuditPublisherStats; bufferEvents: number; batches: AuditBatchFigures }): void {
  const s = oncePerScrape(o.stats);
  gaugeFrom(registry, "sluice_dp_audit_up", "1 while the audit stream takes this node's batches, 0 while it buffers", () => (s().state === "up" ? 1 : 0));
  gaugeFrom(registry, "sluice_dp_audit_pending_events", "audit events queued or in flight (the buffer's depth)", () => s().pending);
  gaugeFrom(registry, "sluice_dp_audit_buffer_events", "the buffer's size (dataPlane.audit.bufferEvents): beyond it new sessions are refused, and new statements unless, in async with the stream taking batches, they wait for their own (up to 1.5 times it); follow-ups of admitted work have room up to twice it", () => o.bufferEvents);
  counterFrom(registry, "sluice_dp_audit_events_total", "audit events stored on the stream", () => s().published);
  counterFrom(registry, "sluice_dp_audit_messages_total", "audit batches (stream messages) stored", () => s().messages);
  counterFrom(registry, "sluice_dp_audit_bytes_total", "bytes of the audit batches stored", () => s().bytes);
  counterFrom(registry, "sluice_dp_audit_recovered_batches_total", "batches found stored after an uncertain publish", () => s().recovered);
  counterFrom(registry, "sluice_dp_audit_failed_publishes_total", "batch publishes that failed or got no answer in time", () => s().failedPublishes);
  counterFrom(registry, "sluice_dp_audit_refused_total", "records refused because the audit buffer was full (fail closed)", () => s().refused);
  counterFrom(registry, "sluice_dp_audit_ack_timeouts_total", "ack statements refused because their batch was not stored in time", () => s().ackTimeouts);
  counterFrom(registry, "sluice_dp_audit_lane_anomalies_total", "times a lane's stored messages were not what this node wrote", () => s().anomalies);
  histogramFrom(registry, "sluice_dp_audit_batch_events", "events per audit batch stored", o.batches.events);
  histogramFrom(registry, "sluice_dp_audit_batch_seconds", "time from an audit batch forming to its being stored (PubAck or look-up; ms resolution)", o.batches.seconds);
}

export function registerSnapshotMetrics(registry: Registry, o: { status: () => SnapshotWatcherStatus }): void {
  const s = oncePerScrape(o.status);
  const ms = (iso: string | undefined) => (iso ? Date.parse(iso) : NaN);
  gaugeFrom(registry, "sluice_dp_policy_applied_timestamp_seconds", "when this node applied its current policy snapshot (Unix seconds; 0: none)", () => {
    const t = ms(s().appliedAt);
    return Number.isFinite(t) ? t / 1000 : 0;
  });
  gaugeFrom(registry, "sluice_dp_policy_apply_seconds", "time from the control plane storing the current snapshot to this node applying it (0: not read from KV)", () => {
    const d = ms(s().appliedAt) - ms(s().publishedAt);
    return Number.isFinite(d) ? Math.max(0, d) / 1000 : 0;
  });
}
