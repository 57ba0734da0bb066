/**
 * A long-lived read of a JetStream stream that notices when it has gone deaf and places a new
 * consumer after the last message it handled.
 *
 * Why: an ordered consumer is a single-copy consumer on one NATS server. When that server dies, or
 * when the consumer's first pull is lost (seen across a supercluster's gateway), the client library
 * never says so reliably: it cancels its heartbeat monitor on a disconnect and restarts it only once a
 * consumer-info request succeeds, which it cannot while the consumer's server is down, so the watch
 * stays silent for as long as the outage lasts (issue 16: a control-plane replica that projected
 * nothing for more than 60 s; approval watches and the console's live feed had the same shape).
 * Here silence itself is the signal: a consumer that delivered neither a message nor a heartbeat for
 * `silentMs` is stopped and replaced, from the stream sequence after the last message handled, so
 * nothing is skipped and nothing is handled twice.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { SluiceError } from "../errors/index.js";
import { natsUnavailable } from "./nats-failure.js";

/** what the live consumer logs through (a pino logger fits) */
export interface LiveConsumerLogger {
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
  debug?(o: object, msg: string): void;
}

export interface LiveConsumerOptions {
  nc: NatsConnection;
  stream: string;
  /** the subject filter (one subject or wildcard: nats-server 2.9 has one filter per consumer); none: the whole stream */
  filter?: string;
  /** where the first consumer starts when `afterSeq` is 0: every message (default), new ones, or each subject's last */
  start?: "all" | "new" | "last-per-subject";
  /** resume after this stream sequence (0: use `start`) */
  afterSeq?: number;
  /** handles one message; a throw is logged and the message is delivered again by a new consumer */
  onMessage(m: JsMsg): void | Promise<void>;
  /** what this consumer is for, in logs */
  what: string;
  logger?: LiveConsumerLogger;
  /** idle heartbeat asked of the server (ms); default 1000, at least 500 */
  heartbeatMs?: number;
  /** a consumer that delivered nothing, heartbeats included, for this long is replaced; default 5 × heartbeatMs */
  silentMs?: number;
  /** messages buffered per pull; default 256 */
  maxMessages?: number;
  /** pause before placing a new consumer after a failure (ms, doubled up to 5 s); default 500 */
  retryMs?: number;
}

export interface LiveConsumer {
  /** stream sequence of the last message handled (0: none) */
  lastSeq(): number;
  /** true while a consumer is placed and was heard from within `silentMs` */
  live(): boolean;
  /** how many consumers were placed after the first (deaf, lost or failed ones replaced) */
  replaced(): number;
  /** the last failure placing or reading a consumer, if the current one has not delivered since */
  lastError(): string | undefined;
  /** the name of the consumer placed now (diagnostics, tests: which server holds it) */
  name(): string | undefined;
  /** replaces the current consumer now (e.g. after a reconnect, when a server may have restarted without it) */
  renew(): void;
  stop(): Promise<void>;
}

/**
 * Places the first consumer (a failure to do so is thrown: a start-up without a reachable stream
 * fails at once) and keeps one placed until `stop`.
 */
