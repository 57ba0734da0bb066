import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { kvStreamName, natsNames, startLiveConsumer, type LiveConsumer } from "@sluice/shared/nats";
import type { PolicySnapshot } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import type { SnapshotSource } from "./snapshot-source.js";

export interface KvSnapshotWatcherOptions {
  nc: NatsConnection;
  /** config `nats.prefix` */
  prefix?: string;
  /**
   * Keep the last applied snapshot on disk so a restart while NATS is down still serves policy.
   * Written atomically (tmp + rename), mode 0600.
   */
  cacheFile?: string;
  logger?: Logger;
  /**
   * Safety net next to the watch: re-read the key this often (ms) in case a watch silently stalled.
   * Default 15 s; 0 disables.
   */
  pollMs?: number;
  /** delay before re-creating a failed watch (ms); default 1000 */
  retryMs?: number;
}

export interface SnapshotWatcherStatus {
  /** revision applied, 0 when none */
  revision: number;
  /** where the applied snapshot came from */
  origin: "none" | "cache" | "kv";
  /** true while a KV watch is established */
  watching: boolean;
  lastError?: string;
  /** when this node applied the current snapshot (ISO time) */
  appliedAt?: string;
  /** when the control plane stored it in the KV bucket (the entry's time), for snapshots read from KV */
  publishedAt?: string;
}

export interface KvSnapshotWatcher extends SnapshotSource {
  /** revision applied, 0 when none */
  revision(): number;
  status(): SnapshotWatcherStatus;
  /** Resolves with the first snapshot available (cache or KV), or rejects after timeoutMs. */
  ready(timeoutMs?: number): Promise<PolicySnapshot>;
  /** Resolves once a snapshot with at least this revision is applied (tests, `sluice dev`). */
  waitForRevision(revision: number, timeoutMs?: number): Promise<PolicySnapshot>;
  stop(): Promise<void>;
}

/** Checks the shape the data plane relies on; the control plane validated the bundle itself. */
export function parseSnapshot(raw: unknown): PolicySnapshot {
  const s = raw as Partial<PolicySnapshot> | null;
  if (!s || typeof s !== "object") throw new Error("snapshot is not an object");
  if (typeof s.revision !== "number" || !Number.isInteger(s.revision) || s.revision < 1) {
    throw new Error("snapshot has no positive integer revision");
  }
  const b = s.bundle as unknown as Record<string, unknown> | undefined;
  if (!b || typeof b !== "object") throw new Error("snapshot has no bundle");
  for (const k of ["issuers", "resources", "policies"]) {
    if (!Array.isArray(b[k])) throw new Error(`snapshot bundle.${k} is not a list`);
  }
  if (b.masking === undefined) b.masking = [];
  return s as PolicySnapshot;
}

/**
 * A SnapshotSource backed by the `sluice_snapshots` KV bucket, key `policy`.
 *
 * It never forgets what it has: when NATS or the control plane is down the last snapshot keeps being
 * served; the watch is a live consumer, replaced when it goes silent (its server died, its first pull
 * was lost) and after every reconnect, and a periodic read covers anything else that stalls.
 * Snapshots with a revision not above the applied one are ignored, so a replayed or older value can
 * never roll policy back.
 */
