/** The untyped startup packets (int32 length, int32 code, body). Pure. */
import { StartupCode } from "./codes.js";
import { WireError } from "./frame-scanner.js";

/** Postgres refuses startup packets above this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10_000;

export type StartupPacket =
  | { kind: "ssl" }
  | { kind: "gssenc" }
  | { kind: "cancel"; pid: number; secret: number }
  | { kind: "startup"; params: Record<string, string> };

/**
 * Reads one startup packet from the front of `buf`. Returns null when more bytes are needed.
 * Throws WireError for anything that is not a well-formed startup packet (garbage, bad length,
 * unsupported protocol version).
 */
export function readStartupPacket(buf: Buffer): { packet: StartupPacket; rest: Buffer } | null {
  if (buf.length < 4) return null;
  const len = buf.readInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_PACKET) throw new WireError(`invalid startup packet length ${len}`);
  if (buf.length < 8) return null;
  const code = buf.readInt32BE(4);
  if (buf.length < len) {
    // known fixed-size packets can be refused early; others wait for the rest
    if (code !== StartupCode.Protocol3 && code !== StartupCode.CancelRequest) throw new WireError("invalid startup packet");
    return null;
  }
  const rest = buf.subarray(len);
  switch (code) {
    case StartupCode.SSLRequest:
      if (len !== 8) throw new WireError("invalid SSLRequest length");
      return { packet: { kind: "ssl" }, rest };
    case StartupCode.GSSENCRequest:
      if (len !== 8) throw new WireError("invalid GSSENCRequest length");
      return { packet: { kind: "gssenc" }, rest };
    case StartupCode.CancelRequest:
      if (len !== 16) throw new WireError("invalid CancelRequest length");
      return { packet: { kind: "cancel", pid: buf.readInt32BE(8), secret: buf.readInt32BE(12) }, rest };
    case StartupCode.Protocol3:
      return { packet: { kind: "startup", params: parseStartupParams(buf.subarray(8, len)) }, rest };
    default:
      if (code >>> 16 === 3) throw new WireError(`unsupported frontend protocol 3.${code & 0xffff}`, "0A000");
      throw new WireError("invalid startup packet");
  }
}

function parseStartupParams(body: Buffer): Record<string, string> {
  const params: Record<string, string> = Object.create(null);
  let i = 0;
  for (;;) {
    if (i >= body.length) throw new WireError("startup packet is not terminated");
    if (body[i] === 0) {
      if (i !== body.length - 1) throw new WireError("invalid startup packet layout");
      return params;
    }
    const k = body.indexOf(0, i);
    if (k < 0) throw new WireError("invalid startup packet layout");
    const v = body.indexOf(0, k + 1);
    if (v < 0) throw new WireError("invalid startup packet layout");
    params[body.toString("utf8", i, k)] = body.toString("utf8", k + 1, v);
    i = v + 1;
  }
}

/** Encodes a StartupMessage (used towards the upstream). */
export function encodeStartupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`, "utf8"));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(StartupCode.Protocol3, 4);
  body.copy(out, 8);
  return out;
}

export function encodeCancelRequest(pid: number, secret: number): Buffer {
  const out = Buffer.alloc(16);
  out.writeInt32BE(16, 0);
  out.writeInt32BE(StartupCode.CancelRequest, 4);
  out.writeInt32BE(pid, 8);
  out.writeInt32BE(secret, 12);
  return out;
}

export function encodeSslRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(StartupCode.SSLRequest, 4);
  return out;
}
