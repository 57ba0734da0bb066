/**
 * Follows a stack's SLUICE_AUDIT stream from its first message for the whole fuzz run and groups
 * the events by session (CloudEvents `subject`), in stream order; each session is found by the
 * unique application_name its client connected with (session.started).
 *
 * Every message must be what the contract says a message on SLUICE_AUDIT is: a CloudEvents JSON
 * batch (`content-type: application/cloudevents-batch+json`, a non-empty array of events in order).
 * A message that is not is kept as a problem, which the oracles report for the case during which it
 * came; its events are not guessed at. The order within a session is the stream order, batch by
 * batch and event by event, which the per-session hash chain then checks.
 */
import { jetstream, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { BATCH_CONTENT_TYPE, decodeBatch, SessionEventType, type CloudEvent, type SessionStartedData } from "@sluice/shared/events";

export interface AuditCollector {
  /** the events (stream order) of the session whose client connected with this application_name, once it ended (or what there is at the timeout) */
  sessionEvents(applicationName: string, timeoutMs?: number): Promise<{ sessionId: string; events: CloudEvent[]; ended: boolean }>;
  /** messages that were not CloudEvents batches since the last call (and why), then forgets them */
  takeProblems(): string[];
  stop(): Promise<void>;
}

/** The events of one stored message, or why it is not a batch as the contract defines one. Pure. */
export function readBatchMessage(contentType: string | undefined, text: string): { events: CloudEvent[] } | { problem: string } {
  if (contentType !== BATCH_CONTENT_TYPE) return { problem: `content-type ${JSON.stringify(contentType ?? null)}, not ${BATCH_CONTENT_TYPE}` };
  try {
    return { events: decodeBatch(text) };
  } catch (e) {
    return { problem: (e as Error).message };
  }
}

export async function startAuditCollector(nc: NatsConnection, stream: string): Promise<AuditCollector> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get(stream);
  const messages = await consumer.consume();
  let problems: string[] = [];
  const bySession = new Map<string, CloudEvent[]>();
  const sessionOfApp = new Map<string, string>();
  const ended = new Set<string>();
  let wake: Array<() => void> = [];
  const take = (m: JsMsg) => {
    const text = m.string();
    const r = readBatchMessage(m.headers?.get("Content-Type") || undefined, text);
    if ("problem" in r) {
      problems.push(`message ${m.seq} on ${m.subject}: ${r.problem}`);
      return;
    }
    for (const ev of r.events) {
      const list = bySession.get(ev.subject) ?? [];
      list.push(ev);
      bySession.set(ev.subject, list);
      if (ev.type === SessionEventType["session.started"]) {
        const app = (ev.data as SessionStartedData).applicationName;
        if (app) sessionOfApp.set(app, ev.subject);
      }
      if (ev.type === SessionEventType["session.ended"]) ended.add(ev.subject);
    }
  };
  const loop = (async () => {
    for await (const m of messages) {
      take(m);
      const w = wake;
      wake = [];
      w.forEach((f) => f());
    }
  })();
  return {
    async sessionEvents(app, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const id = sessionOfApp.get(app);
        if (id !== undefined && ended.has(id)) return { sessionId: id, events: [...bySession.get(id)!], ended: true };
        const left = until - Date.now();
        if (left <= 0) {
          if (id === undefined) throw new Error(`audit: no session.started for application_name ${app} within ${timeoutMs} ms`);
          return { sessionId: id, events: [...(bySession.get(id) ?? [])], ended: false };
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 200));
          wake.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    takeProblems() {
      const p = problems;
      problems = [];
      return p;
    },
    async stop() {
      await messages.close();
      await loop.catch(() => undefined);
    },
  };
}
