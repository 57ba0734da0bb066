/**
 * The node's upstream connections. Opening one (TCP, backend start, authentication) is most of a
 * client's connect time, and nothing about it depends on the client: the proxy connects with the
 * resource's own credential. So a connection whose session ended cleanly is reset and handed to the
 * next session of the same key (resource, upstream definition, startup settings) instead of closed:
 * session pooling, as pgbouncer's `pool_mode = session` with `server_reset_query = DISCARD ALL`.
 * And after a session takes a connection, the next one for its key is opened in the background
 * (a warm spare) when none is idle, so a burst of new clients does not wait for backend starts.
 *
 * What keeps reuse as safe as connecting per client:
 * - only a session the relay proved clean comes back (RelaySession: Terminate with nothing pending,
 *   no transaction, no COPY, no server error; and no cancel was asked for it, which could still
 *   reach the backend during the next session). Anything else (a client that vanished, a FATAL,
 *   an error, a stop) closes the connection;
 * - the reset runs before the connection is parked: `DISCARD ALL` (temp tables, prepared
 *   statements — the proxy's renamed ones too —, advisory locks, LISTEN, settings, cursors WITH
 *   HOLD, plans, sequences, SET ROLE/SESSION AUTHORIZATION), or the resource's `resetQuery`
 *   followed by `DEALLOCATE ALL` (the statements the proxy itself named). Its answer must be
 *   exactly a finished statement and ReadyForQuery 'I' (ServerAnswer), within `resetTimeoutMs`;
 * - the settings the reset reports (RESET ALL returns those a session changed) replace what the
 *   next session is told in its ParameterStatus, and are checked against the pinned settings;
 * - a connection idle longer than `healthCheckAfterMs` answers an empty query before it is handed
 *   out; one that says anything while idle, or loses its socket, is dropped at once; one idle
 *   `idleMs` is closed, one older than `maxLifetimeMs` is never handed out again (which also
 *   bounds how long a rotated upstream password keeps serving);
 * - the key holds the whole upstream definition, so a changed resource never gets an old connection;
 * - spares are opened only after an authenticated session, so an unauthenticated client can never
 *   make the node open upstream connections; idle connections (spares included) are at most
 *   `maxIdlePerResource` per resource and `maxIdle` per node.
 */
import type net from "node:net";
import type { UpstreamSpec } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { splitFrames, WireError } from "../wire/frame-scanner.js";
import { query as queryMessage, terminate as terminateMessage } from "../wire/encode.js";
import type { UpstreamConnection } from "./connect-upstream.js";
import { ServerAnswer } from "./server-answer.js";
import { CLOSE_REASONS, type CloseReason, type UpstreamPoolStats } from "./pool-stats.js";

export interface UpstreamPoolOptions {
  /** opens one upstream connection (connectUpstream with the node's secret resolver) */
  connect(spec: UpstreamSpec, startupParams: Record<string, string>): Promise<UpstreamConnection>;
  /** hand a cleanly ended session's connection, reset, to the next session (default true) */
  reuse?: boolean;
  /** most warm spares kept per key: a key starts with 1 and grows while sessions find none (default 4; 0: none) */
  spares?: number;
  /** idle connections (spares included) kept per resource (default 20) */
  maxIdlePerResource?: number;
  /** idle connections kept per node (default 100) */
  maxIdle?: number;
  /** an idle connection unused this long is closed (default 30 s) */
  idleMs?: number;
  /** a connection this old is not handed out again (default 1 h) */
  maxLifetimeMs?: number;
  /**
   * a connection idle at least this long answers an empty query before it is handed out (default
   * 5 s; 0: always). One idle less long was proven by its reset that recently, and one that hung up
   * or spoke meanwhile was dropped when it did: the check costs the next client an upstream round
   * trip (3 ms of 17 at load 15 in the bench) for what only a silent network failure would show.
   */
  healthCheckAfterMs?: number;
  /** the reset and the health check must be answered within this (default 5 s) */
  resetTimeoutMs?: number;
  /** monotonic milliseconds (default performance.now) */
  now?: () => number;
  logger?: Logger;
}

/** What a session holds: its connection, and how to give it back. */
export interface UpstreamLease {
  readonly up: UpstreamConnection;
  /** the connection served another session before this one */
  readonly reused: boolean;
  /** the pool would take the connection back for another session now (reuse on, not closed, not too old) */
  reusable(): boolean;
  /**
   * The session is over. `clean`: the relay proved nothing is pending and kept the server from
   * ending (no Terminate sent); the pool resets and parks the connection, or closes it. Otherwise
   * the connection is closed as it is. Idempotent.
   */
  release(clean: boolean): void;
}

