/**
 * The audit publisher's decisions, pure: which events go into which batch and when, what a PubAck,
 * a lost ack or a reconnect means for a lane, who is admitted when the buffer fills, and how long to
 * back off. No clock (every input carries `now`), no timers, no I/O: inputs in, effects out
 * (`take()`), and `wakeAt()` says when to call `tick` next. audit-publisher.ts runs it on a real
 * clock and a NATS transport; audit-lanes.test.ts drives it with a hand-held clock.
 *
 * Lanes (contract: "Events", batches). A lane is one ordered publishing sequence of this node, on
 * its own subject. It has at most ONE batch in flight: a batch is first published only once the
 * one before it is known stored, so that first attempt can be neither out of order nor a
 * duplicate, and it goes without an expectation. A batch whose outcome is uncertain (no PubAck in
 * time, a disconnect, a 'wrong last sequence' answer) is resolved by looking up the lane's last
 * stored message: if it is that batch (by its Nats-Msg-Id) the batch is done, otherwise the same
 * batch is published again, now with `Nats-Expected-Last-Subject-Sequence` = the stream sequence of
 * the lane's last stored message, so that an earlier attempt still on its way and this one cannot
 * both be stored: a re-send that comes second is refused ('wrong last sequence', then a look-up
 * finds the batch), a first attempt that comes second is de-duplicated by its msg id, since the
 * stream's duplicate window (120 s) outlives any publish still on its way (a publish is delivered
 * within a connection's life or not at all). Whatever happens to the connection, the lane's
 * messages on the stream have no gap, duplicate or reordering. Only then does the next batch form.
 * Why not the expectation on every publish, which would not need the window: nats-server (2.9)
 * checks it by loading the lane's last message, which cost as much CPU again as storing the batch
 * (measured: 59 → 106–141 µs per 12 KB message, about half of nats-server's CPU per statement);
 * the one-in-flight order already gives a first attempt what it would check.
 *
 * Durability:
 *  - `ack`: a `gate` event (the one after which a statement is forwarded) carries a waiter that is
 *    settled once its batch is stored, or refused after `ackWaitMs` (the event stays queued: the
 *    session's chain already holds it). A lane with a waiting gate is due at once, i.e. at the end
 *    of the current turn of the event loop (the publisher's choice): every statement waiting in that
 *    turn shares one batch and one round trip. Group commit, as databases do it: once a batch is
 *    stored, the sessions it released are about to come back with their next statement, so the
 *    next batch waits until as many gates as it released are queued again, or the group wait at the
 *    most. One busy session never waits (its own gate is the one expected); many busy sessions share
 *    a batch instead of splitting into ones that chase each other. The group wait follows how long
 *    the released sessions take to come back (twice the lane's running estimate of the last one's
 *    return, within [`groupWaitMs`, `groupWaitMaxMs`]): measured at 8 busy sessions on a loaded
 *    machine they come back 0.4–9 ms after the release, so a fixed 1 ms split them into groups
 *    chasing each other behind the one flight. The wait costs time only when a session does not
 *    come back (it went idle or ended): once, then the next batch no longer expects it.
 *    Follow-ups (completions, session ends) never make the lane due on their own while released
 *    sessions are expected: they ride with the next gates, and go alone only after `lingerMs` and
 *    the group wait have both passed, so an idle session's completion is stored within
 *    max(`lingerMs`, `groupWaitMaxMs`) plus a round trip.
 *  - `async` (and every non-gate event): due `lingerMs` after the first event queued, so batches
 *    fill; a batch forms at most every round trip per lane anyway, since one is in flight at a time.
 *  - Either way a lane whose queue holds `dueBytes` is due at once: a full batch has nothing to wait for.
 *
 * Admission (fail closed): work that opens something (`admit`, `gate`) is refused once
 * `bufferEvents` events are pending (queued or in flight); follow-ups of admitted work (`follow`)
 * have headroom up to twice that, so the record of a statement that already ran is not refused for
 * lack of room next to new work. One exception, in `async`: while the stream is taking this node's
 * batches (connected, no lane failing), a gate beyond `bufferEvents` is not refused but waits for
 * its batch to be stored, as in `ack` (up to `ackWaitMs`, and within 1.5 times the buffer, which
 * leaves follow-ups room):
 * a stream that is slow for a moment (measured: nothing stored for 0.4–0.5 s on a starved machine,
 * while 13k events/s arrived) slows statements down instead of failing them. During an outage the
 * buffer's bound refuses new work as before, so a crash still loses at most `bufferEvents` events
 * of statements that ran (a waiting statement has not run).
 */
