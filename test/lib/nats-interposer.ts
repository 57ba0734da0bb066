/**
 * A TCP proxy between NATS clients and a nats-server that reads the server's side of the protocol
 * and can lose or hold back chosen messages (e.g. PubAcks), or cut every connection: the network
 * faults a JetStream publisher must survive, made on purpose against the real server. The client's
 * side passes through untouched.
 *
 * Server → client operations (NATS protocol): `MSG <subject> <sid> [reply] <bytes>\r\n<payload>\r\n`,
 * `HMSG <subject> <sid> [reply] <header bytes> <total bytes>\r\n<headers+payload>\r\n`, and one-line
 * ones (`INFO {…}`, `PING`, `PONG`, `+OK`, `-ERR …`).
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { freePort } from "./free-port.js";

export interface ServerMessage {
  op: "MSG" | "HMSG";
  subject: string;
  /** the payload (after the headers for HMSG) */
  payload: Buffer;
}

/** What to do with one message from the server: pass it, lose it, or deliver it after `ms`. */
export type Verdict = "pass" | "drop" | { delayMs: number };

export interface NatsInterposer {
  /** where clients connect instead of the server */
  url: string;
  port: number;
  /** decides about every MSG/HMSG the server sends (default: pass) */
  decide: (m: ServerMessage) => Verdict;
  /** messages lost and held back so far */
  readonly dropped: number;
  readonly delayed: number;
  /** cuts every open connection (the clients reconnect through the proxy) */
  cut(): void;
  close(): Promise<void>;
}

const CRLF = Buffer.from("\r\n");

/** Splits the server's byte stream into whole operations; returns them and the unconsumed rest. Pure. */
export function splitServerOps(buf: Buffer): { ops: Array<{ raw: Buffer; msg?: ServerMessage }>; rest: Buffer } {
  const ops: Array<{ raw: Buffer; msg?: ServerMessage }> = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf(CRLF, at);
    if (eol < 0) break;
    const line = buf.subarray(at, eol).toString("latin1");
    const head = line.slice(0, 4).toUpperCase();
    if (head === "MSG " || head === "HMSG") {
      const parts = line.split(" ").filter(Boolean);
      const isH = parts[0]!.toUpperCase() === "HMSG";
      const total = Number(parts[parts.length - 1]);
      const hdr = isH ? Number(parts[parts.length - 2]) : 0;
      const end = eol + 2 + total + 2;
      if (buf.length < end) break; // the payload is not all here yet
      const body = buf.subarray(eol + 2, eol + 2 + total);
      ops.push({ raw: buf.subarray(at, end), msg: { op: isH ? "HMSG" : "MSG", subject: parts[1]!, payload: body.subarray(hdr) } });
      at = end;
    } else {
      ops.push({ raw: buf.subarray(at, eol + 2) });
      at = eol + 2;
    }
  }
  return { ops, rest: buf.subarray(at) };
}

/** A JetStream PubAck (or its error answer): a plain MSG whose payload is `{"stream":…`, no headers. */
export function isPubAck(m: ServerMessage): boolean {
  return m.op === "MSG" && m.payload.subarray(0, 10).toString("latin1") === '{"stream":';
}

export async function startNatsInterposer(serverPort: number): Promise<NatsInterposer> {
  const port = await freePort();
  const pairs = new Set<{ client: Socket; server: Socket }>();
  let dropped = 0;
  let delayed = 0;
  const api: NatsInterposer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    decide: () => "pass",
    get dropped() { return dropped; },
    get delayed() { return delayed; },
    cut() {
      for (const p of pairs) {
        p.client.destroy();
        p.server.destroy();
      }
      pairs.clear();
    },
    async close() {
      api.cut();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
  const srv: Server = createServer((client) => {
    const server = connect(serverPort, "127.0.0.1");
    const pair = { client, server };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on("error", end).on("close", end);
    server.on("error", end).on("close", end);
    client.pipe(server);
    // the server's side, operation by operation, in order: a held-back message holds nothing else
    let rest: Buffer = Buffer.alloc(0);
    server.on("data", (chunk: Buffer) => {
      const { ops, rest: r } = splitServerOps(rest.length ? Buffer.concat([rest, chunk]) : chunk);
      rest = Buffer.from(r);
      for (const op of ops) {
        const v = op.msg ? api.decide(op.msg) : "pass";
        if (v === "pass") client.write(op.raw);
        else if (v === "drop") dropped++;
        else {
          delayed++;
          const copy = Buffer.from(op.raw);
          setTimeout(() => { if (!client.destroyed) client.write(copy); }, v.delayMs);
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve());
  });
  return api;
}