interface Conn {
  up: UpstreamConnection;
  spec: UpstreamSpec;
  key: string;
  resource: string;
  bornAt: number;
  idleSince: number;
  /** sessions it has served */
  served: number;
}

interface Idle {
  conn: Conn;
  timer: NodeJS.Timeout;
  drop(): void;
}

/** a spare still connecting; a session that finds no idle connection claims it rather than start from zero */
interface Opening {
  result: Promise<UpstreamConnection>;
  claimed: boolean;
}

interface KeyPool {
  resource: string;
  idle: Idle[];
  opening: Opening[];
  /** spares this key keeps ready or opening (1..spares) */
  want: number;
}

/** Same resource, same upstream and same startup settings, whatever the order of their keys. */
export function poolKey(resource: string, spec: UpstreamSpec, startupParams: Record<string, string>): string {
  const sorted = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([resource, sorted(spec), sorted(startupParams)]);
}

/** The reset of a resource: DISCARD ALL, or its own query and then the proxy's own statement names. */
export function resetSql(spec: UpstreamSpec): string {
  const own = spec.resetQuery?.trim().replace(/;+\s*$/, "");
  return own ? `${own}; DEALLOCATE ALL` : "DISCARD ALL";
}

const MAX_ANSWER_FRAME = 1 << 20;
const IDLE = Symbol("idle");