import { SluiceError } from "@sluice/shared/errors";
import { batchBytes } from "@sluice/shared/events";

export type AuditDurability = "ack" | "async";

/** How an event is admitted (see the header comment). */
export type AdmitMode = "gate" | "admit" | "follow";

export const FAIL_CLOSED_MESSAGE = "audit stream unavailable: statement refused (fail closed)";

/** One event as it goes into a batch: its JSON text and that text's size in UTF-8 bytes. */
export interface LaneEvent {
  readonly json: string;
  readonly bytes: number;
}

/**
 * How a publish of a batch ended, as the transport saw it. Typed, so the lane decides on `kind`:
 * `stored` and `wrong_last_sequence` are definite answers about the stream, `rejected` and
 * `no_responders` mean not stored, the rest leave it uncertain.
 */
export type PublishOutcome =
  | { kind: "stored"; seq: number; duplicate: boolean }
  /** JetStream 10071: the lane's last stored message is not the one the batch expected */
  | { kind: "wrong_last_sequence" }
  /** a JetStream error answer (stream full, storage failure, …): not stored */
  | { kind: "rejected"; code?: number; description?: string }
  /** nothing listens on the subject (no stream, JetStream down): not stored */
  | { kind: "no_responders" }
  /** an answer that is not a PubAck: uncertain */
  | { kind: "invalid_ack" };

/** What the look-up of a lane's last stored message found. */
export type LookupOutcome =
  | { kind: "found"; seq: number; msgId: string | undefined }
  | { kind: "none" }
  | { kind: "failed"; reason: string };

export type LaneEffect<W> =
  /** `expectedLastSeq`: the Nats-Expected-Last-Subject-Sequence of a re-send (undefined on a batch's first attempt) */
  | { do: "publish"; token: number; lane: number; subject: string; msgId: string; expectedLastSeq: number | undefined; events: readonly string[]; bytes: number }
  | { do: "lookup"; token: number; lane: number; subject: string }
  /** settle a gate's waiter: stored, or refused with `error` */
  | { do: "settle"; waiter: W; error?: SluiceError }
  | { do: "log"; level: "info" | "warn" | "error"; msg: string; data: Record<string, unknown> };

export interface LaneSpec {
  subject: string;
  /** unique on the stream for the lane's life (boot id + lane number): batch msg ids are `<id>:<n>` */
  id: string;
}

export interface AuditLanesOptions {
  durability: AuditDurability;
  lanes: readonly LaneSpec[];
  /** pending events beyond which new work is refused (config dataPlane.audit.bufferEvents) */
  bufferEvents: number;
  /** how long a publish or a look-up may stay unanswered before it counts as uncertain (ms) */
  publishTimeoutMs: number;
  /** ack: how long a gate waits for its batch to be stored before the statement is refused (ms) */
  ackWaitMs: number;
  /** how long non-gate events wait for company before their lane is due (ms) */
  lingerMs: number;
  /** ack: the shortest group wait, how long the gates after a stored batch wait for the sessions it released (ms; 0: not at all) */
  groupWaitMs: number;
  /** ack: the longest group wait (ms; default `groupWaitMs`, i.e. a fixed wait) */
  groupWaitMaxMs?: number;
  /** a lane whose queued events reach this many bytes is due at once (default `maxBatchBytes`) */
  dueBytes?: number;
  maxBatchEvents: number;
  /** bytes of the JSON array of one batch at most */
  maxBatchBytes: number;
  retryMinMs: number;
  retryMaxMs: number;
  /** told of every batch stored: its events and ms from the batch forming to its being known stored (metrics) */
  onStored?: (events: number, ms: number) => void;
}

