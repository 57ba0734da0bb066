/**
 * A Postgres client that speaks raw protocol frames, for tests that need orderings no driver
 * produces: pipelines without Sync, a Query inside an extended pipeline, re-Parse of a name,
 * portal suspension, COPY in a pipeline. It connects (optionally through TLS), authenticates with a
 * cleartext password or trust, and then sends exactly the frames it is given; what comes back is
 * read as whole messages and shown in a compact form (`show`) that tests compare with.
 *
 *   const c = await rawConnect({ port, database, user, password: token, tls: true });
 *   c.send(parse("s", "SELECT 1"), bind("", "s"), execute(""), sync());
 *   assert.deepEqual(shown(await c.untilReady()), ["1", "2", "D:1", "C:SELECT 1", "Z:I"]);
 */
import net from "node:net";
import tls from "node:tls";
import { splitFrames } from "../../data-plane/src/wire/frame-scanner.js";
import { decodeDataRow, decodeErrorFields, decodeRowDescription } from "../../data-plane/src/wire/decode.js";
import { passwordMessage } from "../../data-plane/src/wire/encode.js";

export interface RawMessage {
  /** the message code as a character ('1', 'E', 'Z', ...) */
  readonly type: string;
  /** the whole frame */
  readonly raw: Buffer;
}

export interface RawConnectOptions {
  host?: string;
  port: number;
  database: string;
  user: string;
  /** sent when the server asks for a cleartext password (the proxy's JWT) */
  password?: string;
  /** SSLRequest first and TLS (certificate not verified: tests use self-signed ones) */
  tls?: boolean;
  /** more StartupMessage parameters */
  params?: Record<string, string>;
  timeoutMs?: number;
}

export interface RawClient {
  /** the ParameterStatus values the server reported at startup */
  readonly parameters: Readonly<Record<string, string>>;
  send(...frames: Buffer[]): void;
  /** every message up to and including the `n`-th ReadyForQuery from now (default 1) */
  untilReady(n?: number, timeoutMs?: number): Promise<RawMessage[]>;
  /** every message until `pred` matches one (included) */
  until(pred: (m: RawMessage) => boolean, timeoutMs?: number): Promise<RawMessage[]>;
  /** what arrives within `ms` (to show that nothing more comes) */
  readFor(ms: number): Promise<RawMessage[]>;
  /** resolves when the connection is closed by the other side */
  readonly closed: Promise<void>;
  end(): void;
}

function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 3, 0, 0]),
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(k + "\0"), Buffer.from(v + "\0")]),
    Buffer.from([0]),
  ]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4, 0);
  return Buffer.concat([len, body]);
}

