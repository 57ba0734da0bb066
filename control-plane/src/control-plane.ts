/**
 * The control plane's composition root. It connects to NATS, ensures the contract's streams and
 * buckets, then starts the components in the order of the list below; they stop in reverse order.
 * A component contributes gRPC services, health and a stop hook. To add one (read model, sealer, audit,
 * approvals, …) append it to BUILTIN_COMPONENTS or pass it in `options.components`.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { SluiceConfig } from "@sluice/shared/config";
import type { Logger } from "@sluice/shared/logging";
import { SluiceError } from "@sluice/shared/errors";
import { natsNames, ensureAll, isPassingNatsFailure, natsConnectOptions, openAll, setupOptionsFromConfig, type NatsNames, type JetStreamSetupOptions } from "@sluice/shared/nats";
import { parseBundle, type IssuerSpec } from "@sluice/shared/policy";
import { PolicyServiceService } from "@sluice/proto";
import { JetStreamEventStore } from "./infra/jetstream-event-store.js";
import { PolicyApp, type BundleAmender } from "./app/policy-app.js";
import { createPolicySnapshotProjection } from "./projections/policy-snapshot-projection.js";
import { createAuthenticator, type Authenticator } from "./grpc/authenticate.js";
import { policyService } from "./grpc/policy-service.js";
import { startGrpcServer, type GrpcServiceRegistration } from "./grpc/grpc-server.js";
import { startHttpServer, type HttpMount, type HttpRoutes } from "./http/http-server.js";
import { gaugeFrom, newMetricsRegistry, type Registry } from "@sluice/shared/metrics";
import { grpcCallMetrics } from "./grpc/grpc-call-metrics.js";
import { auditComponent } from "./audit/audit-component.js";
import { approvalComponent } from "./grpc/approval-service.js";
import { notificationsComponent } from "./notifications/notifications-component.js";
import { consoleComponent } from "./console/console-component.js";
import { InProcessCalls } from "./console/in-process-calls.js";

/** What every component gets. */
export interface ComponentContext {
  config: SluiceConfig;
  logger: Logger;
  nc: NatsConnection;
  names: NatsNames;
  store: JetStreamEventStore;
  kv: { snapshots: KV; fleet: KV; leases: KV };
  /** verifies `authorization: Bearer` metadata → Actor (UNAUTHENTICATED on a bad token) */
  auth: Authenticator;
  adminGroups: () => readonly string[];
  /** the /metrics registry: a component registers its figures here (read at scrape time, @sluice/shared/metrics) */
  metrics: Registry;
  now: () => Date;
  /** calls the services below in-process as a given actor (the console); `auth` recognises them */
  inProcess: InProcessCalls;
  /** the implementation a component started earlier registered for a gRPC service definition */
  grpcService(definition: object): unknown;
  /** `host:port` of the HTTP listener once it listens (empty before) */
  httpAddress(): string;
  /** see ControlPlaneOptions.amendBundle */
  amendBundle?: BundleAmender;
}

export interface StartedComponent {
  grpcServices?: GrpcServiceRegistration[];
  /** false → /healthz answers 503 */
  healthy?: () => boolean;
  /** extra detail for /healthz */
  status?: () => Record<string, unknown>;
  stop?: () => Promise<void>;
  /** path prefixes this component serves on the HTTP listener */
  httpMounts?: HttpMount[];
  /** an in-process API the component offers the composing process (see RunningControlPlane.api) */
  api?: unknown;
}

export interface ControlPlaneComponent {
  name: string;
  start(ctx: ComponentContext): Promise<StartedComponent>;
}

export interface ControlPlaneOptions {
  logger: Logger;
  /** issuers trusted for callers in addition to config.controlPlane.issuers (sluice dev adds its own) */
  issuers?: IssuerSpec[];
  /** routes served on the HTTP listener next to /healthz and /metrics (e.g. /.well-known/jwks.json) */
  extraHttpRoutes?: HttpRoutes;
  /** path prefixes served on the HTTP listener (e.g. `sluice dev` mounts its issuer's sign-in pages under /dev/) */
  extraHttpMounts?: HttpMount[];
  /** use this connection instead of connecting to config.nats.url (the caller keeps ownership) */
  nc?: NatsConnection;
  jetstream?: JetStreamSetupOptions;
  /** appended after the built-in components */
  components?: ControlPlaneComponent[];
  now?: () => Date;
  /** applied to every bundle submitted to PolicyService/Apply (`sluice dev` keeps its issuer and resource) */
  amendBundle?: BundleAmender;
  /**
   * How long a start waits for a NATS cluster that is still forming (JetStream not answering, streams
   * without leaders yet) before it fails (ms); default 60 s.
   */
  natsStartupMs?: number;
}

