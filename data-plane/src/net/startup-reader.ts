/**
 * The start-up reader: buffers what a client sends before its session relays (startup packets, the
 * password message; few and small) and hands out whole messages. Frames only; what they mean is
 * the admission's business (admission.ts), the socket's the adapter's (client-connection.ts).
 */
import type net from "node:net";
import { splitFrames, WireError } from "../wire/frame-scanner.js";
import { readStartupPacket, type StartupPacket } from "../wire/startup.js";

const MAX_PASSWORD_FRAME = 64 * 1024;

/** A parser of the buffered bytes: a message and the rest, or null while incomplete. */
export type Parse<T> = (b: Buffer) => { value: T; rest: Buffer } | null;

export class StartupReader {
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

  async read<T>(parse: Parse<T>): Promise<T> {
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

export const startupPacket: Parse<StartupPacket> = (b) => {
  const r = readStartupPacket(b);
  return r ? { value: r.packet, rest: r.rest } : null;
};

/** A TLS ClientHello (record type 22) where a startup packet should be: direct TLS (libpq 17 sslnegotiation=direct). */
export const startupOrDirectTls: Parse<StartupPacket | "direct-tls"> = (b) => {
  if (b.length > 0 && b[0] === 0x16) return { value: "direct-tls", rest: b };
  return startupPacket(b);
};

/** the first typed message (the password message carrying the token) */
export const passwordFrame: Parse<Buffer> = (b) => {
  const { frames, rest } = splitFrames(b, MAX_PASSWORD_FRAME);
  if (frames.length === 0) return null;
  const f = frames[0]!;
  return { value: f.raw, rest: Buffer.concat([...frames.slice(1).map((x) => x.raw), rest]) };
};
