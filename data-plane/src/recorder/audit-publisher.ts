/**
 * Node-wide publisher of session events to SLUICE_AUDIT (design: data path step 9).
 *
 * Ordering: every session has its own lane (its audit subject). A lane has at most ONE batch in
 * flight; a batch is the lane's queued events, published back to back in one synchronous loop on the
 * one NATS connection. The next batch of that lane goes out only once every event of the previous
 * one is acknowledged. Why: with two batches in flight, a connection drop can lose the first (written
 * to the dead socket) while the second (sitting in the client's reconnect buffer) is stored, which
 * would put the session's chain out of order on the stream forever (deny_delete). Lanes are
 * independent, so many sessions' publishes are pipelined concurrently.
 *
 * Durability:
 *  - `ack`: gating events (the ones after which a statement is forwarded) return a Promise that
 *    resolves when JetStream acknowledged the event AND every earlier event of its session. Other
 *    events are queued and go out with the lane's next batch (micro-batched by `lingerMs`), so a
 *    statement costs one NATS round trip.
 *  - `async`: every event is queued; `enqueue` returns undefined synchronously.
 *
 * What each mode guarantees (contract: data path step 9):
 *  - `ack`: a statement reaches the upstream only after its statement.allowed event (and every
 *    earlier event of its session) is stored in SLUICE_AUDIT. So nothing a client saw succeed can be
 *    missing, whatever fails afterwards. Follow-up events (completion, result rows, session end) are
 *    published within `lingerMs` or with the session's next statement; if the data-plane process
 *    dies before that, only those follow-ups of its last statements are lost, never a statement.
 *  - `async`: `enqueue` returning means the event is in this process's bounded buffer, not yet on
 *    the stream. A NATS outage loses nothing (the buffer is kept and re-published in order, and
 *    new work is refused once it is full); a clean stop (`close`) publishes everything first. A crash
 *    of the data-plane process loses what was still buffered: at most `bufferEvents` events plus
 *    their follow-ups, typically the last few milliseconds of traffic.
 *
 * Fail closed: events that open work (session start, statements) are refused with
 * SluiceError("unavailable") once `bufferEvents` events are pending (queued or unacknowledged).
 * Follow-up events of admitted work (completion, rows, end) have headroom up to twice the buffer so
 * the record of a statement that already ran is never refused for lack of room next to new work.
 * A failed publish puts the publisher `down`: its lane is re-queued from the first unacknowledged
 * event (Nats-Msg-Id = event id makes re-publishing an event that was in fact stored harmless) and a
 * probe is retried with backoff; the first success (or a reconnect) brings it back `up`.
 *
 * Transport: a JetStream publish is a core NATS publish whose reply subject receives the PubAck.
 * Rather than `js.publish` (a request per event: a promise, a timer and two Error objects with stack
 * traces each, which dominated the data plane's CPU profile), the publisher sends every event with
 * `reply = <own inbox>.<batch>.<index>` and `Nats-Msg-Id = event id`, reads every PubAck through ONE
 * wildcard subscription, and times out whole batches with one sweeping timer. The semantics are the
 * ones `js.publish` had: a PubAck with `error`, a no-responders status (no stream) or no answer within
 * `publishTimeoutMs` fails that event.
 */
import type { PubAck } from "@nats-io/jetstream";
import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { SluiceError } from "@sluice/shared/errors";
import { encodeEvent, type CloudEvent } from "@sluice/shared/events";

export type AuditDurability = "ack" | "async";

/** How an event is admitted (see the header comment). */
export type AdmitMode = "gate" | "admit" | "follow";

export const FAIL_CLOSED_MESSAGE = "audit stream unavailable: statement refused (fail closed)";

export interface AuditLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AuditPublisherOptions {
  durability: AuditDurability;
  /** config dataPlane.audit.bufferEvents: pending events beyond which new work is refused */
  bufferEvents: number;
  /** timeout of one JetStream publish (ms); default 5000 */
  publishTimeoutMs?: number;
  /** ack mode: how long a gating record waits for its ack before the statement is refused (ms); default 5000 */
  ackWaitMs?: number;
  /** delay before non-gating events are sent, so they share a batch with the next statement (ms); default 2 (ack) / 5 (async) */
  lingerMs?: number;
  /** max events per lane batch; default 256 */
  maxBatch?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  logger?: AuditLogger;
  /** the connection's inbox prefix (nats.js `inboxPrefix`): a least-privilege user may subscribe to its own inbox only */
  inboxPrefix?: string;
}