export interface RunningControlPlane {
  grpcPort: number;
  httpPort: number;
  /** `host:port` clients dial */
  grpcAddress: string;
  names: NatsNames;
  /** the policy application service, for in-process use (tests, `sluice dev` applying its start bundle) */
  policy: PolicyApp;
  /** a started component's in-process API by component name */
  api<T>(component: string): T | undefined;
  stop(): Promise<void>;
}

/** The policy core: PolicyService and the snapshot projection (SLUICE_CONTROL → KV `policy`). */
export const policyComponent: ControlPlaneComponent = {
  name: "policy",
  async start(ctx) {
    const app = new PolicyApp({ store: ctx.store, parse: parseBundle, logger: ctx.logger.child({ component: "policy" }), now: ctx.now, amend: ctx.amendBundle });
    const projection = createPolicySnapshotProjection({ nc: ctx.nc, names: ctx.names, kv: ctx.kv.snapshots, logger: ctx.logger.child({ component: "policy-snapshot" }), now: ctx.now });
    await projection.start();
    gaugeFrom(ctx.metrics, "sluice_control_policy_revision", "policy bundle revision folded into the KV snapshot", () => projection.revision());
    // the stream's revision is read at scrape time; while NATS does not answer, the last one read
    let streamRevision = 0;
    gaugeFrom(ctx.metrics, "sluice_control_policy_projection_lag_revisions", "policy revisions on the control stream this replica does not know to be in the KV snapshot yet", async () => {
      streamRevision = await projection.streamRevision().catch(() => streamRevision);
      return Math.max(0, streamRevision - projection.projectedRevision());
    });
    gaugeFrom(ctx.metrics, "sluice_control_policy_projection_seconds", "for the last revision applied while this replica ran: from its event stored on the control stream to its snapshot in KV (0: none yet)", () => {
      const p = projection.projected();
      return p ? Math.max(0, p.inKvAtMs - p.storedAtMs) / 1000 : 0;
    });
    return {
      grpcServices: [
        {
          definition: PolicyServiceService,
          implementation: policyService({
            app,
            auth: ctx.auth,
            adminGroups: ctx.adminGroups,
            logger: ctx.logger.child({ component: "grpc" }),
            awaitSnapshot: (rev) => projection.waitForRevision(rev, 10_000),
          }),
        },
      ],
      status: () => ({ policyRevision: projection.revision() }),
      stop: () => projection.stop(),
      api: app,
    };
  },
};

/** Started in this order, stopped in reverse. */
export const BUILTIN_COMPONENTS: ControlPlaneComponent[] = [policyComponent, auditComponent, approvalComponent, notificationsComponent, consoleComponent];

