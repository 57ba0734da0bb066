/**
 * The socket adapter of one client connection, from the first byte to the end: startup packets
 * (SSLRequest → TLS, direct TLS, GSSENCRequest → 'N', CancelRequest), the StartupMessage, the
 * cleartext password carrying the JWT, the upstream connection, then the relay. It runs the I/O;
 * what the bytes are is the start-up reader's (startup-reader.ts), who may connect the admission's
 * (admission.ts), and every refusal is one code of refusals.ts. Everything a client sends is
 * untrusted: any failure ends this connection only, with an ErrorResponse when the protocol still
 * allows one.
 */
import type net from "node:net";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { SluiceError } from "@sluice/shared/errors";
import type { PolicySnapshot, ResourceSpec } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { uuidv7 } from "@sluice/shared/events";
import { F } from "../wire/codes.js";
import { WireError } from "../wire/frame-scanner.js";
import type { StartupPacket } from "../wire/startup.js";
import { decodePassword } from "../wire/decode.js";
import { authCleartextPassword, authOk, backendKeyData, errorResponse, readyForQuery } from "../wire/encode.js";
import type { UpstreamConnection } from "../upstream/connect-upstream.js";
import type { UpstreamLease } from "../upstream/upstream-pool.js";
import { RelaySession } from "../session/relay-session.js";
import type { ConnectPhase, ConnectPhases } from "../metrics/connect-phases.js";
import type { ApprovalGate, AuditFeatures, AuditSink, CompletionListener, ConnectionInfo, Enforcer, ResultMasker, SessionInfo, SnapshotSource } from "../session/session-hooks.js";
import { admit, admitStartup, tokenRefusal, upstreamRefusal, type VerifiedIdentity } from "./admission.js";
import { REFUSALS, refusal, RefusalError, refusalOf, type Refusal } from "./refusals.js";
import { passwordFrame, startupOrDirectTls, startupPacket, StartupReader } from "./startup-reader.js";
import type { HandshakeGuard } from "./handshake-limiter.js";

export type { VerifiedIdentity } from "./admission.js";

export interface ConnectionContext {
  nodeId: string;
  region: string;
  /** null: plaintext only (`tls: disabled`) */
  secureContext: tls.SecureContext | null;
  snapshots: SnapshotSource;
  enforcer: Enforcer;
  audit: AuditSink;
  auditFeatures: AuditFeatures;
  completionListeners: readonly CompletionListener[];
  masker?: ResultMasker;
  approvals?: ApprovalGate;
  /** seconds each allowed statement waited in the proxy (RelaySessionOptions.addedLatency) */
  addedLatency?: { observe(seconds: number): void };
  /** where connection set-up spends its time (metrics/connect-phases.ts) */
  connectPhases?: ConnectPhases;
  /** failed handshakes per source address (handshake-limiter.ts): refuses a source that used them up, bounds what is recorded */
  handshakes?: HandshakeGuard;
  maxFrameBytes: number;
  authTimeoutMs: number;
  poisonToken: string;
  logger?: Logger;
  verify(token: string, snapshot: PolicySnapshot): Promise<VerifiedIdentity>;
  /** an authenticated upstream connection with the resource's credential (an idle pooled one when there is one) */
  connectUpstream(resource: ResourceSpec, startupParams: Record<string, string>): Promise<UpstreamLease>;
  /** a cancel key for a new session; `cancelled` once a cancel was sent for it; `release` when it ends */
  allocateCancelKey(resource: ResourceSpec, upstreamKey: { pid: number; secret: number }): { pid: number; secret: number; cancelled(): boolean; release(): void };
  cancel(pid: number, secret: number): void;
  track(session: RelaySession | null, delta: 1 | -1): void;
  now(): number;
}

