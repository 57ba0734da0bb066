import type { PolicySnapshot } from "@sluice/shared/policy";

/**
 * Where a data plane gets its policy from. Sessions read `current()` for every statement, so a new
 * snapshot takes effect at each session's next statement without dropping live connections.
 */
export interface SnapshotSource {
  current(): PolicySnapshot | undefined;
  /** Called after a newer snapshot is applied. Returns an unsubscribe function. */
  onChange(cb: (snapshot: PolicySnapshot) => void): () => void;
}

/** A fixed snapshot, for tests and for running from a bundle file without NATS. */
export function staticSnapshotSource(snapshot: PolicySnapshot | undefined): SnapshotSource & {
  /** replace the snapshot (tests: simulate a new revision) */
  set(next: PolicySnapshot): void;
} {
  let cur = snapshot;
  const listeners = new Set<(s: PolicySnapshot) => void>();
  return {
    current: () => cur,
    onChange(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    set(next) {
      cur = next;
      for (const cb of [...listeners]) cb(next);
    },
  };
}
