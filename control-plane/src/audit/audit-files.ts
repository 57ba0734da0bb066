/**
 * Where the audit half of the control plane keeps its files: the read model's location and the
 * sealer's key. Its own module so the audit fold's thread (audit-fold-worker.ts) loads no more than it needs.
 */
import { existsSync } from "node:fs";
import { dirname, extname, join } from "node:path";
import type { SluiceConfig } from "@sluice/shared/config";
import type { NatsNames } from "@sluice/shared/nats";
import type { ReadModelConfig } from "../projections/read-model/read-model.js";
import { loadSigningKey, type SigningKey } from "../sealer/signing-key.js";

export const DEFAULT_READ_MODEL_URL = ".sluice/read-model.sqlite";

/**
 * The read model's location. An SQLite file at the default path is per NATS prefix, so tenants and
 * tests sharing a working directory never fold two streams into one database.
 */
export function readModelConfig(config: SluiceConfig, names: NatsNames): ReadModelConfig {
  const rm = config.controlPlane.readModel;
  if (rm.dialect === "sqlite" && rm.url === DEFAULT_READ_MODEL_URL && names.prefix) {
    const ext = extname(rm.url);
    return { dialect: "sqlite", url: `${rm.url.slice(0, -ext.length)}-${names.prefix}${ext}` };
  }
  return { dialect: rm.dialect, url: rm.url };
}

/**
 * The sealer's key file: `controlPlane.sealer.signingKeyFile` when set (it must exist); otherwise a
 * development key next to an SQLite read model (or in .sluice/), generated on first start with mode 0600.
 */
export function signingKeyFor(config: SluiceConfig, rm: ReadModelConfig): SigningKey {
  const configured = config.controlPlane.sealer.signingKeyFile;
  if (configured) return loadSigningKey(configured, { generate: false });
  const dir = rm.dialect === "sqlite" && rm.url !== ":memory:" ? dirname(rm.url) : ".sluice";
  const file = join(dir, "sealer-ed25519.pem");
  try {
    return loadSigningKey(file, { generate: true });
  } catch (e) {
    // another process generated it at the same moment: use theirs
    if (existsSync(file) && (e as NodeJS.ErrnoException).code === "EEXIST") return loadSigningKey(file);
    throw e;
  }
}
