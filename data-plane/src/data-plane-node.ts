/**
 * One data-plane node, composed: connects NATS, ensures the snapshot and fleet buckets and the audit
 * stream, then starts the policy snapshot watcher, cancel routing, the proxy (policy enforcer, audit
 * recorder with the configured durability, masking, approval gate) and the fleet heartbeat.
 * `sluice data-plane`, `sluice dev`, the e2e harness and the benchmark all start nodes through this.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parseHostPort, type SluiceConfig, type UpstreamPoolConfig } from "@sluice/shared/config";
import { createLogger, type Logger } from "@sluice/shared/logging";
import { ensureAuditStream, ensureFleetBucket, ensureSnapshotBucket, natsConnectOptions, natsNames, setupOptionsFromConfig } from "@sluice/shared/nats";
import { SluiceError } from "@sluice/shared/errors";
import { startDataPlane, type DataPlane, type DataPlaneOptions } from "./data-plane.js";
import { nodeNumberFromId } from "./session/cancel-keys.js";
import { startKvSnapshotWatcher, type KvSnapshotWatcher } from "./snapshot/index.js";
import { startFleetHeartbeat, type FleetHeartbeat } from "./fleet/index.js";
import { startNatsCancelRouter, type NatsCancelRouter } from "./cancel-router.js";
import { AuditPublisher, createAuditObserver, type AuditObserver } from "./recorder/index.js";
import { createNodeApprovalGate } from "./approvals/index.js";
import { newMetricsRegistry } from "@sluice/shared/metrics";
import { AuditBatchFigures, registerAuditMetrics, registerSnapshotMetrics } from "./metrics/node-metrics.js";

/** The proxy hooks a composer may replace (tests, or when a richer implementation exists). */
export type DataPlaneHooks = Partial<Pick<DataPlaneOptions, "enforcer" | "audit" | "auditFeatures" | "masker" | "maskingHashKey" | "approvals" | "verify" | "resolveSecret">>;

export interface DataPlaneNodeOptions {
  config: SluiceConfig;
  /** a shared NATS connection (the harness); otherwise one is opened to config.nats.url and closed on stop */
  nc?: NatsConnection;
  logger?: Logger;
  /** TLS material; default: read config.dataPlane.tls.certFile/keyFile (or plaintext when mode is disabled) */
  tls?: DataPlaneOptions["tls"];
  hooks?: DataPlaneHooks;
  /** on-disk copy of the last snapshot; default none */
  snapshotCacheFile?: string;
}

export interface DataPlaneNode {
  config: SluiceConfig;
  nc: NatsConnection;
  proxy: DataPlane;
  snapshots: KvSnapshotWatcher;
  cancelRouter: NatsCancelRouter;
  heartbeat: FleetHeartbeat;
  /** where clients connect */
  host: string;
  port: number;
  httpPort: number | null;
  /**
   * Leave the fleet, wait up to graceMs for sessions to end, then stop everything this node started.
   * The sessions' last audit events get `flushMs` (default 10 s) to reach the stream; the report
   * says how many did not. Clean-up round trips (fleet key, watches) are bounded, so a stop while
   * NATS is gone takes about graceMs + flushMs, not their time-outs one after another.
   */
  stop(graceMs?: number, o?: { flushMs?: number }): Promise<DataPlaneStopReport>;
  /** audit events queued or in flight (not yet stored in the stream) */
  auditPending(): number;
}

export interface DataPlaneStopReport {
  /** audit events still unstored when the node stopped (they were logged, never dropped silently) */
  undeliveredAuditEvents: number;
}

/** Clean-up that needs NATS must not hold a stop for a request's whole time-out when NATS is gone. */
const CLEANUP_MS = 1000;

function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => (clearTimeout(t), resolve()),
      () => (clearTimeout(t), resolve()),
    );
  });
}

function tlsFromConfig(cfg: SluiceConfig): DataPlaneOptions["tls"] {
  const t = cfg.dataPlane.tls;
  if (t.mode === "disabled") return "disabled";
  if (!t.certFile || !t.keyFile) {
    throw new SluiceError("invalid_argument", "dataPlane.tls.certFile and keyFile are required (or tls.mode: disabled for loopback development)");
  }
  try {
    return { cert: readFileSync(t.certFile), key: readFileSync(t.keyFile) };
  } catch (e) {
    throw new SluiceError("invalid_argument", `cannot read TLS certificate or key: ${(e as Error).message}`);
  }
}