/** Resolves once the server-side TLS handshake is done; a close before that fails it. */
function handshake(t: tls.TLSSocket): Promise<void> {
  return new Promise<void>((res, rej) => {
    // each listener removes the other: the session's own close must not build a handshake error
    const onClose = () => rej(new WireError("TLS handshake failed"));
    t.once("secure", () => {
      t.removeListener("close", onClose);
      res();
    });
    t.once("close", onClose);
  });
}

const refuseWith = (r: Refusal): never => {
  throw new RefusalError(r);
};

export function handleClientConnection(raw: net.Socket, ctx: ConnectionContext): void {
  // a source that used up its failed handshakes and was told so: closed before any TLS work
  if (ctx.handshakes?.drop(raw.remoteAddress ?? "")) {
    raw.destroy();
    return;
  }
  new ClientConnection(raw, ctx).start();
}

class ClientConnection {
  private readonly sessionId = uuidv7();
  private readonly clientAddress: string;
  /** the raw socket, or the TLS socket over it once the handshake is done */
  private socket: net.Socket;
  private conn: ConnectionInfo;
  private info: SessionInfo | null = null;
  private lease: UpstreamLease | null = null;
  /** the relay saw a clean Terminate and the pool may take the connection back (see RelayIo.release) */
  private keepUpstream = false;
  /** takes this session's listeners off the upstream socket before it goes back to the pool */
  private detachUpstream = () => {};
  private session: RelaySession | null = null;
  private cancelKey: { cancelled(): boolean; release(): void } | null = null;
  private ended = false;
  /** the source had no failed handshakes left: its refusal is not recorded */
  private limited = false;
  /** admitted by the handshake limiter and not yet over (released once, whichever way it ends) */
  private inFlight = false;
  private readonly timer: NodeJS.Timeout;
  private readonly acceptedAt: number;
  /** the start of the connect phase now running (metrics/connect-phases.ts) */
  private phaseStart: number;

  constructor(
    private readonly raw: net.Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.socket = raw;
    this.clientAddress = `${raw.remoteAddress ?? "?"}:${raw.remotePort ?? 0}`;
    this.conn = { sessionId: this.sessionId, nodeId: ctx.nodeId, region: ctx.region, clientAddress: this.clientAddress, tls: false };
    this.acceptedAt = this.phaseStart = ctx.now();
    this.timer = setTimeout(() => this.refuse(refusal("timeout", "authentication timed out")), ctx.authTimeoutMs);
    this.timer.unref();
  }

  start(): void {
    this.ctx.track(null, 1);
    this.raw.setNoDelay(true);
    this.raw.setKeepAlive(true, 60_000);
    this.raw.on("error", this.onSocketError);
    this.setup().catch((e: unknown) => {
      clearTimeout(this.timer);
      if (this.ended) return;
      const r = refusalOf(e);
      if (r.code === "internal") this.ctx.logger?.error({ sessionId: this.sessionId, err: r.logReason }, "connection setup failed");
      this.refuse(r);
    });
  }

  private readonly onSocketError = (e: Error) => {
    this.ctx.logger?.debug({ sessionId: this.sessionId, code: (e as NodeJS.ErrnoException).code }, "client socket error");
    this.end("client socket error");
  };

  /** the phase that began at `phaseStart` ended now */
  private phase(p: ConnectPhase): void {
    const t = this.ctx.now();
    this.ctx.connectPhases?.observe(p, t - this.phaseStart);
    this.phaseStart = t;
  }

  /** TLS over the raw socket (after 'S', or from the first byte with ALPN) */
  private async upgrade(alpn: boolean): Promise<StartupReader> {
    const t = new tls.TLSSocket(this.raw, { isServer: true, secureContext: this.ctx.secureContext!, ...(alpn ? { ALPNProtocols: ["postgresql"] } : {}) });
    this.socket = t;
    t.on("error", this.onSocketError);
    await handshake(t);
    // like Postgres, direct TLS only with ALPN "postgresql" (no cross-protocol confusion)
    if (alpn && t.alpnProtocol !== "postgresql") refuseWith(refusal("alpn_required", 'direct TLS connections must negotiate ALPN "postgresql"'));
    this.phase("tls");
    this.conn = { ...this.conn, tls: true };
    return new StartupReader(t);
  }

