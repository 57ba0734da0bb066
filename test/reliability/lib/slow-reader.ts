/**
 * A client that can stop reading: a raw protocol connection through the proxy (TLS, the token as
 * cleartext password) that sends one Query and then walks the answer frame by frame without
 * keeping it (a 1 GB result costs this process nothing), counting bytes and DataRows. `pause()`
 * stops reading the socket, as a client stuck on its own work does: the kernel buffers fill and
 * the proxy must hold the upstream back, not the result in its memory.
 */
import net from "node:net";
import tls from "node:tls";
import { frontend } from "../../lib/pg-frames.js";

export interface SlowReaderResult {
  bytes: number;
  rows: number;
  /** the CommandComplete tag, or the ErrorResponse's SQLSTATE and message */
  tag?: string;
  error?: string;
}

export interface SlowReader {
  /** bytes received so far */
  readonly bytes: number;
  readonly rows: number;
  pause(): void;
  resume(): void;
  /** settles at the ReadyForQuery after the Query (or when the connection ends) */
  readonly done: Promise<SlowReaderResult>;
  destroy(): void;
}

function cstrAt(b: Buffer, at: number): string {
  const end = b.indexOf(0, at);
  return b.subarray(at, end < 0 ? b.length : end).toString("utf8");
}

function errorText(body: Buffer): string {
  const f: Record<string, string> = {};
  for (let i = 0; i < body.length && body[i] !== 0; ) {
    const k = String.fromCharCode(body[i]!);
    const v = cstrAt(body, i + 1);
    f[k] = v;
    i += 2 + Buffer.byteLength(v);
  }
  return `${f.C}: ${f.M}`;
}

export async function startSlowReader(o: { port: number; ca: Buffer; database: string; user: string; password: string; sql: string }): Promise<SlowReader> {
  const plain = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: o.port });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  plain.write(frontend.sslRequest());
  const answer = await new Promise<number>((resolve, reject) => {
    plain.once("data", (d: Buffer) => resolve(d[0]!));
    plain.once("error", reject);
  });
  if (answer !== 0x53) throw new Error("the proxy refused TLS");
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ socket: plain, ca: o.ca, servername: "localhost" });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });

  let bytes = 0;
  let rows = 0;
  let tag: string | undefined;
  let error: string | undefined;
  let queried = false;
  // the frame walk: a header (5 bytes) is gathered, then its body is skipped, or kept when small
  // enough to matter (everything but DataRow)
  let head = Buffer.alloc(0);
  let code = "";
  let left = 0;
  let keep: Buffer[] | undefined;
  let settle!: (r: SlowReaderResult) => void;
  let started!: (e?: Error) => void;
  const done = new Promise<SlowReaderResult>((r) => (settle = r));
  const ready = new Promise<void>((res, rej) => (started = (e) => (e ? rej(e) : res())));

  const onFrame = (c: string, body: Buffer) => {
    if (c === "R" && body.readInt32BE(0) === 3) sock.write(frontend.password(o.password));
    else if (c === "E") {
      error = errorText(body);
      if (!queried) started(new Error(error));
    } else if (c === "C") tag = cstrAt(body, 0);
    else if (c === "Z") {
      if (!queried) {
        queried = true;
        started();
      } else settle({ bytes, rows, tag, error });
    }
  };
  sock.on("data", (d: Buffer) => {
    if (queried) bytes += d.length;
    let at = 0;
    while (at < d.length) {
      if (left === 0 && !keep) {
        const need = 5 - head.length;
        head = Buffer.concat([head, d.subarray(at, at + need)]);
        at += Math.min(need, d.length - at);
        if (head.length < 5) break;
        code = String.fromCharCode(head[0]!);
        left = head.readInt32BE(1) - 4;
        head = Buffer.alloc(0);
        if (code === "D") rows++;
        keep = code === "D" ? undefined : [];
        if (left === 0) {
          if (keep) onFrame(code, Buffer.alloc(0));
          keep = undefined;
        }
        continue;
      }
      const take = Math.min(left, d.length - at);
      if (keep) keep.push(d.subarray(at, at + take));
      left -= take;
      at += take;
      if (left === 0) {
        if (keep) onFrame(code, Buffer.concat(keep));
        keep = undefined;
      }
    }
  });
  const ended = () => {
    started(new Error("connection closed during startup"));
    settle({ bytes, rows, tag, error: error ?? "connection closed" });
  };
  sock.on("close", ended).on("error", ended);
  sock.write(frontend.startup({ user: o.user, database: o.database, application_name: "rel-slow-reader" }));
  await ready;
  sock.write(frontend.query(o.sql));
  return {
    get bytes() {
      return bytes;
    },
    get rows() {
      return rows;
    },
    pause: () => sock.pause(),
    resume: () => sock.resume(),
    done,
    destroy: () => sock.destroy(),
  };
}
