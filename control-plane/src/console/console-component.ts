/**
 * The console as a component of startControlPlane: it mounts /console/ on the HTTP listener of every
 * replica and reaches the other components only through their gRPC service implementations (so it
 * starts last). Configuration: `controlPlane.console` (issuers people sign in with, public URL,
 * session key and lifetime).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ApprovalServiceService, AuditServiceService, PolicyServiceService, SessionServiceService } from "@sluice/proto";
import { parseDuration, type SluiceConfig } from "@sluice/shared/config";
import { SluiceError } from "@sluice/shared/errors";
import { startLiveConsumer } from "@sluice/shared/nats";
import { CONSOLE_ASSETS_DIR } from "@sluice/web";
import type { ControlPlaneComponent } from "../control-plane.js";
import { APPROVAL_AGGREGATE } from "../domain/approval/approval-decider.js";
import { ConsoleApi, type ConsoleServices } from "./console-api.js";
import { ConsoleAuth, CONSOLE_PREFIX } from "./console-auth.js";
import { consoleHttpHandler } from "./console-http.js";
import { OidcClient } from "./oidc-client.js";
import { SealedBox } from "./sealed-box.js";

/** `env:NAME` or `file:/path` → the secret (trimmed). */
export function resolveSecretRef(ref: string, env: NodeJS.ProcessEnv = process.env): string {
  if (ref.startsWith("env:")) {
    const v = env[ref.slice(4)];
    if (!v) throw new SluiceError("failed_precondition", `${ref} is not set`);
    return v.trim();
  }
  if (ref.startsWith("file:")) {
    try {
      return readFileSync(ref.slice(5), "utf8").trim();
    } catch (e) {
      throw new SluiceError("failed_precondition", `cannot read ${ref}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
  throw new SluiceError("invalid_argument", "a secret is given as env:NAME or file:/path, never inline");
}

function sessionKey(config: SluiceConfig): Buffer {
  const ref = config.controlPlane.console.sessionKey;
  if (!ref) return randomBytes(32);
  const text = resolveSecretRef(ref);
  // hex or base64 of at least 32 bytes, or a long passphrase
  const key = /^[0-9a-f]{64,}$/i.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "utf8");
  if (key.length < 32) throw new SluiceError("invalid_argument", "controlPlane.console.sessionKey must hold at least 32 bytes");
  return key;
}

export const consoleComponent: ControlPlaneComponent = {
  name: "console",
  async start(ctx) {
    const cc = ctx.config.controlPlane.console;
    if (!cc.enabled) return {};
    const impl = <T,>(def: object, what: string): T => {
      const s = ctx.grpcService(def);
      if (!s) throw new Error(`console: the ${what} component must start before the console`);
      return s as T;
    };
    const services: ConsoleServices = {
      approvals: impl(ApprovalServiceService, "approvals"),
      sessions: impl(SessionServiceService, "audit"),
      audit: impl(AuditServiceService, "audit"),
      policy: impl(PolicyServiceService, "policy"),
    };
    const logger = ctx.logger.child({ component: "console" });
    if (!cc.sessionKey) logger.debug("console: no sessionKey configured; sign-ins last until this replica restarts and do not move between replicas");
    const box = new SealedBox(sessionKey(ctx.config));
    const clients = cc.issuers.map((spec) => new OidcClient(spec, { resolveSecret: (r) => resolveSecretRef(r), now: ctx.now }));
    const publicUrl = () => (cc.publicUrl || `http://${ctx.httpAddress()}`).replace(/\/$/, "");
    const auth = new ConsoleAuth({ box, clients, publicUrl, sessionTtlMs: parseDuration(cc.sessionTtl), logger, now: ctx.now });
    const api = new ConsoleApi({ calls: ctx.inProcess, services, nc: ctx.nc, fleet: { bucket: ctx.names.fleetBucket, kv: ctx.kv.fleet }, adminGroups: ctx.adminGroups, now: ctx.now });

    // "an approval changed": one live consumer from now on, fanned out to the open pages; when the
    // NATS server holding it dies (or its first pull is lost) it is replaced after the last event
    // seen, so open pages do not go quiet for the rest of the outage
    const listeners = new Set<() => void>();
    let stopped = false;
    const watch = await startLiveConsumer({
      nc: ctx.nc,
      stream: ctx.names.controlStream,
      filter: ctx.names.controlAggregateFilter(APPROVAL_AGGREGATE),
      start: "new",
      what: "console approval watch",
      logger,
      onMessage: () => {
        for (const l of listeners) l();
      },
    });

    const handle = consoleHttpHandler({
      auth,
      api,
      assetsDir: CONSOLE_ASSETS_DIR,
      logger,
      onApprovalChange: (l) => {
        if (stopped) return () => undefined;
        listeners.add(l);
        return () => listeners.delete(l);
      },
    });
    return {
      httpMounts: [{ prefix: CONSOLE_PREFIX, handle }],
      stop: async () => {
        stopped = true;
        listeners.clear();
        await watch.stop();
      },
      api,
    };
  },
};
