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
import { JetStreamApiError, DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { CONTROL_PLANE_SOURCE, HashChain, GENESIS_HASH, decodeEvent, encodeEvent, eventType, makeEvent, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import type { NatsNames } from "@sluice/shared/nats";

const WRONG_LAST_SEQUENCE = 10071;
/** an aggregate read that has not reached the subject's last event by then fails (the gRPC callers allow 15 s) */
const READ_TIMEOUT_MS = 10_000;

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

  constructor(
    private readonly nc: NatsConnection,
    readonly names: NatsNames,
  ) {
    this.js = jetstream(nc);
  }

  private jsm(): Promise<JetStreamManager> {
    this.jsmP ??= jetstreamManager(this.nc);
    return this.jsmP;
  }

  subject(aggregate: string, id: string): string {
    return this.names.controlSubject(aggregate, id);
  }

  /** Reads every event of one aggregate, in order. */
  async read<E extends DomainEvent>(aggregate: string, id: string): Promise<AggregateStream<E>> {
    const subject = this.subject(aggregate, id);
    const jsm = await this.jsm();
    // the last message on the subject tells both whether there is anything to read and where to stop
    let last: number;
    try {
      const m = await jsm.streams.getMessage(this.names.controlStream, { last_by_subj: subject });
      last = m?.seq ?? 0;
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === 10037) last = 0; // no message found
      else throw e;
    }
    if (last === 0) return { events: [], lastStreamSeq: 0 };
    const events: StoredEvent<E>[] = [];
    const consumer = await this.js.consumers.get(this.names.controlStream, {
      filter_subjects: subject,
      deliver_policy: DeliverPolicy.All,
    });
    // A pull that is lost (seen across a gateway, right after the consumer was made: the reply
    // arrives before the inbox's interest has) is only noticed after two missed heartbeats; with the
    // default 15 s heartbeat a policy apply then outlived its caller's deadline. 1 s heartbeats make
    // the client pull again within about 2 s, and a read that still gets nothing fails instead of
    // hanging.
    const it = await consumer.consume({ max_messages: 256, expires: 2_000, idle_heartbeat: 1_000 });
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      it.stop();
    }, READ_TIMEOUT_MS);
    try {
      for await (const m of it) {
        const ce = decodeEvent(m.data) as CloudEvent<Omit<E, "type">>;
        const name = eventNameOf(ce.type, aggregate);
        if (!name) throw new SluiceError("internal", `unexpected event type ${ce.type} on ${subject}`);
        events.push({ streamSeq: m.seq, cloudEvent: ce, event: { ...(ce.data as object), type: name } as E });
        if (m.seq >= last) break;
      }
    } finally {
      clearTimeout(deadline);
      it.stop();
    }
    // a read that ended before the subject's last event would fold a partial history: never returned
    if (timedOut || (events.at(-1)?.streamSeq ?? 0) < last) {
      throw new SluiceError("unavailable", `reading ${subject} did not reach its last event within ${READ_TIMEOUT_MS} ms (NATS failing over?)`);
    }
    return { events, lastStreamSeq: events.at(-1)?.streamSeq ?? 0 };
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
      throw SluiceError.from(e, "unavailable");
    }
  }

  /** The aggregate's last event only (one request, no consumer): for reads that need just the current state. */
  async last<E extends DomainEvent>(aggregate: string, id: string): Promise<StoredEvent<E> | undefined> {
    const jsm = await this.jsm();
    let m;
    try {
      m = await jsm.streams.getMessage(this.names.controlStream, { last_by_subj: this.subject(aggregate, id) });
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === 10037) return undefined;
      throw e;
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
    const m = await jsm.streams.getMessage(this.names.controlStream, { seq: streamSeq });
    return m ? decodeEvent(m.data) : undefined;
  }
}
