/**
 * A raw protocol-frame Postgres client for tests: it sends exactly the bytes it is given (no driver
 * reorders, names, syncs or retries anything) and keeps every byte and message it receives, so a
 * test can check the whole response stream, and search all of it, including error and notice
 * fields. Over TLS (SSLRequest first, as libpq does) with a cleartext password answered once, or in
 * plain text against a trust server.
 *
 *   const c = await PgWireClient.connect({ port, tls: { ca }, params: { user, database }, password });
 *   c.send(Buffer.concat([frontend.parse("", "SELECT 1"), frontend.sync()]));
 *   await c.waitFor(() => c.count("Z") >= 1, 5000);
 */
import net from "node:net";
import tls from "node:tls";
import { authCode, errorFields, frontend, splitBackend, type BackendMessage } from "./pg-frames.js";

export interface PgWireConnectOptions {
  host?: string;
  port: number;
  /** TLS after an SSLRequest (verified against `ca` when given); absent = plain text */
  tls?: { ca?: string | Buffer; servername?: string; rejectUnauthorized?: boolean };
  /** StartupMessage parameters (user, database, application_name, …) */
  params: Record<string, string>;
  /** answers a cleartext password request */
  password?: string;
  timeoutMs?: number;
}

export class PgWireClient {
  /** backend messages after the first ReadyForQuery, in order */
  readonly messages: BackendMessage[] = [];
  /** what the server sent up to and including the first ReadyForQuery */
  readonly startup: BackendMessage[] = [];
  /** set once the socket closed (or failed) */
  closed: string | undefined;
  /** called for every message after startup, in order (e.g. to answer approval notices) */
  onMessage: ((m: BackendMessage) => void) | undefined;

  private readonly chunks: Buffer[] = [];
  private rest: Buffer = Buffer.alloc(0);
  private ready = false;
  private waiters: Array<() => void> = [];
  /** answers the server's cleartext password request */
  private pendingPassword: string | undefined;

  private constructor(private readonly socket: net.Socket) {}

  static async connect(o: PgWireConnectOptions): Promise<PgWireClient> {
    const host = o.host ?? "127.0.0.1";
    const timeoutMs = o.timeoutMs ?? 10_000;
    let sock: net.Socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host, port: o.port });
      s.once("connect", () => resolve(s));
      s.once("error", reject);
    });
    if (o.tls) {
      sock.write(frontend.sslRequest());
      const answer = await new Promise<string>((resolve, reject) => {
        sock.once("data", (d: Buffer) => resolve(String.fromCharCode(d[0]!)));
        sock.once("error", reject);
      });
      if (answer !== "S") throw new Error(`server refused TLS (answered ${JSON.stringify(answer)})`);
      const t = o.tls;
      sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = tls.connect({ socket: sock, ca: t.ca, servername: t.servername ?? "localhost", rejectUnauthorized: t.rejectUnauthorized ?? t.ca !== undefined });
        s.once("secureConnect", () => resolve(s));
        s.once("error", reject);
      });
    }
    const c = new PgWireClient(sock);
    c.pendingPassword = o.password;
    sock.on("data", (d: Buffer) => c.onData(d));
    sock.on("close", () => c.markClosed("closed"));
    sock.on("error", (e) => c.markClosed(`error: ${e.message}`));
    sock.write(frontend.startup(o.params));
    const ok = await c.waitFor(() => c.ready || c.startup.some((m) => m.code === "E"), timeoutMs);
    const err = c.startup.find((m) => m.code === "E");
    if (err) {
      c.destroy();
      const f = errorFields(err);
      throw Object.assign(new Error(f.M ?? "startup failed"), { code: f.C });
    }
    if (!ok) {
      c.destroy();
      throw new Error(`no ReadyForQuery within ${timeoutMs} ms (${c.closed ?? "open"})`);
    }
    return c;
  }

  private onData(d: Buffer): void {
    this.chunks.push(d);
    const { messages, rest } = splitBackend(this.rest.length ? Buffer.concat([this.rest, d]) : d);
    this.rest = Buffer.from(rest);
    for (const m of messages) {
      if (!this.ready) {
        this.startup.push(m);
        if (m.code === "R" && authCode(m) === 3) this.socket.write(frontend.password(this.pendingPassword ?? ""));
        if (m.code === "Z") this.ready = true;
        continue;
      }
      this.messages.push(m);
      this.onMessage?.(m);
    }
    this.wake();
  }

  private markClosed(why: string): void {
    this.closed ??= why;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** writes raw bytes as they are */
  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** every byte received so far (startup included), as one buffer */
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** how many messages of this type arrived after startup */
  count(code: string): number {
    let n = 0;
    for (const m of this.messages) if (m.code === code) n++;
    return n;
  }

  /**
   * Resolves true once `pred()` holds (checked after every arrival), false when the connection
   * closes first or no byte arrives for `idleMs` (a stalled stream, not a slow one: the clock
   * restarts at each arrival).
   */
  waitFor(pred: () => boolean, idleMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout;
      const check = () => {
        if (pred()) return done(true);
        if (this.closed) return done(false);
        clearTimeout(timer);
        timer = setTimeout(() => done(false), idleMs);
        this.waiters.push(check);
      };
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(v);
      };
      check();
    });
  }

  /** sends Terminate and closes */
  async end(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.once("close", () => resolve());
      this.socket.end(frontend.terminate());
      setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 2000).unref();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
