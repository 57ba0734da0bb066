/**
 * The audit lanes' NATS transport, kept thin: it sends batches and look-ups and turns what comes
 * back into AuditLanes' typed outcomes. It decides nothing and keeps no time (the lanes time out
 * unanswered requests themselves).
 *
 * A JetStream publish is a core NATS publish whose reply subject receives the PubAck. Rather than a
 * request per batch (a promise, a timer and error objects with stack traces each), every batch goes
 * out with `reply = <own inbox>.<token>`, and ONE wildcard subscription reads every PubAck.
 * Look-ups are direct gets of the last message by subject (`$JS.API.DIRECT.GET.<stream>.<subject>`,
 * nats-server 2.9+, the stream has allow_direct), which a data plane can be permitted for its own
 * lane subjects only.
 */
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { BATCH_CONTENT_TYPE } from "@sluice/shared/events";
import type { LookupOutcome, PublishOutcome } from "./audit-lanes.js";

/** JetStream's "wrong last sequence" (Nats-Expected-Last-Subject-Sequence did not match). */
export const JS_WRONG_LAST_SEQUENCE = 10071;

export interface LaneTransportEvents {
  published(token: number, outcome: PublishOutcome): void;
  looked(token: number, outcome: LookupOutcome): void;
  disconnected(): void;
  reconnected(): void;
  /** the connection closed for good */
  closed(): void;
}

/** What AuditPublisher needs from a transport (tests plug in their own). */
export interface LaneTransport {
  /** `expectedLastSeq`: Nats-Expected-Last-Subject-Sequence, when the lanes ask for it (re-sends) */
  publish(token: number, subject: string, payload: Uint8Array, msgId: string, expectedLastSeq: number | undefined): void;
  lookupLast(token: number, subject: string, timeoutMs: number): void;
  close(): void;
}

/** Reads a PubAck (or a no-responders status) into a publish outcome. Pure. */
export function pubAckOutcome(data: Uint8Array, statusCode: number | undefined): PublishOutcome {
  if (data.length === 0 && statusCode === 503) return { kind: "no_responders" };
  let a: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { code?: number; err_code?: number; description?: string } };
  try {
    a = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8")) as typeof a;
  } catch {
    return { kind: "invalid_ack" };
  }
  if (typeof a !== "object" || a === null) return { kind: "invalid_ack" };
  if (a.error) {
    if (a.error.err_code === JS_WRONG_LAST_SEQUENCE) return { kind: "wrong_last_sequence" };
    return { kind: "rejected", code: a.error.err_code ?? a.error.code, description: a.error.description };
  }
  if (typeof a.stream !== "string" || typeof a.seq !== "number" || !(a.seq > 0)) return { kind: "invalid_ack" };
  return { kind: "stored", seq: a.seq, duplicate: a.duplicate === true };
}

export class JetStreamLaneTransport implements LaneTransport {
  private readonly inbox: string;
  private readonly sub: Subscription;
  private jsm: Promise<JetStreamManager> | undefined;
  private done = false;

  constructor(private readonly nc: NatsConnection, private readonly stream: string, private readonly on: LaneTransportEvents, inboxPrefix?: string) {
    this.inbox = createInbox(inboxPrefix);
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => { if (!err) this.onAck(msg); } });
    void this.watch();
    void nc.closed().then(() => {
      if (!this.done) on.closed();
    });
  }

  publish(token: number, subject: string, payload: Uint8Array, msgId: string, expectedLastSeq: number | undefined): void {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", msgId);
    if (expectedLastSeq !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(expectedLastSeq));
    h.set("Content-Type", BATCH_CONTENT_TYPE);
    try {
      this.nc.publish(subject, payload, { reply: `${this.inbox}.${token}`, headers: h });
    } catch {
      // a closed or draining connection: the lanes' time-out resolves the batch (look-up, then again)
    }
  }

  lookupLast(token: number, subject: string, timeoutMs: number): void {
    this.jsm ??= jetstreamManager(this.nc, { checkAPI: false, timeout: timeoutMs });
    this.jsm
      .then((jsm) => jsm.direct.getMessage(this.stream, { last_by_subj: subject }))
      .then(
        (m): LookupOutcome => (m ? { kind: "found", seq: m.seq, msgId: m.header?.get("Nats-Msg-Id") || undefined } : { kind: "none" }),
        (e: unknown): LookupOutcome => ({ kind: "failed", reason: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }),
      )
      .then((o) => {
        if (!this.done) this.on.looked(token, o);
      }, () => undefined);
  }

  close(): void {
    this.done = true;
    try {
      if (!this.sub.isClosed()) this.sub.unsubscribe();
    } catch {
      // the connection is already closed: so is the subscription
    }
  }

  private onAck(msg: Msg): void {
    const token = Number(msg.subject.slice(this.inbox.length + 1));
    if (!Number.isInteger(token)) return;
    this.on.published(token, pubAckOutcome(msg.data, msg.headers?.code));
  }

  private async watch(): Promise<void> {
    try {
      for await (const st of this.nc.status()) {
        if (this.done) break;
        if (st.type === "disconnect") this.on.disconnected();
        else if (st.type === "reconnect") this.on.reconnected();
      }
    } catch {
      // the status iterator ends with the connection; closed() reports that
    }
  }
}
