/**
 * Follows a stack's SLUICE_AUDIT stream from its first message for the whole fuzz run and groups
 * the events by session (CloudEvents `subject`), in stream order; each session is found by the
 * unique application_name its client connected with (session.started). A message is one event or
 * a CloudEvents batch (a JSON array), so the collector reads both.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { SessionEventType, type CloudEvent, type SessionStartedData } from "@sluice/shared/events";

export interface AuditCollector {
  /** the events (stream order) of the session whose client connected with this application_name, once it ended (or what there is at the timeout) */
  sessionEvents(applicationName: string, timeoutMs?: number): Promise<{ sessionId: string; events: CloudEvent[] }>;
  /** every event so far (for the whole-stream secret search) */
  all(): readonly CloudEvent[];
  /** the raw JSON of every message so far */
  rawMessages(): readonly string[];
  stop(): Promise<void>;
}

export async function startAuditCollector(nc: NatsConnection, stream: string): Promise<AuditCollector> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get(stream);
  const messages = await consumer.consume();
  const events: CloudEvent[] = [];
  const raw: string[] = [];
  const bySession = new Map<string, CloudEvent[]>();
  const sessionOfApp = new Map<string, string>();
  const ended = new Set<string>();
  let wake: Array<() => void> = [];
  const loop = (async () => {
    for await (const m of messages) {
      const text = m.string();
      raw.push(text);
      const parsed = JSON.parse(text) as CloudEvent | CloudEvent[];
      for (const ev of Array.isArray(parsed) ? parsed : [parsed]) {
        events.push(ev);
        const list = bySession.get(ev.subject) ?? [];
        list.push(ev);
        bySession.set(ev.subject, list);
        if (ev.type === SessionEventType["session.started"]) {
          const app = (ev.data as SessionStartedData).applicationName;
          if (app) sessionOfApp.set(app, ev.subject);
        }
        if (ev.type === SessionEventType["session.ended"]) ended.add(ev.subject);
      }
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
        if (id !== undefined && ended.has(id)) return { sessionId: id, events: [...bySession.get(id)!] };
        const left = until - Date.now();
        if (left <= 0) {
          if (id === undefined) throw new Error(`audit: no session.started for application_name ${app} within ${timeoutMs} ms`);
          return { sessionId: id, events: [...(bySession.get(id) ?? [])] };
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
    all: () => events,
    rawMessages: () => raw,
    async stop() {
      await messages.close();
      await loop.catch(() => undefined);
    },
  };
}
