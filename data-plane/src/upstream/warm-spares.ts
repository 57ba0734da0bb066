/**
 * Warm spare upstream connections. Opening an upstream session (TCP, backend start, authentication)
 * is most of a client's connect time, and nothing about it depends on the client: the proxy connects
 * with the resource's own credential. So after a session to a resource starts, the node opens the
 * next upstream connection for the same (upstream, startup settings) in the background and hands it
 * to the next authenticated client of that resource.
 *
 * What keeps this as safe as connecting per client:
 * - a spare is never reused: each backend serves exactly one client session, fresh from its start,
 *   with the startup settings that client asked for (the key includes them), so no session state
 *   crosses sessions;
 * - spares are opened only after an authenticated session, at most `perKey` per key and `max` per
 *   node, so an unauthenticated client can never make the node open upstream connections;
 * - a key starts with one spare and is allowed one more (up to `perKey`) each time a session finds
 *   none ready: clients that arrive faster than the upstream starts a backend still find one, and a
 *   key used once in a while holds a single idle backend;
 * - the key holds the whole upstream definition, so a changed resource (host, database, user,
 *   TLS mode, credential reference) never gets a spare opened for the old one;
 * - an idle spare that hears anything from its backend (a termination, a changed setting) or loses
 *   its socket is dropped, and one unused for `idleMs` (30 s) is closed: a spare is at most that
 *   old, which also bounds how long a rotated upstream password keeps serving new sessions.
 */
import type net from "node:net";
import type { UpstreamSpec } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { terminate as terminateMessage } from "../wire/encode.js";
import type { UpstreamConnection } from "./connect-upstream.js";

export interface WarmSparesOptions {
  /** opens one upstream connection (connectUpstream with the node's secret resolver) */
  connect(spec: UpstreamSpec, startupParams: Record<string, string>): Promise<UpstreamConnection>;
  /** most spares kept per (upstream, startup settings); default 4 (a key starts with 1, see above) */
  perKey?: number;
  /** spares of the whole node, ready or opening; default 16 */
  max?: number;
  /** a spare unused this long is closed (default 30 s) */
  idleMs?: number;
  logger?: Logger;
}

interface Spare {
  up: UpstreamConnection;
  timer: NodeJS.Timeout;
  drop(): void;
}

/** a spare still connecting; a session that finds no ready spare claims it rather than start from zero */
interface Opening {
  result: Promise<UpstreamConnection>;
  claimed: boolean;
}

interface Pool {
  ready: Spare[];
  opening: Opening[];
  /** spares this key keeps (1..perKey) */
  want: number;
}

/** Same upstream and same startup settings, whatever the order of their keys. */
export function spareKey(spec: UpstreamSpec, startupParams: Record<string, string>): string {
  const sorted = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([sorted(spec), sorted(startupParams)]);
}

const IDLE = Symbol("idle");

export class WarmSpares {
  private readonly pools = new Map<string, Pool>();
  private total = 0;
  private closed = false;
  private readonly perKey: number;
  private readonly max: number;
  private readonly idleMs: number;

  constructor(private readonly o: WarmSparesOptions) {
    this.perKey = Math.max(1, o.perKey ?? 4);
    this.max = o.max ?? 16;
    this.idleMs = o.idleMs ?? 30_000;
  }

  /** spares ready to be taken (for stats and tests) */
  get ready(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.ready.length;
    return n;
  }

  /**
   * An upstream connection for an authenticated session: a ready spare when there is one, else the
   * spare being opened (it started earlier than a new connection would), else a new connection.
   * Once the session has its connection the next spare for its key is opened.
   */
  async connect(spec: UpstreamSpec, startupParams: Record<string, string>): Promise<UpstreamConnection> {
    const key = spareKey(spec, startupParams);
    let up = this.take(key);
    if (!up) {
      // this session waits for a backend start: keep one more spare for the sessions to come
      const pool = this.pools.get(key);
      if (pool) pool.want = Math.min(pool.want + 1, this.perKey);
      const opening = this.claim(key);
      // a spare that fails to open is no reason to fail the session: it connects itself
      if (opening) up = await opening.catch(() => null);
    }
    up ??= await this.o.connect(spec, startupParams);
    this.replenish(key, spec, startupParams);
    return up;
  }