export async function startLiveConsumer(o: LiveConsumerOptions): Promise<LiveConsumer> {
  const heartbeatMs = Math.max(500, o.heartbeatMs ?? 1_000);
  const silentMs = o.silentMs ?? 5 * heartbeatMs;
  const baseRetryMs = o.retryMs ?? 500;
  const js = jetstream(o.nc);
  let lastSeq = o.afterSeq ?? 0;
  let stopped = false;
  let live = false;
  let replaced = 0;
  let lastError: string | undefined;
  let current: ConsumerMessages | undefined;
  let name: string | undefined;
  let wake: (() => void) | undefined;

  async function place(): Promise<ConsumerMessages> {
    const from =
      lastSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }
        : { deliver_policy: o.start === "new" ? DeliverPolicy.New : o.start === "last-per-subject" ? DeliverPolicy.LastPerSubject : DeliverPolicy.All };
    const consumer = await js.consumers.get(o.stream, { ...(o.filter ? { filter_subjects: o.filter } : {}), ...from });
    const info = await consumer.info(true);
    name = info.name;
    if (lastSeq === 0 && o.start === "new") {
      // "new" means after what the stream held when the first consumer was placed: a replacement
      // resumes from there, not from whatever is new by then
      lastSeq = info.delivered.stream_seq;
    }
    return consumer.consume({ max_messages: o.maxMessages ?? 256, expires: Math.max(5_000, 2 * heartbeatMs), idle_heartbeat: heartbeatMs });
  }

  /** Reads one consumer until it ends, is stopped, or goes silent. */
  async function drain(msgs: ConsumerMessages): Promise<void> {
    current = msgs;
    let heard = Date.now();
    let busy = false;
    live = true;
    void (async () => {
      for await (const s of msgs.status()) {
        // heartbeats and expired pulls prove the consumer's server still serves this pull
        if (s.type === "heartbeat" || s.type === "discard") heard = Date.now();
        else if (s.type === "ordered_consumer_recreated") {
          heard = Date.now(); // the library replaced it itself (a sequence gap)
          name = s.name;
        }
        else if (s.type === "consumer_deleted" || s.type === "consumer_not_found" || s.type === "stream_not_found") {
          lastError = s.type.replace(/_/g, " ");
          msgs.stop();
        }
      }
    })().catch(() => undefined);
    const watchdog = setInterval(() => {
      // a message being handled is not silence: the handler may be waiting on NATS itself
      if (busy || Date.now() - heard <= silentMs) return;
      live = false;
      lastError = `nothing heard for ${silentMs} ms`;
      o.logger?.warn({ consumer: o.what, silentMs, lastSeq }, "consumer went silent; placing a new one");
      msgs.stop();
    }, Math.min(heartbeatMs, silentMs));
    try {
      for await (const m of msgs) {
        heard = Date.now();
        if (m.seq <= lastSeq) continue; // a replacement may start where the old one already was
        busy = true;
        try {
          await o.onMessage(m);
        } catch (e) {
          lastError = (e as Error).message;
          o.logger?.error({ consumer: o.what, seq: m.seq, err: lastError }, "message handler failed; the message will be delivered again");
          msgs.stop();
          break;
        } finally {
          busy = false;
          heard = Date.now();
        }
        lastSeq = m.seq;
        lastError = undefined;
      }
    } finally {
      clearInterval(watchdog);
      live = false;
      current = undefined;
      msgs.stop();
    }
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  async function run(first: ConsumerMessages): Promise<void> {
    let msgs: ConsumerMessages | undefined = first;
    let failures = 0;
    while (!stopped && !o.nc.isClosed()) {
      try {
        if (!msgs) {
          msgs = await place();
          replaced++;
        }
        await drain(msgs);
        failures = 0;
      } catch (e) {
        failures++;
        lastError = (e as Error).message;
        const fields = { consumer: o.what, err: lastError, failures };
        if (failures === 1) o.logger?.warn(fields, "cannot place a consumer; retrying");
        else o.logger?.debug?.(fields, "cannot place a consumer; retrying");
      }
      msgs = undefined;
      if (!stopped) await sleep(Math.min(5_000, baseRetryMs * 2 ** Math.min(failures, 4)));
    }
  }

  const loop = run(await place());
  return {
    lastSeq: () => lastSeq,
    live: () => live,
    replaced: () => replaced,
    name: () => name,
    lastError: () => lastError,
    renew() {
      current?.stop();
      wake?.();
    },
    async stop() {
      stopped = true;
      current?.stop();
      wake?.();
      await loop;
    },
  };
}

export interface ReadToEndOptions extends Omit<LiveConsumerOptions, "start" | "afterSeq"> {
  /** done once the message at this stream sequence (or a later one) is handled */
  untilSeq?: number;
  /** done once this many messages are handled */
  count?: number;
  /** default 10 s: then the read fails as unavailable (never returns a partial history) */
  timeoutMs?: number;
}

/**
 * Reads a filtered stream from its start to a known end with a live consumer: a first pull that is
 * lost (across a gateway, right after the consumer was made) costs `silentMs` (default 1.5 s, with
 * 500 ms heartbeats), not the caller's deadline. Messages after the end are not handed over.
 */
export async function readToEnd(o: ReadToEndOptions): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  let handled = 0;
  let done = false;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const reached = (seq: number) => (o.untilSeq !== undefined && seq >= o.untilSeq) || (o.count !== undefined && handled >= o.count);
  if (o.count === 0 || (o.untilSeq !== undefined && o.untilSeq <= 0)) return;
  const lc = await startLiveConsumer({
    ...o,
    start: "all",
    heartbeatMs: o.heartbeatMs ?? 500,
    silentMs: o.silentMs ?? 1_500,
    async onMessage(m) {
      if (done) return;
      await o.onMessage(m);
      handled++;
      if (reached(m.seq)) {
        done = true;
        finish();
      }
    },
  }).catch((e: unknown) => {
    throw natsUnavailable(e, `reading ${o.what}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
  try {
    if ((await Promise.race([finished, timedOut])) === "timeout") {
      throw new SluiceError("unavailable", `reading ${o.what} did not reach its end within ${timeoutMs} ms${lc.lastError() ? ` (${lc.lastError()})` : ""}: NATS may be failing over; retry`);
    }
  } finally {
    clearTimeout(timer);
    await lc.stop();
  }
}
