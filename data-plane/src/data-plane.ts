/**
 * Composition root of the data plane's proxy: the Postgres listener, the HTTP health/metrics
 * listener, cancel-key bookkeeping and the hooks (policy, audit, masking, approvals, cancel routing).
 */
import net from "node:net";
import http from "node:http";
import tls from "node:tls";
import { randomInt } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { PolicySnapshot, ResourceSpec } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { listenError } from "@sluice/shared/errors";
import { verifyToken, VerifiedTokenCache } from "@sluice/shared/auth";
import { handleClientConnection, newPoisonToken, type ConnectionContext, type VerifiedIdentity } from "./net/client-connection.js";
import { resolveSecret as defaultResolveSecret } from "./upstream/resolve-secret.js";
import { connectUpstream, sendUpstreamCancel } from "./upstream/connect-upstream.js";
import { UpstreamPool, type UpstreamPoolOptions } from "./upstream/upstream-pool.js";
import { encodeClientPid, nodeNumberFromId, nodeOfClientPid } from "./session/cancel-keys.js";
import type { RelaySession } from "./session/relay-session.js";
import { snapshotEnforcer } from "./session/snapshot-enforcer.js";
import { ClassifierPool } from "@sluice/shared/sql";
import { exposition, FixedHistogram, LATENCY_SECONDS_BUCKETS, newMetricsRegistry, type Registry } from "@sluice/shared/metrics";
import { countingApprovals, countingAudit, ProxyCounters } from "./metrics/proxy-counters.js";
import { registerProxyMetrics } from "./metrics/proxy-metrics.js";
import { ConnectPhases } from "./metrics/connect-phases.js";
import type { UpstreamPoolStats } from "./upstream/pool-stats.js";
import { createDataPlaneMasker } from "./catalog/data-plane-masker.js";
import { ddlInvalidationListener } from "./catalog/ddl-invalidation.js";
import { createPgCatalog, pgCatalogConnector, type PgCatalog } from "./catalog/pg-catalog.js";
import { volatilityEnforcer } from "./catalog/volatility-enforcer.js";
import { HandshakeLimiter, type HandshakeLimiterOptions } from "./net/handshake-limiter.js";
import {

  defaultAuditFeatures,
  noopAudit,
  type ApprovalGate,
  type AuditFeatures,
  type AuditSink,
  type CancelRouter,
  type Enforcer,
  type ResultMasker,
  type SnapshotSource,
} from "./session/session-hooks.js";

