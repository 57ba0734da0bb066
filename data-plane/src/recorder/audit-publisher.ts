/**
 * Node-wide publisher of session events to SLUICE_AUDIT (design: data path step 9): AuditLanes (the
 * pure decisions: batching, lanes, admission, back-off; read its header) run on a clock, with a NATS
 * transport (JetStreamLaneTransport), gates as Promises, and one timer.
 *
 * What each durability guarantees (contract: data path step 9):
 *  - `ack`: a statement reaches the upstream only after its statement.allowed event (and every
 *    earlier event of its lane) is stored in SLUICE_AUDIT, so nothing a client saw succeed can be
 *    missing, whatever fails afterwards. Follow-up events (completion, session end) ride with the
 *    lane's next batch, within max(`lingerMs`, `groupWaitMaxMs`) plus a round trip at the latest; if
 *    the process dies before that, only those follow-ups of its last statements are lost, never a
 *    statement.
 *  - `async`: `enqueue` returning means the event is in this process's bounded buffer, not yet on
 *    the stream. A NATS outage loses nothing (the buffer is kept and published in order, new work is
 *    refused once it is full); a clean stop (`close`) publishes everything first. A crash of the
 *    process loses what was not yet stored: the events of the last `lingerMs` plus one round trip in
 *    normal operation, at most `bufferEvents` events (twice that with follow-ups) during an outage.
 *    While the stream takes batches but slower than events arrive, a statement beyond the buffer
 *    waits for its own batch (a Promise, as in ack) instead of being refused.
 *
 * The end of a turn: a lane whose gate is due "now" is dispatched with setImmediate, i.e. after
 * every socket callback that became ready with it, so the statements of all sessions that arrived
 * together share one batch, one socket write and one wake-up of nats-server.
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { SluiceError } from "@sluice/shared/errors";
import { encodeBatch, MAX_BATCH_BYTES } from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import {
  AuditLanes, type AdmitMode, type AuditDurability, type AuditLanesStats, type LaneEffect, type LaneEvent,
} from "./audit-lanes.js";
import { JetStreamLaneTransport, type LaneTransport, type LaneTransportEvents } from "./jetstream-lane-transport.js";

export { FAIL_CLOSED_MESSAGE, type AdmitMode, type AuditDurability, type LaneEvent } from "./audit-lanes.js";

export interface AuditLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The time the publisher runs on; tests bring their own. */
export interface PublisherClock {
  now(): number;
  /** runs `fn` after `ms`; returns a cancel function */
  timer(fn: () => void, ms: number): () => void;
  /** runs `fn` at the end of this turn of the event loop */
  soon(fn: () => void): void;
}

export const systemClock: PublisherClock = {
  // sub-millisecond: the group wait is a few ms, and its estimate is learned from ms-sized samples
  now: () => performance.timeOrigin + performance.now(),
  timer(fn, ms) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
  soon: (fn) => void setImmediate(fn),
};

export interface AuditPublisherOptions {
  durability: AuditDurability;
  names: NatsNames;
  region: string;
  node: string;
  /** config dataPlane.audit.bufferEvents: pending events beyond which new work is refused */
  bufferEvents: number;
  /** lanes of this node (sessions are spread over them; default 1) */
  lanes?: number;
  /** names this process's lanes on the stream; default a fresh time-ordered id (a new lane per boot) */
  bootId?: string;
  /** a publish or look-up unanswered this long is uncertain and resolved by a look-up (ms); default 1000 */
  publishTimeoutMs?: number;
  /** ack mode: how long a gate waits for its batch before the statement is refused (ms); default 5000 */
  ackWaitMs?: number;
  /**
   * how long non-gate events wait to share a batch (ms; in ack also while released sessions are
   * expected, see groupWaitMaxMs); default 2 (ack) / 20 (async). Async's is the crash bound's main
   * term: every message costs nats-server a fixed set of wake-ups whatever it holds, so at a few
   * thousand statements a second 20 ms instead of 5 takes a quarter of the messages.
   */
  lingerMs?: number;
  /** ack: the shortest wait of the gates after a stored batch for the sessions it released (group commit; ms); default 1 */
  groupWaitMs?: number;
  /** ack: the longest such wait; in between it follows how long the sessions take to come back (ms); default 5 */
  groupWaitMaxMs?: number;
  /** max events per batch; default 4096 (and at most 1 MiB) */
  maxBatch?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** told of every batch stored: its events and the ms from forming it to its PubAck (or look-up) */
  onBatchStored?: (events: number, ms: number) => void;
  logger?: AuditLogger;
  /** the connection's inbox prefix (nats.js `inboxPrefix`): a least-privilege user may subscribe to its own inbox only */
  inboxPrefix?: string;
  clock?: PublisherClock;
  /** default: JetStream over `nc` */
  transport?: (events: LaneTransportEvents) => LaneTransport;
}

