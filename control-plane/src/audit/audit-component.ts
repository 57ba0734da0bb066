/**
 * The audit half of the control plane as one component of startControlPlane: the sealer (leader by
 * KV lease), the read model and its projector, and AuditService + SessionService.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, extname, join } from "node:path";
import { AuditServiceService, SessionServiceService } from "@sluice/proto";
import type { SluiceConfig } from "@sluice/shared/config";
import type { NatsNames } from "@sluice/shared/nats";
import type { ControlPlaneComponent } from "../control-plane.js";
import { auditService } from "../grpc/audit-service.js";
import { registerAuditMetrics } from "./audit-metrics.js";
import { sessionService } from "../grpc/session-service.js";
import { ReadModel, type ReadModelConfig } from "../projections/read-model/read-model.js";
import { ReadModelProjector } from "../projections/read-model/read-model-projector.js";
import { Sealer } from "../sealer/sealer.js";
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

export interface AuditApi {
  sealer: Sealer;
  model: ReadModel;
  projector: ReadModelProjector;
  key: SigningKey;
}

export const auditComponent: ControlPlaneComponent = {
  name: "audit",
  async start(ctx) {
    const rmConfig = readModelConfig(ctx.config, ctx.names);
    const key = signingKeyFor(ctx.config, rmConfig);
    const model = ReadModel.open(rmConfig);
    const logger = ctx.logger.child({ component: "audit" });
    const instance = `${ctx.config.node}-${process.pid}-${randomBytes(3).toString("hex")}`;
    const projector = new ReadModelProjector({ nc: ctx.nc, names: ctx.names, model, durable: `read-model-${instance}`, logger });
    try {
      await projector.start();
    } catch (e) {
      await model.close();
      throw e;
    }
    const sc = ctx.config.controlPlane.sealer;
    const sealer = new Sealer({
      nc: ctx.nc,
      names: ctx.names,
      leases: ctx.kv.leases,
      key,
      everyEvents: sc.everyEvents,
      everySeconds: sc.everySeconds,
      holder: instance,
      logger: logger.child({ component: "sealer" }),
    }).start();
    registerAuditMetrics(ctx.metrics, { nc: ctx.nc, names: ctx.names, projector, sealer, logger });
    const api: AuditApi = { sealer, model, projector, key };
    return {
      grpcServices: [
        {
          definition: AuditServiceService,
          implementation: auditService({
            nc: ctx.nc, names: ctx.names, auth: ctx.auth, adminGroups: ctx.adminGroups, logger, key, sealerStatus: () => sealer.status(),
            sessionIndex: async (sessionId) => {
              // the position first: every message up to it is in the index
              const through = await model.position();
              const [seqs, s] = await Promise.all([model.sessionMessages(sessionId), model.getSessionRow(sessionId)]);
              return { seqs: seqs.filter((q) => q <= through), through, region: s?.region ?? undefined, node: s?.node ?? undefined };
            },
          }),
        },
        {
          definition: SessionServiceService,
          implementation: sessionService({ model, projector, auth: ctx.auth, adminGroups: ctx.adminGroups, logger }),
        },
      ],
      stop: async () => {
        await sealer.stop();
        await projector.stop();
        await model.close();
      },
      api,
    };
  },
};
