/**
 * One unary gRPC call over node:http2 (gRPC over HTTP/2, plaintext as grpc-client.ts dials), for a
 * read-only command that would otherwise load @grpc/grpc-js and every generated service only to
 * send one message (issue 15: `sluice sessions list` in ≤ 300 ms). The same wire protocol, the same
 * bearer token, the same one-line errors (fromServiceError's wording); no retries, no compression,
 * no streaming: anything else goes through grpc-client.ts.
 */
import http2 from "node:http2";
import { SluiceError, fromGrpcStatus } from "@sluice/shared/errors";

/** `host:port`, `[v6]:port` or `dns:` + either, as the control-plane address is written; null for any other form */
export function http2Authority(server: string): string | null {
  const s = server.replace(/^dns:(\/\/\/)?/, "");
  return /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s) ? s : null;
}

/** a gRPC status (its numeric code and message) as the CLI's error */
function statusError(code: number, message: string, server: string): SluiceError {
  if (code === 14 && /ECONNREFUSED|connect/i.test(message)) return new SluiceError("unavailable", `cannot reach the control plane at ${server}`);
  return new SluiceError(fromGrpcStatus(code), message || `gRPC status ${code}`);
}

/**
 * Sends `request` (an encoded message) to `path` (`/package.Service/Method`) and resolves with the
 * encoded answer. Rejects with a SluiceError: the call's status, or unavailable when the server
 * cannot be reached.
 */
export function grpcUnary(target: { server: string; token: string }, path: string, request: Buffer, timeoutMs = 30_000): Promise<Buffer> {
  const authority = http2Authority(target.server);
  if (!authority) return Promise.reject(new SluiceError("invalid_argument", `cannot dial the control plane at ${target.server}`));
  return new Promise<Buffer>((resolve, reject) => {
    const session = http2.connect(`http://${authority}`);
    let settled = false;
    const done = (e: SluiceError | null, v?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.close();
      session.destroy();
      if (e) reject(e);
      else resolve(v!);
    };
    const timer = setTimeout(() => done(statusError(4, "Deadline exceeded", target.server)), timeoutMs);
    session.on("error", (e: NodeJS.ErrnoException) =>
      done(e.code === "ECONNREFUSED" || e.code === "ENOTFOUND" || e.code === "EHOSTUNREACH" ? new SluiceError("unavailable", `cannot reach the control plane at ${target.server}`) : statusError(14, e.message, target.server)),
    );
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
      authorization: `Bearer ${target.token}`,
    });
    const chunks: Buffer[] = [];
    let status: number | undefined;
    let message = "";
    const readStatus = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      status = Number(h["grpc-status"]);
      const m = h["grpc-message"];
      message = typeof m === "string" ? decodeURIComponent(m) : "";
    };
    req.on("response", (h) => {
      const httpStatus = Number(h[":status"]);
      if (httpStatus !== 200) return done(statusError(httpStatus === 401 ? 16 : httpStatus === 403 ? 7 : 14, `the control plane answered HTTP ${httpStatus}`, target.server));
      readStatus(h); // a trailers-only answer carries its status in the headers
    });
    req.on("trailers", readStatus);
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("error", (e: Error) => done(statusError(14, e.message, target.server)));
    req.on("end", () => {
      if (status === undefined) return done(statusError(13, "the control plane's answer had no gRPC status", target.server));
      if (status !== 0) return done(statusError(status, message, target.server));
      const body = Buffer.concat(chunks);
      // one length-prefixed message: flag (0: not compressed; none was offered), 4-byte length
      if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return done(statusError(13, "the control plane's answer is not one uncompressed message", target.server));
      done(null, body.subarray(5));
    });
    const head = Buffer.alloc(5);
    head.writeUInt32BE(request.length, 1);
    req.end(Buffer.concat([head, request]));
  });
}
