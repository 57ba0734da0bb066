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
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { natsNames, type NatsNames } from "./nats-names.js";

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
 * update only ever tightens them.
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
  const { name: _n, storage: _s, retention: _r, ...mutable } = cfg;
  const c = existing.config as unknown as Record<string, unknown>;
  const differs = Object.entries(mutable).some(([k, v]) => JSON.stringify(c[k]) !== JSON.stringify(v));
  if (!differs) return existing;
  return await jsm.streams.update(cfg.name, { ...existing.config, ...mutable });
}

export async function ensureControlStream(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return ensureStream(jsm, {
    name: names.controlStream,
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
    // an event never exceeds 512 KiB (contract) plus envelope overhead
    max_msg_size: 1024 * 1024,
  });
}

export async function ensureCheckpointStream(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return ensureStream(jsm, {
    name: names.checkpointStream,
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

export async function ensureSnapshotBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return new Kvm(nc).create(names.snapshotBucket, {
    history: Math.max(10, o.snapshotHistory ?? 20),
    storage: storageOf(o),
    description: "sluice compiled policy snapshots (key: policy)",
  });
}

export async function ensureFleetBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return new Kvm(nc).create(names.fleetBucket, {
    history: 1,
    ttl: o.fleetTtlMs ?? 30_000,
    storage: storageOf(o),
    description: "sluice data-plane heartbeats (key: node)",
  });
}

export async function ensureLeaseBucket(nc: NatsConnection, names: NatsNames, o: JetStreamSetupOptions = {}): Promise<KV> {
  return new Kvm(nc).create(names.leaseBucket, {
    history: 1,
    ttl: o.leaseTtlMs ?? 15_000,
    storage: storageOf(o),
    description: "sluice leases (sealer leader election, projection bookkeeping)",
  });
}

export interface JetStreamResources {
  names: NatsNames;
  snapshots: KV;
  fleet: KV;
  leases: KV;
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

/** The JetStream stream behind a KV bucket (nats KV convention). */
export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
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
