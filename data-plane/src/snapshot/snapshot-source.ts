import type { PolicySnapshot } from "@sluice/shared/policy";
import type { SnapshotSource } from "../session/session-hooks.js";

/**
 * Where a data plane gets its policy from (the session's seam, defined in session-hooks.ts). Sessions
 * read `current()` for every statement, so a new snapshot takes effect at each session's next
 * statement without dropping live connections.
 */
export type { SnapshotSource };

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