  /** 1. the startup packets, up to the StartupMessage; null when the connection was a cancel request */
  private async startupMessage(): Promise<{ packet: StartupPacket & { kind: "startup" }; reader: StartupReader } | null> {
    const ctx = this.ctx;
    let reader = new StartupReader(this.raw);
    for (;;) {
      const p = await reader.read(!this.conn.tls && ctx.secureContext ? startupOrDirectTls : startupPacket);
      if (p === "direct-tls") {
        this.raw.unshift(reader.detach()); // a TLSSocket replays bytes already buffered on the socket
        reader = await this.upgrade(true);
        continue;
      }
      switch (p.kind) {
        case "cancel":
          ctx.cancel(p.pid, p.secret);
          this.end("cancel request");
          return null;
        case "gssenc":
          this.raw.write("N");
          continue;
        case "ssl":
          if (this.conn.tls || !ctx.secureContext) {
            this.raw.write("N");
            continue;
          }
          if (reader.detach().length) throw new WireError("data received before the TLS handshake");
          this.raw.write("S");
          reader = await this.upgrade(false);
          continue;
        case "startup":
          return { packet: p, reader };
        default:
          throw new WireError("invalid startup packet");
      }
    }
  }

  private async setup(): Promise<void> {
    const ctx = this.ctx;
    const got = await this.startupMessage();
    if (!got) return;
    this.phase("startup");
    const { reader } = got;
    const params = got.packet.params;
    this.conn = { ...this.conn, resource: params.database ?? params.user, clientUser: params.user, applicationName: params.application_name };
    const early = admitStartup(params, { tlsRequired: ctx.secureContext !== null, tls: this.conn.tls });
    if (early) refuseWith(early);
    const tooMany = ctx.handshakes?.admit(this.raw.remoteAddress ?? "");
    if (tooMany !== undefined) {
      this.limited = true;
      refuseWith(refusal("too_many_failed_handshakes", tooMany));
    }
    this.inFlight = ctx.handshakes !== undefined;
    // 2. the JWT as cleartext password (inside TLS); session.started is recorded with the outcome
    this.socket.write(authCleartextPassword());
    const pf = await reader.read(passwordFrame);
    this.phase("password");
    if (pf[0] !== F.Password) throw new WireError("expected a password message");
    const token = decodePassword(pf);
    const snapshot = ctx.snapshots.current() ?? refuseWith(refusal("not_ready", "the data plane has no policy snapshot yet; try again shortly"));
    const id = await ctx.verify(token, snapshot).catch((e: unknown) => refuseWith(tokenRefusal(e)));
    this.phase("token");
    const a = admit(this.conn, params, id, snapshot);
    if (a.info) this.info = a.info;
    if (!a.ok) return refuseWith(a.refusal);
    const info = a.info;
    if (a.dropped.length) ctx.logger?.debug({ sessionId: this.sessionId, dropped: a.dropped }, "startup settings not forwarded");
    this.phase("policy");

    // 3. upstream with the resource's own credential
    const lease = await ctx.connectUpstream(a.resource, a.forward).catch((e: unknown) =>
      refuseWith(refusal("upstream_unavailable", `cannot connect to the upstream of "${info.resource}"`, SluiceError.from(e, "unavailable").message)),
    );
    if (this.ended) {
      // the client left (or timed out) while the upstream connected: the connection never served it
      lease.release(false);
      return;
    }
    this.lease = lease;
    this.phase("upstream");
    const up = lease.up;
    // from here until the session ends, an upstream failure must not be an unhandled 'error'
    const onUpstreamError = (e: NodeJS.ErrnoException) => {
      ctx.logger?.warn({ sessionId: this.sessionId, code: e.code }, "upstream socket error");
      this.end("upstream error", errorResponse({ severity: "FATAL", sqlstate: "08006", message: "the upstream connection failed" }));
    };
    up.socket.on("error", onUpstreamError);
    this.detachUpstream = () => up.socket.removeListener("error", onUpstreamError);
    const pinned = upstreamRefusal(up.parameterStatus);
    if (pinned) refuseWith(pinned);
    // the handshake's outcome: session.started (refused at connect when the audit buffer is full) with session.authenticated
    ctx.audit.sessionStarted(this.conn);
    const ack = ctx.audit.sessionAuthenticated(info);
    if (ack) await ack;
    if (this.ended) return;
    this.phase("audit");
    this.handshakeOver();

    // 4. hand the client what the upstream said, with our own cancel key
    const key = ctx.allocateCancelKey(a.resource, up.key);
    this.cancelKey = key;
    this.socket.write(Buffer.concat([authOk(), ...up.parameterStatus, backendKeyData(key.pid, key.secret), readyForQuery(up.txStatus)]));
    ctx.connectPhases?.observe("total", ctx.now() - this.acceptedAt);
    clearTimeout(this.timer);
    ctx.logger?.info({ sessionId: this.sessionId, subject: id.subject, issuer: id.issuer, resource: info.resource, groups: id.groups, upstreamReused: lease.reused }, "session authenticated");
    this.startRelay(info, up, reader.detach());
  }