export async function rawConnect(o: RawConnectOptions): Promise<RawClient> {
  const host = o.host ?? "127.0.0.1";
  const timeoutMs = o.timeoutMs ?? 10_000;
  let sock: net.Socket = net.connect(o.port, host);
  await new Promise<void>((res, rej) => {
    sock.once("connect", res);
    sock.once("error", rej);
  });
  if (o.tls) {
    sock.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    const answer = await new Promise<Buffer>((res) => sock.once("data", res));
    if (answer[0] !== 0x53) throw new Error("the server refused TLS");
    const t = tls.connect({ socket: sock, rejectUnauthorized: false, servername: "localhost" });
    await new Promise<void>((res, rej) => {
      t.once("secureConnect", res);
      t.once("error", rej);
    });
    sock = t;
  }
  let buf: Buffer = Buffer.alloc(0);
  const inbox: RawMessage[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  sock.on("data", (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    const { frames, rest } = splitFrames(buf, 0x7fffffff);
    buf = Buffer.from(rest);
    for (const f of frames) inbox.push({ type: String.fromCharCode(f.code), raw: Buffer.from(f.raw) });
    wake?.();
  });
  const onEnd = () => {
    ended = true;
    resolveClosed();
    wake?.();
  };
  sock.on("end", onEnd);
  sock.on("close", onEnd);
  sock.on("error", () => undefined);

  const until = async (pred: (m: RawMessage) => boolean, ms = timeoutMs): Promise<RawMessage[]> => {
    const deadline = Date.now() + ms;
    const out: RawMessage[] = [];
    for (;;) {
      while (inbox.length) {
        const m = inbox.shift()!;
        out.push(m);
        if (pred(m)) return out;
      }
      if (ended) throw Object.assign(new Error(`connection closed; got ${shown(out).join(" ")}`), { messages: out });
      const left = deadline - Date.now();
      if (left <= 0) throw Object.assign(new Error(`timed out; got ${shown(out).join(" ")}`), { messages: out });
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left);
        wake = () => {
          clearTimeout(timer);
          res();
        };
      });
      wake = null;
    }
  };

  sock.write(startupMessage({ user: o.user, database: o.database, ...o.params }));
  const parameters: Record<string, string> = {};
  const startup = await until((m) => m.type === "Z" || m.type === "E" || (m.type === "R" && m.raw.readInt32BE(5) === 3));
  let last = startup[startup.length - 1]!;
  if (last.type === "R") {
    sock.write(passwordMessage(Buffer.from((o.password ?? "") + "\0")));
    startup.push(...(await until((m) => m.type === "Z" || m.type === "E")));
    last = startup[startup.length - 1]!;
  }
  if (last.type === "E") throw new Error(`connection refused: ${show(last)} ${decodeErrorFields(last.raw).M}`);
  for (const m of startup) {
    if (m.type !== "S") continue;
    const [k, v] = m.raw.toString("utf8", 5, m.raw.length - 1).split("\0");
    parameters[k!] = v!;
  }

  return {
    parameters,
    send: (...frames) => void sock.write(Buffer.concat(frames)),
    untilReady: async (n = 1, ms = timeoutMs) => {
      const out: RawMessage[] = [];
      for (let i = 0; i < n; i++) out.push(...(await until((m) => m.type === "Z", ms)));
      return out;
    },
    until,
    readFor: async (ms) => {
      await new Promise((r) => setTimeout(r, ms));
      return inbox.splice(0);
    },
    closed,
    end: () => sock.end(),
  };
}

/**
 * A message in a compact form: `1` ParseComplete, `2` BindComplete, `3` CloseComplete, `n` NoData,
 * `s` PortalSuspended, `I` EmptyQueryResponse, `t` ParameterDescription, `T:a,b` RowDescription,
 * `D:v1|v2` DataRow (NULL as `NULL`), `C:tag` CommandComplete, `E:sqlstate` / `N:sqlstate`,
 * `Z:status`, `G` / `H` CopyIn / CopyOut, `d:text` CopyData, `c` CopyDone, `S:name=value`.
 */
export function show(m: RawMessage): string {
  switch (m.type) {
    case "T":
      return `T:${decodeRowDescription(m.raw).map((f) => f.name).join(",")}`;
    case "D":
      return `D:${decodeDataRow(m.raw).map((v) => (v === null ? "NULL" : v.toString("utf8"))).join("|")}`;
    case "C":
      return `C:${m.raw.toString("utf8", 5, m.raw.length - 1)}`;
    case "E":
    case "N":
      return `${m.type}:${decodeErrorFields(m.raw).C}`;
    case "Z":
      return `Z:${String.fromCharCode(m.raw[5]!)}`;
    case "d":
      return `d:${m.raw.toString("utf8", 5).replace(/\n$/, "")}`;
    case "S":
      return `S:${m.raw.toString("utf8", 5, m.raw.length - 1).replace("\0", "=")}`;
    default:
      return m.type;
  }
}

/** `show` of every message, NoticeResponse and ParameterStatus left out (they come at any time) */
export function shown(ms: readonly RawMessage[]): string[] {
  return ms.filter((m) => m.type !== "N" && m.type !== "S").map(show);
}

/** The fields of the first ErrorResponse among `ms` (C, M, D, ...), or undefined */
export function firstError(ms: readonly RawMessage[]): Record<string, string> | undefined {
  const e = ms.find((m) => m.type === "E");
  return e ? decodeErrorFields(e.raw) : undefined;
}
