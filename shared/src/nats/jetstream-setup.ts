/**
 * Idempotent creation of every stream and KV bucket of the contract's NATS layout, with the
 * contract's settings. Safe to call from every process at start (control plane, data plane, tests):
 * an existing stream keeps its data; its settings are brought up to date where the server allows.
 *
 * Targets nats-server 2.9 (no per-message TTL, no atomic batches): only settings that server knows.
 */
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type Placement,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { kvStreamName, natsNames, type NatsNames } from "./nats-names.js";

export interface JetStreamSetupOptions {
  /** storage for streams and buckets; `file` (default, the contract) or `memory` for throwaway tests */
  storage?: "file" | "memory";
  /** de-duplication window for `Nats-Msg-Id` on the control and audit streams (ms); default 2 min */
  duplicateWindowMs?: number;
  /** TTL of fleet heartbeats (ms); default 30 s */
  fleetTtlMs?: number;
  /** TTL of leases (ms); default 15 s */
  leaseTtlMs?: number;
  /** history kept per key in the snapshots bucket; default 20 (≥ 10) */
  snapshotHistory?: number;
  /** audit stream size cap (bytes); default -1 (unlimited: discard new means never drop evidence) */
  auditMaxBytes?: number;
  /** config nats.replicas: copies of every stream and bucket (1 on a single server, 3 or 5 in a cluster) */
  replicas?: number;
  /** config nats.placement: cluster and/or server tags for the control and checkpoint streams and the buckets */
  placement?: JetStreamPlacement;
  /** config nats.auditPlacement: where SLUICE_AUDIT lives (the operator's region of choice); default `placement` */
  auditPlacement?: JetStreamPlacement;
}

export interface JetStreamPlacement {
  cluster?: string;
  tags?: string[];
}

/** The setup options a process's config asks for (nats.replicas, nats.placement, nats.auditPlacement). */
export function setupOptionsFromConfig(nats: { replicas: number; placement: JetStreamPlacement; auditPlacement: JetStreamPlacement }): JetStreamSetupOptions {
  return { replicas: nats.replicas, placement: nats.placement, auditPlacement: nats.auditPlacement };
}

/** A server-side Placement, or undefined for "anywhere" (an empty cluster and no tags). */
function placementOf(p: JetStreamPlacement | undefined): Placement | undefined {
  const cluster = p?.cluster ?? "";
  const tags = p?.tags ?? [];
  if (!cluster && tags.length === 0) return undefined;
  return { cluster, tags } as Placement;
}

function replicasOf(o: JetStreamSetupOptions): number {
  return o.replicas ?? 1;
}

const STREAM_NOT_FOUND = 10059;

function storageOf(o: JetStreamSetupOptions): StorageType {
  return o.storage === "memory" ? StorageType.Memory : StorageType.File;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (e) {
    if (e instanceof JetStreamApiError && e.code === STREAM_NOT_FOUND) return undefined;
    throw e;
  }
}

/**
 * Adds the stream, or updates the settings an existing stream may change. Storage and retention
 * cannot change after creation; deny_delete/deny_purge cannot be switched off (server rule), so an
 * update only ever tightens them. The replica count may change (a stream created on one server is
 * scaled to 3 when the cluster arrives). Placement is only applied at creation: nats-server 2.9 does
 * not move a stream to another cluster on update (2.10 can), so a changed placement is left to the
 * operator (`nats stream edit`, or a sourced copy in the new region).
 */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
  const existing = await streamInfo(jsm, cfg.name);
  if (!existing) {
    try {
      return await jsm.streams.add(cfg);
    } catch (e) {
      // another process created it at the same moment: fall through to the update path
      const again = await streamInfo(jsm, cfg.name);
      if (!again) throw e;
      return again;
    }
  }
  const { name: _n, storage: _s, retention: _r, placement: _p, ...mutable } = cfg;
  const c = existing.config as unknown as Record<string, unknown>;
  const differs = Object.entries(mutable).some(([k, v]) => JSON.stringify(c[k]) !== JSON.stringify(v));
  if (!differs) return existing;
  return await jsm.streams.update(cfg.name, { ...existing.config, ...mutable });
}

export async function ensureControlStream(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return ensureStream(jsm, {
    name: names.controlStream,
    num_replicas: replicasOf(o),
    ...(placementOf(o.placement) ? { placement: placementOf(o.placement) } : {}),
    description: "sluice control plane events (policies, resources, issuers, approvals)",
    subjects: [names.controlAll],
    retention: RetentionPolicy.Limits,
    storage: storageOf(o),
    discard: DiscardPolicy.New,
    deny_delete: true,
    deny_purge: true,
    duplicate_window: nanos(o.duplicateWindowMs ?? 120_000),
    max_msg_size: 1024 * 1024,
  });
}

