/**
 * Approval notifications: the approval events on SLUICE_CONTROL, read through ONE durable JetStream
 * consumer that every control-plane replica pulls from. JetStream hands each event to one replica,
 * so each event is notified once however many replicas run (not once per replica). A replica acks
 * an event when all its webhooks are done (delivered, refused, or out of attempts) and keeps it
 * "in progress" while retrying; should it stop or die first, the event goes to another replica
 * after the ack wait and is sent again with the same `webhook-id` (at least once; receivers
 * de-duplicate on that id).
 *
 * It runs beside the approval flow, after the events are stored: a slow or failing webhook never
 * delays a session, a request or a decision. Which webhooks are told comes from the policy snapshot
 * in force when the event is handled.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { resolveSecretRef } from "@sluice/shared/config";
import { decodeEvent, type CloudEvent } from "@sluice/shared/events";
import type { Logger } from "@sluice/shared/logging";
import type { NatsNames } from "@sluice/shared/nats";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import { APPROVAL_AGGREGATE, type ApprovalEvent, type ApprovalRequested } from "../domain/approval/approval-decider.js";
import { eventNameOf, type JetStreamEventStore } from "../infra/jetstream-event-store.js";
import { approvalNotice, webhooksFor } from "./approval-notice.js";
import { DEFAULT_SCHEDULE } from "./retry-policy.js";
import { abortableSleep, deliverWebhook, type DeliveryDeps } from "./webhook-delivery.js";

/** The durable consumer on SLUICE_CONTROL shared by every replica (operators see it in `nats consumer ls`). */
export const NOTIFIER_DURABLE = "sluice-approval-notifier";
const ACK_WAIT_MS = 30_000;

export interface ApprovalNotifierOptions {
  nc: NatsConnection;
  names: NatsNames;
  store: JetStreamEventStore;
  snapshots: KV;
  logger: Logger;
  /** replaces parts of the delivery (tests: a faster schedule, a recording fetch) */
  delivery?: Partial<DeliveryDeps>;
}

export class ApprovalNotifier {
  private readonly deps: DeliveryDeps;
  private readonly stopping = new AbortController();
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: ApprovalNotifierOptions) {
    this.deps = {
      fetch: globalThis.fetch,
      now: () => new Date(),
      sleep: abortableSleep,
      random: Math.random,
      resolveSecret: (ref) => resolveSecretRef(ref, { what: "webhook reference", where: "on this control plane" }),
      schedule: DEFAULT_SCHEDULE,
      attemptTimeoutMs: 10_000,
      logger: o.logger,
      ...o.delivery,
    };
  }

  /** Creates the shared durable (first replica to start wins; it starts at new events) and starts pulling. */
  async start(): Promise<void> {
    const { nc, names } = this.o;
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.consumers.info(names.controlStream, NOTIFIER_DURABLE);
    } catch (e) {
      if (!(e instanceof JetStreamApiError) || e.code !== 10014) throw e; // 10014: consumer not found
      await jsm.consumers.add(names.controlStream, {
        durable_name: NOTIFIER_DURABLE,
        filter_subject: names.controlAggregateFilter(APPROVAL_AGGREGATE),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.New,
        ack_wait: ACK_WAIT_MS * 1_000_000,
        max_ack_pending: 256,
        description: "sluice approval webhooks (shared by every control-plane replica)",
      });
    }
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        const consumer = await jetstream(this.o.nc).consumers.get(this.o.names.controlStream, NOTIFIER_DURABLE);
        this.messages = await consumer.consume({ max_messages: 64 });
        if (signal.aborted) this.messages.stop();
        for await (const m of this.messages) {
          const p = this.handle(m).finally(() => this.inFlight.delete(p));
          this.inFlight.add(p);
        }
      } catch (e) {
        if (signal.aborted) break;
        this.o.logger.warn({ err: String(e) }, "approval notifier: consumer interrupted; resuming");
      }
      await abortableSleep(1000, signal).catch(() => undefined);
    }
  }

  private async handle(m: JsMsg): Promise<void> {
    const signal = this.stopping.signal;
    const keepAlive = setInterval(() => m.working(), ACK_WAIT_MS / 3);
    try {
      const ce = decodeEvent(m.data) as CloudEvent<Record<string, unknown>>;
      const name = eventNameOf(ce.type, APPROVAL_AGGREGATE);
      const parsed = this.o.names.parseControlSubject(m.subject);
      if (!name || !parsed) {
        m.ack();
        return;
      }
      const event = { ...ce.data, type: name } as ApprovalEvent;
      const req =
        event.type === "ApprovalRequested" ? event : ((await this.o.store.read<ApprovalEvent>(APPROVAL_AGGREGATE, parsed.id)).events[0]?.event as ApprovalRequested | undefined);
      if (!req || req.type !== "ApprovalRequested") {
        this.o.logger.warn({ approvalId: parsed.id }, "approval notifier: no request for this decision; nothing sent");
        m.ack();
        return;
      }
      const notice = approvalNotice(req, event, { eventId: ce.id, time: ce.time });
      const targets = webhooksFor(await this.bundle(), req.policy, notice.kind);
      await Promise.all(targets.map((w) => deliverWebhook(w, notice, this.deps, signal)));
      // stopped mid-way: leave the event unacknowledged so another replica (or the restart) sends it
      if (!signal.aborted) m.ack();
    } catch (e) {
      if (signal.aborted) return;
      this.o.logger.warn({ err: String(e), seq: m.seq }, "approval notifier: could not handle an approval event; retrying it");
      m.nak(5000);
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async bundle(): Promise<Bundle | undefined> {
    const e = await this.o.snapshots.get(this.o.names.snapshotKey);
    if (!e || e.operation !== "PUT") return undefined;
    return (JSON.parse(new TextDecoder().decode(e.value)) as PolicySnapshot).bundle;
  }

  /** Stops pulling and abandons deliveries in progress (their events are redelivered, see above). */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.messages?.stop();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }
}
