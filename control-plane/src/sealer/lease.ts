/**
 * Leader election over a KV key, the pure part. The I/O (kv-lease.ts) reads the key, asks `decideLease`
 * what to do, and performs it with a compare-and-set (create-if-absent, or update at a revision), so two
 * candidates can never both win the same revision. The bucket TTL removes a dead leader's key; the
 * `expiresAt` in the value covers buckets without TTL and clocks that run behind.
 */
export interface LeaseRecord {
  holder: string;
  /** ms since epoch (holder's clock) */
  expiresAt: number;
}

/** What the key held when last read; undefined when absent, deleted or purged. */
export interface ObservedLease {
  record: LeaseRecord | undefined;
  revision: number;
}

export type LeaseAction =
  | { do: "create"; record: LeaseRecord }
  | { do: "update"; revision: number; record: LeaseRecord }
  | { do: "wait"; retryInMs: number; holder: string };

export function decideLease(observed: ObservedLease | undefined, me: string, nowMs: number, ttlMs: number): LeaseAction {
  const record = { holder: me, expiresAt: nowMs + ttlMs };
  if (!observed || !observed.record) {
    // absent, or the last operation on the key was a delete: create-if-absent at revision 0
    return observed && observed.revision > 0 ? { do: "update", revision: observed.revision, record } : { do: "create", record };
  }
  if (observed.record.holder === me) return { do: "update", revision: observed.revision, record };
  if (observed.record.expiresAt <= nowMs) return { do: "update", revision: observed.revision, record };
  return { do: "wait", retryInMs: Math.max(50, Math.min(ttlMs / 3, observed.record.expiresAt - nowMs)), holder: observed.record.holder };
}

/** Renew well before the TTL so one slow round trip does not cost the lease. */
export function renewIntervalMs(ttlMs: number): number {
  return Math.max(50, Math.floor(ttlMs / 3));
}

/**
 * A leader must stop acting as leader once its last successful renewal is older than the TTL minus a
 * safety margin: another candidate may take over when the key expires.
 */
export function leaseStillHeld(lastRenewedAtMs: number, nowMs: number, ttlMs: number): boolean {
  return nowMs - lastRenewedAtMs < ttlMs - renewIntervalMs(ttlMs) / 2;
}

export function parseLeaseRecord(bytes: Uint8Array | undefined): LeaseRecord | undefined {
  if (!bytes || bytes.length === 0) return undefined;
  try {
    const v = JSON.parse(Buffer.from(bytes).toString("utf8")) as Partial<LeaseRecord>;
    if (typeof v.holder === "string" && typeof v.expiresAt === "number") return { holder: v.holder, expiresAt: v.expiresAt };
  } catch {
    // a foreign value under the key: treat as absent-but-present (revision still guards the CAS)
  }
  return { holder: "<unknown>", expiresAt: 0 };
}