function poolOptions(p: UpstreamPoolConfig): DataPlaneOptions["upstreamPool"] {
  return {
    reuse: p.reuse,
    spares: p.spares,
    maxIdlePerResource: p.maxIdlePerResource,
    maxIdle: p.maxIdle,
    idleMs: p.idleSeconds * 1000,
    maxLifetimeMs: p.maxLifetimeSeconds * 1000,
    healthCheckAfterMs: p.healthCheckAfterSeconds * 1000,
  };
}

export async function startDataPlaneNode(o: DataPlaneNodeOptions): Promise<DataPlaneNode> {
  const cfg = o.config;
  const log = o.logger ?? createLogger({ level: cfg.logLevel, name: "data-plane" });
  // this process's start, in the fleet heartbeat and in every approval request it files: the control
  // plane cancels a held request whose node's heartbeat shows another start (the node restarted)
  const startedAt = new Date().toISOString();
  const tls = o.tls ?? tlsFromConfig(cfg);
  const listen = parseHostPort(cfg.dataPlane.listen, "0.0.0.0");
  const httpListen = parseHostPort(cfg.dataPlane.httpListen);
  const ownNc = !o.nc;
  // A node started while NATS is unreachable waits for it: it could record nothing (ack durability
  // fails closed), so serving from the disk cache would only refuse. The cache bridges outages that
  // begin while the node runs, and a missing snapshot bucket.
  if (ownNc) log.info({ url: cfg.nats.url }, "connecting to NATS (waiting until it is reachable)");
  const names = natsNames(cfg.nats.prefix);
  // the node's own reply space: its least-privilege NATS user may subscribe there and nowhere else
  const inboxPrefix = names.dataPlaneInbox(cfg.region, cfg.node);
  const nc =
    o.nc ??
    (await connect({
      ...natsConnectOptions(cfg.nats, { name: `sluice-data-plane ${cfg.region}/${cfg.node}`, inboxPrefix }),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      waitOnFirstConnect: true,
    }));
  const stops: Array<() => Promise<unknown>> = [];
  try {
    if (cfg.nats.manageStreams) {
      // single-server development: the node may create what it uses. With least-privilege credentials
      // (deploy/) the control plane owns the layout and the node only uses it.
      const setup = setupOptionsFromConfig(cfg.nats);
      await ensureSnapshotBucket(nc, names, setup);
      await ensureFleetBucket(nc, names, { ...setup, fleetTtlMs: Math.max(30_000, cfg.dataPlane.heartbeatSeconds * 6000) });
      await ensureAuditStream(nc, names, setup);
    }

    const snapshots = startKvSnapshotWatcher({ nc, prefix: cfg.nats.prefix, cacheFile: o.snapshotCacheFile, logger: log });
    stops.push(() => snapshots.stop());
    // the node's /metrics: the proxy registers its own figures, the node those of its recorder and watcher
    const metrics = newMetricsRegistry();
    registerSnapshotMetrics(metrics, { status: () => snapshots.status() });

    const nodeNumber = nodeNumberFromId(cfg.node);
    let proxy: DataPlane | undefined;
    const cancelRouter = startNatsCancelRouter({
      nc,
      prefix: cfg.nats.prefix,
      nodeId: nodeNumber,
      cancelLocal: (k) => proxy?.cancelLocal(k),
      logger: log,
    });
    stops.push(() => cancelRouter.stop());
    await cancelRouter.ready();

    const hooks = o.hooks ?? {};
    // one key for the `hash` masking strategy and hashed audit parameters, so the two agree
    const hashKey = hooks.maskingHashKey ?? randomBytes(32);
    // session recording to SLUICE_AUDIT (durability ack|async, fail closed) unless a hook replaces it
    let publisher: AuditPublisher | undefined;
    if (!hooks.audit) {
      const a = cfg.dataPlane.audit;
      const batches = new AuditBatchFigures();
      publisher = new AuditPublisher(nc, {
        durability: a.durability, bufferEvents: a.bufferEvents, names, region: cfg.region, node: cfg.node, logger: log, inboxPrefix,
        onBatchStored: batches.onBatchStored,
      });
      const pub = publisher;
      registerAuditMetrics(metrics, { stats: () => pub.stats, bufferEvents: a.bufferEvents, batches });
      stops.push(() => pub.close(10_000));
    }
    const audit = hooks.audit ?? createAuditObserver({
      publisher: publisher!,
      maxRowsPerStatement: cfg.dataPlane.audit.maxRowsPerStatement,
      maxBytesPerStatement: cfg.dataPlane.audit.maxBytesPerStatement,
      snapshots,
      hashKey,
      logger: log,
    });
    proxy = await startDataPlane({
      snapshots,
      host: listen.host,
      port: listen.port,
      httpPort: httpListen.port,
      tls,
      nodeId: cfg.node,
      region: cfg.region,
      nodeNumber,
      // default: the real policy over the newest snapshot (the data plane's snapshotEnforcer)
      enforcer: hooks.enforcer,
      maxStatementBytes: cfg.dataPlane.maxStatementBytes,
      classifier: cfg.dataPlane.classifier,
      failedHandshakes: cfg.dataPlane.failedHandshakes,
      audit,
      // what the recorder records: bound parameters, and result rows up to the configured cap
      auditFeatures: hooks.auditFeatures ?? { decodeParams: true, captureRows: Math.max(0, cfg.dataPlane.audit.maxRowsPerStatement) },
      masker: hooks.masker,
      maskingHashKey: hashKey,
      // held statements go to the control plane over NATS; the approval events join the session's audit chain
      approvals:
        hooks.approvals ??
        createNodeApprovalGate({ nc, names, snapshots, hashKey, logger: log, nodeStartedAt: startedAt, ...(hooks.audit ? {} : { observer: audit as AuditObserver }) }),
      verify: hooks.verify,
      resolveSecret: hooks.resolveSecret,
      cancelRouter,
      maxFrameBytes: cfg.dataPlane.maxFrameBytes,
      metrics,
      upstreamPool: poolOptions(cfg.dataPlane.upstreamPool),
      logger: log,
    });
    const p = proxy;
    stops.push(() => p.stop());

    const heartbeat = startFleetHeartbeat({
      nc,
      prefix: cfg.nats.prefix,
      region: cfg.region,
      node: cfg.node,
      everySeconds: cfg.dataPlane.heartbeatSeconds,
      snapshotRevision: () => snapshots.revision(),
      snapshotTimes: () => snapshots.status(),
      connections: () => {
        const s = p.stats();
        return s.sessions + s.connecting;
      },
      listen: `${listen.host}:${p.port}`,
      publicAddress: cfg.dataPlane.publicAddress,
      startedAt,
      logger: log,
    });
    stops.push(() => heartbeat.stop());
    // a new revision is reported at once, not at the next period: `fleet status` (and the bench's
    // propagation figure) see a policy change reach every node
    const unwatch = snapshots.onChange(() => {
      heartbeat.beat().catch((e: unknown) => log.warn({ err: e }, "fleet heartbeat after a policy change failed"));
    });
    stops.push(async () => unwatch());

    let stopping: Promise<DataPlaneStopReport> | undefined;
    return {
      config: cfg,
      nc,
      proxy: p,
      snapshots,
      cancelRouter,
      heartbeat,
      host: listen.host === "0.0.0.0" ? "127.0.0.1" : listen.host,
      port: p.port,
      httpPort: p.httpPort,
      auditPending: () => publisher?.pending ?? 0,
      stop(graceMs = 0, so = {}) {
        stopping ??= (async () => {
          unwatch();
          // the key has a TTL: a removal that cannot reach NATS now only leaves the fleet list later
          // (and it need not hold up the sessions' grace period)
          const leftFleet = bounded(heartbeat.stop(), CLEANUP_MS);
          // no new sessions during the grace period, and /readyz says so (load balancers move on)
          p.drain();
          const end = Date.now() + graceMs;
          while (Date.now() < end && p.stats().sessions + p.stats().connecting > 0) {
            await new Promise((r) => setTimeout(r, 100));
          }
          await p.stop();
          await leftFleet;
          // the sessions' last events (session.ended) are queued now: a clean stop publishes them all
          await publisher?.close(so.flushMs ?? 10_000).catch((e: Error) => log.error({ err: e.message }, "audit events left unpublished at stop"));
          const undeliveredAuditEvents = publisher?.pending ?? 0;
          await bounded(Promise.all([cancelRouter.stop(), snapshots.stop()]), CLEANUP_MS);
          if (ownNc) await bounded(nc.drain(), CLEANUP_MS).then(() => (nc.isClosed() ? undefined : nc.close()));
          return { undeliveredAuditEvents };
        })();
        return stopping;
      },
    };
  } catch (e) {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    if (ownNc) await nc.close().catch(() => undefined);
    throw e;
  }
}
