/**
 * One client connection from the first byte to the end: startup packets (SSLRequest → TLS,
 * GSSENCRequest → 'N', CancelRequest), the StartupMessage, the cleartext password carrying the JWT,
 * the upstream connection, then the relay. Everything a client sends is untrusted: any failure ends
 * this connection only, with an ErrorResponse when the protocol still allows one.
 */
import type net from "node:net";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { SluiceError, toSqlState } from "@sluice/shared/errors";
import { tablePatternsApply, type PolicySnapshot, type ResourceSpec } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { uuidv7 } from "@sluice/shared/events";
import { F } from "../wire/codes.js";
import { splitFrames, WireError } from "../wire/frame-scanner.js";
import { readStartupPacket, type StartupPacket } from "../wire/startup.js";
import { decodeParameterStatus, decodePassword } from "../wire/decode.js";
import { authCleartextPassword, authOk, backendKeyData, errorResponse, readyForQuery } from "../wire/encode.js";
import type { UpstreamConnection } from "../upstream/connect-upstream.js";
import type { UpstreamLease } from "../upstream/upstream-pool.js";
import { RelaySession } from "../session/relay-session.js";
import { mayConnect } from "../session/may-connect.js";
import { filterStartupParams, startupRefusalMessage } from "../session/startup-params.js";
import { pinnedSettingViolation } from "../session/pinned-settings.js";
import type { ConnectPhase, ConnectPhases } from "../metrics/connect-phases.js";
import type { HandshakeGuard } from "./handshake-limiter.js";
import type { ApprovalGate, AuditFeatures, AuditSink, CompletionListener, ConnectionInfo, Enforcer, ResultMasker, SessionInfo, SnapshotSource } from "../session/session-hooks.js";

export interface VerifiedIdentity {
  subject: string;
  issuer: string;
  claims: Record<string, unknown>;
  groups: string[];
}

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

const MAX_PASSWORD_FRAME = 64 * 1024;

/** Buffers the pre-relay phase, where messages are few and small. */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private ended = false;
  private readonly onData = (d: Buffer) => {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };

  constructor(private readonly socket: net.Socket) {
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
  }

  async read<T>(parse: (b: Buffer) => { value: T; rest: Buffer } | null): Promise<T> {
    for (;;) {
      const r = parse(this.buf);
      if (r) {
        this.buf = r.rest;
        return r.value;
      }
      if (this.ended) throw new WireError("connection closed during startup");
      await new Promise<void>((res) => (this.wake = res));
      this.wake = null;
    }
  }

  /** stop reading; returns what was received but not consumed */
  detach(): Buffer {
    this.socket.pause();
    this.socket.removeListener("data", this.onData);
    this.socket.removeListener("end", this.onEnd);
    this.socket.removeListener("close", this.onEnd);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}

function startupPacket(b: Buffer): { value: StartupPacket; rest: Buffer } | null {
  const r = readStartupPacket(b);
  return r ? { value: r.packet, rest: r.rest } : null;
}

/** A TLS ClientHello (record type 22) where a startup packet should be: direct TLS (libpq 17 sslnegotiation=direct). */
function startupOrDirectTls(b: Buffer): { value: StartupPacket | "direct-tls"; rest: Buffer } | null {
  if (b.length > 0 && b[0] === 0x16) return { value: "direct-tls", rest: b };
  return startupPacket(b);
}