export interface AuditPublisherStats {
  state: "up" | "down" | "closed";
  /** events queued or unacknowledged */
  pending: number;
  published: number;
  duplicates: number;
  failedPublishes: number;
  /** records refused because the buffer was full (fail closed) */
  refused: number;
  /** gating records that gave up waiting for their ack */
  ackTimeouts: number;
  lanes: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
  deadline: number;
  settled: boolean;
}

interface Pending {
  readonly id: string;
  readonly bytes: Uint8Array;
  waiter?: Waiter;
}

interface Lane {
  readonly subject: string;
  queue: Pending[];
  inflight: Pending[] | null;
}

/** One lane batch awaiting its PubAcks; keyed by `token`, the middle part of its reply subjects. */
interface Flight {
  readonly lane: Lane;
  readonly batch: Pending[];
  readonly results: Array<Ack | Error | undefined>;
  left: number;
  readonly deadline: number;
}

type Ack = Pick<PubAck, "duplicate">;

const silent: AuditLogger = { info() {}, warn() {}, error() {} };

export class AuditPublisher {
  readonly durability: AuditDurability;
  /** reply subjects are `${inbox}.<flight token>.<index in batch>` */
  private readonly inbox: string;
  private readonly ackSub: Subscription;
  private readonly flights = new Map<number, Flight>();
  private nextToken = 1;
  private flightTimer: NodeJS.Timeout | null = null;
  private readonly lanes = new Map<string, Lane>();
  /** lanes with queued events and nothing in flight */
  private readonly ready = new Set<Lane>();
  /** lanes with a waiting gate, dispatched together at the end of this loop turn (dispatchSoon) */
  private readonly soon = new Set<Lane>();
  private soonScheduled = false;
  private readonly waiters: Waiter[] = [];
  private readonly flushWaiters: Array<() => void> = [];
  private readonly opts: Required<Omit<AuditPublisherOptions, "logger" | "inboxPrefix">>;
  private readonly log: AuditLogger;
  private state: "up" | "down" | "closed" = "up";
  private connected = true;
  private backoff: number;
  private retryAt = 0;
  private pumpTimer: NodeJS.Timeout | null = null;
  private pumpAt = Infinity;
  private sweepTimer: NodeJS.Timeout | null = null;
  private pendingCount = 0;
  private readonly s = { published: 0, duplicates: 0, failedPublishes: 0, refused: 0, ackTimeouts: 0 };

  constructor(private readonly nc: NatsConnection, o: AuditPublisherOptions) {
    if (!(o.bufferEvents >= 1)) throw new SluiceError("invalid_argument", "dataPlane.audit.bufferEvents must be at least 1");
    this.durability = o.durability;
    this.opts = {
      durability: o.durability,
      bufferEvents: o.bufferEvents,
      publishTimeoutMs: o.publishTimeoutMs ?? 5000,
      ackWaitMs: o.ackWaitMs ?? 5000,
      lingerMs: o.lingerMs ?? (o.durability === "ack" ? 2 : 5),
      maxBatch: o.maxBatch ?? 256,
      retryMinMs: o.retryMinMs ?? 50,
      retryMaxMs: o.retryMaxMs ?? 2000,
    };
    this.log = o.logger ?? silent;
    this.backoff = this.opts.retryMinMs;
    this.inbox = createInbox(o.inboxPrefix);
    this.ackSub = nc.subscribe(`${this.inbox}.>`, { callback: (err, msg) => { if (!err) this.onAck(msg); } });
    void this.watchStatus();
    void nc.closed().then(() => this.onConnectionClosed());
  }

  get stats(): AuditPublisherStats {
    return { state: this.state, pending: this.pendingCount, lanes: this.lanes.size, ...this.s };
  }

  /** events queued or unacknowledged */
  get pending(): number {
    return this.pendingCount;
  }