/** the masker's StatementAnnotator, as a URL a classifier worker imports (the sources' .ts under tsx, dist's .js) */
const STATEMENT_ANNOTATOR = new URL(`./masking/statement-annotation${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url).href;

export interface DataPlaneOptions {
  /** where the policy comes from (B2's KV watcher, or staticSnapshots in tests) */
  snapshots: SnapshotSource;
  /** listen address (default 127.0.0.1) and Postgres port (default 7432; 0 = ephemeral) */
  host?: string;
  port?: number;
  /** health/metrics port (default 7480; 0 = ephemeral; null = no HTTP listener) */
  httpPort?: number | null;
  /** client TLS: PEM certificate and key, or "disabled" (plaintext, loopback development only) */
  tls: { cert: string | Buffer; key: string | Buffer } | "disabled";
  nodeId?: string;
  region?: string;
  /** 0..2047, encoded in the BackendKeyData handed to clients (default: derived from nodeId) */
  nodeNumber?: number;
  /** policy per statement; default: classify + evaluate against the current snapshot (deny without one) */
  enforcer?: Enforcer;
  audit?: AuditSink;
  /** what sessions decode for the audit (default: parameters, no row capture) */
  auditFeatures?: AuditFeatures;
  /** default: the bundle's `masking` rules with a catalog on side connections (data-plane/src/catalog) */
  masker?: ResultMasker;
  /** HMAC key of the `hash` masking strategy, the same on every node (default: random per process) */
  maskingHashKey?: Buffer;
  approvals?: ApprovalGate;
  /** cancels for keys of other nodes (B2: NATS). Without it such cancels are dropped. */
  cancelRouter?: CancelRouter;
  /** largest client message accepted (default 64 MiB) */
  maxFrameBytes?: number;
  /** startup + authentication + upstream connect budget (default 30 s) */
  authTimeoutMs?: number;
  /** the /metrics registry (default a new one): the composer registers its own figures on it, e.g. the audit publisher's */
  metrics?: Registry;
  logger?: Logger;
  /** token verification (default: @sluice/shared/auth verifyToken against the snapshot's issuers) */
  verify?: (token: string, snapshot: PolicySnapshot) => Promise<VerifiedIdentity>;
  /** credential references (default: env:/file:) */
  resolveSecret?: (ref: string) => Promise<string>;
  /**
   * The upstream connection pool (upstream/upstream-pool.ts): connections of cleanly ended sessions
   * are reset and handed to the next session of the same resource and startup settings, and warm
   * spares are opened ahead. Defaults there (reuse on, 4 spares a key, 20 idle a resource, 100 a
   * node, 30 s idle time-out, 1 h lifetime, a health check before reusing one idle 5 s or more).
   * `{ reuse: false, spares: 0 }` connects per client only.
   */
  upstreamPool?: Omit<UpstreamPoolOptions, "connect" | "logger" | "now">;
  /** the default enforcer denies statements above this size unparsed (snapshotEnforcer; default 1 MiB) */
  maxStatementBytes?: number;
  /**
   * the default enforcer classifies statements longer than 4 KiB (1 KiB for DO blocks and function
   * definitions, whose bodies are parsed too) in worker threads (at most
   * `workers`, default 2), each within `timeoutMs` (default 5000; denied with 57014 beyond)
   */
  classifier?: { workers?: number; timeoutMs?: number };
  /**
   * failed handshakes per source address (net/handshake-limiter.ts; default 20 in a row, 1 more per
   * second, 100 recorded node-wide in a row and 10 per second); `false`: no limit
   */
  failedHandshakes?: HandshakeLimiterOptions | false;
}

export interface DataPlaneStats {
  /** connections in startup/authentication */
  connecting: number;
  /** relaying sessions */
  sessions: number;
  statements: number;
  denied: number;
  bytesIn: number;
  bytesOut: number;
  cancels: number;
  /** upstream connections idle in the pool (reset ones and warm spares): backends held for the next sessions */
  upstreamIdle: number;
}

export type { UpstreamPoolStats } from "./upstream/pool-stats.js";

export interface DataPlane {
  port: number;
  httpPort: number | null;
  nodeNumber: number;
  /**
   * Stop accepting connections (the listener closes; /readyz answers 503 "draining") while the
   * sessions already open carry on: the start of a graceful stop.
   */
  drain(): void;
  /** stop listening and end every session */
  stop(): Promise<void>;
  stats(): DataPlaneStats;
  /** what the upstream side holds (the pool's figures on /metrics) */
  poolStats(): UpstreamPoolStats;
  /** the registry served on /metrics */
  metrics: Registry;
  /** a cancel routed here from another node (B2's NATS router calls this) */
  cancelLocal(key: { pid: number; secret: number }): Promise<void>;
}

interface CancelEntry {
  secret: number;
  upstream: ResourceSpec["upstream"];
  key: { pid: number; secret: number };
  /** a cancel was sent for this session: it may reach the backend late, so the connection is not reused */
  cancelled: boolean;
}

export async function startDataPlane(options: DataPlaneOptions): Promise<DataPlane> {
  const log = options.logger;
  const nodeId = options.nodeId ?? `dp-${process.pid}`;
  const nodeNumber = options.nodeNumber ?? nodeNumberFromId(nodeId);
  const secureContext = options.tls === "disabled" ? null : tls.createSecureContext({ cert: options.tls.cert, key: options.tls.key });
  const sockets = new Set<net.Socket>();
  const sessions = new Set<RelaySession>();
  const cancelKeys = new Map<number, CancelEntry>();
  let counter = randomInt(0, 1 << 20);
  const totals = { statements: 0, denied: 0, bytesIn: 0, bytesOut: 0, cancels: 0 };
  let connecting = 0;
  const counters = new ProxyCounters();
  // observed once per allowed statement by the relay: a FixedHistogram allocates nothing on observe
  const addedLatency = new FixedHistogram(LATENCY_SECONDS_BUCKETS);
  const connectPhases = new ConnectPhases();
  const handshakes = options.failedHandshakes === false ? undefined : new HandshakeLimiter(options.failedHandshakes ?? {}, () => performance.now());
  const metrics = options.metrics ?? newMetricsRegistry();
  // a long statement is parsed off this thread, within a deadline: it cannot stall other sessions
  // (the default enforcer's statements, and the definitions the function catalog reads)
  // each statement's result lineage is read off the tree where it is classified (a long one in a
  // worker), so the masker never parses it again on this thread
  const classifier = options.enforcer
    ? undefined
    : await ClassifierPool.create({ workers: options.classifier?.workers, deadlineMs: options.classifier?.timeoutMs, annotator: STATEMENT_ANNOTATOR });
  const classify = classifier && ((sql: string) => classifier.classify(sql));
  // masking is always wired: results of resources without masking rules take the raw path
  const ownMasker = options.masker
    ? null
    : createDataPlaneMasker({ snapshots: options.snapshots, resolveSecret: options.resolveSecret ?? defaultResolveSecret, hashKey: options.maskingHashKey, classify });
  if (ownMasker?.ephemeralHashKey) log?.info("no masking hash key configured: hashed values are random per process");

  // default: the real policy over the current snapshot (deny without one); never an implicit allow
  let enforcer: Enforcer | undefined = options.enforcer;
  let functionCatalog: PgCatalog | undefined;
  let stopWatchingSnapshots: (() => void) | undefined;
  if (!enforcer) {
    const cp = classifier!;
    const policy = snapshotEnforcer(options.snapshots, undefined, { maxStatementBytes: options.maxStatementBytes, classify: (sql) => cp.classify(sql) });
    // a statement running a volatile user function is a write (pg_proc, on the masking catalog's side connection)
    const catalog =
      ownMasker?.catalog ??
      (functionCatalog = createPgCatalog({
        connect: pgCatalogConnector((r) => options.snapshots.current()?.bundle.resources.find((x) => x.name === r)?.upstream, options.resolveSecret ?? defaultResolveSecret),
        classify,
      }));
    // a new snapshot may point a resource at another upstream (the masker's catalog does the same)
    if (functionCatalog) {
      const fc = functionCatalog;
      stopWatchingSnapshots = options.snapshots.onChange(() => void fc.close());
    }
    enforcer = volatilityEnforcer(policy, { snapshots: options.snapshots, catalog });
  }

  const authTimeoutMs = options.authTimeoutMs ?? 30_000;
  // a pipeline's connections all carry the same token: its signature is checked once per snapshot and minute
  const verifiedTokens = new VerifiedTokenCache();
  const resolveSecret = options.resolveSecret ?? defaultResolveSecret;
  const pool = new UpstreamPool({
    ...options.upstreamPool,
    connect: (spec, startupParams) => connectUpstream(spec, { startupParams, resolve: resolveSecret, timeoutMs: authTimeoutMs }),
    logger: log,
  });

  const cancelLocal = async (k: { pid: number; secret: number }): Promise<void> => {
    const e = cancelKeys.get(k.pid);
    if (!e || e.secret !== k.secret) return; // like Postgres: a wrong key is silently ignored
    totals.cancels++;
    e.cancelled = true;
    await sendUpstreamCancel(e.upstream, e.key).catch((err: Error) => log?.warn({ code: (err as NodeJS.ErrnoException).code }, "upstream cancel failed"));
  };

  const ctx: ConnectionContext = {
    nodeId,
    region: options.region ?? "local",
    secureContext,
    snapshots: options.snapshots,
    enforcer,
    audit: countingAudit(options.audit ?? noopAudit, counters),
    auditFeatures: options.auditFeatures ?? defaultAuditFeatures,
    // DDL seen by a session flushes the masking catalog of its resource (else the cache TTL does)
    completionListeners: [ownMasker?.catalog, functionCatalog].flatMap((c) => (c ? [ddlInvalidationListener((r) => c.invalidate(r))] : [])),
    masker: options.masker ?? ownMasker?.masker,
    approvals: options.approvals && countingApprovals(options.approvals, counters),
    addedLatency,
    connectPhases,
    handshakes,
    maxFrameBytes: options.maxFrameBytes ?? 64 * 1024 * 1024,
    authTimeoutMs,
    poisonToken: newPoisonToken(),
    logger: log,
    verify:
      options.verify ??
      (async (token, snap) => {
        const v = await verifyToken(token, snap.bundle.issuers, { verifiedCache: verifiedTokens });
        return { subject: v.subject, issuer: v.issuer, claims: v.claims, groups: v.groups };
      }),
    connectUpstream: (resource, params) => pool.checkout(resource.name, resource.upstream, params),
    allocateCancelKey(resource, upstreamKey) {
      let pid: number;
      do {
        counter = (counter + 1) & 0xfffff;
        pid = encodeClientPid(nodeNumber, counter);
      } while (cancelKeys.has(pid));
      const secret = randomInt(-0x80000000, 0x7fffffff);
      const entry: CancelEntry = { secret, upstream: resource.upstream, key: upstreamKey, cancelled: false };
      cancelKeys.set(pid, entry);
      return { pid, secret, cancelled: () => entry.cancelled, release: () => cancelKeys.delete(pid) };
    },
    cancel(pid, secret) {
      const node = nodeOfClientPid(pid);
      if (node === nodeNumber) void cancelLocal({ pid, secret });
      else if (options.cancelRouter)
        void Promise.resolve(options.cancelRouter.routeCancel(node, { pid, secret })).catch((e: Error) => log?.warn({ err: e.message }, "cancel routing failed"));
    },
    track(session, delta) {
      if (session === null) connecting += delta;
      else if (delta > 0) {
        sessions.add(session);
        counters.sessions.established++;
      } else {
        sessions.delete(session);
        totals.statements += session.stats.statements;
        totals.denied += session.stats.denied;
        totals.bytesIn += session.stats.bytesIn;
        totals.bytesOut += session.stats.bytesOut;
      }
    },
    now: () => performance.now(),
  };

  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    try {
      handleClientConnection(socket, ctx);
    } catch (e) {
      log?.error({ err: (e as Error).message }, "connection handler failed");
      socket.destroy();
    }
  });
  server.on("error", (e) => log?.error({ err: e.message }, "listener error"));
  const host = options.host ?? "127.0.0.1";
  const failStart = async (what: string, port: number, e: unknown): Promise<never> => {
    // nothing of this node may outlive a failed start (an open listener or pool keeps the process alive)
    pool.close();
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
    await ownMasker?.close();
    stopWatchingSnapshots?.();
    await functionCatalog?.close();
    await classifier?.close();
    throw listenError(what, host, port, e);
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 7432, host, () => {
      server.removeListener("error", reject);
      resolve();
    });
  }).catch((e: unknown) => failStart("data plane Postgres listener", options.port ?? 7432, e));
  const port = (server.address() as net.AddressInfo).port;

  const stats = (): DataPlaneStats => {
    const s = { ...totals, connecting, sessions: sessions.size, upstreamIdle: pool.stats().idle };
    for (const x of sessions) {
      s.statements += x.stats.statements;
      s.denied += x.stats.denied;
      s.bytesIn += x.stats.bytesIn;
      s.bytesOut += x.stats.bytesOut;
    }
    return s;
  };

  const poolStats = (): UpstreamPoolStats => pool.stats();
  registerProxyMetrics(metrics, { stats, counters, addedLatency, pool: poolStats, connectPhases, handshakes: handshakes && (() => handshakes.stats), revision: () => options.snapshots.current()?.revision ?? 0 });

  /** drain() was called: no new connections, /readyz 503 */
  let draining = false;
  let httpServer: http.Server | null = null;
  let httpPort: number | null = null;
  if (options.httpPort !== null) {
    httpServer = http.createServer((req, res) => {
      if (req.url === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      } else if (req.url === "/readyz") {
        const snap = options.snapshots.current();
        if (draining) res.writeHead(503, { "content-type": "text/plain" }).end("draining\n");
        else res.writeHead(snap ? 200 : 503, { "content-type": "text/plain" }).end(snap ? `ready revision ${snap.revision}\n` : "no policy snapshot\n");
      } else if (req.url === "/metrics") {
        exposition(metrics).then(
          (m) => res.writeHead(200, { "content-type": m.contentType }).end(m.body),
          () => res.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable\n"),
        );
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve, reject) => {
      httpServer!.once("error", reject);
      httpServer!.listen(options.httpPort ?? 7480, host, () => resolve());
    }).catch((e: unknown) => failStart("data plane HTTP listener", options.httpPort ?? 7480, e));
    httpPort = (httpServer.address() as net.AddressInfo).port;
  }
  log?.info({ port, httpPort, nodeId, nodeNumber, tls: secureContext !== null }, "data plane listening");

  return {
    port,
    httpPort,
    nodeNumber,
    stats,
    poolStats,
    metrics,
    cancelLocal,
    drain() {
      if (draining) return;
      draining = true;
      // stops accepting; the close callback would wait for every session, so none is passed here
      server.close();
      pool.close();
    },
    async stop() {
      draining = true;
      pool.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      if (httpServer) await new Promise<void>((resolve) => httpServer!.close(() => resolve()));
      await ownMasker?.close();
      stopWatchingSnapshots?.();
      await functionCatalog?.close();
      await classifier?.close();
    },
  };
}
