/**
 * Writes a policy snapshot into the `sluice_snapshots` KV bucket (key `policy`) with compare-and-set
 * on the KV revision. Several control-plane replicas fold the same stream; whichever writes first wins
 * and an older replica (one still catching up) can never overwrite a newer snapshot: it re-reads,
 * sees a snapshot revision ≥ its own, and stops.
 */
import type { KV } from "@nats-io/kv";
import type { PolicySnapshot } from "@sluice/shared/policy";

export type WriteOutcome = "written" | "newer-present";

function isCasConflict(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  return code === 10071 || /wrong last sequence|key exists/i.test(msg);
}

export async function writeSnapshotCas(kv: KV, key: string, snap: PolicySnapshot, maxAttempts = 20): Promise<WriteOutcome> {
  const body = JSON.stringify(snap);
  for (let attempt = 1; ; attempt++) {
    const entry = await kv.get(key);
    const present = entry && entry.operation === "PUT" && entry.length > 0 ? (entry.json<PolicySnapshot>()) : undefined;
    if (present && present.revision >= snap.revision) return "newer-present";
    try {
      if (entry) await kv.update(key, body, entry.revision);
      else await kv.create(key, body);
      return "written";
    } catch (e) {
      if (!isCasConflict(e) || attempt >= maxAttempts) throw e;
      // someone wrote in between: look again
    }
  }
}
