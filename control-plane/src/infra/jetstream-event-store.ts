/**
 * The event store on JetStream stream SLUICE_CONTROL. One subject per aggregate instance
 * (`sluice.control.<aggregate>.<id>`); each message is a CloudEvents 1.0 JSON object with the
 * per-aggregate hash chain (sluicesessionseq = aggregate version, sluiceprevhash, sluicehash).
 *
 * Appends use `Nats-Expected-Last-Subject-Sequence` (optimistic concurrency per aggregate, available on
 * nats-server 2.9) and `Nats-Msg-Id` = the event id = the command id (a re-sent command within the
 * duplicate window is acknowledged as a duplicate and stores nothing).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { CONTROL_PLANE_SOURCE, HashChain, GENESIS_HASH, decodeEvent, encodeEvent, eventType, makeEvent, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { natsUnavailable, type NatsNames } from "@sluice/shared/nats";

const WRONG_LAST_SEQUENCE = 10071;
const NO_MESSAGE = 10037;
/** an aggregate read that has not reached the subject's last event by then fails (the gRPC callers allow 15 s) */
const READ_TIMEOUT_MS = 10_000;
/** aggregates whose events are kept between reads (the policy bundle, recent approvals) */
const KEPT_AGGREGATES = 256;

/** Thrown when another writer appended to the aggregate since it was read. The app layer retries. */
export class ConcurrencyConflict extends Error {
  override readonly name = "ConcurrencyConflict";
  constructor(readonly subject: string, readonly expectedSeq: number) {
    super(`aggregate ${subject} changed since stream sequence ${expectedSeq}`);
  }
}

/** A domain event as stored: `type` (PascalCase) becomes the CloudEvents type, the rest is `data`. */
export interface DomainEvent {
  type: string;
}

export interface StoredEvent<E extends DomainEvent = DomainEvent> {
  /** stream sequence */
  streamSeq: number;
  cloudEvent: CloudEvent<Omit<E, "type">>;
  event: E;
}

export interface AggregateStream<E extends DomainEvent = DomainEvent> {
  events: StoredEvent<E>[];
  /** stream sequence of the aggregate's last message; 0 when it has none (the expectation for its first append) */
  lastStreamSeq: number;
}

export interface AppendOptions {
  /** the stream sequence read: the append fails with ConcurrencyConflict if the subject moved */
  expectedLastStreamSeq: number;
  /** event id and Nats-Msg-Id */
  id: string;
  time: Date;
  /** hash chain position: the previous event of this aggregate (undefined for the first) */
  previous?: CloudEvent;
  policyRev?: number;
}

export interface AppendResult {
  streamSeq: number;
  duplicate: boolean;
  cloudEvent: CloudEvent;
}

