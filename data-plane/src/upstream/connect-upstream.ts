/**
 * Opens the upstream connection with the resource's own credential: TCP, optional TLS
 * (disable / require / verify-full), StartupMessage, authentication (trust, cleartext, md5,
 * SCRAM-SHA-256), then collects ParameterStatus and BackendKeyData up to the first ReadyForQuery.
 * Errors never contain the credential.
 */
import net from "node:net";
import tls from "node:tls";
import { readFile } from "node:fs/promises";
import { SluiceError } from "@sluice/shared/errors";
import type { UpstreamSpec } from "@sluice/shared/policy";
import { AuthType, B } from "../wire/codes.js";
import { splitFrames, WireError } from "../wire/frame-scanner.js";
import { decodeAuthentication, decodeBackendKeyData, decodeErrorFields, decodeReadyForQuery } from "../wire/decode.js";
import { passwordMessage, saslInitialResponse } from "../wire/encode.js";
import { encodeCancelRequest, encodeSslRequest, encodeStartupMessage } from "../wire/startup.js";
import { md5Password, ScramClient } from "./scram-client.js";
import { resolveSecret } from "./resolve-secret.js";

export interface UpstreamConnection {
  socket: net.Socket;
  /** raw (B) ParameterStatus frames to relay to the client */
  parameterStatus: Buffer[];
  /** the upstream's own cancel key (kept on this node, never sent to the client) */
  key: { pid: number; secret: number };
  txStatus: "I" | "T" | "E";
  /** bytes received after the first ReadyForQuery (normally empty) */
  rest: Buffer;
}

export interface ConnectUpstreamOptions {
  /** extra StartupMessage parameters from the client (application_name, client_encoding, options, …) */
  startupParams?: Record<string, string>;
  timeoutMs?: number;
  /** resolves `env:`/`file:` references (default: resolveSecret) */
  resolve?: (ref: string) => Promise<string>;
}

const MAX_SETUP_FRAME = 1 << 20;

function upstreamError(message: string, cause?: unknown): SluiceError {
  return new SluiceError("unavailable", message, undefined, cause ? { cause } : undefined);
}

/** Opens TCP (+TLS when configured) to the upstream. */
export async function openUpstreamSocket(spec: UpstreamSpec, timeoutMs = 10_000): Promise<net.Socket> {
  const mode = spec.tls ?? "disable";
  const raw = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: spec.host, port: spec.port });
    const t = setTimeout(() => {
      s.destroy();
      reject(upstreamError(`upstream ${spec.host}:${spec.port} did not answer in time`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(upstreamError(`upstream ${spec.host}:${spec.port} unreachable (${e.code ?? "error"})`, e));
    });
  });
  raw.setNoDelay(true);
  raw.setKeepAlive(true, 60_000);
  if (mode === "disable") return raw;
  const answer = await new Promise<number>((resolve, reject) => {
    raw.once("data", (d: Buffer) => (d.length === 1 ? resolve(d[0]!) : reject(upstreamError("upstream answered SSLRequest with more than one byte"))));
    raw.once("error", reject);
    raw.write(encodeSslRequest());
  });
  raw.removeAllListeners("error");
  // the TLS socket reports failures itself; the raw socket must never throw an unhandled 'error'
  raw.on("error", () => undefined);
  if (answer !== 0x53 /* S */) {
    raw.destroy();
    throw upstreamError(`upstream ${spec.host}:${spec.port} does not offer TLS (tls: ${mode})`);
  }
  const ca = spec.ca ? await readFile(spec.ca.startsWith("file:") ? spec.ca.slice(5) : spec.ca) : undefined;
  return new Promise<net.Socket>((resolve, reject) => {
    const s = tls.connect({
      socket: raw,
      servername: net.isIP(spec.host) ? undefined : spec.host,
      rejectUnauthorized: mode === "verify-full",
      ca,
      // verify-full checks the host name against the certificate (default checkServerIdentity)
      checkServerIdentity: mode === "verify-full" ? tls.checkServerIdentity : () => undefined,
    });
    s.once("secureConnect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e) => {
      raw.destroy();
      reject(upstreamError(`upstream TLS failed: ${e.message}`, e));
    });
  });
}

/** Connects and authenticates. Throws SluiceError (unavailable / failed_precondition) with a safe message. */
export async function connectUpstream(spec: UpstreamSpec, opts: ConnectUpstreamOptions = {}): Promise<UpstreamConnection> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const socket = await openUpstreamSocket(spec, timeoutMs);
  // between the handshake and the relay the caller attaches its own handler; never leave none
  socket.on("error", () => undefined);
  try {
    return await handshake(socket, spec, opts, timeoutMs);
  } catch (e) {
    socket.destroy();
    throw e;
  }
}