  /** the admitted handshake ended, whichever way: the limiter no longer counts it in flight */
  private handshakeOver(): void {
    if (!this.inFlight) return;
    this.inFlight = false;
    this.ctx.handshakes?.release(this.raw.remoteAddress ?? "");
  }

  private end(reason: string, finalToClient?: Buffer): void {
    if (this.ended) return;
    this.ended = true;
    this.handshakeOver();
    const { ctx, socket, raw, session } = this;
    session?.dispose();
    // a cancel sent for this session may still reach the backend: never hand it to another session
    const clean = this.keepUpstream && this.cancelKey?.cancelled() === false;
    this.cancelKey?.release();
    if (finalToClient && !socket.destroyed && socket.writable) socket.end(finalToClient);
    else socket.end();
    // nothing the client sends from now on matters; do not buffer it
    socket.pause();
    // the upstream goes back to the pool: reset and reused when clean, else closed (a forwarded
    // Terminate still reaches it first)
    this.detachUpstream();
    this.lease?.release(clean);
    // give the final message a moment, then make sure nothing lingers
    // (the raw socket under TLS too: destroying it now would cut off the encrypted final message)
    setTimeout(() => {
      socket.destroy();
      raw.destroy();
    }, 1000).unref();
    ctx.track(session, -1);
    const stats = session?.stats;
    try {
      ctx.audit.sessionEnded(this.info ?? this.conn, { reason, statements: stats?.statements ?? 0, bytesIn: stats?.bytesIn ?? 0, bytesOut: stats?.bytesOut ?? 0 });
    } catch (e) {
      ctx.logger?.error({ sessionId: this.sessionId, err: e }, "audit sessionEnded failed");
    }
  }

  private refuse(r: Refusal): void {
    const kind = REFUSALS[r.code];
    // released before the failure takes its token, so the two are never counted at once
    this.handshakeOver();
    this.ctx.logger?.info({ sessionId: this.sessionId, clientAddress: this.clientAddress, refusal: r.code, sqlstate: kind.sqlstate, reason: r.logReason ?? r.message }, "connection refused");
    try {
      // session.started is recorded with the outcome of the handshake: here a refusal, within the
      // limiter's budget; protocol noise before any StartupMessage (port scans, health checks) is
      // logged, not recorded
      const recorded =
        (this.conn.resource !== undefined || kind.sqlstate !== "08P01") &&
        !this.limited &&
        (this.ctx.handshakes?.failed(this.raw.remoteAddress ?? "", kind.sqlstate, r.message) ?? true);
      if (recorded) {
        this.ctx.audit.sessionStarted(this.conn);
        this.ctx.audit.sessionDenied(this.conn, { sqlstate: kind.sqlstate, reason: r.message, subject: this.info?.subject, code: r.code, stage: kind.stage, outcome: kind.outcome });
      }
    } catch (e) {
      this.ctx.logger?.error({ sessionId: this.sessionId, err: e }, "audit sessionDenied failed");
    }
    this.end(`refused ${kind.sqlstate}`, errorResponse({ severity: "FATAL", sqlstate: kind.sqlstate, message: r.message }));
  }