  private claim(key: string): Promise<UpstreamConnection> | null {
    const pool = this.pools.get(key);
    const op = pool?.opening.shift();
    if (!op) return null;
    op.claimed = true;
    this.total--;
    return op.result;
  }

  private take(key: string): UpstreamConnection | null {
    const pool = this.pools.get(key);
    while (pool?.ready.length) {
      const s = pool.ready.shift()!;
      this.total--;
      s.drop();
      const sock = s.up.socket;
      if (!sock.destroyed && sock.readable && sock.writable) {
        // the relay resumes it once its own listeners are attached: nothing is read in between
        sock.pause();
        sock.ref();
        return s.up;
      }
      sock.destroy();
    }
    return null;
  }

  private replenish(key: string, spec: UpstreamSpec, startupParams: Record<string, string>): void {
    if (this.closed) return;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { ready: [], opening: [], want: 1 };
      this.pools.set(key, pool);
    }
    while (pool.ready.length + pool.opening.length < pool.want && this.total < this.max) this.open(key, pool, spec, startupParams);
  }

  private open(key: string, p: Pool, spec: UpstreamSpec, startupParams: Record<string, string>): void {
    const op: Opening = { result: this.o.connect(spec, startupParams), claimed: false };
    p.opening.push(op);
    this.total++;
    // a claimed spare belongs to its session from then on; only unclaimed ones are parked here
    op.result.then(
      (up) => {
        if (op.claimed) return;
        p.opening.splice(p.opening.indexOf(op), 1);
        if (this.closed) {
          this.total--;
          terminate(up.socket);
        } else this.park(key, p, up);
      },
      (e: Error) => {
        if (op.claimed) return;
        p.opening.splice(p.opening.indexOf(op), 1);
        this.total--;
        this.forget(key, p);
        // the next session tries again; a failure here only means that session connects itself
        this.o.logger?.debug({ err: e.message }, "warm upstream spare not opened");
      },
    );
  }

  private park(key: string, pool: Pool, up: UpstreamConnection): void {
    const sock: net.Socket = up.socket;
    if (up.rest.length > 0) {
      // the backend already said something after ReadyForQuery: not a clean spare
      this.total--;
      this.forget(key, pool);
      terminate(sock);
      return;
    }
    const discard = (why?: unknown) => {
      const i = pool.ready.indexOf(spare);
      if (i < 0) return;
      // unused for idleMs: this key needs fewer
      if (why === IDLE) pool.want = Math.max(1, pool.want - 1);
      pool.ready.splice(i, 1);
      this.total--;
      spare.drop();
      this.forget(key, pool);
      terminate(sock);
    };
    const spare: Spare = {
      up,
      timer: setTimeout(discard, this.idleMs, IDLE).unref(),
      drop() {
        clearTimeout(spare.timer);
        sock.removeListener("data", discard);
        sock.removeListener("end", discard);
        sock.removeListener("close", discard);
      },
    };
    // anything from an idle backend (FATAL on termination, a changed ParameterStatus) retires it
    sock.on("data", discard);
    sock.on("end", discard);
    sock.on("close", discard);
    // a spare alone never keeps the process alive
    sock.unref();
    pool.ready.push(spare);
  }

  private forget(key: string, pool: Pool): void {
    if (pool.ready.length === 0 && pool.opening.length === 0 && this.pools.get(key) === pool) this.pools.delete(key);
  }

  /** Closes every ready spare; spares still opening are closed when they arrive. */
  close(): void {
    this.closed = true;
    for (const pool of this.pools.values()) {
      for (const s of pool.ready) {
        s.drop();
        terminate(s.up.socket);
        this.total--;
      }
      pool.ready = [];
    }
    // spares still opening are closed when they arrive (see replenish), unless a session claimed them
    this.pools.clear();
  }
}

/** Terminate first: the backend ends cleanly instead of logging an unexpected EOF. */
function terminate(sock: net.Socket): void {
  if (!sock.destroyed && sock.writable) sock.end(terminateMessage());
  // a backend that does not hang up promptly is cut off
  setTimeout(() => sock.destroy(), 1000).unref();
}
