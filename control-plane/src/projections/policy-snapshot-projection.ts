/**
 * Folds the policy aggregate's events from SLUICE_CONTROL into the compiled snapshot in KV
 * (`sluice_snapshots` / `policy`), which the data planes watch. It starts from the beginning of the
 * stream on every start, so a restarted (or a fresh) control plane rebuilds the same snapshot; KV writes
 * are compare-and-set, so replicas never move the snapshot backwards.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { decodeEvent, type CloudEvent } from "@sluice/shared/events";
import { startLiveConsumer, type LiveConsumer, type NatsNames } from "@sluice/shared/nats";
import type { PolicySnapshot } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { SluiceError } from "@sluice/shared/errors";
import { actorLabel } from "../domain/command-meta.js";
import { POLICY_AGGREGATE, POLICY_BUNDLE_ID, evolvePolicy, initialPolicyState, type BundleApplied, type PolicyState } from "../domain/policy/policy-decider.js";
import { eventNameOf } from "../infra/jetstream-event-store.js";
import { writeSnapshotCas } from "./snapshot-kv-writer.js";

export interface PolicySnapshotProjection {
  /** resolves once every event present at start is folded and the snapshot written */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** revision folded so far (0: none) */
  revision(): number;
  state(): PolicyState;
  /** resolves when the snapshot for `revision` (or later) has been written (or found newer) in KV */
  waitForRevision(revision: number, timeoutMs?: number): Promise<void>;
  /** the revision this replica knows to be in KV (written by it or found there); 0: none */
  projectedRevision(): number;
  /** the last revision that arrived while this replica ran, and how long it took to be in KV */
  projected(): ProjectedRevision | undefined;
  /** the revision of the last policy event on the control stream (one request; metrics, at scrape time) */
  streamRevision(): Promise<number>;
}

export interface ProjectedRevision {
  revision: number;
  /** when its event was stored on the control stream (ms) */
  storedAtMs: number;
  /** when this replica knew its snapshot to be in KV (ms) */
  inKvAtMs: number;
}

export function toSnapshot(ev: BundleApplied): PolicySnapshot {
  return { revision: ev.revision, bundle: ev.bundle, hash: ev.hash, appliedBy: actorLabel(ev.actor), appliedAt: ev.appliedAt };
}

export function createPolicySnapshotProjection(o: { nc: NatsConnection; names: NatsNames; kv: KV; logger: Logger; now?: () => Date }): PolicySnapshotProjection {
  const now = o.now ?? (() => new Date());
  const subject = o.names.controlSubject(POLICY_AGGREGATE, POLICY_BUNDLE_ID);
  let state = initialPolicyState();
  let written = 0;
  let projected: ProjectedRevision | undefined;
  let stopped = false;
  const waiters = new Set<{ rev: number; resolve: () => void }>();

  function notify(): void {
    for (const w of waiters) if (written >= w.rev) {
      waiters.delete(w);
      w.resolve();
    }
  }

  async function publish(ev: BundleApplied, storedAtMs: number | undefined): Promise<void> {
    const outcome = await writeSnapshotCas(o.kv, o.names.snapshotKey, toSnapshot(ev));
    if (ev.revision > written && storedAtMs !== undefined) projected = { revision: ev.revision, storedAtMs, inKvAtMs: now().getTime() };
    written = Math.max(written, ev.revision);
    o.logger.info({ revision: ev.revision, outcome }, "policy snapshot projected");
    notify();
  }

  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

  async function fold(m: { data: Uint8Array; seq: number; time: Date; info: { pending: number } }, lastAtStart: number): Promise<void> {
    const ce = decodeEvent(m.data) as CloudEvent<Omit<BundleApplied, "type">>;
    const name = eventNameOf(ce.type, POLICY_AGGREGATE);
    if (name !== "BundleApplied") {
      o.logger.warn({ type: ce.type, seq: m.seq }, "skipping unknown policy event type");
      return;
    }
    const ev = { ...ce.data, type: "BundleApplied" } as BundleApplied;
    if (ev.revision > state.revision) state = evolvePolicy(state, ev);
    // while catching up only the last event's snapshot matters
    // a revision folded while catching up at start was stored before this replica ran: no timing
    if (m.info.pending === 0 || m.seq >= lastAtStart) await publishUntilStored(ev, m.seq > lastAtStart ? m.time.getTime() : undefined);
  }

  /**
   * A write that fails (the bucket's NATS leader is being re-elected, the connection is moving to
   * another server) is retried until it is stored or a newer snapshot is found there: the event is
   * on the stream, so the data planes must get it, and no later event may be needed to carry it.
   */
  async function publishUntilStored(ev: BundleApplied, storedAtMs: number | undefined): Promise<void> {
    for (let attempt = 1; !stopped; attempt++) {
      try {
        await publish(ev, storedAtMs);
        if (attempt > 1) o.logger.info({ revision: ev.revision, attempt }, "policy snapshot stored after retries");
        return;
      } catch (e) {
        o.logger[attempt === 1 ? "error" : "warn"]({ err: (e as Error).message, revision: ev.revision, attempt }, "policy snapshot write failed; retrying");
        await sleep(Math.min(5_000, 250 * attempt));
      }
    }
  }

  let consumer: LiveConsumer | undefined;

  return {
    async start() {
      const jsm = await jetstreamManager(o.nc);
      let lastAtStart = 0;
      try {
        lastAtStart = (await jsm.streams.getMessage(o.names.controlStream, { last_by_subj: subject }))?.seq ?? 0;
      } catch (e) {
        if ((e as { code?: number }).code !== 10037) throw e;
      }
      let caughtUp!: () => void;
      const ready = new Promise<void>((r) => (caughtUp = r));
      if (lastAtStart === 0) caughtUp();
      // An ordered consumer lives on one NATS server; when that server dies (or the connection moves
      // and the library never hears from it again) the live consumer notices the silence and places a
      // new one after the last event folded (issue 16: a replica projected nothing for > 60 s). The
      // first consumer is placed here, so a start without a reachable stream fails at once.
      consumer = await startLiveConsumer({
        nc: o.nc,
        stream: o.names.controlStream,
        filter: subject,
        what: "policy snapshot",
        logger: o.logger,
        heartbeatMs: 1_000,
        async onMessage(m) {
          await fold(m, lastAtStart);
          if (m.seq >= lastAtStart) caughtUp();
        },
      });
      await ready;
    },
    async stop() {
      stopped = true;
      await consumer?.stop();
      for (const w of waiters) w.resolve();
      waiters.clear();
    },
    revision: () => state.revision,
    state: () => state,
    projected: () => projected,
    projectedRevision: () => written,
    async streamRevision() {
      const jsm = await jetstreamManager(o.nc);
      try {
        const m = await jsm.streams.getMessage(o.names.controlStream, { last_by_subj: subject });
        return m ? ((decodeEvent(m.data) as CloudEvent<{ revision?: number }>).data.revision ?? 0) : 0;
      } catch (e) {
        if ((e as { code?: number }).code === 10037) return 0;
        throw e;
      }
    },
    waitForRevision(rev, timeoutMs = 10_000) {
      if (written >= rev) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const w = {
          rev,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new SluiceError("deadline_exceeded", `policy snapshot ${rev} not projected within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
  };
}