/** PascalCase → snake_case: BundleApplied → bundle_applied. */
export function snakeCase(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

export function controlEventType(aggregate: string, eventName: string): string {
  return eventType(`control.${aggregate}.${snakeCase(eventName)}`);
}

/** The inverse: the domain event name from a CloudEvents type of an aggregate. */
export function eventNameOf(type: string, aggregate: string): string | undefined {
  const m = new RegExp(`^dev\\.sluice\\.control\\.${aggregate}\\.([a-z0-9_]+)\\.v1$`).exec(type);
  return m ? m[1]!.split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("") : undefined;
}

export class JetStreamEventStore {
  private readonly js: JetStreamClient;
  private jsmP: Promise<JetStreamManager> | undefined;
  private readonly kept = new Map<string, StoredEvent[]>();

  constructor(
    private readonly nc: NatsConnection,
    readonly names: NatsNames,
  ) {
    this.js = jetstream(nc);
  }

  private jsm(): Promise<JetStreamManager> {
    // a manager that could not be made (JetStream not answering yet) is not kept: the next call tries again
    this.jsmP ??= jetstreamManager(this.nc).catch((e: unknown) => {
      this.jsmP = undefined;
      throw natsUnavailable(e, "reaching JetStream");
    });
    return this.jsmP;
  }

  subject(aggregate: string, id: string): string {
    return this.names.controlSubject(aggregate, id);
  }

  /**
   * Reads every event of one aggregate, in order, with one stream-message request per event and no
   * consumer: a consumer's first pull could be lost (across a supercluster's gateway the us replica's
   * policy applies waited ~3 s for it, now and then). Events already read are kept (they never change
   * on a stream that denies deletes), so a read fetches only the ones appended since; the hash chain
   * tells whether the kept ones still lead to what the stream holds (a reset stream starts over).
   */
  async read<E extends DomainEvent>(aggregate: string, id: string): Promise<AggregateStream<E>> {
    const subject = this.subject(aggregate, id);
    const what = `reading ${subject}`;
    const jsm = await this.jsm();
    const deadline = Date.now() + READ_TIMEOUT_MS;
    const get = async (q: { last_by_subj: string } | { next_by_subj: string; seq: number }) => {
      if (Date.now() > deadline) throw new SluiceError("unavailable", `${what} did not reach its last event within ${READ_TIMEOUT_MS} ms: NATS may be failing over; retry`);
      try {
        // next_by_subj is nats-server 2.9's STREAM.MSG.GET (the client's types only name it for direct gets)
        return await jsm.streams.getMessage(this.names.controlStream, q as { last_by_subj: string });
      } catch (e) {
        if (e instanceof JetStreamApiError && e.code === NO_MESSAGE) return null;
        throw natsUnavailable(e, what);
      }
    };
    const toStored = (m: { seq: number; data: Uint8Array }): StoredEvent<E> => {
      const ce = decodeEvent(m.data) as CloudEvent<Omit<E, "type">>;
      const name = eventNameOf(ce.type, aggregate);
      if (!name) throw new SluiceError("internal", `unexpected event type ${ce.type} on ${subject}`);
      return { streamSeq: m.seq, cloudEvent: ce, event: { ...(ce.data as object), type: name } as E };
    };
    const lastMsg = await get({ last_by_subj: subject });
    if (!lastMsg) {
      this.kept.delete(subject);
      return { events: [], lastStreamSeq: 0 };
    }
    const last = toStored(lastMsg);
    let kept = this.kept.get(subject) as StoredEvent<E>[] | undefined;
    const keptLast = kept?.at(-1);
    if (keptLast && keptLast.streamSeq === last.streamSeq && keptLast.cloudEvent.sluicehash === last.cloudEvent.sluicehash) {
      return this.keep(subject, kept!);
    }
    // kept events at or beyond the last one that is not the same event: another stream now
    if (!keptLast || keptLast.streamSeq >= last.streamSeq) kept = undefined;
    for (let fresh = !kept; ; fresh = true) {
      const events = kept ? [...kept] : [];
      let broken = false;
      while ((events.at(-1)?.streamSeq ?? 0) < last.streamSeq) {
        const m = await get({ next_by_subj: subject, seq: (events.at(-1)?.streamSeq ?? 0) + 1 });
        if (!m) break;
        const ev = m.seq === last.streamSeq ? last : toStored(m);
        const prev = events.at(-1);
        if (prev && ev.cloudEvent.sluiceprevhash !== undefined && ev.cloudEvent.sluiceprevhash !== prev.cloudEvent.sluicehash) {
          broken = true; // what was kept is not this stream's history: read it whole
          break;
        }
        events.push(ev);
      }
      if (!broken && events.at(-1)?.streamSeq === last.streamSeq) return this.keep(subject, events);
      if (fresh) {
        // a read that ended before the subject's last event would fold a partial history: never returned
        throw new SluiceError("unavailable", `${what} did not reach its last event (stream sequence ${last.streamSeq}): NATS may be failing over; retry`);
      }
      kept = undefined;
    }
  }

  /** Keeps an aggregate's events for the next read (the most recently read aggregates only). */
  private keep<E extends DomainEvent>(subject: string, events: StoredEvent<E>[]): AggregateStream<E> {
    this.kept.delete(subject);
    this.kept.set(subject, events as StoredEvent[]);
    while (this.kept.size > KEPT_AGGREGATES) this.kept.delete(this.kept.keys().next().value!);
    return { events: [...events], lastStreamSeq: events.at(-1)?.streamSeq ?? 0 };
  }

  /**
   * Appends one event. Throws ConcurrencyConflict when the aggregate changed since
   * `expectedLastStreamSeq`; returns `duplicate: true` when the id was already stored.
   */
  async append<E extends DomainEvent>(aggregate: string, id: string, event: E, o: AppendOptions): Promise<AppendResult> {
    const subject = this.subject(aggregate, id);
    const { type, ...data } = event;
    const ce = makeEvent({
      source: CONTROL_PLANE_SOURCE,
      type: controlEventType(aggregate, type),
      subject: `${aggregate}/${id}`,
      data,
      time: o.time,
      id: o.id,
      policyRev: o.policyRev,
    });
    new HashChain(o.previous?.sluicesessionseq ?? 0, o.previous?.sluicehash ?? GENESIS_HASH).link(ce);
    try {
      const ack = await this.js.publish(subject, encodeEvent(ce), {
        msgID: o.id,
        expect: { lastSubjectSequence: o.expectedLastStreamSeq },
      });
      return { streamSeq: ack.seq, duplicate: ack.duplicate, cloudEvent: ce };
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE) throw new ConcurrencyConflict(subject, o.expectedLastStreamSeq);
      throw SluiceError.from(natsUnavailable(e, `appending to ${subject}`), "unavailable");
    }
  }

  /** The aggregate's last event only (one request, no consumer): for reads that need just the current state. */
  async last<E extends DomainEvent>(aggregate: string, id: string): Promise<StoredEvent<E> | undefined> {
    const jsm = await this.jsm();
    let m;
    try {
      m = await jsm.streams.getMessage(this.names.controlStream, { last_by_subj: this.subject(aggregate, id) });
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === NO_MESSAGE) return undefined;
      throw natsUnavailable(e, `reading ${this.subject(aggregate, id)}`);
    }
    if (!m) return undefined;
    const ce = decodeEvent(m.data) as CloudEvent<Omit<E, "type">>;
    const name = eventNameOf(ce.type, aggregate);
    if (!name) throw new SluiceError("internal", `unexpected event type ${ce.type} on ${m.subject}`);
    return { streamSeq: m.seq, cloudEvent: ce, event: { ...(ce.data as object), type: name } as E };
  }

  /** Reads one stored event by stream sequence (used to answer a duplicate append). */
  async at(streamSeq: number): Promise<CloudEvent | undefined> {
    const jsm = await this.jsm();
    const m = await jsm.streams.getMessage(this.names.controlStream, { seq: streamSeq }).catch((e: unknown) => {
      throw natsUnavailable(e, `reading stream sequence ${streamSeq}`);
    });
    return m ? decodeEvent(m.data) : undefined;
  }
}