export async function startControlPlane(config: SluiceConfig, options: ControlPlaneOptions): Promise<RunningControlPlane> {
  const logger = options.logger;
  const names = natsNames(config.nats.prefix);
  const ownsNc = !options.nc;
  const nc =
    options.nc ??
    (await connect({
      ...natsConnectOptions(config.nats, { name: `sluice-control-plane-${config.node}`, inboxPrefix: names.controlPlaneInbox(config.node) }),
      maxReconnectAttempts: -1,
    }));
  const stops: Array<() => Promise<void>> = [];
  const started: Array<{ name: string; c: StartedComponent }> = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) {
      try {
        await s();
      } catch (e) {
        logger.warn({ err: (e as Error).message }, "error while stopping");
      }
    }
    stops.length = 0;
  };
  if (ownsNc) stops.push(() => nc.close());
  try {
    const trusted = () => [...config.controlPlane.issuers, ...(options.issuers ?? [])];
    // made again for each attempt: a failed attempt's components registered their gauges and calls
    let metrics = newMetricsRegistry();
    let inProcess = new InProcessCalls();
    let httpAddress = "";
    const startedBefore = stops.length;
    // A replica started with (or just after) its NATS cluster meets a JetStream still electing its
    // meta and stream leaders: requests time out or find no responders for a few seconds. Those
    // failures pass, so the NATS part of the start is tried again for a bounded time (what was
    // started is stopped first); anything else, or the same after the bound, fails the start as one line.
    const boundMs = options.natsStartupMs ?? 60_000;
    const until = Date.now() + boundMs;
    for (let attempt = 1; ; attempt++) {
      let step = "ensuring the streams and buckets";
      try {
        // the control plane owns the layout: streams and buckets with the configured replicas and placement
        const js = config.nats.manageStreams
          ? await ensureAll(nc, names, { ...setupOptionsFromConfig(config.nats), ...options.jetstream })
          : await openAll(nc, names);
        const ctx: ComponentContext = {
          config,
          logger,
          nc,
          names,
          store: new JetStreamEventStore(nc, names),
          kv: { snapshots: js.snapshots, fleet: js.fleet, leases: js.leases },
          auth: inProcess.authenticator(createAuthenticator({ issuers: trusted })),
          adminGroups: () => config.controlPlane.adminGroups,
          metrics,
          now: options.now ?? (() => new Date()),
          inProcess,
          grpcService: (definition) => started.flatMap((s) => s.c.grpcServices ?? []).find((r) => r.definition === definition)?.implementation,
          httpAddress: () => httpAddress,
          amendBundle: options.amendBundle,
        };
        for (const comp of [...BUILTIN_COMPONENTS, ...(options.components ?? [])]) {
          step = `starting the ${comp.name} component`;
          const c = await comp.start(ctx);
          started.push({ name: comp.name, c });
          if (c.stop) stops.push(c.stop);
          logger.debug({ component: comp.name }, "component started");
        }
        break;
      } catch (e) {
        // what this attempt started goes, the connection stays
        for (const stop of stops.splice(startedBefore).reverse()) await stop().catch(() => undefined);
        started.length = 0;
        metrics = newMetricsRegistry();
        inProcess = new InProcessCalls();
        const wait = Math.min(5_000, 250 * 2 ** Math.min(attempt, 4));
        if (!isPassingNatsFailure(e)) throw e;
        const reason = (e as Error).message.split("\n")[0];
        if (Date.now() + wait > until) {
          throw new SluiceError("unavailable", `NATS JetStream not ready within ${Math.round(boundMs / 1000)} s (${step}: ${reason})`, undefined, { cause: e });
        }
        logger.warn({ attempt, step, reason }, "NATS JetStream not ready (cluster forming?); trying again");
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    const grpc = await startGrpcServer(config.controlPlane.grpcListen, started.flatMap((s) => s.c.grpcServices ?? []), { interceptors: [grpcCallMetrics(metrics)] });
    stops.push(() => grpc.stop());
    const http = await startHttpServer(config.controlPlane.httpListen, {
      metrics,
      routes: options.extraHttpRoutes,
      mounts: [...started.flatMap((s) => s.c.httpMounts ?? []), ...(options.extraHttpMounts ?? [])],
      healthy: () => {
        const detail: Record<string, unknown> = { nats: nc.isClosed() ? "closed" : "connected" };
        let ok = !nc.isClosed();
        for (const s of started) {
          if (s.c.healthy && !s.c.healthy()) ok = false;
          Object.assign(detail, s.c.status?.() ?? {});
        }
        return { ok, detail };
      },
    });
    stops.push(() => http.stop());
    httpAddress = `${parseListenHost(config.controlPlane.httpListen).host}:${http.port}`;
    const { host } = parseListenHost(config.controlPlane.grpcListen);
    logger.info({ grpcPort: grpc.port, httpPort: http.port, prefix: names.prefix || undefined }, "control plane started");
    const policy = started.find((s) => s.name === policyComponent.name)?.c.api as PolicyApp | undefined;
    if (!policy) throw new Error("policy component missing");
    return {
      grpcPort: grpc.port,
      httpPort: http.port,
      grpcAddress: `${host}:${grpc.port}`,
      names,
      policy,
      api: <T,>(name: string) => started.find((s) => s.name === name)?.c.api as T | undefined,
      stop: async () => {
        await stopAll();
        logger.info("control plane stopped");
      },
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

function parseListenHost(listen: string): { host: string } {
  const i = listen.lastIndexOf(":");
  const h = i > 0 ? listen.slice(0, i).replace(/^\[|\]$/g, "") : "";
  return { host: !h || h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h.includes(":") ? `[${h}]` : h };
}
