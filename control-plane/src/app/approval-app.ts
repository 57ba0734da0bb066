/**
 * The approval application service: load one approval aggregate from SLUICE_CONTROL → decide → append
 * (expected last subject sequence; Nats-Msg-Id = the command id, so a re-sent command appends nothing).
 *
 * Also runs, per control-plane replica:
 *  - the data planes' request listener: core-NATS request/reply on natsNames().approvalRequestSubject in
 *    a queue group (one replica answers each request). Data planes need no admin token for this;
 *    NATS is the trust boundary they already live in.
 *  - the expirer: an ordered consumer over every approval subject keeps the pending requests and
 *    sends Expire when a deadline passes. Every replica does it; concurrency control lets one win.
 *  - the data planes' cancels (approvalCancelSubject(node), queue group): the node that filed a request
 *    cancels it when its client left or its session ended. The node is read from the subject, which
 *    NATS permissions pin to the sender, never from the body.
 *  - the reaper (given the fleet bucket): a pending request whose node is gone — no heartbeat for
 *    `goneAfterMs`, or a heartbeat of another process start (it restarted) — is cancelled, so the
 *    statement of a dead node can never be approved. Every replica does it; a second cancel is a no-op.
 */
import { createHash } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsApprovalCancel, NatsApprovalReply, NatsApprovalRequest } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import { decodeEvent, uuidv7, type CloudEvent } from "@sluice/shared/events";
import type { Logger } from "@sluice/shared/logging";
import { decodeSubjectToken, readToEnd, startLiveConsumer, type LiveConsumer, type NatsNames } from "@sluice/shared/nats";
import { actorLabel, type Actor } from "../domain/command-meta.js";
import {
  APPROVAL_AGGREGATE,
  approvalIdFor,
  decideApproval,
  evolveApproval,
  foldApproval,
  initialApprovalState,
  nodeActor,
  type ApprovalCommand,
  type CancelReason,
  type ApprovalEvent,
  type ApprovalState,
  type ApprovalStatus,
  type ApprovalSubjectMatter,
} from "../domain/approval/approval-decider.js";
import { ConcurrencyConflict, eventNameOf, type JetStreamEventStore, type StoredEvent } from "../infra/jetstream-event-store.js";

/** The control plane's own identity when it expires a request. */
export const CONTROL_PLANE_ACTOR: Actor = { subject: "control-plane", issuer: "sluice", groups: [] };

export interface ApprovalRequestInput {
  /** chosen by the data plane; a retried request with the same key appends nothing and gets the same id */
  idempotencyKey: string;
  requester: Actor;
  request: ApprovalSubjectMatter;
}

export interface ApprovalView {
  id: string;
  status: Exclude<ApprovalStatus, "none">;
  requester: Actor;
  request: ApprovalSubjectMatter;
  requestedAt: string;
  expiresAt: string;
  decidedAt?: string;
  decidedBy?: Actor;
  reason?: string;
}

export interface ApprovalAppOptions {
  store: JetStreamEventStore;
  nc: NatsConnection;
  names: NatsNames;
  logger: Logger;
  now?: () => Date;
  /** attempts on a concurrent append before giving up (default 5) */
  maxAttempts?: number;
  /** the fleet bucket (data planes' heartbeats): without it no request is cancelled for a gone node */
  fleet?: KV;
  /** a node without a heartbeat for this long is gone (default 30 s: the fleet bucket's default TTL) */
  goneAfterMs?: number;
  /** how often the reaper looks at the fleet (default 2 s) */
  reapEveryMs?: number;
}

