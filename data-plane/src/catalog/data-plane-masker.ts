/**
 * Wires the result masker for a running data plane: masking rules from the current policy
 * snapshot, the catalog on side connections to each resource's upstream (its own credential,
 * resolved by the caller's resolver), the hash strategy's key from configuration.
 */
import { randomBytes } from "node:crypto";
import type { StatementClassifier } from "@sluice/shared/sql";
import type { SnapshotSource } from "../session/session-hooks.js";
import { createResultMasker, type SluiceResultMasker } from "../masking/result-masker.js";
import { createPgCatalog, pgCatalogConnector, type PgCatalog } from "./pg-catalog.js";

export interface DataPlaneMaskerOptions {
  snapshots: SnapshotSource;
  /** resolves `env:`/`file:` credential references */
  resolveSecret(ref: string): Promise<string>;
  /**
   * HMAC key of the `hash` strategy. Every node of a fleet needs the same key for hashed values to
   * join across nodes; without one a random per-process key is used (hashes then differ per node).
   */
  hashKey?: Buffer;
  /** catalog cache lifetime (default 60 s) */
  catalogTtlMs?: number;
  /** classifies the definitions the catalog's functionFacts reads (default classifySql on this thread) */
  classify?: StatementClassifier;
}

export interface DataPlaneMasker {
  masker: SluiceResultMasker;
  catalog: PgCatalog;
  /** true when no hash key was configured and a random one is in use */
  ephemeralHashKey: boolean;
  close(): Promise<void>;
}

export function createDataPlaneMasker(o: DataPlaneMaskerOptions): DataPlaneMasker {
  const catalog = createPgCatalog({
    connect: pgCatalogConnector((resource) => o.snapshots.current()?.bundle.resources.find((r) => r.name === resource)?.upstream, o.resolveSecret),
    ttlMs: o.catalogTtlMs,
    classify: o.classify,
  });
  // a new snapshot may point a resource at another upstream: drop side connections and caches
  const unsubscribe = o.snapshots.onChange(() => void catalog.close());
  const masker = createResultMasker({
    masking() {
      const s = o.snapshots.current();
      return s ? { revision: s.revision, specs: s.bundle.masking ?? [] } : undefined;
    },
    catalog,
    hashKey: o.hashKey ?? randomBytes(32),
  });
  return {
    masker,
    catalog,
    ephemeralHashKey: !o.hashKey,
    async close() {
      unsubscribe();
      await catalog.close();
    },
  };
}
