/**
 * The audit half's figures on /metrics: how far the read model and the sealer are behind the audit
 * stream. The stream's last sequence and its last checkpoint are read from JetStream at scrape time
 * (one read per scrape shared by every gauge, and by scrapes that overlap), so every replica reports
 * the same stream-wide truth, also the ones that do not lead the sealer.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Logger } from "@sluice/shared/logging";
import type { NatsNames } from "@sluice/shared/nats";
import { gaugeFrom, type Registry } from "@sluice/shared/metrics";
import { lastCheckpoint } from "../sealer/sealer.js";
import type { ProjectorHandle, SealerHandle } from "./audit-fold.js";

interface StreamFigures {
  lastSeq: number;
  /** last stream sequence covered by a stored checkpoint (0: none) */
  sealedThrough: number;
  /** when that checkpoint was cut, ms since the epoch (0: none) */
  checkpointAt: number;
}

const READ_TIMEOUT_MS = 2000;

export function registerAuditMetrics(
  registry: Registry,
  o: { nc: NatsConnection; names: NatsNames; projector: ProjectorHandle; sealer: SealerHandle; logger?: Logger },
): void {
  let figures: StreamFigures = { lastSeq: 0, sealedThrough: 0, checkpointAt: 0 };
  let inflight: Promise<StreamFigures> | undefined;

  async function fetchFigures(): Promise<StreamFigures> {
    const jsm = await jetstreamManager(o.nc, { timeout: READ_TIMEOUT_MS });
    const [info, cp] = await Promise.all([
      jsm.streams.info(o.names.auditStream),
      Promise.race([
        lastCheckpoint(o.nc, o.names),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("checkpoint read timed out")), READ_TIMEOUT_MS).unref()),
      ]),
    ]);
    return { lastSeq: info.state.last_seq, sealedThrough: cp?.cp.lastSeq ?? 0, checkpointAt: cp ? Date.parse(cp.cp.at) : 0 };
  }

  /** the figures of this scrape (one read for all gauges); the last ones known while NATS does not answer */
  function read(): Promise<StreamFigures> {
    inflight ??= fetchFigures()
      .then((f) => {
        figures = f;
        return f;
      })
      .catch((e: unknown) => {
        o.logger?.debug({ err: (e as Error).message }, "metrics: audit stream figures unavailable; serving the last ones");
        return figures;
      })
      .finally(() => (inflight = undefined));
    return inflight;
  }
  const sealedThrough = (f: StreamFigures) => Math.max(f.sealedThrough, o.sealer.status().sealedThrough);

  gaugeFrom(registry, "sluice_audit_stream_last_sequence", "sequence of the last message stored on the audit stream", async () => (await read()).lastSeq);
  gaugeFrom(registry, "sluice_read_model_position", "audit stream sequence folded into this replica's read model", () => o.projector.position);
  gaugeFrom(registry, "sluice_read_model_lag_messages", "audit stream messages not yet folded into this replica's read model", async () =>
    Math.max(0, (await read()).lastSeq - o.projector.position));
  gaugeFrom(registry, "sluice_sealer_sealed_through", "audit stream sequence covered by the last signed checkpoint", async () => sealedThrough(await read()));
  gaugeFrom(registry, "sluice_sealer_lag_messages", "audit stream messages not yet covered by a signed checkpoint", async () => {
    const f = await read();
    return Math.max(0, f.lastSeq - sealedThrough(f));
  });
  gaugeFrom(registry, "sluice_sealer_last_checkpoint_timestamp_seconds", "when the last signed checkpoint was cut (Unix seconds; 0: none yet)", async () =>
    (await read()).checkpointAt / 1000);
  gaugeFrom(registry, "sluice_sealer_leader", "1 while this replica holds the sealer lease", () => (o.sealer.isLeader ? 1 : 0));
}