export type AuditPublisherStats = AuditLanesStats;

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

const silent: AuditLogger = { info() {}, warn() {}, error() {} };

/** A boot id: 12 hex digits of the start time (lanes of later boots sort after) and 8 random ones. */
export function newBootId(nowMs = Date.now()): string {
  return nowMs.toString(16).padStart(12, "0") + randomBytes(4).toString("hex");
}

/** FNV-1a of a session id: its lane when a node runs several. */
function laneIndex(sessionId: string, lanes: number): number {
  if (lanes === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}

export class AuditPublisher {
  readonly durability: AuditDurability;
  readonly bootId: string;
  private readonly core: AuditLanes<Waiter>;
  private readonly transport: LaneTransport;
  private readonly clock: PublisherClock;
  private readonly log: AuditLogger;
  private readonly publishTimeoutMs: number;
  private readonly flushWaiters: Array<() => void> = [];
  private cancelTimer: (() => void) | undefined;
  private timerAt = Infinity;
  private soonScheduled = false;
  private shut = false;

  constructor(nc: NatsConnection | undefined, o: AuditPublisherOptions) {
    this.durability = o.durability;
    this.clock = o.clock ?? systemClock;
    this.log = o.logger ?? silent;
    this.bootId = o.bootId ?? newBootId(this.clock.now());
    this.publishTimeoutMs = o.publishTimeoutMs ?? 1000;
    const lanes = Math.max(1, Math.floor(o.lanes ?? 1));
    this.core = new AuditLanes<Waiter>({
      durability: o.durability,
      lanes: Array.from({ length: lanes }, (_, i) => {
        const id = `${this.bootId}-${i}`;
        return { id, subject: o.names.auditSubject(o.region, o.node, id) };
      }),
      bufferEvents: o.bufferEvents,
      publishTimeoutMs: this.publishTimeoutMs,
      ackWaitMs: o.ackWaitMs ?? 5000,
      lingerMs: o.lingerMs ?? (o.durability === "ack" ? 2 : 20),
      groupWaitMs: o.groupWaitMs ?? 1,
      groupWaitMaxMs: o.groupWaitMaxMs ?? 5,
      // a quarter of the message cap: a backlog goes out at once rather than lingering
      dueBytes: MAX_BATCH_BYTES / 4,
      maxBatchEvents: Math.max(1, o.maxBatch ?? 4096),
      maxBatchBytes: MAX_BATCH_BYTES,
      retryMinMs: o.retryMinMs ?? 50,
      retryMaxMs: o.retryMaxMs ?? 2000,
      onStored: o.onBatchStored,
    });
    const events: LaneTransportEvents = {
      published: (token, outcome) => this.step(() => this.core.published(token, outcome, this.clock.now())),
      looked: (token, outcome) => this.step(() => this.core.looked(token, outcome, this.clock.now())),
      disconnected: () => this.step(() => this.core.disconnected(this.clock.now())),
      reconnected: () => this.step(() => this.core.reconnected(this.clock.now())),
      closed: () => this.onConnectionClosed(),
    };
    if (o.transport) this.transport = o.transport(events);
    else if (nc) this.transport = new JetStreamLaneTransport(nc, o.names.auditStream, events, o.inboxPrefix);
    else throw new SluiceError("invalid_argument", "the audit publisher needs a NATS connection or a transport");
  }

  get stats(): AuditPublisherStats {
    return this.core.stats;
  }

  /** events queued or in flight */
  get pending(): number {
    return this.core.pending;
  }

  /** The lane a session's events go through (stable for the session). */
  laneFor(sessionId: string): number {
    return laneIndex(sessionId, this.core.laneCount);
  }

  /** The subject of a lane (`sluice.audit.<region>.<node>.<boot id>-<n>`). */
  laneSubject(lane: number): string {
    return this.core.subjectOf(lane);
  }

  /** See AuditLanes.assertCapacity: throws SluiceError("unavailable") when the events would not be admitted. */
  assertCapacity(n: number, mode: AdmitMode): void {
    this.core.assertCapacity(n, mode);
  }

  /**
   * Queues already-chained events of one session on its lane, in order. In ack durability a `gate`
   * enqueue returns a Promise resolved once the last of these events (and every earlier event of
   * the lane) is stored, rejected with SluiceError("unavailable") after `ackWaitMs` without it; the
   * events stay queued either way, since the chain is committed to them. In async durability so
   * does a gate beyond `bufferEvents` (the stream is slower than the events for a moment). Otherwise
   * returns undefined.
   */
  enqueue(lane: number, events: readonly LaneEvent[], mode: AdmitMode): Promise<void> | undefined {
    const now = this.clock.now();
    if (mode === "gate" && this.core.gateWaits(events.length)) {
      let w!: Waiter;
      const p = new Promise<void>((resolve, reject) => (w = { resolve, reject }));
      this.core.enqueue(lane, events, mode, now, w);
      this.reschedule(now);
      return p;
    }
    this.core.enqueue(lane, events, mode, now);
    this.reschedule(now);
    return undefined;
  }

  /** Resolves when every event enqueued so far is stored; rejects after `timeoutMs`. */
  flush(timeoutMs = 30_000): Promise<void> {
    if (this.core.pending === 0) return Promise.resolve();
    this.step(() => this.core.expedite(this.clock.now()));
    return new Promise<void>((resolve, reject) => {
      const cancel = this.clock.timer(() => {
        const i = this.flushWaiters.indexOf(done);
        if (i >= 0) this.flushWaiters.splice(i, 1);
        reject(new SluiceError("unavailable", `audit flush timed out with ${this.core.pending} events pending`));
      }, timeoutMs);
      const done = () => {
        cancel();
        resolve();
      };
      this.flushWaiters.push(done);
    });
  }

  /**
   * Shutdown: flushes (async mode's guarantee that a clean stop loses nothing), then refuses new
   * records. Events still unstored after `timeoutMs` are reported, not dropped silently.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    try {
      await this.flush(timeoutMs);
    } catch (e) {
      this.log.error({ pending: this.core.pending }, "audit publisher closed with unpublished events");
      throw e;
    } finally {
      this.shutdown();
    }
  }

  private shutdown(): void {
    if (this.shut) return;
    this.shut = true;
    this.step(() => this.core.close());
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.transport.close();
  }

  private onConnectionClosed(): void {
    if (this.shut) return;
    if (this.core.pending > 0) this.log.error({ pending: this.core.pending }, "NATS connection closed with unpublished audit events");
    this.shutdown();
  }

  /** Runs one input of the lanes, then carries out what they decided. */
  private step(input: () => void): void {
    input();
    this.apply(this.core.take());
    if (this.core.pending === 0 && this.flushWaiters.length) for (const f of this.flushWaiters.splice(0)) f();
    this.reschedule(this.clock.now());
  }

  private apply(effects: LaneEffect<Waiter>[]): void {
    for (const e of effects) {
      switch (e.do) {
        case "publish":
          this.transport.publish(e.token, e.subject, encodeBatch(e.events, e.bytes), e.msgId, e.expectedLastSeq);
          break;
        case "lookup":
          this.transport.lookupLast(e.token, e.subject, this.publishTimeoutMs);
          break;
        case "settle":
          if (e.error) e.waiter.reject(e.error);
          else e.waiter.resolve();
          break;
        case "log":
          this.log[e.level](e.data, e.msg);
          break;
      }
    }
  }

  /** One timer (or one end-of-turn callback) for the earliest thing the lanes wait for. */
  private reschedule(now: number): void {
    if (this.shut) return;
    const at = this.core.wakeAt();
    if (at === Infinity) return;
    if (at <= now) {
      if (this.soonScheduled) return;
      this.soonScheduled = true;
      this.clock.soon(() => {
        this.soonScheduled = false;
        if (!this.shut) this.step(() => this.core.tick(this.clock.now()));
      });
      return;
    }
    if (this.cancelTimer && this.timerAt <= at) return;
    this.cancelTimer?.();
    this.timerAt = at;
    this.cancelTimer = this.clock.timer(() => {
      this.cancelTimer = undefined;
      this.timerAt = Infinity;
      if (!this.shut) this.step(() => this.core.tick(this.clock.now()));
    }, at - now);
  }
}
