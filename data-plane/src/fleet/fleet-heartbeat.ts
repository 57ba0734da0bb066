import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm, type KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { kvStreamName, natsNames } from "@sluice/shared/nats";
import type { Logger } from "@sluice/shared/logging";

/** The value a data plane keeps under its node id in the `sluice_fleet` KV bucket. */
export interface FleetBeat {
  region: string;
  node: string;
  version: string;
  /** policy snapshot revision applied on this node (0: none yet) */
  snapshotRevision: number;
  /** client connections open now */
  connections: number;
  /** the Postgres listener, for humans (`host:port`) */
  listen?: string;
  /** `host:port` pipelines dial to reach this node (config dataPlane.publicAddress; default the listener) */
  publicAddress?: string;
  /** when this node applied `snapshotRevision` (ISO time) */
  appliedAt?: string;
  /** ms from the control plane storing the snapshot to this node applying it (both clocks: NTP-level accuracy) */
  applyMs?: number;
  startedAt: string;
  lastBeat: string;
  /** the heartbeat period, so readers can tell a late node from a dead one */
  everySeconds: number;
}

export interface FleetHeartbeatOptions {
  nc: NatsConnection;
  prefix?: string;
  region: string;
  node: string;
  everySeconds: number;
  snapshotRevision: () => number;
  /** when the current snapshot was stored (KV entry time) and applied here */
  snapshotTimes?: () => { appliedAt?: string; publishedAt?: string };
  connections: () => number;
  listen?: string;
  publicAddress?: string;
  version?: string;
  logger?: Logger;
  /** injectable clock (tests) */
  now?: () => Date;
  /** this node process's start (default: now); the approval gate sends the same, so a restart is told apart */
  startedAt?: string;
}

export interface FleetHeartbeat {
  /** write one beat now (also done every `everySeconds`) */
  beat(): Promise<void>;
  /** stop beating and remove this node's key: a clean stop leaves the fleet at once */
  stop(): Promise<void>;
}

let cachedVersion: string | undefined;
/** The data plane's package version. */
export function dataPlaneVersion(): string {
  if (!cachedVersion) {
    try {
      cachedVersion = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      cachedVersion = "unknown";
    }
  }
  return cachedVersion;
}

/**
 * Heartbeats into the fleet bucket (which must exist: `ensureFleetBucket`). The bucket's TTL removes
 * the key of a node that died without stopping. A failed beat (NATS down) is logged and retried at the
 * next period; it never affects serving.
 */
export function startFleetHeartbeat(o: FleetHeartbeatOptions): FleetHeartbeat {
  const names = natsNames(o.prefix ?? "");
  const now = o.now ?? (() => new Date());
  const startedAt = o.startedAt ?? now().toISOString();
  let kv: KV | undefined;
  let stopped = false;
  let inflight: Promise<void> = Promise.resolve();

  async function write(): Promise<void> {
    kv ??= await new Kvm(o.nc).open(names.fleetBucket);
    const times = o.snapshotTimes?.() ?? {};
    const applyMs = times.appliedAt && times.publishedAt ? Math.max(0, Date.parse(times.appliedAt) - Date.parse(times.publishedAt)) : undefined;
    const beat: FleetBeat = {
      region: o.region,
      node: o.node,
      version: o.version ?? dataPlaneVersion(),
      snapshotRevision: o.snapshotRevision(),
      connections: o.connections(),
      listen: o.listen,
      publicAddress: o.publicAddress ?? o.listen,
      appliedAt: times.appliedAt,
      applyMs,
      startedAt,
      lastBeat: now().toISOString(),
      everySeconds: o.everySeconds,
    };
    await kv.put(o.node, JSON.stringify(beat));
  }

  function beat(): Promise<void> {
    // after stop() the key is gone and must stay gone
    if (stopped) return inflight;
    inflight = inflight.then(write, write);
    return inflight;
  }

  const timer = setInterval(() => {
    if (stopped || o.nc.isClosed()) return;
    beat().catch((e: unknown) => {
      kv = undefined;
      o.logger?.warn({ err: e }, "fleet heartbeat failed");
    });
  }, o.everySeconds * 1000);
  timer.unref();
  beat().catch((e: unknown) => {
    kv = undefined;
    o.logger?.warn({ err: e }, "fleet heartbeat failed");
  });

  return {
    beat,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await inflight.catch(() => undefined);
      if (o.nc.isClosed()) return;
      try {
        kv ??= await new Kvm(o.nc).open(names.fleetBucket);
        await kv.delete(o.node);
      } catch (e) {
        // the TTL removes it anyway
        o.logger?.debug({ err: e }, "could not remove fleet key");
      }
    },
  };
}

export interface FleetMember extends FleetBeat {
  /** ms since the last beat */
  ageMs: number;
  /** no beat for more than 3 periods */
  stale: boolean;
  /** revisions this node is behind the newest one known (the snapshot bucket's, or the fleet's highest) */
  behind: number;
}

/** Marks each member with how far it is behind `current` (default: the highest revision in the fleet). */
export function withBehind(members: ReadonlyArray<Omit<FleetMember, "behind">>, current?: number): FleetMember[] {
  const newest = Math.max(current ?? 0, ...members.map((m) => m.snapshotRevision));
  return members.map((m) => ({ ...m, behind: Math.max(0, newest - m.snapshotRevision) }));
}

/**
 * Reads the fleet bucket. Nodes are sorted by region, then node. `behind` is counted from
 * `currentRevision` when the caller knows it (the snapshot bucket), else from the fleet's highest.
 */
export async function readFleet(nc: NatsConnection, prefix = "", now: Date = new Date(), currentRevision?: number): Promise<FleetMember[]> {
  const names = natsNames(prefix);
  const kv = await new Kvm(nc).open(names.fleetBucket);
  // The keys from the stream's subject counts (one request), not kv.keys(): that runs a push
  // consumer whose acknowledgement subjects a gateway rewrites, so read from another cluster of a
  // supercluster it never ends (nats.js 3.4 on nats-server 2.9).
  const jsm = await jetstreamManager(nc);
  const kvPrefix = `$KV.${names.fleetBucket}.`;
  const info = await jsm.streams.info(kvStreamName(names.fleetBucket), { subjects_filter: `${kvPrefix}>` });
  const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(kvPrefix.length)).sort();
  const out: Array<Omit<FleetMember, "behind">> = [];
  for (const k of keys) {
    const e = await kv.get(k);
    if (!e || e.operation !== "PUT") continue;
    let b: FleetBeat;
    try {
      b = e.json<FleetBeat>();
    } catch {
      continue;
    }
    const ageMs = Math.max(0, now.getTime() - Date.parse(b.lastBeat));
    out.push({ ...b, ageMs, stale: ageMs > 3 * (b.everySeconds || 5) * 1000 });
  }
  out.sort((a, b) => a.region.localeCompare(b.region) || a.node.localeCompare(b.node));
  return withBehind(out, currentRevision);
}