function passwordFrame(b: Buffer): { value: Buffer; rest: Buffer } | null {
  const { frames, rest } = splitFrames(b, MAX_PASSWORD_FRAME);
  if (frames.length === 0) return null;
  const f = frames[0]!;
  return { value: f.raw, rest: Buffer.concat([...frames.slice(1).map((x) => x.raw), rest]) };
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

/** A refusal the client is told about: SQLSTATE + safe message. */
class Refusal extends Error {
  constructor(readonly sqlstate: string, message: string, readonly logReason?: string) {
    super(message);
  }
}

export function handleClientConnection(raw: net.Socket, ctx: ConnectionContext): void {
  // a source that used up its failed handshakes and was told so: closed before any TLS work
  if (ctx.handshakes?.drop(raw.remoteAddress ?? "")) {
    raw.destroy();
    return;
  }
  const sessionId = uuidv7();
  const clientAddress = `${raw.remoteAddress ?? "?"}:${raw.remotePort ?? 0}`;
  let socket: net.Socket = raw;
  let lease: UpstreamLease | null = null;
  /** the relay saw a clean Terminate and the pool may take the connection back (see RelayIo.release) */
  let keepUpstream = false;
  /** takes this session's listeners off the upstream socket before it goes back to the pool */
  let detachUpstream = () => {};
  let session: RelaySession | null = null;
  let cancelKey: { cancelled(): boolean; release(): void } | null = null;
  let ended = false;
  let endReason = "client disconnected";
  let conn: ConnectionInfo = { sessionId, nodeId: ctx.nodeId, region: ctx.region, clientAddress, tls: false };
  let info: SessionInfo | null = null;
  ctx.track(null, 1);
  const acceptedAt = ctx.now();
  let phaseStart = acceptedAt;
  /** the phase that began at `phaseStart` ended now */
  const phase = (p: ConnectPhase) => {
    const t = ctx.now();
    ctx.connectPhases?.observe(p, t - phaseStart);
    phaseStart = t;
  };

  raw.setNoDelay(true);
  raw.setKeepAlive(true, 60_000);
  const onSocketError = (e: Error) => {
    ctx.logger?.debug({ sessionId, code: (e as NodeJS.ErrnoException).code }, "client socket error");
    end("client socket error");
  };
  raw.on("error", onSocketError);

  const end = (reason: string, finalToClient?: Buffer) => {
    if (ended) return;
    ended = true;
    endReason = reason;
    session?.dispose();
    // a cancel sent for this session may still reach the backend: never hand it to another session
    const clean = keepUpstream && cancelKey?.cancelled() === false;
    cancelKey?.release();
    if (finalToClient && !socket.destroyed && socket.writable) socket.end(finalToClient);
    else socket.end();
    // nothing the client sends from now on matters; do not buffer it
    socket.pause();
    // the upstream goes back to the pool: reset and reused when clean, else closed (a forwarded
    // Terminate still reaches it first)
    detachUpstream();
    lease?.release(clean);
    // give the final message a moment, then make sure nothing lingers
    // (the raw socket under TLS too: destroying it now would cut off the encrypted final message)
    const cs = socket;
    setTimeout(() => {
      cs.destroy();
      raw.destroy();
    }, 1000).unref();
    ctx.track(session, -1);
    const stats = session?.stats;
    try {
      ctx.audit.sessionEnded(info ?? conn, { reason: endReason, statements: stats?.statements ?? 0, bytesIn: stats?.bytesIn ?? 0, bytesOut: stats?.bytesOut ?? 0 });
    } catch (e) {
      ctx.logger?.error({ sessionId, err: e }, "audit sessionEnded failed");
    }
  };

  /** set when the source had no failed handshakes left: such a refusal is not recorded */
  let limited = false;
  const refuse = (sqlstate: string, message: string, logReason?: string) => {
    ctx.logger?.info({ sessionId, clientAddress, sqlstate, reason: logReason ?? message }, "connection refused");
    try {
      // session.started is recorded with the outcome of the handshake: here a refusal, within the
      // limiter's budget (a connection that sent no StartupMessage is not recorded at all)
      if ((conn.resource !== undefined || sqlstate !== "08P01") && !limited && (ctx.handshakes?.failed(raw.remoteAddress ?? "", sqlstate, message) ?? true)) {
        ctx.audit.sessionStarted(conn);
        ctx.audit.sessionDenied(conn, { sqlstate, reason: message, subject: info?.subject });
      }
    } catch (e) {
      ctx.logger?.error({ sessionId, err: e }, "audit sessionDenied failed");
    }
    end(`refused ${sqlstate}`, errorResponse({ severity: "FATAL", sqlstate, message }));
  };

  const timer = setTimeout(() => refuse("08006", "authentication timed out"), ctx.authTimeoutMs);
  timer.unref();

  void (async () => {
    let reader = new Reader(raw);
    let packet: StartupPacket;
    // 1. startup packets
    for (;;) {
      const first = await reader.read(!conn.tls && ctx.secureContext ? startupOrDirectTls : startupPacket);
      if (first === "direct-tls") {
        // TLS from the first byte; like Postgres, only with ALPN "postgresql" (no cross-protocol confusion)
        raw.unshift(reader.detach()); // a TLSSocket replays bytes already buffered on the socket
        const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx.secureContext!, ALPNProtocols: ["postgresql"] });
        socket = t;
        t.on("error", onSocketError);
        await handshake(t);
        if (t.alpnProtocol !== "postgresql") throw new Refusal("08P01", "direct TLS connections must negotiate ALPN \"postgresql\"");
        phase("tls");
        conn = { ...conn, tls: true };
        reader = new Reader(t);
        continue;
      }
      packet = first;
      if (packet.kind === "cancel") {
        ctx.cancel(packet.pid, packet.secret);
        end("cancel request");
        return;
      }
      if (packet.kind === "gssenc") {
        raw.write("N");
        continue;
      }
      if (packet.kind === "ssl") {
        if (conn.tls || !ctx.secureContext) {
          raw.write("N");
          continue;
        }
        const early = reader.detach();
        if (early.length) throw new WireError("data received before the TLS handshake");
        raw.write("S");
        const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx.secureContext });
        socket = t;
        t.on("error", onSocketError);
        await handshake(t);
        phase("tls");
        conn = { ...conn, tls: true };
        reader = new Reader(t);
        continue;
      }
      break;
    }
    phase("startup");
    if (packet.kind !== "startup") throw new WireError("invalid startup packet");
    const params = packet.params;
    conn = { ...conn, resource: params.database ?? params.user, clientUser: params.user, applicationName: params.application_name };
    const early =
      ctx.secureContext && !conn.tls
        ? new Refusal("28000", "TLS is required: connect with sslmode=require")
        : params.replication !== undefined && params.replication !== "false" && params.replication !== "0"
          ? new Refusal("28000", "replication connections are not supported through sluice")
          : !params.user
            ? new Refusal("28000", "no user name specified in the startup packet")
            : null;
    if (early) throw early;
    const tooMany = ctx.handshakes?.admit(raw.remoteAddress ?? "");
    if (tooMany !== undefined) {
      limited = true;
      throw new Refusal("53300", tooMany);
    }
    // 2. the JWT as cleartext password (inside TLS); session.started is recorded with the outcome
    socket.write(authCleartextPassword());
    const pf = await reader.read(passwordFrame);
    phase("password");
    if (pf[0] !== F.Password) throw new WireError("expected a password message");
    const token = decodePassword(pf);
    const snapshot = ctx.snapshots.current();
    if (!snapshot) throw new Refusal("57P03", "the data plane has no policy snapshot yet; try again shortly");
    let id: VerifiedIdentity;
    try {
      id = await ctx.verify(token, snapshot);
    } catch (e) {
      const se = SluiceError.from(e, "unauthenticated");
      // the message from verifyToken is safe by construction (never names the key or echoes the token)
      throw new Refusal(se.code === "unavailable" ? "28000" : "28P01", se.code === "unauthenticated" ? se.message : "token rejected", `${se.code}: ${se.message}`);
    }
    phase("token");
    const resourceName = conn.resource!;
    const resource = snapshot.bundle.resources.find((r) => r.name === resourceName);
    if (!resource) throw new Refusal("3D000", `database "${resourceName}" does not exist`);
    info = {
      sessionId,
      nodeId: ctx.nodeId,
      region: ctx.region,
      resource: resourceName,
      clientUser: params.user,
      applicationName: params.application_name,
      clientAddress,
      subject: id.subject,
      issuer: id.issuer,
      groups: id.groups,
      claims: id.claims,
      policyRevision: snapshot.revision,
    };
    if (!mayConnect(snapshot.bundle, resourceName, id.groups, id.issuer))
      throw new Refusal("28000", `no policy allows "${id.subject}" to connect to "${resourceName}"`);

    // 3. upstream with the resource's own credential
    const restrictsTables = tablePatternsApply(snapshot.bundle, { resource: resourceName, groups: id.groups, issuer: id.issuer });
    const fp = filterStartupParams(params, { restrictsTables });
    // a setting that would change how the server reads SQL: the connection is not established (08004)
    if (!fp.ok) throw new Refusal(fp.refusal === "parser-setting" ? "08004" : "42501", startupRefusalMessage(fp));
    if (fp.dropped.length) ctx.logger?.debug({ sessionId, dropped: fp.dropped }, "startup settings not forwarded");
    const forwarded = fp.forward;
    phase("policy");
    let got: UpstreamLease;
    try {
      got = await ctx.connectUpstream(resource, forwarded);
    } catch (e) {
      const se = SluiceError.from(e, "unavailable");
      throw new Refusal("08006", `cannot connect to the upstream of "${resourceName}"`, se.message);
    }
    if (ended) {
      // the client left (or timed out) while the upstream connected: the connection never served it
      got.release(false);
      return;
    }
    lease = got;
    phase("upstream");
    const up = got.up;
    // from here until the session ends, an upstream failure must not be an unhandled 'error'
    const onUpstreamError = (e: NodeJS.ErrnoException) => {
      ctx.logger?.warn({ sessionId, code: e.code }, "upstream socket error");
      end("upstream error", errorResponse({ severity: "FATAL", sqlstate: "08006", message: "the upstream connection failed" }));
    };
    up.socket.on("error", onUpstreamError);
    detachUpstream = () => up.socket.removeListener("error", onUpstreamError);
    // the classifier reads statements with pinned settings: a server that starts otherwise is refused
    for (const ps of up.parameterStatus) {
      const { name, value } = decodeParameterStatus(ps);
      const why = pinnedSettingViolation(name, value);
      if (why !== undefined) throw new Refusal("0A000", why);
    }
    // the handshake's outcome: session.started (refused at connect when the audit buffer is full) with session.authenticated
    ctx.audit.sessionStarted(conn);
    const ack = ctx.audit.sessionAuthenticated(info);
    if (ack) await ack;
    if (ended) return;
    phase("audit");

    // 4. hand the client what the upstream said, with our own cancel key
    const key = ctx.allocateCancelKey(resource, up.key);
    cancelKey = key;
    socket.write(Buffer.concat([authOk(), ...up.parameterStatus, backendKeyData(key.pid, key.secret), readyForQuery(up.txStatus)]));
    ctx.connectPhases?.observe("total", ctx.now() - acceptedAt);
    clearTimeout(timer);
    ctx.logger?.info({ sessionId, subject: id.subject, issuer: id.issuer, resource: resourceName, groups: id.groups, upstreamReused: got.reused }, "session authenticated");
    startRelay(info, up, reader.detach());
  })().catch((e: unknown) => {
    clearTimeout(timer);
    if (ended) return;
    if (e instanceof Refusal) refuse(e.sqlstate, e.message, e.logReason);
    else if (e instanceof WireError) refuse(e.sqlstate, e.message);
    // e.g. the audit recorder failing closed at connect (unavailable → 57P03)
    else if (SluiceError.is(e, "unavailable")) refuse(toSqlState(e.code), e.message);
    else {
      ctx.logger?.error({ sessionId, err: e instanceof Error ? { type: e.name, message: e.message } : String(e) }, "connection setup failed");
      refuse("XX000", "internal error while setting up the session");
    }
  });

  function startRelay(si: SessionInfo, up: UpstreamConnection, early: Buffer): void {
    const client = socket;
    const us = up.socket;
    let clientHeld = false;
    let upstreamHeld = false;
    let waitClientDrain = false;
    let waitUpstreamDrain = false;
    // reading one side stops while the other side's buffer is full or a hook holds it
    const flow = () => {
      if (ended) return;
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
        release() {
          keepUpstream = lease?.reusable() === true && cancelKey?.cancelled() === false;
          return keepUpstream;
        },
      },
    });
    session = s;
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
    const onUpstreamClose = () => ended || end("upstream closed", errorResponse({ severity: "FATAL", sqlstate: "08006", message: "the upstream closed the connection" }));
    us.on("drain", onUpstreamDrain);
    us.on("data", onUpstreamData);
    us.on("close", onUpstreamClose);
    const detachSetup = detachUpstream;
    detachUpstream = () => {
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