export interface AuditLanesStats {
  state: "up" | "down" | "closed";
  /** events queued or in flight */
  pending: number;
  /** events stored on the stream */
  published: number;
  /** batches stored on the stream */
  messages: number;
  /** bytes of the batches stored */
  bytes: number;
  /** batches found stored on the second try (a duplicate ack or a look-up after a lost ack) */
  recovered: number;
  /** publish attempts that failed or stayed unanswered */
  failedPublishes: number;
  lookups: number;
  /** records refused because the buffer was full (fail closed) */
  refused: number;
  /** gates that gave up waiting for their batch */
  ackTimeouts: number;
  /** a lane's stored messages were not what this publisher wrote (someone else on the lane, or a stream that lost messages) */
  anomalies: number;
  lanes: number;
}

interface Queued<W> {
  readonly json: string;
  readonly bytes: number;
  readonly waiter?: Gate<W>;
}

interface Gate<W> {
  readonly waiter: W;
  readonly deadline: number;
  settled: boolean;
}

type FlightPhase =
  /** publish sent, answer awaited until `deadline` */
  | "sending"
  /** look-up sent, answer awaited until `deadline` */
  | "checking"
  /** waiting until `deadline` (back-off) or a reconnect to do `next` */
  | "parked";

interface Flight<W> {
  readonly msgId: string;
  readonly events: readonly Queued<W>[];
  readonly texts: readonly string[];
  readonly bytes: number;
  /** the lane's last stored sequence this batch must follow */
  expected: number;
  /** publishes of this batch so far */
  attempts: number;
  token: number;
  phase: FlightPhase;
  deadline: number;
  /** parked: what to do when the wait is over */
  next: "publish" | "lookup";
  /** an earlier attempt may have been stored (a lost ack): a later find is a recovery */
  uncertain: boolean;
  /** when the batch formed */
  formedAt: number;
}

interface Lane<W> {
  readonly index: number;
  readonly subject: string;
  readonly id: string;
  queue: Queued<W>[];
  /** bytes of the queued events */
  queuedBytes: number;
  /** queued events that carry a waiter (ack gates, async gates beyond the buffer) */
  queuedGates: number;
  /** when the oldest queued event was queued (or left over from the last batch) */
  queuedAt: number;
  /** flush or close: the queue is due at once */
  expedited: boolean;
  flight: Flight<W> | undefined;
  /** stream sequence of the lane's last stored message (0: none yet) */
  lastSeq: number;
  batchNo: number;
  backoff: number;
  /** the lane failed and has not succeeded since */
  troubled: boolean;
  /** gates the last stored batch released whose sessions have not queued a gate again yet */
  awaiting: number;
  /** when the last batch was stored */
  releasedAt: number;
  /** the last stored batch released gates and no batch has formed since */
  roundOpen: boolean;
  /** when the last of the released sessions came back (NaN: not all yet) */
  returnedAt: number;
  /** running estimate of how long after a release the last released session comes back (ms) */
  returnMs: number;
}

export class AuditLanes<W> {
  private readonly lanes: Lane<W>[];
  private readonly byToken = new Map<number, Lane<W>>();
  private readonly gates: Gate<W>[] = [];
  private out: LaneEffect<W>[] = [];
  private nextToken = 1;
  private connected = true;
  private closed = false;
  private pendingCount = 0;
  /** lanes failing right now (troubled) */
  private troubledLanes = 0;
  private readonly groupMin: number;
  private readonly groupMax: number;
  private readonly dueBytes: number;
  private readonly s = { published: 0, messages: 0, bytes: 0, recovered: 0, failedPublishes: 0, lookups: 0, refused: 0, ackTimeouts: 0, anomalies: 0 };

  constructor(private readonly o: AuditLanesOptions) {
    if (!(o.bufferEvents >= 1)) throw new SluiceError("invalid_argument", "dataPlane.audit.bufferEvents must be at least 1");
    if (o.lanes.length === 0) throw new SluiceError("invalid_argument", "the audit publisher needs at least one lane");
    this.groupMin = Math.max(0, o.groupWaitMs);
    this.groupMax = Math.max(this.groupMin, o.groupWaitMaxMs ?? this.groupMin);
    this.dueBytes = o.dueBytes ?? o.maxBatchBytes;
    this.lanes = o.lanes.map((l, index) => ({
      index, subject: l.subject, id: l.id, queue: [], queuedBytes: 0, queuedGates: 0, queuedAt: 0, expedited: false,
      flight: undefined, lastSeq: 0, batchNo: 0, backoff: o.retryMinMs, troubled: false,
      awaiting: 0, releasedAt: 0, roundOpen: false, returnedAt: Number.NaN, returnMs: this.groupMin / 2,
    }));
  }

