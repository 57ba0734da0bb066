/**
 * The audit half of the control plane as one component of startControlPlane: the sealer (leader by
 * KV lease), the read model and its projector, and AuditService + SessionService.
 */
import { randomBytes } from "node:crypto";
import { AuditServiceService, SessionServiceService } from "@sluice/proto";
import type { ControlPlaneComponent } from "../control-plane.js";
import { auditService } from "../grpc/audit-service.js";
import { registerAuditMetrics } from "./audit-metrics.js";
import { sessionService } from "../grpc/session-service.js";
import { ReadModel } from "../projections/read-model/read-model.js";
import { ReadModelProjector } from "../projections/read-model/read-model-projector.js";
import { Sealer } from "../sealer/sealer.js";
import { startAuditFoldThread, type AuditFold, type ProjectorHandle, type SealerHandle } from "./audit-fold.js";
import type { SigningKey } from "../sealer/signing-key.js";
import { readModelConfig, signingKeyFor } from "./audit-files.js";

export { DEFAULT_READ_MODEL_URL, readModelConfig, signingKeyFor } from "./audit-files.js";

export interface AuditApi {
  sealer: SealerHandle;
  /** this thread's connection to the read model (the fold writes it on its own thread) */
  model: ReadModel;
  projector: ProjectorHandle;
  key: SigningKey;
}

/**
 * The fold on this thread and the command path's NATS connection: only for an in-memory SQLite read
 * model, which another thread cannot open (tests).
 */
async function startInlineFold(ctx: Parameters<ControlPlaneComponent["start"]>[0], model: ReadModel, key: SigningKey, instance: string): Promise<AuditFold> {
  const logger = ctx.logger.child({ component: "audit" });
  const projector = new ReadModelProjector({ nc: ctx.nc, names: ctx.names, model, durable: `read-model-${instance}`, logger });
  await projector.start();
  const sc = ctx.config.controlPlane.sealer;
  const sealer = new Sealer({
    nc: ctx.nc, names: ctx.names, leases: ctx.kv.leases, key, everyEvents: sc.everyEvents, everySeconds: sc.everySeconds,
    holder: instance, logger: logger.child({ component: "sealer" }),
  }).start();
  return {
    projector,
    sealer,
    async stop() {
      await sealer.stop();
      await projector.stop();
    },
  };
}

export const auditComponent: ControlPlaneComponent = {
  name: "audit",
  async start(ctx) {
    const rmConfig = readModelConfig(ctx.config, ctx.names);
    const key = signingKeyFor(ctx.config, rmConfig);
    const logger = ctx.logger.child({ component: "audit" });
    const instance = `${ctx.config.node}-${process.pid}-${randomBytes(3).toString("hex")}`;
    const inline = rmConfig.dialect === "sqlite" && rmConfig.url === ":memory:";
    let model: ReadModel;
    let fold: AuditFold;
    if (inline) {
      model = ReadModel.open(rmConfig);
      fold = await startInlineFold(ctx, model, key, instance).catch(async (e: unknown) => {
        await model.close();
        throw e;
      });
    } else {
      // the thread migrates the read model before it reports ready; this thread only reads it
      fold = await startAuditFoldThread({ config: ctx.config, readModel: rmConfig, instance }, ctx.logger);
      model = ReadModel.open(rmConfig);
    }
    const { projector, sealer } = fold;
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
        await fold.stop();
        await model.close();
      },
      api,
    };
  },
};