/** Command ids are event ids and Nats-Msg-Ids (de-duplicated stream-wide): UUIDs only. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function viewOf(state: ApprovalState): ApprovalView | undefined {
  const r = state.request;
  if (!r || state.status === "none") return undefined;
  const { type: _t, approvalId, commandId: _c, requester, requestedAt, expiresAt, ...request } = r;
  const v: ApprovalView = { id: approvalId, status: state.status, requester, request, requestedAt, expiresAt };
  const d = state.decision;
  if (d) {
    v.decidedAt = d.at;
    if (d.type === "ApprovalCancelled") {
      // who cancelled (the node or the control plane) and why, in the fields a list already shows
      v.decidedBy = d.by;
      v.reason = d.detail ? `${d.reason}: ${d.detail}` : d.reason;
    } else if (d.type !== "ApprovalExpired") {
      v.decidedBy = d.approver;
      v.reason = d.reason;
    }
  }
  return v;
}

export class ApprovalApp {
  private readonly now: () => Date;
  private readonly maxAttempts: number;
  private readonly log: Logger;
  private sub: Subscription | undefined;
  private watch: LiveConsumer | undefined;
  private stopped = false;
  /** pending requests known to the expirer: id → timer */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** the expirer's fold of every approval still pending (decided ones are dropped) */
  private readonly open = new Map<string, ApprovalState>();
  private cancelSub: Subscription | undefined;
  private reaper: NodeJS.Timeout | undefined;
  private reaping = false;
  /** the reaper's watch: node → its heartbeat entry's revision (undefined: absent) and since when it has not changed */
  private readonly watched = new Map<string, { revision: number | undefined; since: number }>();
  private lastLook: number | undefined;

  constructor(private readonly o: ApprovalAppOptions) {
    this.now = o.now ?? (() => new Date());
    this.maxAttempts = o.maxAttempts ?? 5;
    this.log = o.logger;
  }

  private load(id: string) {
    return this.o.store.read<ApprovalEvent>(APPROVAL_AGGREGATE, id);
  }

  /**
   * Opens a request (the data plane's call). The id is derived from the idempotency key, so a retry
   * finds its own request; on the (50-bit) chance of a collision with another request the next
   * derived id is taken.
   */
  async request(input: ApprovalRequestInput): Promise<{ view: ApprovalView; duplicate: boolean }> {
    const key = input.idempotencyKey;
    if (!UUID.test(key ?? "")) throw new SluiceError("invalid_argument", "the idempotency key must be a UUID");
    for (let candidate = 0; candidate < 4; candidate++) {
      const id = approvalIdFor(createHash("sha256").update(candidate ? `${key}#${candidate}` : key).digest("hex"));
      const r = await this.run(id, (meta) => ({ type: "RequestApproval", approvalId: id, requester: input.requester, request: input.request, meta }), key, input.requester, {
        collision: (first) => first.event.commandId !== key,
      });
      if (r === "collision") continue;
      if (r.view.status === "pending") this.schedule(r.view.id, r.view.expiresAt);
      this.log.info({ approvalId: id, requester: actorLabel(input.requester), rule: input.request.rule, resource: input.request.binding.resource, duplicate: r.duplicate }, "approval requested");
      return r;
    }
    throw new SluiceError("internal", "could not derive a free approval id");
  }

  /** Approve or reject as `actor` (the decider enforces approver groups and the no-self-approval rule). */
  async decide(id: string, verdict: "approve" | "reject", actor: Actor, reason = "", commandId?: string): Promise<{ view: ApprovalView; duplicate: boolean }> {
    if (commandId && !UUID.test(commandId)) throw new SluiceError("invalid_argument", "command id must be a UUID");
    const cid = commandId || uuidv7(this.now().getTime());
    // a grant for a statement whose node restarted would approve what nobody can run: cancel first
    // (the reaper would within a period; this closes the window for the approver who is quicker)
    if (verdict === "approve") await this.cancelIfNodeRestarted(id);
    const r = await this.run(id, (meta) => ({ type: verdict === "approve" ? "Approve" : "Reject", approvalId: id, reason, meta }), cid, actor);
    if (r === "collision") throw new SluiceError("internal", "unexpected collision");
    this.clear(id);
    this.log.info({ approvalId: id, verdict, actor: actorLabel(actor), duplicate: r.duplicate }, "approval decided");
    return r;
  }

  /**
   * Marks a request expired once its deadline passed. Replicas racing to expire the same request are
   * kept to one event by the subject-sequence expectation (the losers re-decide and are refused).
   */
  async expire(id: string): Promise<{ view: ApprovalView; duplicate: boolean }> {
    const r = await this.run(id, (meta) => ({ type: "Expire", approvalId: id, meta }), uuidv7(this.now().getTime()), CONTROL_PLANE_ACTOR);
    if (r === "collision") throw new SluiceError("internal", "unexpected collision");
    this.log.info({ approvalId: id }, "approval expired");
    return r;
  }

  /**
   * Cancels a pending request whose statement will never run, as `actor` (the filing node, or the
   * control plane). Already cancelled: no new event (the node and the reaper race to the same end).
   */
  async cancel(id: string, reason: CancelReason, detail: string, actor: Actor, commandId?: string): Promise<{ view: ApprovalView; duplicate: boolean }> {
    if (commandId && !UUID.test(commandId)) throw new SluiceError("invalid_argument", "command id must be a UUID");
    const r = await this.run(id, (meta) => ({ type: "Cancel", approvalId: id, reason, detail, meta }), commandId || uuidv7(this.now().getTime()), actor);
    if (r === "collision") throw new SluiceError("internal", "unexpected collision");
    this.clear(id);
    this.log.info({ approvalId: id, reason, by: actorLabel(actor), duplicate: r.duplicate }, "approval cancelled");
    return r;
  }

  /** Cancels `id` when its node's heartbeat shows another process start than the one that filed it. */
  private async cancelIfNodeRestarted(id: string): Promise<void> {
    if (!this.o.fleet) return;
    const req = foldApproval((await this.load(id)).events.map((e) => e.event));
    if (req.status !== "pending" || !req.request?.nodeStartedAt) return;
    const { node, nodeStartedAt } = req.request;
    let startedAt: unknown;
    try {
      const e = await this.o.fleet.get(node);
      if (!e || e.operation !== "PUT") return; // absent: the reaper's window decides, not one look
      startedAt = e.json<{ startedAt?: unknown }>().startedAt;
    } catch {
      return; // the fleet unreadable: the decision goes on as before, the reaper looks again
    }
    if (typeof startedAt !== "string" || startedAt === nodeStartedAt) return;
    await this.cancel(id, "node_restarted", `${node} started again at ${startedAt}; the request was filed by its process of ${nodeStartedAt}`, CONTROL_PLANE_ACTOR).catch((e: unknown) => {
      if (!SluiceError.is(e, "failed_precondition")) throw e;
    });
  }

  async get(id: string): Promise<ApprovalView> {
    const s = await this.load(id);
    const v = viewOf(foldApproval(s.events.map((e) => e.event)));
    if (!v) throw new SluiceError("not_found", `no approval request ${id}`);
    return v;
  }

  /** Every request (or the pending ones), oldest first, read from the stream (consistent with the last append). */
  async list(o: { all?: boolean } = {}): Promise<ApprovalView[]> {
    const filter = this.o.names.controlAggregateFilter(APPROVAL_AGGREGATE);
    const jsm = await jetstreamManager(this.o.nc);
    const info = await jsm.streams.info(this.o.names.controlStream, { subjects_filter: filter });
    const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const states = new Map<string, ApprovalState>();
    if (total > 0) {
      // read as many approval events as the stream info counted (a consumer whose first pull is lost
      // is replaced rather than waited on)
      await readToEnd({
        nc: this.o.nc,
        stream: this.o.names.controlStream,
        filter,
        count: total,
        what: "approval list",
        onMessage: (m) => void this.foldInto(states, m.subject, m.data),
      });
    }
    const views = [...states.values()].map(viewOf).filter((v): v is ApprovalView => !!v);
    views.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
    return o.all ? views : views.filter((v) => v.status === "pending");
  }

  private foldInto(states: Map<string, ApprovalState>, subject: string, data: Uint8Array): { id: string; state: ApprovalState } | undefined {
    const parsed = this.o.names.parseControlSubject(subject);
    if (!parsed) return undefined;
    const ce = decodeEvent(data) as CloudEvent<Record<string, unknown>>;
    const name = eventNameOf(ce.type, APPROVAL_AGGREGATE);
    if (!name) return undefined;
    const next = evolveApproval(states.get(parsed.id) ?? initialApprovalState(), { ...(ce.data as object), type: name } as ApprovalEvent);
    states.set(parsed.id, next);
    return { id: parsed.id, state: next };
  }

  /** load → decide → append; re-decides on a concurrent append; a command already on the aggregate is a duplicate. */
  private async run(
    id: string,
    command: (meta: { commandId: string; actor: Actor; now: Date }) => ApprovalCommand,
    commandId: string,
    actor: Actor,
    o: { collision?: (first: StoredEvent<ApprovalEvent>) => boolean } = {},
  ): Promise<{ view: ApprovalView; duplicate: boolean } | "collision"> {
    for (let attempt = 1; ; attempt++) {
      const stream = await this.load(id);
      const first = stream.events[0];
      if (first && o.collision?.(first)) return "collision";
      const state = foldApproval(stream.events.map((e) => e.event));
      if (stream.events.some((e) => e.event.commandId === commandId)) return { view: viewOf(state)!, duplicate: true };
      const [ev] = decideApproval(command({ commandId, actor, now: this.now() }), state);
      if (!ev) return { view: viewOf(state)!, duplicate: false };
      try {
        const r = await this.o.store.append(APPROVAL_AGGREGATE, id, ev, {
          expectedLastStreamSeq: stream.lastStreamSeq,
          id: commandId,
          time: this.now(),
          previous: stream.events.at(-1)?.cloudEvent as CloudEvent | undefined,
        });
        if (r.duplicate) {
          // the same command raced itself: answer with what is stored
          const again = await this.load(id);
          return { view: viewOf(foldApproval(again.events.map((e) => e.event)))!, duplicate: true };
        }
        return { view: viewOf(evolveApproval(state, ev))!, duplicate: false };
      } catch (e) {
        if (!(e instanceof ConcurrencyConflict)) throw e;
        if (attempt >= this.maxAttempts) throw new SluiceError("aborted", `approval ${id} changed concurrently ${attempt} times; try again`);
      }
    }
  }

  // ---- expirer ------------------------------------------------------------------------------

  private schedule(id: string, expiresAt: string): void {
    if (this.stopped || this.timers.has(id)) return;
    // setTimeout takes at most 2^31-1 ms; longer waits re-arm
    const wait = Math.min(Math.max(0, Date.parse(expiresAt) - this.now().getTime()) + 50, 2 ** 31 - 1);
    const t = setTimeout(() => {
      this.timers.delete(id);
      if (Date.parse(expiresAt) > this.now().getTime()) return this.schedule(id, expiresAt);
      this.expire(id).catch((e: unknown) => {
        // another replica expired it, or someone decided it just in time: nothing to do
        if (SluiceError.is(e, "failed_precondition") || SluiceError.is(e, "not_found")) return;
        this.log.warn({ approvalId: id, err: (e as Error).message }, "could not expire approval request; retrying");
        setTimeout(() => this.schedule(id, expiresAt), 1000).unref();
      });
    }, wait);
    t.unref();
    this.timers.set(id, t);
  }

  private clear(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }

  // ---- reaper -------------------------------------------------------------------------------

  /**
   * One look at the fleet for every pending request: cancels those whose node is gone or restarted.
   * Gone is judged by what this replica saw, not by clocks: the node's heartbeat entry (its KV
   * revision) has not changed, or has stayed absent, for `goneAfterMs` of continuous watching. After a
   * gap in watching (this replica lost NATS, a look failed) it watches afresh, so a node whose beats
   * could not land while NATS was away gets a whole window to beat again.
   */
  async reap(): Promise<number> {
    const fleet = this.o.fleet;
    if (!fleet || this.reaping) return 0;
    this.reaping = true;
    let cancelled = 0;
    try {
      const goneAfter = this.o.goneAfterMs ?? 30_000;
      const every = this.o.reapEveryMs ?? 2000;
      const now = this.now().getTime();
      if (this.lastLook === undefined || now - this.lastLook > 3 * every + 5000) this.watched.clear();
      const byNode = new Map<string, ApprovalState[]>();
      for (const st of this.open.values()) {
        if (st.status !== "pending" || !st.request) continue;
        const list = byNode.get(st.request.node) ?? [];
        list.push(st);
        byNode.set(st.request.node, list);
      }
      for (const node of [...this.watched.keys()]) if (!byNode.has(node)) this.watched.delete(node);
      const seen = new Map<string, { startedAt?: string }>();
      for (const node of byNode.keys()) {
        let e;
        try {
          e = await fleet.get(node);
        } catch (err) {
          this.watched.clear();
          throw err;
        }
        const revision = e && e.operation === "PUT" ? e.revision : undefined;
        const w = this.watched.get(node);
        if (!w || w.revision !== revision) this.watched.set(node, { revision, since: now });
        let startedAt: string | undefined;
        if (revision !== undefined) {
          try {
            const v = e!.json<{ startedAt?: unknown }>().startedAt;
            if (typeof v === "string") startedAt = v;
          } catch {
            // unreadable: no start to compare
          }
        }
        seen.set(node, { startedAt });
      }
      this.lastLook = now;
      for (const [node, states] of byNode) {
        const w = this.watched.get(node)!;
        const silentMs = now - w.since;
        const { startedAt } = seen.get(node)!;
        for (const st of states) {
          const req = st.request!;
          let why: { reason: CancelReason; detail: string } | undefined;
          if (startedAt && req.nodeStartedAt && startedAt !== req.nodeStartedAt) {
            why = { reason: "node_restarted", detail: `${node} started again at ${startedAt}; the request was filed by its process of ${req.nodeStartedAt}` };
          } else if (silentMs >= goneAfter) {
            const secs = Math.round(silentMs / 1000);
            why = { reason: "node_gone", detail: w.revision === undefined ? `${node} has no fleet heartbeat (none for ${secs} s)` : `no fleet heartbeat from ${node} for ${secs} s` };
          }
          if (!why) continue;
          try {
            await this.cancel(req.approvalId, why.reason, why.detail, CONTROL_PLANE_ACTOR);
            cancelled++;
          } catch (err) {
            // decided or expired just now, or another replica was first: nothing to do
            if (!SluiceError.is(err, "failed_precondition") && !SluiceError.is(err, "not_found")) {
              this.log.warn({ approvalId: req.approvalId, err: (err as Error).message }, "could not cancel the approval request of a gone node; retrying");
            }
          }
        }
      }
    } finally {
      this.reaping = false;
    }
    return cancelled;
  }

  /** Requests waiting for a decision, as this replica's expirer has read them from the stream (metrics). */
  get pendingCount(): number {
    return this.open.size;
  }

  /** Starts the request listener and the expirer. */
  async start(): Promise<void> {
    const names = this.o.names;
    const states = this.open;
    // a live consumer: when the NATS server holding it dies, or its first pull is lost, it is
    // replaced after the last event folded instead of leaving this replica's expirer deaf
    this.watch = await startLiveConsumer({
      nc: this.o.nc,
      stream: names.controlStream,
      filter: names.controlAggregateFilter(APPROVAL_AGGREGATE),
      what: "approval expirer",
      logger: this.log,
      onMessage: (m) => {
        try {
          const r = this.foldInto(states, m.subject, m.data);
          if (!r) return;
          if (r.state.status === "pending") this.schedule(r.id, r.state.request!.expiresAt);
          else {
            this.clear(r.id);
            states.delete(r.id); // decided requests need no memory here
          }
        } catch (e) {
          this.log.error({ subject: m.subject, err: (e as Error).message }, "unreadable approval event");
        }
      },
    });

    this.sub = this.o.nc.subscribe(names.approvalRequestSubject, {
      queue: "sluice-control-plane-approvals",
      callback: (err, msg) => {
        if (err) {
          this.log.warn({ err: err.message }, "approval request subscription error");
          return;
        }
        void (async () => {
          let reply: NatsApprovalReply;
          try {
            const req = NatsApprovalRequest.decode(msg.data);
            if (!req.requester || !req.binding) throw new SluiceError("invalid_argument", "requester and binding are required");
            const r = await this.request({
              idempotencyKey: req.idempotencyKey,
              requester: { subject: req.requester.subject, issuer: req.requester.issuer, groups: [...req.requester.groups] },
              request: {
                binding: { ...req.binding },
                sql: req.sql,
                statementClass: req.statementClass,
                rule: req.rule,
                policy: req.policy,
                approvers: [...req.approvers],
                timeoutMs: req.timeoutMs,
                node: req.node,
                region: req.region,
                statementId: req.statementId,
                ...(req.nodeStartedAt ? { nodeStartedAt: req.nodeStartedAt } : {}),
              },
            });
            reply = { id: r.view.id, expiresAt: r.view.expiresAt, errorCode: "", errorMessage: "" };
          } catch (e) {
            const se = SluiceError.from(e);
            if (se.code === "internal" || se.code === "unavailable") this.log.error({ err: se.message }, "approval request failed");
            reply = { id: "", expiresAt: "", errorCode: se.code, errorMessage: se.message.split("\n")[0]!.slice(0, 300) };
          }
          msg.respond(NatsApprovalReply.encode(reply).finish());
        })();
      },
    });

    const cancelPrefix = names.approvalCancelSubject("").slice(0, -1);
    this.cancelSub = this.o.nc.subscribe(names.approvalCancelAll, {
      queue: "sluice-control-plane-approvals",
      callback: (err, msg) => {
        if (err) {
          this.log.warn({ err: err.message }, "approval cancel subscription error");
          return;
        }
        void (async () => {
          let reply: NatsApprovalReply;
          try {
            // who sent it is the subject's node token (permissions pin each node to its own)
            const node = decodeSubjectToken(msg.subject.slice(cancelPrefix.length));
            const c = NatsApprovalCancel.decode(msg.data);
            if (c.reason !== "client_left" && c.reason !== "session_ended") throw new SluiceError("invalid_argument", "a data plane cancels with reason client_left or session_ended");
            const r = await this.cancel(c.id, c.reason, c.reason === "client_left" ? "the client disconnected while the statement was held" : "the session ended while the statement was held", nodeActor(node), c.commandId || undefined);
            reply = { id: r.view.id, expiresAt: r.view.expiresAt, errorCode: "", errorMessage: "" };
          } catch (e) {
            const se = SluiceError.from(e);
            if (se.code === "internal" || se.code === "unavailable") this.log.error({ err: se.message }, "approval cancel failed");
            reply = { id: "", expiresAt: "", errorCode: se.code, errorMessage: se.message.split("\n")[0]!.slice(0, 300) };
          }
          if (msg.reply) msg.respond(NatsApprovalReply.encode(reply).finish());
        })();
      },
    });
    await this.o.nc.flush();

    if (this.o.fleet) {
      const every = this.o.reapEveryMs ?? 2000;
      const tick = () => {
        if (this.stopped) return;
        this.reap()
          .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, "approval reaper could not read the fleet"))
          .finally(() => {
            if (!this.stopped) this.reaper = setTimeout(tick, every).unref();
          });
      };
      this.reaper = setTimeout(tick, every).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reaper) clearTimeout(this.reaper);
    this.cancelSub?.unsubscribe();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.sub?.unsubscribe();
    await this.watch?.stop();
  }
}