  get pending(): number {
    return this.pendingCount;
  }

  get laneCount(): number {
    return this.lanes.length;
  }

  subjectOf(lane: number): string {
    return this.lanes[lane]!.subject;
  }

  get stats(): AuditLanesStats {
    const state = this.closed ? "closed" : !this.flowing() ? "down" : "up";
    return { state, pending: this.pendingCount, lanes: this.lanes.length, ...this.s };
  }

  /** The effects produced since the last call, in order. */
  take(): LaneEffect<W>[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * Throws SluiceError("unavailable") when `n` more events of this mode would not be admitted.
   * Callers check before they link events into a hash chain, so a refused event never takes a
   * sequence number; nothing can change between this and `enqueue` in the same synchronous call.
   */
  assertCapacity(n: number, mode: AdmitMode): void {
    if (this.closed) {
      this.s.refused++;
      throw new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "audit publisher closed" });
    }
    // an async gate beyond the buffer waits for its batch instead, while the stream takes batches;
    // follow-ups keep room beyond the waiting gates
    const cap = mode === "follow" ? this.o.bufferEvents * 2
      : mode === "gate" && this.o.durability === "async" && this.flowing() ? Math.floor(this.o.bufferEvents * 1.5)
      : this.o.bufferEvents;
    if (this.pendingCount + n > cap) {
      this.s.refused++;
      throw new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { pending: this.pendingCount, bufferEvents: this.o.bufferEvents });
    }
  }

  /**
   * Whether a `gate` enqueue of `n` events now must wait for its batch to be stored: always in
   * `ack`; in `async` when it goes beyond `bufferEvents` (see the header: admission).
   */
  gateWaits(n: number): boolean {
    return this.o.durability === "ack" || this.pendingCount + n > this.o.bufferEvents;
  }

  /**
   * Queues already-chained events of one session on its lane, in order. In `ack` durability a
   * `gate` enqueue attaches `waiter` to the last of them; it is settled through a `settle` effect.
   */
  enqueue(lane: number, events: readonly LaneEvent[], mode: AdmitMode, now: number, waiter?: W): void {
    this.assertCapacity(events.length, mode);
    const l = this.lanes[lane]!;
    const gate = waiter !== undefined && mode === "gate" && this.gateWaits(events.length)
      ? { waiter, deadline: now + this.o.ackWaitMs, settled: false }
      : undefined;
    if (l.queue.length === 0) l.queuedAt = now;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      l.queue.push(gate && i === events.length - 1 ? { json: e.json, bytes: e.bytes, waiter: gate } : { json: e.json, bytes: e.bytes });
      l.queuedBytes += e.bytes;
    }
    this.pendingCount += events.length;
    if (gate) {
      this.gates.push(gate);
      l.queuedGates++;
    }
    if (mode === "gate" && l.awaiting > 0 && --l.awaiting === 0) l.returnedAt = now;
  }

  /** Makes every lane with queued events due now (flush, close). */
  expedite(_now: number): void {
    for (const l of this.lanes) if (l.queue.length > 0) l.expedited = true;
  }

  /** When `tick` has something to do next (Infinity: nothing until an input arrives). */
  wakeAt(): number {
    if (this.closed) return Infinity;
    let at = Infinity;
    for (const l of this.lanes) {
      const f = l.flight;
      if (f) {
        // a parked flight waits for a reconnect when disconnected, its back-off otherwise
        if (f.phase !== "parked" || this.connected) at = Math.min(at, f.deadline);
      } else if (this.connected && l.queue.length > 0) {
        at = Math.min(at, this.dueAt(l));
      }
    }
    for (const g of this.gates) {
      if (!g.settled) {
        at = Math.min(at, g.deadline);
        break; // deadlines are in enqueue order (one ackWaitMs for all)
      }
    }
    return at;
  }

  /** Does what is due at `now`: batches, retries, time-outs, refused gates. */
  tick(now: number): void {
    if (this.closed) return;
    this.expireGates(now);
    for (const l of this.lanes) {
      const f = l.flight;
      if (f) {
        if (now < f.deadline) continue;
        if (f.phase === "sending") {
          this.s.failedPublishes++;
          this.troubled(l, now, "no acknowledgement from the audit stream in time");
          this.check(l, f, now);
        } else if (f.phase === "checking") {
          this.troubled(l, now, "the look-up of the lane's last message got no answer in time");
          this.park(l, f, "lookup", now);
        } else if (this.connected) {
          if (f.next === "lookup") this.check(l, f, now);
          else this.send(l, f, now);
        }
      } else if (this.connected && l.queue.length > 0 && this.dueAt(l) <= now) {
        this.dispatch(l, now);
      }
    }
  }

  /** The answer to publish `token` (a late answer to a superseded attempt changes nothing). */
  published(token: number, outcome: PublishOutcome, now: number): void {
    const l = this.byToken.get(token);
    if (!l) return;
    this.byToken.delete(token);
    const f = l.flight!;
    if (f.phase !== "sending" || f.token !== token) return;
    switch (outcome.kind) {
      case "stored":
        this.commit(l, f, outcome.seq, outcome.duplicate || f.uncertain, now);
        return;
      case "wrong_last_sequence":
        // a definite answer, not an outage: an earlier attempt of this batch may be the lane's last message
        f.uncertain = true;
        this.check(l, f, now);
        return;
      case "rejected":
      case "no_responders": {
        this.s.failedPublishes++;
        const reason = outcome.kind === "no_responders"
          ? "no responders: the audit stream is not available"
          : `the audit stream refused the batch: ${outcome.description ?? "JetStream error"} (${outcome.code ?? "?"})`;
        this.troubled(l, now, reason);
        this.park(l, f, "publish", now);
        return;
      }
      case "invalid_ack":
        this.s.failedPublishes++;
        this.troubled(l, now, "invalid acknowledgement from the audit stream");
        this.check(l, f, now);
        return;
      default: {
        const never: never = outcome;
        throw new Error(`unhandled publish outcome ${JSON.stringify(never)}`);
      }
    }
  }

  /** The answer to look-up `token`. */
  looked(token: number, outcome: LookupOutcome, now: number): void {
    const l = this.byToken.get(token);
    if (!l) return;
    this.byToken.delete(token);
    const f = l.flight!;
    if (f.phase !== "checking" || f.token !== token) return;
    switch (outcome.kind) {
      case "found":
        if (outcome.msgId === f.msgId) {
          this.commit(l, f, outcome.seq, true, now);
        } else if (outcome.seq === f.expected) {
          this.send(l, f, now); // not stored: the same batch again, after the same message
        } else {
          this.anomaly(l, `the lane's last stored message (seq ${outcome.seq}, msg id ${outcome.msgId ?? "none"}) is not one this publisher wrote after seq ${f.expected}`);
          f.expected = outcome.seq;
          this.send(l, f, now);
        }
        return;
      case "none":
        if (f.expected !== 0) {
          this.anomaly(l, `the lane's messages are gone from the stream (expected its last at seq ${f.expected})`);
          f.expected = 0;
        }
        this.send(l, f, now);
        return;
      case "failed":
        this.troubled(l, now, `the look-up of the lane's last message failed: ${outcome.reason}`);
        this.park(l, f, "lookup", now);
        return;
      default: {
        const never: never = outcome;
        throw new Error(`unhandled look-up outcome ${JSON.stringify(never)}`);
      }
    }
  }

  /** The connection is gone: batches in flight have an unknown fate until it is back. */
  disconnected(now: number): void {
    if (this.closed) return;
    if (this.connected) this.log("warn", "audit stream unavailable: buffering events", { pending: this.pendingCount });
    this.connected = false;
    for (const l of this.lanes) {
      const f = l.flight;
      if (!f || f.phase === "parked") continue;
      if (f.phase === "sending") f.uncertain = true;
      this.park(l, f, "lookup", now);
    }
  }

  /** The connection is back: parked batches are resolved first, then new ones form. */
  reconnected(now: number): void {
    if (this.closed) return;
    if (!this.connected) this.log("info", "NATS reconnected: publishing buffered audit events", { pending: this.pendingCount });
    this.connected = true;
    for (const l of this.lanes) {
      l.backoff = this.o.retryMinMs;
      if (l.flight?.phase === "parked") l.flight.deadline = now;
    }
  }

  /** Shutdown: refuses new records and every waiting gate. Unstored events stay counted as pending. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.byToken.clear();
    const err = new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "audit publisher closed" });
    for (const g of this.gates) this.settleGate(g, err);
    this.gates.length = 0;
  }

  private dispatch(l: Lane<W>, now: number): void {
    let n = 0;
    let bytes = 0;
    while (n < l.queue.length && n < this.o.maxBatchEvents) {
      const b = l.queue[n]!.bytes;
      // one event always goes, whatever its size (an event is far below the message cap)
      if (n > 0 && batchBytes(bytes + b, n + 1) > this.o.maxBatchBytes) break;
      bytes += b;
      n++;
    }
    const events = n === l.queue.length ? l.queue : l.queue.slice(0, n);
    l.queue = n === l.queue.length ? [] : l.queue.slice(n);
    const texts = new Array<string>(events.length);
    let gates = 0;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      texts[i] = e.json;
      if (e.waiter) gates++;
    }
    l.queuedBytes -= bytes;
    l.queuedGates -= gates;
    if (l.queue.length === 0) l.expedited = false;
    else l.queuedAt = now; // left over: lingers again, unless a gate or its size makes it due
    // group commit: learn how long the released sessions take to come back, from the rounds whose
    // batch carries gates (a follow-only batch says nothing about returns); a wait that ran out
    // counts as its length plus what it waited, so a wait too short for this load grows
    if (l.roundOpen && gates > 0 && this.groupMax > 0) {
      const w = this.groupWait(l);
      const waited = now - l.releasedAt;
      const sample = l.awaiting === 0 ? l.returnedAt - l.releasedAt : waited >= w ? w + waited : Number.NaN;
      if (!Number.isNaN(sample)) l.returnMs += (Math.min(sample, 2 * this.groupMax) - l.returnMs) / 4;
    }
    l.roundOpen = false;
    l.awaiting = 0;
    l.batchNo++;
    const f: Flight<W> = {
      msgId: `${l.id}:${l.batchNo}`, events, texts, bytes: batchBytes(bytes, n), expected: l.lastSeq,
      attempts: 0, token: 0, phase: "sending", deadline: 0, next: "publish", uncertain: false, formedAt: now,
    };
    l.flight = f;
    this.send(l, f, now);
  }

  private send(l: Lane<W>, f: Flight<W>, now: number): void {
    this.byToken.delete(f.token); // a late answer to the previous attempt changes nothing
    f.token = this.nextToken++;
    f.phase = "sending";
    f.deadline = now + this.o.publishTimeoutMs;
    this.byToken.set(f.token, l);
    // a re-send may follow an attempt still on its way: only the stream can tell which one is first
    const expectedLastSeq = f.attempts++ === 0 ? undefined : f.expected;
    this.out.push({ do: "publish", token: f.token, lane: l.index, subject: l.subject, msgId: f.msgId, expectedLastSeq, events: f.texts, bytes: f.bytes });
  }

  private check(l: Lane<W>, f: Flight<W>, now: number): void {
    f.uncertain = true;
    if (!this.connected) return this.park(l, f, "lookup", now);
    this.byToken.delete(f.token);
    f.token = this.nextToken++;
    f.phase = "checking";
    f.deadline = now + this.o.publishTimeoutMs;
    this.byToken.set(f.token, l);
    this.s.lookups++;
    this.out.push({ do: "lookup", token: f.token, lane: l.index, subject: l.subject });
  }

  private park(l: Lane<W>, f: Flight<W>, next: "publish" | "lookup", now: number): void {
    this.byToken.delete(f.token);
    f.phase = "parked";
    f.next = next;
    f.deadline = now + l.backoff;
    l.backoff = Math.min(l.backoff * 2, this.o.retryMaxMs);
  }

  private troubled(l: Lane<W>, now: number, reason: string): void {
    if (!l.troubled) {
      this.log("warn", "audit stream unavailable: buffering events", { lane: l.subject, reason, pending: this.pendingCount });
      this.troubledLanes++;
    }
    l.troubled = true;
  }

  /** the stream is taking this node's batches: connected, and no lane failing */
  private flowing(): boolean {
    return this.connected && this.troubledLanes === 0;
  }

  private anomaly(l: Lane<W>, reason: string): void {
    this.s.anomalies++;
    this.log("error", "audit lane out of step with the stream", { lane: l.subject, reason });
  }

  private commit(l: Lane<W>, f: Flight<W>, seq: number, recovered: boolean, now: number): void {
    // the stream's sequences only grow: a batch stored before the lane's last one means another stream
    if (seq <= l.lastSeq) this.anomaly(l, `batch ${f.msgId} stored at seq ${seq}, not after the lane's last message (seq ${l.lastSeq})`);
    l.flight = undefined;
    l.lastSeq = seq;
    this.s.published += f.events.length;
    this.s.messages++;
    this.s.bytes += f.bytes;
    if (recovered) this.s.recovered++;
    this.o.onStored?.(f.events.length, now - f.formedAt);
    this.pendingCount -= f.events.length;
    for (const e of f.events) if (e.waiter) this.settleGate(e.waiter);
    l.backoff = this.o.retryMinMs;
    if (l.troubled) {
      l.troubled = false;
      this.troubledLanes--;
      this.log("info", "audit stream available again", { lane: l.subject, pending: this.pendingCount });
    }
    // group commit: the sessions this batch released are about to send their next statement
    l.awaiting = 0;
    if (this.o.durability === "ack") for (const e of f.events) if (e.waiter) l.awaiting++;
    l.releasedAt = now;
    l.roundOpen = l.awaiting > 0;
    l.returnedAt = Number.NaN;
  }

  /** ack: how long after a release the next batch waits for the released sessions (ms). */
  private groupWait(l: Lane<W>): number {
    return Math.min(this.groupMax, Math.max(this.groupMin, 2 * l.returnMs));
  }

  /**
   * When a lane without a batch in flight is due to form one (see the header): at once when it is
   * full, expedited, or a gate waits and no released session is expected; at the end of the group
   * wait when released sessions are expected; follow-ups alone after `lingerMs` and the group wait.
   * A time not after the present means now.
   */
  private dueAt(l: Lane<W>): number {
    if (l.expedited || l.queuedBytes >= this.dueBytes || l.queue.length >= this.o.maxBatchEvents) return l.queuedAt;
    const grouping = l.awaiting > 0 && this.groupMax > 0;
    const groupEnd = grouping ? l.releasedAt + this.groupWait(l) : -Infinity;
    if (l.queuedGates > 0) return grouping ? groupEnd : l.queuedAt;
    return Math.max(l.queuedAt + this.o.lingerMs, groupEnd);
  }

  private expireGates(now: number): void {
    let i = 0;
    while (i < this.gates.length) {
      const g = this.gates[i]!;
      if (!g.settled) {
        if (g.deadline > now) break;
        this.s.ackTimeouts++;
        this.settleGate(g, new SluiceError("unavailable", FAIL_CLOSED_MESSAGE, { reason: "no acknowledgement from the audit stream in time" }));
      }
      i++;
    }
    if (i > 0) this.gates.splice(0, i);
    // gates settle out of enqueue order across lanes: drop the settled ones when the list grows
    if (this.gates.length > 4096) {
      const keep = this.gates.filter((g) => !g.settled);
      this.gates.length = 0;
      this.gates.push(...keep);
    }
  }

  private settleGate(g: Gate<W>, error?: SluiceError): void {
    if (g.settled) return;
    g.settled = true;
    this.out.push(error ? { do: "settle", waiter: g.waiter, error } : { do: "settle", waiter: g.waiter });
  }

  private log(level: "info" | "warn" | "error", msg: string, data: Record<string, unknown>): void {
    this.out.push({ do: "log", level, msg, data });
  }
}