export class UpstreamPool {
  private readonly keys = new Map<string, KeyPool>();
  /** idle + resetting + spares opening, per resource and in all */
  private readonly heldPerResource = new Map<string, number>();
  private held = 0;
  private inUse = 0;
  private resetting = 0;
  private closed = false;
  private readonly counts = { opened: 0, reused: 0, resets: 0, healthChecks: 0 };
  private readonly closes: Record<CloseReason, number> = Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>;
  private readonly reuse: boolean;
  private readonly spares: number;
  private readonly maxIdlePerResource: number;
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private readonly maxLifetimeMs: number;
  private readonly healthCheckAfterMs: number;
  private readonly resetTimeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly o: UpstreamPoolOptions) {
    this.reuse = o.reuse ?? true;
    this.spares = Math.max(0, o.spares ?? 4);
    this.maxIdlePerResource = Math.max(0, o.maxIdlePerResource ?? 20);
    this.maxIdle = Math.max(0, o.maxIdle ?? 100);
    this.idleMs = o.idleMs ?? 30_000;
    this.maxLifetimeMs = o.maxLifetimeMs ?? 3_600_000;
    this.healthCheckAfterMs = o.healthCheckAfterMs ?? 5000;
    this.resetTimeoutMs = o.resetTimeoutMs ?? 5000;
    this.now = o.now ?? (() => performance.now());
  }

  /** the figures /metrics shows */
  stats(): UpstreamPoolStats {
    let idle = 0;
    let opening = 0;
    for (const p of this.keys.values()) {
      idle += p.idle.length;
      opening += p.opening.length;
    }
    return { inUse: this.inUse, idle, opening, resetting: this.resetting, ...this.counts, closed: { ...this.closes } };
  }

  /**
   * A connection for an authenticated session: the most recently parked idle one (health-checked
   * when it has waited long), else the spare being opened, else a new one. Then the next spare for
   * its key is opened when none is idle.
   */
  async checkout(resource: string, spec: UpstreamSpec, startupParams: Record<string, string>): Promise<UpstreamLease> {
    const key = poolKey(resource, spec, startupParams);
    let conn: Conn | null = null;
    for (let c = this.takeIdle(key); c; c = this.takeIdle(key)) {
      if (await this.usable(c)) {
        conn = c;
        break;
      }
    }
    if (!conn) {
      // this session waits for a backend start: keep one more spare for the sessions to come
      const pool = this.keys.get(key);
      if (pool) pool.want = Math.min(pool.want + 1, Math.max(1, this.spares));
      const opening = this.claim(key, resource);
      // a spare that fails to open is no reason to fail the session: it connects itself
      const up = (opening && (await opening.catch(() => null))) || (await this.openOne(spec, startupParams));
      const t = this.now();
      conn = { up, spec, key, resource, bornAt: t, idleSince: t, served: 0 };
    }
    this.replenish(key, resource, spec, startupParams);
    return this.lease(conn);
  }

  private lease(conn: Conn): UpstreamLease {
    const reused = conn.served > 0;
    if (reused) this.counts.reused++;
    conn.served++;
    this.inUse++;
    let released = false;
    /** why the pool declined a clean session's connection (the server was then told to end) */
    let declined: CloseReason | null = null;
    return {
      up: conn.up,
      reused,
      reusable: () => {
        declined = this.declines(conn);
        return declined === null;
      },
      release: (clean) => {
        if (released) return;
        released = true;
        this.inUse--;
        this.giveBack(conn, clean, declined);
      },
    };
  }

  /** why a clean session's connection would not be kept, or null */
  private declines(conn: Conn): CloseReason | null {
    if (!this.reuse) return "reuse_off";
    if (this.closed) return "stopped";
    if (this.now() - conn.bornAt >= this.maxLifetimeMs) return "lifetime";
    return null;
  }

  private async openOne(spec: UpstreamSpec, startupParams: Record<string, string>): Promise<UpstreamConnection> {
    const up = await this.o.connect(spec, startupParams);
    this.counts.opened++;
    return up;
  }

  private giveBack(conn: Conn, clean: boolean, declined: CloseReason | null): void {
    const sock = conn.up.socket;
    if (!clean) {
      // the server may be mid-statement or mid-COPY: no Terminate (it could land inside a message), just the socket
      this.closes[declined ?? "not_clean"]++;
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref();
      return;
    }
    const why = this.declines(conn) ?? (this.room(conn.resource) ? null : "limit");
    if (why) return this.retire(conn, why);
    // counted as held while it resets, so the limits hold while resets are in flight
    this.hold(conn.resource, 1);
    this.resetting++;
    this.counts.resets++;
    void this.exchange(conn, resetSql(conn.spec)).then((dirty) => {
      this.resetting--;
      this.hold(conn.resource, -1);
      if (dirty !== null) {
        this.o.logger?.debug({ why: dirty }, "upstream connection not reused: its reset failed");
        return this.retire(conn, "reset_failed");
      }
      if (this.closed) return this.retire(conn, "stopped");
      this.park(conn);
    });
  }

  /** another connection may be held idle for `resource` */
  private room(resource: string): boolean {
    return this.held < this.maxIdle && (this.heldPerResource.get(resource) ?? 0) < this.maxIdlePerResource;
  }

  private hold(resource: string, delta: number): void {
    this.held += delta;
    const n = (this.heldPerResource.get(resource) ?? 0) + delta;
    if (n > 0) this.heldPerResource.set(resource, n);
    else this.heldPerResource.delete(resource);
  }

  /** still young enough, and answers a health check if it has waited long */
  private async usable(c: Conn): Promise<boolean> {
    const t = this.now();
    if (t - c.bornAt >= this.maxLifetimeMs) {
      this.retire(c, "lifetime");
      return false;
    }
    if (t - c.idleSince < this.healthCheckAfterMs) return true;
    this.counts.healthChecks++;
    const dirty = await this.exchange(c, "");
    if (dirty === null) return true;
    this.o.logger?.debug({ why: dirty }, "idle upstream connection failed its health check");
    this.retire(c, "health_check_failed");
    return false;
  }

  /**
   * Sends `sql` as a simple Query on a connection nobody else reads and waits for the answer.
   * Resolves null when it came out clean (ServerAnswer), else why not. Never rejects.
   */
  private exchange(c: Conn, sql: string): Promise<string | null> {
    const sock = c.up.socket;
    const answer = new ServerAnswer(c.up.parameterStatus);
    return new Promise<string | null>((resolve) => {
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (why: string | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.removeListener("data", onData);
        sock.removeListener("close", onClose);
        sock.removeListener("end", onClose);
        sock.removeListener("error", onClose);
        sock.pause();
        if (why === null) c.up.parameterStatus = answer.parameterStatus;
        resolve(why);
      };
      const timer = setTimeout(() => finish(`no answer within ${this.resetTimeoutMs} ms`), this.resetTimeoutMs);
      const onClose = () => finish("the connection closed");
      const onData = (d: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        let frames;
        try {
          ({ frames, rest: buf } = splitFrames(buf, MAX_ANSWER_FRAME));
        } catch (e) {
          return finish(e instanceof WireError ? e.message : String(e));
        }
        for (const f of frames) {
          const v = answer.frame(f.code, f.raw);
          if (v.state === "dirty") return finish(v.why);
          if (v.state === "clean") return finish(buf.length || f !== frames[frames.length - 1] ? "the server sent more after ReadyForQuery" : null);
        }
      };
      if (sock.destroyed || !sock.writable) return finish("the connection is closed");
      sock.on("data", onData);
      sock.on("close", onClose);
      sock.on("end", onClose);
      sock.on("error", onClose);
      sock.write(queryMessage(sql));
      sock.resume();
    });
  }

  private takeIdle(key: string): Conn | null {
    const pool = this.keys.get(key);
    while (pool?.idle.length) {
      // the most recently parked: the others age out under the idle time-out
      const s = pool.idle.pop()!;
      this.hold(pool.resource, -1);
      s.drop();
      this.forget(key, pool);
      const sock = s.conn.up.socket;
      if (!sock.destroyed && sock.readable && sock.writable) {
        // the relay resumes it once its own listeners are attached: nothing is read in between
        sock.pause();
        sock.ref();
        return s.conn;
      }
      this.retire(s.conn, "backend_closed");
    }
    return null;
  }

  private claim(key: string, resource: string): Promise<UpstreamConnection> | null {
    const pool = this.keys.get(key);
    const op = pool?.opening.shift();
    if (!op) return null;
    op.claimed = true;
    this.hold(resource, -1);
    // the key stays: replenish opens its next spare with the `want` this miss raised
    return op.result;
  }

  private replenish(key: string, resource: string, spec: UpstreamSpec, startupParams: Record<string, string>): void {
    if (this.closed || this.spares === 0) return;
    let pool = this.keys.get(key);
    if (!pool) {
      pool = { resource, idle: [], opening: [], want: 1 };
      this.keys.set(key, pool);
    }
    while (pool.idle.length + pool.opening.length < pool.want && this.room(resource)) this.open(key, pool, spec, startupParams);
    this.forget(key, pool);
  }

  private open(key: string, p: KeyPool, spec: UpstreamSpec, startupParams: Record<string, string>): void {
    const op: Opening = { result: this.openOne(spec, startupParams), claimed: false };
    p.opening.push(op);
    this.hold(p.resource, 1);
    // a claimed spare belongs to its session from then on; only unclaimed ones are parked here
    op.result.then(
      (up) => {
        if (op.claimed) return;
        p.opening.splice(p.opening.indexOf(op), 1);
        this.hold(p.resource, -1);
        const t = this.now();
        const conn: Conn = { up, spec, key, resource: p.resource, bornAt: t, idleSince: t, served: 0 };
        if (this.closed) return this.retire(conn, "stopped");
        // the backend already said something after ReadyForQuery: not a clean spare
        if (up.rest.length > 0) return this.retire(conn, "reset_failed");
        this.park(conn);
      },
      (e: Error) => {
        if (op.claimed) return;
        p.opening.splice(p.opening.indexOf(op), 1);
        this.hold(p.resource, -1);
        this.forget(key, p);
        // the next session tries again; a failure here only means that session connects itself
        this.o.logger?.debug({ err: e.message }, "warm upstream spare not opened");
      },
    );
  }

  private park(conn: Conn): void {
    let pool = this.keys.get(conn.key);
    if (!pool) {
      pool = { resource: conn.resource, idle: [], opening: [], want: 1 };
      this.keys.set(conn.key, pool);
    }
    const sock: net.Socket = conn.up.socket;
    conn.idleSince = this.now();
    const p = pool;
    const discard = (why?: unknown) => {
      const i = p.idle.indexOf(entry);
      if (i < 0) return;
      // unused for idleMs: this key needs fewer spares
      if (why === IDLE) p.want = Math.max(1, p.want - 1);
      p.idle.splice(i, 1);
      this.hold(p.resource, -1);
      entry.drop();
      this.forget(conn.key, p);
      this.retire(conn, why === IDLE ? "idle_timeout" : "backend_closed");
    };
    const entry: Idle = {
      conn,
      timer: setTimeout(discard, this.idleMs, IDLE).unref(),
      drop() {
        clearTimeout(entry.timer);
        sock.removeListener("data", discard);
        sock.removeListener("end", discard);
        sock.removeListener("close", discard);
        sock.removeListener("error", discard);
      },
    };
    // anything from an idle backend (FATAL on termination, a changed ParameterStatus) retires it
    sock.on("data", discard);
    sock.on("end", discard);
    sock.on("close", discard);
    sock.on("error", discard);
    sock.resume();
    // an idle connection alone never keeps the process alive
    sock.unref();
    this.hold(p.resource, 1);
    p.idle.push(entry);
  }

  private forget(key: string, pool: KeyPool): void {
    if (pool.idle.length === 0 && pool.opening.length === 0 && this.keys.get(key) === pool) this.keys.delete(key);
  }

  private retire(conn: Conn, why: CloseReason): void {
    this.closes[why]++;
    terminate(conn.up.socket);
  }

  /** Closes every idle connection; spares still opening and connections in use are closed when they come back. */
  close(): void {
    this.closed = true;
    for (const pool of this.keys.values()) {
      for (const s of pool.idle) {
        s.drop();
        this.hold(pool.resource, -1);
        this.retire(s.conn, "stopped");
      }
      pool.idle = [];
    }
    this.keys.clear();
  }
}

/** Terminate first: the backend ends cleanly instead of logging an unexpected EOF. */
function terminate(sock: net.Socket): void {
  if (!sock.destroyed && sock.writable) sock.end(terminateMessage());
  // a backend that does not hang up promptly is cut off
  setTimeout(() => sock.destroy(), 1000).unref();
}
