import type { NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { decodeBatch, type CloudEvent } from "@sluice/shared/events";
import { subjectToken, type NatsNames } from "@sluice/shared/nats";
import type { Logger } from "@sluice/shared/logging";
import type { ReadModel, StreamIdentity } from "./read-model.js";

export interface ReadModelProjectorOptions {
  nc: NatsConnection;
  names: NatsNames;
  model: ReadModel;
  /**
   * durable consumer name; one per projector process (replicas must not share one: each places it at
   * its own database's position). Idle durables expire after `inactiveMs`.
   */
  durable?: string;
  /** an abandoned durable (its process died) is removed by the server after this long; default 10 min */
  inactiveMs?: number;
  /** messages applied per transaction at most (default 500; each a batch of events) */
  batchMax?: number;
  logger?: Logger;
}

/**
 * events folded per transaction at most (a message of the stream holds a batch of them): on SQLite a
 * fold runs synchronously on the control plane's thread, so one of 1,000 events holds it for a few
 * milliseconds, not the best part of a second, and its gRPC calls and NATS traffic are served between
 * folds (issue 14)
 */
const EVENTS_PER_TRANSACTION = 1_000;

/** how long a live fold waits for more messages before it writes what it has (ms) */
const LIVE_GATHER_MS = 50;

export interface RebuildResult {
  position: number;
  counts: Record<string, number>;
  ms: number;
}

function decodeOrUndefined(m: JsMsg): CloudEvent[] | undefined {
  try {
    return decodeBatch(m.data);
  } catch {
    return undefined; // not a batch: the position still moves past it; verify reports it
  }
}

/**
 * Feeds the read model from SLUICE_AUDIT with a durable pull consumer, up to `batchMax` messages
 * (each a batch of events of many sessions) per transaction. The database is the source of
 * truth for the position: each batch of rows and the new position commit together, messages are acked
 * only after the commit, and on (re)start the consumer is placed right after the stored position. A
 * redelivered message is skipped by the position check inside the transaction, so each event has its
 * effect exactly once, even with several control-plane replicas writing one PostgreSQL read model.
 */
export class ReadModelProjector {
  private stopped = true;
  private loop: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private pos = 0;
  private waiters: Array<() => void> = [];
  private readonly durable: string;

  constructor(private readonly o: ReadModelProjectorOptions) {
    this.durable = subjectToken(o.durable ?? "read-model").replace(/^~/, "x");
  }

  get position(): number {
    return this.pos;
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    await this.o.model.migrate();
    // before the position is read, so catchUp() never compares a stale position with another stream
    await this.ensureSameStream().catch((e: unknown) => {
      if (!(e instanceof JetStreamApiError && e.code === 10059)) throw e; // 10059: no stream yet; the loop checks again
    });
    this.pos = await this.o.model.position();
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    const wasRunning = !this.stopped;
    this.stopped = true;
    this.messages?.stop();
    await this.loop;
    this.loop = undefined;
    for (const w of this.waiters.splice(0)) w();
    if (wasRunning) await this.deleteConsumer().catch(() => undefined); // the position lives in the database
  }

  /** Waits until everything stored in the audit stream when called has been applied. */
  async catchUp(timeoutMs = 60_000): Promise<number> {
    const jsm = await jetstreamManager(this.o.nc);
    const target = (await jsm.streams.info(this.o.names.auditStream)).state.last_seq;
    const until = Date.now() + timeoutMs;
    while (this.pos < target) {
      if (this.stopped) throw new Error("read model projector is stopped");
      if (Date.now() > until) throw new Error(`read model did not catch up to seq ${target} (at ${this.pos})`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200).unref?.();
      });
    }
    return this.pos;
  }

  /** Drops and recreates the read model from the stream; returns once it has caught up. */
  async rebuild(): Promise<RebuildResult> {
    const t0 = Date.now();
    const wasRunning = !this.stopped;
    await this.stop();
    await this.o.model.reset();
    await this.deleteConsumer();
    this.pos = 0;
    await this.start();
    const position = await this.catchUp();
    const counts = await this.o.model.counts();
    if (!wasRunning) await this.stop();
    return { position, counts, ms: Date.now() - t0 };
  }

  /**
   * A position counts messages of one stream. When the audit stream is another one than the model
   * folded (`sluice dev --nats` on a fresh server with the old state directory; a stream deleted and
   * created again), its rows and position describe events that are not there: the model is rebuilt
   * from the stream it reads now, and the log says why. A model with no recorded stream (older
   * schema) adopts the current one unless its position is beyond the stream's end.
   */
  private async ensureSameStream(): Promise<void> {
    const { model, names } = this.o;
    const info = await (await jetstreamManager(this.o.nc)).streams.info(names.auditStream);
    const now: StreamIdentity = { stream: info.config.name, created: info.created };
    const folded = await model.source();
    const pos = await model.position();
    const same = folded ? folded.stream === now.stream && folded.created === now.created : true;
    if (same && pos <= info.state.last_seq) {
      if (!folded) await model.recordSource(now);
      return;
    }
    this.o.logger?.warn(
      { folded, stream: now, position: pos, lastSeq: info.state.last_seq },
      folded && !same
        ? `read model: ${now.stream} is not the stream it folded (created ${folded.created}, this one ${now.created}); rebuilding from it`
        : `read model: its position ${pos} is beyond the end of ${now.stream} (seq ${info.state.last_seq}); rebuilding from the stream`,
    );
    await model.reset();
    await model.recordSource(now);
    this.pos = 0;
  }

  private async deleteConsumer(): Promise<void> {
    const jsm = await jetstreamManager(this.o.nc);
    try {
      await jsm.consumers.delete(this.o.names.auditStream, this.durable);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === 10014)) throw e; // 10014: consumer not found
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.consumeFromPosition();
      } catch (err) {
        if (this.stopped) break;
        this.o.logger?.warn({ err: String(err) }, "read model projection restarting from its stored position");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async consumeFromPosition(): Promise<void> {
    const { nc, names, model } = this.o;
    // the loop restarts here after the consumer went away, which is also what a replaced stream looks like
    await this.ensureSameStream();
    this.pos = await model.position();
    // place the durable right after the position the database holds (the database is the truth)
    await this.deleteConsumer();
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(names.auditStream, {
      durable_name: this.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.pos + 1,
      ack_wait: 60_000_000_000,
      max_ack_pending: 5000,
      inactive_threshold: (this.o.inactiveMs ?? 600_000) * 1_000_000,
      description: "sluice read model projection",
    });
    const consumer = await jetstream(nc).consumers.get(names.auditStream, this.durable);
    const messages = await consumer.consume({ max_messages: 1000, abort_on_missing_resource: true });
    this.messages = messages;
    if (this.stopped) messages.stop();
    const queue: Array<{ m: JsMsg; events: CloudEvent[] | undefined }> = [];
    let wake: (() => void) | undefined;
    let ended = false;
    const reader = (async () => {
      try {
        for await (const m of messages) {
          queue.push({ m, events: decodeOrUndefined(m) });
          wake?.();
        }
      } finally {
        ended = true;
        wake?.();
      }
    })();
    try {
      const max = this.o.batchMax ?? 500;
      while (!this.stopped) {
        if (queue.length === 0) {
          if (ended) break;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        // live (a few messages queued), the fold waits a moment for more: one transaction, its session
        // lookups and its commit per message cost sluice dev's 2 cores more than the fold itself
        if (queue.length < 16 && !ended) await new Promise<void>((r) => setTimeout(r, LIVE_GATHER_MS));
        if (this.stopped) break;
        // up to `max` messages, and about EVENTS_PER_TRANSACTION events: one transaction stays bounded
        let n = 0;
        let events = 0;
        while (n < queue.length && n < max && (n === 0 || events < EVENTS_PER_TRANSACTION)) events += queue[n++]!.events?.length ?? 1;
        const batch = queue.splice(0, n);
        this.pos = await model.applyBatch(batch.map((x) => ({ seq: x.m.seq, events: x.events })));
        for (const x of batch) x.m.ack();
        for (const w of this.waiters.splice(0)) w();
        // a turn of the event loop between folds: what waits for the thread goes first
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      messages.stop();
      await reader;
    }
  }
}
