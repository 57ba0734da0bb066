/**
 * The Fleet page: the data planes' heartbeats in the `sluice_fleet` bucket (contract: region, version,
 * snapshot revision applied, connections; TTL), read from the control plane's own handle on it. The
 * control plane may not import the data plane, so the value is read here by its documented fields and
 * checked, not trusted: a malformed entry is shown as such rather than breaking the page.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { kvStreamName } from "@sluice/shared/nats";

export interface FleetNodeView {
  node: string;
  region: string;
  version: string;
  snapshotRevision: number;
  connections: number;
  listen?: string;
  startedAt?: string;
  lastBeat?: string;
  ageMs?: number;
  /** no beat for more than three periods */
  stale: boolean;
  /** the entry could not be read */
  malformed?: boolean;
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const int = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** One heartbeat value as the page shows it. Pure. */
export function fleetNodeOf(key: string, value: unknown, now: Date): FleetNodeView {
  const b = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const lastBeat = str(b.lastBeat);
  const beatAt = lastBeat ? Date.parse(lastBeat) : NaN;
  const every = int(b.everySeconds) || 5;
  const ageMs = Number.isNaN(beatAt) ? undefined : Math.max(0, now.getTime() - beatAt);
  const malformed = str(b.region) === undefined || int(b.snapshotRevision) === undefined || ageMs === undefined;
  return {
    node: str(b.node) ?? key,
    region: str(b.region) ?? "?",
    version: str(b.version) ?? "?",
    snapshotRevision: int(b.snapshotRevision) ?? 0,
    connections: int(b.connections) ?? 0,
    ...(str(b.listen) ? { listen: str(b.listen) } : {}),
    ...(str(b.startedAt) ? { startedAt: str(b.startedAt) } : {}),
    ...(lastBeat ? { lastBeat } : {}),
    ...(ageMs !== undefined ? { ageMs } : {}),
    stale: ageMs === undefined || ageMs > 3 * every * 1000,
    ...(malformed ? { malformed: true } : {}),
  };
}

export async function readFleetView(nc: NatsConnection, bucket: string, kv: KV, now: Date): Promise<FleetNodeView[]> {
  // keys from the stream's subjects (one request), not kv.keys(), whose push consumer never ends when
  // read from another cluster of a supercluster (the same choice as the data plane's readFleet)
  const kvPrefix = `$KV.${bucket}.`;
  const info = await (await jetstreamManager(nc)).streams.info(kvStreamName(bucket), { subjects_filter: `${kvPrefix}>` });
  const keys = Object.keys(info.state.subjects ?? {}).map((k) => k.slice(kvPrefix.length));
  const out: FleetNodeView[] = [];
  for (const k of keys) {
    const e = await kv.get(k);
    if (!e || e.operation !== "PUT") continue;
    let value: unknown;
    try {
      value = e.json();
    } catch {
      value = undefined;
    }
    out.push(fleetNodeOf(k, value, now));
  }
  return out.sort((a, b) => a.region.localeCompare(b.region) || a.node.localeCompare(b.node));
}