  /**
   * Throws SluiceError("unavailable") when `n` more events of this mode would not be admitted.
   * Callers check before they link events into a hash chain so a refused event never takes a sequence
   * number. Synchronous: nothing can change between this check and `enqueue` in the same tick.
   */
  assertCapacity(n: number, mode: AdmitMode): void {
    if (this.state === "closed") {
      this.s.refused++;
      throw new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "audit publisher closed" });
    }
    const cap = mode === "follow" ? this.opts.bufferEvents * 2 : this.opts.bufferEvents;
    if (this.pendingCount + n > cap) {
      this.s.refused++;
      throw new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { pending: this.pendingCount, bufferEvents: this.opts.bufferEvents });
    }
  }

  /**
   * Queues already-chained events of one session, in order. In ack mode a `gate` enqueue returns a
   * Promise resolved once the last of these events (and every earlier event on the subject) is
   * acknowledged, rejected with SluiceError("unavailable") after `ackWaitMs` without it; the events
   * stay queued either way, since the chain is already committed to them. Otherwise returns undefined.
   */
  enqueue(subject: string, events: readonly CloudEvent[], mode: AdmitMode, encoded?: readonly Uint8Array[]): Promise<void> | undefined {
    // `encoded[i]`: the bytes of events[i] when the caller already has them (HashChain.linkEncoded)
    return this.enqueueEncoded(subject, events.map((e, i) => ({ id: e.id, bytes: encoded?.[i] ?? encodeEvent(e) })), mode);
  }

  /** `enqueue` for events already serialized (HashChain.linkCanonical): `id` is the event id (Nats-Msg-Id). */
  enqueueEncoded(subject: string, events: ReadonlyArray<{ readonly id: string; readonly bytes: Uint8Array }>, mode: AdmitMode): Promise<void> | undefined {
    this.assertCapacity(events.length, mode);
    let lane = this.lanes.get(subject);
    if (!lane) {
      lane = { subject, queue: [], inflight: null };
      this.lanes.set(subject, lane);
    }
    for (let i = 0; i < events.length; i++) lane.queue.push({ id: events[i]!.id, bytes: events[i]!.bytes });
    this.pendingCount += events.length;
    let done: Promise<void> | undefined;
    if (mode === "gate" && this.durability === "ack") {
      done = new Promise<void>((resolve, reject) => {
        const w: Waiter = { resolve, reject, deadline: Date.now() + this.opts.ackWaitMs, settled: false };
        lane.queue[lane.queue.length - 1]!.waiter = w;
        this.waiters.push(w);
      });
      this.ensureSweeper();
    }
    if (!lane.inflight) {
      this.ready.add(lane);
      // a gating event goes out in this turn of the event loop (its session waits on it); others
      // linger to share a batch
      if (done && this.state === "up") this.dispatchSoon(lane);
      else this.schedulePump(this.state === "up" ? this.opts.lingerMs : Math.max(0, this.retryAt - Date.now()));
    }
    return done;
  }

  /** Resolves when every event enqueued so far is acknowledged; rejects after `timeoutMs`. */
  flush(timeoutMs = 30_000): Promise<void> {
    if (this.pendingCount === 0) return Promise.resolve();
    this.schedulePump(0);
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.flushWaiters.indexOf(done);
        if (i >= 0) this.flushWaiters.splice(i, 1);
        reject(new SluiceError("unavailable", `audit flush timed out with ${this.pendingCount} events pending`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.flushWaiters.push(done);
    });
  }

  /**
   * Shutdown: flushes (async mode's guarantee that a clean stop loses nothing), then refuses new
   * records. Pending events still unacknowledged after `timeoutMs` are reported, not dropped silently.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    try {
      await this.flush(timeoutMs);
    } catch (e) {
      this.log.error({ pending: this.pendingCount }, "audit publisher closed with unpublished events");
      throw e;
    } finally {
      this.shutdown();
    }
  }

  private shutdown(): void {
    this.state = "closed";
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.flightTimer) clearInterval(this.flightTimer);
    this.pumpTimer = this.sweepTimer = this.flightTimer = null;
    // batches still in flight stay counted as pending: they were never acknowledged
    this.flights.clear();
    try {
      if (!this.ackSub.isClosed()) this.ackSub.unsubscribe();
    } catch {
      // the connection is already closed: so is the subscription
    }
    for (const w of this.waiters) this.settle(w, new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "audit publisher closed" }));
    this.waiters.length = 0;
  }

  private onConnectionClosed(): void {
    if (this.state === "closed") return;
    if (this.pendingCount > 0) this.log.error({ pending: this.pendingCount }, "NATS connection closed with unpublished audit events");
    this.shutdown();
  }

  private async watchStatus(): Promise<void> {
    try {
      for await (const st of this.nc.status()) {
        if (st.type === "disconnect") {
          this.connected = false;
          this.markDown("disconnected from NATS");
        } else if (st.type === "reconnect") {
          this.connected = true;
          this.log.info({ pending: this.pendingCount }, "NATS reconnected: re-publishing buffered audit events");
          this.retryAt = 0;
          this.backoff = this.opts.retryMinMs;
          this.schedulePump(0);
        }
      }
    } catch (e) {
      this.log.warn({ err: String(e) }, "NATS status watch ended");
    }
  }

  private markDown(reason: string): void {
    if (this.state === "closed") return;
    if (this.state === "up") this.log.warn({ reason, pending: this.pendingCount }, "audit stream unavailable: buffering events");
    this.state = "down";
    this.retryAt = Date.now() + this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.retryMaxMs);
    this.schedulePump(this.retryAt - Date.now());
  }

  private markUp(): void {
    if (this.state === "down") this.log.info({ pending: this.pendingCount }, "audit stream available again");
    if (this.state !== "closed") this.state = "up";
    this.backoff = this.opts.retryMinMs;
  }

  private schedulePump(delayMs: number): void {
    if (this.state === "closed") return;
    const at = Date.now() + Math.max(0, delayMs);
    if (this.pumpTimer && this.pumpAt <= at) return;
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    this.pumpAt = at;
    this.pumpTimer = setTimeout(() => {
      this.pumpTimer = null;
      this.pumpAt = Infinity;
      this.pump();
    }, Math.max(0, delayMs));
  }

  private pump(): void {
    if (this.state === "closed" || this.ready.size === 0) return;
    if (this.state === "down") {
      if (!this.connected) return; // the reconnect status resumes us
      const wait = this.retryAt - Date.now();
      if (wait > 0) return this.schedulePump(wait);
      // probe with one lane; its success brings every lane back
      const first = this.ready.values().next().value as Lane;
      this.dispatch(first);
      return;
    }
    for (const lane of [...this.ready]) this.dispatch(lane);
  }

  /**
   * Dispatches `lane` at the end of this turn of the event loop (setImmediate), together with every
   * other lane whose gate arrived in the same turn. nats.js writes its outbound buffer once per
   * microtask checkpoint, and each client socket's data is its own callback with its own checkpoint:
   * dispatching at once costs one socket write (and one wake-up of nats-server) per statement, while
   * gates of all sessions that became readable together now share one. The delay is the rest of the
   * current loop turn, not a timer.
   */
  private dispatchSoon(lane: Lane): void {
    this.soon.add(lane);
    if (this.soonScheduled) return;
    this.soonScheduled = true;
    setImmediate(() => {
      this.soonScheduled = false;
      const lanes = [...this.soon];
      this.soon.clear();
      // down: the lanes stay `ready` and the pump's retry sends them; closed: nothing goes out
      if (this.state === "up") for (const l of lanes) this.dispatch(l);
    });
  }

  private dispatch(lane: Lane): void {
    this.ready.delete(lane);
    if (lane.inflight || lane.queue.length === 0) return;
    const batch = lane.queue.length <= this.opts.maxBatch ? lane.queue : lane.queue.slice(0, this.opts.maxBatch);
    lane.queue = batch === lane.queue ? [] : lane.queue.slice(batch.length);
    lane.inflight = batch;
    const token = this.nextToken++;
    const flight: Flight = { lane, batch, results: new Array(batch.length), left: batch.length, deadline: Date.now() + this.opts.publishTimeoutMs };
    this.flights.set(token, flight);
    this.ensureFlightTimer();
    const prefix = `${this.inbox}.${token}.`;
    // one synchronous loop: the whole batch lands in the connection's outbound buffer back to back
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      try {
        const h = natsHeaders();
        h.set("Nats-Msg-Id", p.id);
        this.nc.publish(lane.subject, p.bytes, { reply: prefix + i, headers: h });
      } catch (e) {
        this.result(token, flight, i, e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  /** a PubAck (or a no-responders status) on `${inbox}.<token>.<index>` */
  private onAck(msg: Msg): void {
    const s = msg.subject;
    const dot = s.indexOf(".", this.inbox.length + 1);
    const token = Number(s.slice(this.inbox.length + 1, dot));
    const flight = this.flights.get(token);
    if (!flight) return; // the batch already timed out or failed: a late ack changes nothing
    const i = Number(s.slice(dot + 1));
    if (!(i >= 0 && i < flight.results.length)) return;
    let r: Ack | Error;
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      r = new Error("no responders: the audit stream is not available");
    } else {
      try {
        const a = JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString("utf8")) as {
          stream?: string; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string };
        };
        if (a.error) r = new Error(`audit publish failed: ${a.error.description ?? "JetStream error"} (${a.error.err_code ?? a.error.code ?? "?"})`);
        else if (!a.stream) r = new Error("invalid ack response");
        else r = { duplicate: a.duplicate === true };
      } catch {
        r = new Error("invalid ack response");
      }
    }
    this.result(token, flight, i, r);
  }

  private result(token: number, flight: Flight, i: number, r: Ack | Error): void {
    if (flight.results[i] !== undefined) return;
    flight.results[i] = r;
    if (--flight.left === 0) {
      this.flights.delete(token);
      this.settleBatch(flight.lane, flight.batch, flight.results as Array<Ack | Error>);
    }
  }

  private ensureFlightTimer(): void {
    if (this.flightTimer) return;
    const every = Math.max(10, Math.min(250, Math.floor(this.opts.publishTimeoutMs / 4)));
    this.flightTimer = setInterval(() => this.sweepFlights(), every);
    this.flightTimer.unref();
  }

  /** Fails every event of a batch still unanswered after `publishTimeoutMs` (what a request timeout did). */
  private sweepFlights(): void {
    const now = Date.now();
    // flights are in dispatch order and share one timeout, so expired ones come first
    for (const [token, f] of this.flights) {
      if (f.deadline > now) break;
      this.flights.delete(token);
      for (let i = 0; i < f.results.length; i++) f.results[i] ??= new Error("audit publish timed out");
      f.left = 0;
      this.settleBatch(f.lane, f.batch, f.results as Array<Ack | Error>);
    }
    if (this.flights.size === 0 && this.flightTimer) {
      clearInterval(this.flightTimer);
      this.flightTimer = null;
    }
  }

  private settleBatch(lane: Lane, batch: Pending[], results: Array<Ack | Error>): void {
    lane.inflight = null;
    const failed = results.findIndex((r) => r instanceof Error);
    const okCount = failed === -1 ? batch.length : failed;
    for (let i = 0; i < okCount; i++) {
      const a = results[i] as Ack;
      if (a.duplicate) this.s.duplicates++;
      else this.s.published++;
      const w = batch[i]!.waiter;
      if (w) this.settle(w);
    }
    this.pendingCount -= okCount;
    if (failed !== -1) {
      const err = results[failed] as Error;
      this.s.failedPublishes += results.filter((r) => r instanceof Error).length;
      // an event after the failed one was stored: the stream now holds the lane out of order.
      // Publishing one synchronous batch on one connection makes this practically impossible; say so loudly if it happens.
      if (results.slice(failed + 1).some((r) => !(r instanceof Error) && !r.duplicate)) {
        this.log.error({ subject: lane.subject }, "audit events stored out of order after a failed publish");
      }
      // re-queue from the first unacknowledged event, ahead of anything queued meanwhile
      lane.queue = batch.slice(failed).concat(lane.queue);
      this.ready.add(lane);
      this.markDown(err.message);
    } else {
      this.markUp();
      if (lane.queue.length > 0) {
        // events queued while the batch was in flight; a waiting gate goes now, others may linger
        if (lane.queue.some((p) => p.waiter)) this.dispatchSoon(lane);
        else {
          this.ready.add(lane);
          this.schedulePump(this.opts.lingerMs);
        }
      } else this.lanes.delete(lane.subject);
      if (this.ready.size > 0) this.schedulePump(0);
    }
    if (this.pendingCount === 0 && this.flushWaiters.length) {
      for (const f of this.flushWaiters.splice(0)) f();
    }
  }

  private settle(w: Waiter, err?: Error): void {
    if (w.settled) return;
    w.settled = true;
    if (err) w.reject(err);
    else w.resolve();
  }

  private ensureSweeper(): void {
    if (this.sweepTimer) return;
    const every = Math.max(10, Math.min(250, Math.floor(this.opts.ackWaitMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  /** Refuses gating records whose ack did not come in time; their events stay queued. */
  private sweep(): void {
    const now = Date.now();
    let i = 0;
    // deadlines are in enqueue order (one ackWaitMs for all), so expired and settled ones are at the front
    while (i < this.waiters.length) {
      const w = this.waiters[i]!;
      if (w.settled) { i++; continue; }
      if (w.deadline > now) break;
      this.s.ackTimeouts++;
      this.settle(w, new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "no acknowledgement from the audit stream in time" }));
      i++;
    }
    // drop the settled prefix; lanes settle out of global order, so compact the rest when it grows
    if (i > 0) this.waiters.splice(0, i);
    if (this.waiters.length > 4096) {
      const keep = this.waiters.filter((w) => !w.settled);
      this.waiters.length = 0;
      for (const w of keep) this.waiters.push(w);
    }
    if (this.waiters.length === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }
}