  private startRelay(si: SessionInfo, up: UpstreamConnection, early: Buffer): void {
    const { ctx } = this;
    const client = this.socket;
    const end = (reason: string, finalToClient?: Buffer) => this.end(reason, finalToClient);
    const us = up.socket;
    let clientHeld = false;
    let upstreamHeld = false;
    let waitClientDrain = false;
    let waitUpstreamDrain = false;
    // reading one side stops while the other side's buffer is full or a hook holds it
    const flow = () => {
      if (this.ended) return;
      if (clientHeld || waitUpstreamDrain) client.pause();
      else client.resume();
      if (upstreamHeld || waitClientDrain) us.pause();
      else us.resume();
    };
    const s = new RelaySession({
      info: si,
      enforcer: ctx.enforcer,
      audit: ctx.audit,
      features: ctx.auditFeatures,
      listeners: ctx.completionListeners,
      masker: ctx.masker,
      approvals: ctx.approvals,
      addedLatency: ctx.addedLatency,
      maxFrameBytes: ctx.maxFrameBytes,
      poisonToken: ctx.poisonToken,
      now: ctx.now,
      io: {
        writeClient(b) {
          if (!client.write(b) && !waitClientDrain) {
            waitClientDrain = true;
            flow();
          }
        },
        writeUpstream(b) {
          if (!us.write(b) && !waitUpstreamDrain) {
            waitUpstreamDrain = true;
            flow();
          }
        },
        holdClient(h) {
          clientHeld = h;
          flow();
        },
        holdUpstream(h) {
          upstreamHeld = h;
          flow();
        },
        close(reason, finalToClient) {
          end(reason, finalToClient);
        },
        release: () => {
          this.keepUpstream = this.lease?.reusable() === true && this.cancelKey?.cancelled() === false;
          return this.keepUpstream;
        },
      },
    });
    this.session = s;
    ctx.track(s, 1);
    ctx.track(null, -1);
    client.on("drain", () => {
      waitClientDrain = false;
      flow();
    });
    const onUpstreamDrain = () => {
      waitUpstreamDrain = false;
      flow();
    };
    const onUpstreamData = (d: Buffer) => s.onUpstreamData(d);
    // after a normal end (the client left) this close is expected: build no FATAL for it
    const onUpstreamClose = () => this.ended || end("upstream closed", errorResponse({ severity: "FATAL", sqlstate: "08006", message: "the upstream closed the connection" }));
    us.on("drain", onUpstreamDrain);
    us.on("data", onUpstreamData);
    us.on("close", onUpstreamClose);
    const detachSetup = this.detachUpstream;
    this.detachUpstream = () => {
      // nothing is read from it until the pool attaches its own listeners
      us.pause();
      us.removeListener("drain", onUpstreamDrain);
      us.removeListener("data", onUpstreamData);
      us.removeListener("close", onUpstreamClose);
      detachSetup();
    };
    client.on("data", (d: Buffer) => s.onClientData(d));
    client.on("end", () => end("client disconnected"));
    client.on("close", () => end("client disconnected"));
    if (up.rest.length) s.onUpstreamData(up.rest);
    if (early.length) s.onClientData(early);
    flow();
  }
}

/** A per-process token for poison statements: unguessable, a valid identifier. */
export function newPoisonToken(): string {
  return `sluice_denied_${randomBytes(12).toString("hex")}`;
}