export function startKvSnapshotWatcher(opts: KvSnapshotWatcherOptions): KvSnapshotWatcher {
  const names = natsNames(opts.prefix ?? "");
  const log = opts.logger;
  const retryMs = opts.retryMs ?? 1000;
  const pollMs = opts.pollMs ?? 15_000;
  const listeners = new Set<(s: PolicySnapshot) => void>();
  let current: PolicySnapshot | undefined;
  let origin: SnapshotWatcherStatus["origin"] = "none";
  let lastError: string | undefined;
  let appliedAt: string | undefined;
  let publishedAt: string | undefined;
  let stopped = false;
  let watch: LiveConsumer | undefined;
  let wake: (() => void) | undefined;
  const waiters = new Set<{ rev: number; resolve: (s: PolicySnapshot) => void }>();

  function apply(snap: PolicySnapshot, from: "cache" | "kv", storedAt?: Date): boolean {
    // The disk cache only bridges an outage: the first snapshot read from KV replaces it even when its
    // revision is lower (the streams were reset, or the node moved to another NATS).
    const replacesCache = origin === "cache" && from === "kv";
    if (replacesCache && current && snap.revision === current.revision && snap.hash === current.hash) {
      origin = "kv"; // the KV confirms the cached snapshot: nothing changes for sessions
      return false;
    }
    if (current && snap.revision <= current.revision && !replacesCache) {
      if (snap.revision < current.revision) {
        log?.warn({ revision: snap.revision, applied: current.revision }, "ignoring older policy snapshot");
      }
      return false;
    }
    if (current && replacesCache && snap.revision < current.revision) {
      log?.warn({ revision: snap.revision, cached: current.revision }, "KV snapshot older than the cached one: the KV wins");
    }
    current = snap;
    origin = from;
    appliedAt = new Date().toISOString();
    publishedAt = storedAt?.toISOString();
    log?.info({ revision: snap.revision, from }, "policy snapshot applied");
    if (from === "kv" && opts.cacheFile) writeCache(opts.cacheFile, snap);
    for (const cb of [...listeners]) {
      try {
        cb(snap);
      } catch (e) {
        log?.error({ err: e }, "snapshot listener failed");
      }
    }
    for (const w of [...waiters]) {
      if (snap.revision >= w.rev) {
        waiters.delete(w);
        w.resolve(snap);
      }
    }
    return true;
  }

  function writeCache(file: string, snap: PolicySnapshot): void {
    try {
      mkdirSync(dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(snap), { mode: 0o600 });
      renameSync(tmp, file);
    } catch (e) {
      // The cache only helps a restart during an outage; serving continues without it.
      log?.warn({ err: e, file }, "cannot write snapshot cache");
    }
  }

  if (opts.cacheFile) {
    try {
      apply(parseSnapshot(JSON.parse(readFileSync(opts.cacheFile, "utf8"))), "cache");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") log?.warn({ err: e }, "ignoring unreadable snapshot cache");
    }
  }

  function fromEntry(e: { operation: string; value: Uint8Array; created?: Date }): void {
    if (e.operation !== "PUT") return; // a deleted key keeps the last policy (never fail open or to empty)
    try {
      apply(parseSnapshot(JSON.parse(new TextDecoder().decode(e.value))), "kv", e.created);
    } catch (err) {
      lastError = `bad snapshot: ${(err as Error).message}`;
      log?.error({ err }, "ignoring malformed policy snapshot");
    }
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = undefined;
        resolve();
      };
    });

  /**
   * The watch: a live consumer on the bucket's stream, from the key's last value. A consumer whose
   * NATS server died, or whose first pull was lost, goes silent without the client library saying
   * so; the live consumer replaces it after the last entry seen (the poll below is the second net).
   */
  async function watchLoop(): Promise<void> {
    while (!stopped && !opts.nc.isClosed()) {
      try {
        watch = await startLiveConsumer({
          nc: opts.nc,
          stream: kvStreamName(names.snapshotBucket),
          filter: `$KV.${names.snapshotBucket}.${names.snapshotKey}`,
          start: "last-per-subject",
          what: "policy snapshot watch",
          logger: log,
          heartbeatMs: 1_000,
          onMessage(m) {
            const op = m.headers?.get("KV-Operation") || "PUT";
            fromEntry({ operation: op, value: m.data, created: m.time });
          },
        });
        if (stopped) await watch.stop();
        return;
      } catch (e) {
        lastError = (e as Error).message;
        log?.debug({ err: e }, "snapshot watch failed; retrying");
      }
      if (!stopped) await sleep(retryMs);
    }
  }

  async function statusLoop(): Promise<void> {
    for await (const s of opts.nc.status()) {
      if (stopped) return;
      // the server may have restarted without our consumer: place a new one now
      if (s.type === "reconnect") watch?.renew();
    }
  }

  let pollTimer: NodeJS.Timeout | undefined;
  if (pollMs > 0) {
    pollTimer = setInterval(() => {
      if (stopped || opts.nc.isClosed()) return;
      void (async () => {
        try {
          const kv = await new Kvm(opts.nc).open(names.snapshotBucket);
          const e = await kv.get(names.snapshotKey);
          if (e) fromEntry(e);
        } catch {
          // NATS unreachable: keep serving what we have; the watch loop reports the error.
        }
      })();
    }, pollMs);
    pollTimer.unref();
  }

  const loop = watchLoop();
  void statusLoop().catch(() => undefined);

  function waitFor(rev: number, timeoutMs: number, what: string): Promise<PolicySnapshot> {
    if (current && current.revision >= rev) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      const w = {
        rev,
        resolve: (s: PolicySnapshot) => {
          clearTimeout(t);
          resolve(s);
        },
      };
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no policy snapshot ${what} within ${timeoutMs} ms${lastError ? ` (${lastError})` : ""}`));
      }, timeoutMs);
      waiters.add(w);
    });
  }

  return {
    current: () => current,
    onChange(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    revision: () => current?.revision ?? 0,
    status: () => ({ revision: current?.revision ?? 0, origin, watching: watch?.live() ?? false, lastError: watch?.lastError() ?? lastError, appliedAt, publishedAt }),
    ready: (timeoutMs = 30_000) => waitFor(1, timeoutMs, "available"),
    waitForRevision: (rev, timeoutMs = 30_000) => waitFor(rev, timeoutMs, `at revision ${rev}`),
    async stop() {
      stopped = true;
      if (pollTimer) clearInterval(pollTimer);
      wake?.();
      await loop;
      await watch?.stop();
    },
  };
}