function handshake(socket: net.Socket, spec: UpstreamSpec, opts: ConnectUpstreamOptions, timeoutMs: number): Promise<UpstreamConnection> {
  return new Promise<UpstreamConnection>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let scram: ScramClient | null = null;
    let busy = Promise.resolve();
    const parameterStatus: Buffer[] = [];
    let key = { pid: 0, secret: 0 };
    let done = false;
    const finish = (err: unknown, value?: UpstreamConnection) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("error", onError);
      socket.removeListener("close", onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = setTimeout(() => finish(upstreamError("upstream authentication timed out")), timeoutMs);
    const onError = (e: Error) => finish(upstreamError(`upstream connection failed: ${(e as NodeJS.ErrnoException).code ?? e.message}`, e));
    const onClose = () => finish(upstreamError("upstream closed the connection during authentication"));
    const password = async (): Promise<string> => {
      if (!spec.password) throw new SluiceError("failed_precondition", "upstream asks for a password but the resource has no credential reference");
      return (opts.resolve ?? resolveSecret)(spec.password);
    };
    const handle = async (code: number, f: Buffer): Promise<void> => {
      switch (code) {
        case B.Authentication: {
          const { type, data } = decodeAuthentication(f);
          switch (type) {
            case AuthType.Ok:
              return;
            case AuthType.CleartextPassword:
              socket.write(passwordMessage(Buffer.from((await password()) + "\0", "utf8")));
              return;
            case AuthType.MD5Password:
              socket.write(passwordMessage(Buffer.from(md5Password(spec.user, await password(), data.subarray(0, 4)) + "\0", "utf8")));
              return;
            case AuthType.SASL: {
              const mechs = data.toString("utf8").split("\0").filter(Boolean);
              if (!mechs.includes("SCRAM-SHA-256")) throw upstreamError(`upstream offers no supported SASL mechanism (${mechs.join(", ")})`);
              scram = new ScramClient(await password());
              socket.write(saslInitialResponse("SCRAM-SHA-256", scram.clientFirst()));
              return;
            }
            case AuthType.SASLContinue:
              if (!scram) throw upstreamError("upstream sent SASLContinue without SASL");
              socket.write(passwordMessage(await scram.clientFinal(data)));
              return;
            case AuthType.SASLFinal:
              if (!scram) throw upstreamError("upstream sent SASLFinal without SASL");
              scram.verifyServerFinal(data);
              return;
            default:
              throw upstreamError(`upstream asks for an unsupported authentication method (${type})`);
          }
        }
        case B.ParameterStatus:
          parameterStatus.push(Buffer.from(f));
          return;
        case B.BackendKeyData:
          key = decodeBackendKeyData(f);
          return;
        case B.NoticeResponse:
          return;
        case B.ErrorResponse: {
          const e = decodeErrorFields(f);
          // Postgres' own message (e.g. password authentication failed for user "x") holds no secret
          throw new SluiceError("unavailable", `upstream refused the connection: ${e.C ?? ""} ${e.M ?? ""}`.trim(), { sqlstate: e.C });
        }
        default:
          throw upstreamError(`unexpected upstream message 0x${code.toString(16)} during authentication`);
      }
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let frames;
      try {
        ({ frames, rest: buf } = splitFrames(buf, MAX_SETUP_FRAME));
      } catch (e) {
        finish(e instanceof WireError ? upstreamError(`upstream protocol error: ${e.message}`) : e);
        return;
      }
      for (let k = 0; k < frames.length; k++) {
        const fr = frames[k]!;
        if (fr.code === B.ReadyForQuery) {
          const txStatus = decodeReadyForQuery(fr.raw);
          // anything after the first ReadyForQuery (an early NotificationResponse) belongs to the relay
          const rest = Buffer.concat([...frames.slice(k + 1).map((x) => x.raw), buf]);
          socket.removeListener("data", onData);
          busy = busy.then(() => finish(null, { socket, parameterStatus, key, txStatus, rest }));
          return;
        }
        busy = busy.then(() => (done ? undefined : handle(fr.code, fr.raw))).catch((e) => finish(e));
      }
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    const params: Record<string, string> = { ...(opts.startupParams ?? {}), user: spec.user, database: spec.database };
    socket.write(encodeStartupMessage(params));
  });
}

/** Sends a CancelRequest with the upstream's real key over a fresh connection (TLS as configured). */
export async function sendUpstreamCancel(spec: UpstreamSpec, key: { pid: number; secret: number }): Promise<void> {
  const s = await openUpstreamSocket(spec, 5_000);
  await new Promise<void>((resolve) => {
    s.on("error", () => resolve());
    s.on("close", () => resolve());
    s.end(encodeCancelRequest(key.pid, key.secret));
    setTimeout(() => {
      s.destroy();
      resolve();
    }, 5_000).unref();
  });
}