export async function ensureAuditStream(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return ensureStream(jsm, {
    name: names.auditStream,
    num_replicas: replicasOf(o),
    ...(placementOf(o.auditPlacement ?? o.placement) ? { placement: placementOf(o.auditPlacement ?? o.placement) } : {}),
    description: "sluice session events from data planes (SOC 2 evidence: never dropped)",
    subjects: [names.auditAll],
    retention: RetentionPolicy.Limits,
    storage: storageOf(o),
    // when a limit is hit, refuse new events (data planes then fail closed) rather than drop old evidence
    discard: DiscardPolicy.New,
    max_bytes: o.auditMaxBytes ?? -1,
    max_msgs: -1,
    max_age: 0,
    deny_delete: true,
    deny_purge: true,
    duplicate_window: nanos(o.duplicateWindowMs ?? 120_000),
    // a batch of events never exceeds 1 MiB (contract: batches)
    max_msg_size: 1024 * 1024,
    // a publisher looks up its lane's last stored message after an uncertain publish (direct get of
    // the last message by subject, which a data plane may be permitted for its own subjects only)
    allow_direct: true,
  });
}

export async function ensureCheckpointStream(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return ensureStream(jsm, {
    name: names.checkpointStream,
    num_replicas: replicasOf(o),
    ...(placementOf(o.placement) ? { placement: placementOf(o.placement) } : {}),
    description: "sluice Ed25519-signed hash-chain checkpoints",
    subjects: [names.checkpointAll],
    retention: RetentionPolicy.Limits,
    storage: storageOf(o),
    discard: DiscardPolicy.New,
    deny_delete: true,
    deny_purge: true,
    duplicate_window: nanos(o.duplicateWindowMs ?? 120_000),
  });
}

/**
 * Creates the bucket (Kvm.create binds to an existing one without changing it), then brings an
 * existing bucket's replica count up to date, as ensureStream does for the streams.
 */
async function ensureBucket(nc: NatsConnection, bucket: string, o: JetStreamSetupOptions, opts: Partial<KvOptions>): Promise<KV> {
  const placement = placementOf(o.placement);
  const create = () =>
    new Kvm(nc).create(bucket, {
      ...opts,
      storage: storageOf(o),
      replicas: replicasOf(o),
      ...(placement ? { placement } : {}),
    });
  let kv: KV;
  try {
    kv = await create();
  } catch (e) {
    // Two replicas starting together both find no bucket and both add it; the server refuses the
    // later add when its defaults differ in any detail ("already in use with a different
    // configuration"). The bucket exists now, and create binds to an existing one.
    if (!(await streamInfo(await jetstreamManager(nc), kvStreamName(bucket)))) throw e;
    kv = await create();
  }
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(kvStreamName(bucket));
  if (info.config.num_replicas !== replicasOf(o)) {
    await jsm.streams.update(info.config.name, { ...info.config, num_replicas: replicasOf(o) });
  }
  return kv;
}

export async function ensureSnapshotBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return ensureBucket(nc, names.snapshotBucket, o, {
    history: Math.max(10, o.snapshotHistory ?? 20),
    description: "sluice compiled policy snapshots (key: policy)",
  });
}

export async function ensureFleetBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return ensureBucket(nc, names.fleetBucket, o, {
    history: 1,
    ttl: o.fleetTtlMs ?? 30_000,
    description: "sluice data-plane heartbeats (key: node)",
  });
}

export async function ensureLeaseBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return ensureBucket(nc, names.leaseBucket, o, {
    history: 1,
    ttl: o.leaseTtlMs ?? 15_000,
    description: "sluice leases (sealer leader election, projection bookkeeping)",
  });
}

export interface JetStreamResources {
  names: NatsNames;
  snapshots: KV;
  fleet: KV;
  leases: KV;
}

/** Opens the buckets without creating or changing anything (a process that does not manage the layout). */
export async function openAll(nc: NatsConnection, prefix: string | NatsNames = ""): Promise<JetStreamResources> {
  const names = typeof prefix === "string" ? natsNames(prefix) : prefix;
  const kvm = new Kvm(nc);
  return { names, snapshots: await kvm.open(names.snapshotBucket), fleet: await kvm.open(names.fleetBucket), leases: await kvm.open(names.leaseBucket) };
}

/** Ensures every stream and bucket; returns the opened buckets. */
export async function ensureAll(nc: NatsConnection, prefix: string | NatsNames = "", o: JetStreamSetupOptions = {}): Promise<JetStreamResources> {
  const names = typeof prefix === "string" ? natsNames(prefix) : prefix;
  await ensureControlStream(nc, names, o);
  await ensureAuditStream(nc, names, o);
  await ensureCheckpointStream(nc, names, o);
  const snapshots = await ensureSnapshotBucket(nc, names, o);
  const fleet = await ensureFleetBucket(nc, names, o);
  const leases = await ensureLeaseBucket(nc, names, o);
  return { names, snapshots, fleet, leases };
}


/**
 * Test cleanup: deletes every stream and bucket of a prefix. deny_delete/deny_purge forbid removing
 * messages, not removing a whole stream, so this works on the evidence streams too. Never call it on a
 * production prefix. Missing streams are ignored.
 */
export async function deleteAll(nc: NatsConnection, prefix: string | NatsNames): Promise<void> {
  const names = typeof prefix === "string" ? natsNames(prefix) : prefix;
  if (!names.prefix) throw new Error("deleteAll refuses to delete the unprefixed (production) streams");
  const jsm = await jetstreamManager(nc);
  for (const s of [
    names.controlStream,
    names.auditStream,
    names.checkpointStream,
    kvStreamName(names.snapshotBucket),
    kvStreamName(names.fleetBucket),
    kvStreamName(names.leaseBucket),
  ]) {
    try {
      await jsm.streams.delete(s);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === STREAM_NOT_FOUND)) throw e;
    }
  }
}
