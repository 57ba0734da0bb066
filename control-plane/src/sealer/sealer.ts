import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { decodeBatch, type CloudEvent } from "@sluice/shared/events";
import { startLiveConsumer, type LiveConsumer, type NatsNames } from "@sluice/shared/nats";
import type { Logger } from "@sluice/shared/logging";
import { SluiceError } from "@sluice/shared/errors";
import { checkpointSignatureValid, parseCheckpoint, signCheckpoint, type Checkpoint } from "./checkpoint.js";
import { KvLease } from "./kv-lease.js";
import { SealerCore, START_OF_STREAM, positionAfter, type SealPosition } from "./sealer-core.js";
import type { SigningKey } from "./signing-key.js";
import { messageDigest } from "./stream-chain.js";

/** The stream the sealer seals; the checkpoint subject is named after it (contract). */
export const SEALED_STREAM = "SLUICE_AUDIT";
export const SEALER_LEASE_KEY = "sealer";

export interface SealerOptions {
  nc: NatsConnection;
  names: NatsNames;
  /** the leases bucket (natsNames().leaseBucket) */
  leases: KV;
  key: SigningKey;
  everyEvents: number;
  everySeconds: number;
  /** unique per process */
  holder: string;
  /** at most the leases bucket's TTL; default 15 s */
  leaseTtlMs?: number;
  logger?: Logger;
  /** called after each checkpoint is stored (tests, metrics) */
  onCheckpoint?: (cp: Checkpoint) => void;
}

export interface SealerStatus {
  leader: boolean;
  /** last stream sequence covered by a stored checkpoint */
  sealedThrough: number;
  /** events read but not yet covered by a checkpoint */
  pending: number;
  checkpoints: number;
}

/** Reads the newest checkpoint of the audit stream, with its sequence in the checkpoint stream. */
export async function lastCheckpoint(nc: NatsConnection, names: NatsNames): Promise<{ cp: Checkpoint; seq: number } | undefined> {
  const jsm = await jetstreamManager(nc);
  let m;
  try {
    m = await jsm.streams.getMessage(names.checkpointStream, { last_by_subj: names.checkpointSubject(SEALED_STREAM) });
  } catch (e) {
    if ((e as { code?: number }).code === 10037 || /no message found/i.test(String((e as Error).message))) return undefined;
    throw e;
  }
  if (!m) return undefined;
  return { cp: parseCheckpoint(m.data), seq: m.seq };
}

/**
 * The sealer: one leader among control-plane replicas (KV lease) reads SLUICE_AUDIT in stream order
 * with a live consumer (shared/src/nats/live-consumer.ts), extends the stream-wide hash chain (one link per stored message, over the
 * digests of the events of its batch), and stores an Ed25519-signed checkpoint every N messages or T
 * seconds. A checkpoint is published with the expected last sequence of the
 * checkpoint subject, so a deposed leader that still believes it leads cannot fork the checkpoint
 * chain. After a restart it resumes from the last stored checkpoint.
 */
export class Sealer {
  private readonly lease: KvLease;
  private run: { abort: () => void; done: Promise<void> } | undefined;
  private core: SealerCore | undefined;
  private sealed: SealPosition = START_OF_STREAM;
  private count = 0;
  private stopped = false;
  private flushNow: (() => Promise<void>) | undefined;

  constructor(private readonly o: SealerOptions) {
    this.lease = new KvLease({
      kv: o.leases,
      key: SEALER_LEASE_KEY,
      holder: o.holder,
      ttlMs: o.leaseTtlMs ?? 15_000,
      onError: (err) => o.logger?.debug({ err: String(err) }, "sealer lease operation failed"),
    });
  }

  start(): this {
    this.lease.start({
      onAcquired: () => {
        this.o.logger?.info({ holder: this.o.holder }, "sealer: became leader");
        this.startRun();
      },
      onLost: (reason) => {
        // giving the lease up on stop is the normal end, not something to warn about
        if (reason === "stopped") this.o.logger?.info({ holder: this.o.holder, reason }, "sealer: gave up leadership");
        else this.o.logger?.warn({ holder: this.o.holder, reason }, "sealer: lost leadership");
        this.run?.abort();
      },
    });
    return this;
  }

  status(): SealerStatus {
    return {
      leader: this.lease.isLeader,
      sealedThrough: this.sealed.lastSeq,
      pending: this.core?.pending ?? 0,
      checkpoints: this.count,
    };
  }

  get isLeader(): boolean {
    return this.lease.isLeader;
  }

  /**
   * Seals what the leader has read so far without waiting for N events or T seconds (tests, a
   * graceful hand-over). Resolves with the stream sequence now sealed; a non-leader does nothing.
   */
  async sealNow(): Promise<number> {
    if (this.flushNow) await this.flushNow();
    return this.sealed.lastSeq;
  }

  /** Stops sealing; a leader first seals what it has read, then hands the lease back. */
  async stop(): Promise<void> {
    this.stopped = true;
    const run = this.run;
    if (run) {
      run.abort();
      await run.done;
    }
    await this.lease.stop();
  }

  private startRun(): void {
    if (this.run || this.stopped) return;
    let aborted = false;
    let wake: (() => void) | undefined;
    const abortCbs: Array<() => void> = [];
    const abort = () => {
      aborted = true;
      for (const f of abortCbs) f();
      wake?.();
    };
    const done = (async () => {
      let backoffMs = 1000;
      while (!aborted && this.lease.isLeader) {
        try {
          await this.sealAsLeader(() => aborted, (f) => abortCbs.push(f));
          backoffMs = 1000;
        } catch (err) {
          this.o.logger?.error({ err: String(err) }, "sealer: sealing stopped; resuming from the last checkpoint");
          backoffMs = Math.min(backoffMs * 2, 30_000);
        }
        abortCbs.length = 0;
        if (!aborted) await new Promise<void>((r) => { wake = r; setTimeout(r, backoffMs).unref?.(); });
      }
    })().finally(() => {
      this.run = undefined;
      this.core = undefined;
    });
    this.run = { abort, done };
  }

  private async sealAsLeader(aborted: () => boolean, onAbort: (f: () => void) => void): Promise<void> {
    const { nc, names } = this.o;
    const js = jetstream(nc);
    const subject = names.checkpointSubject(SEALED_STREAM);
    const last = await lastCheckpoint(nc, names);
    // never extend a chain from a checkpoint this key did not sign: that would launder a forgery
    if (last && (last.cp.keyId !== this.o.key.keyId || !checkpointSignatureValid(last.cp, this.o.key.publicKey))) {
      throw new SluiceError("failed_precondition",
        `the last checkpoint [${last.cp.firstSeq}..${last.cp.lastSeq}] is not signed by this sealer's key ${this.o.key.keyId} (it says ${last.cp.keyId}): not sealing until an operator checks it with sluice audit verify`);
    }
    let lastCpSeq = last?.seq ?? 0;
    this.sealed = last ? positionAfter(last.cp) : START_OF_STREAM;
    const everyMs = Math.max(1, this.o.everySeconds * 1000);
    const core = new SealerCore(
      {
        stream: names.auditStream,
        keyId: this.o.key.keyId,
        sign: (u) => signCheckpoint(u, this.o.key.privateKey),
        everyEvents: Math.max(1, this.o.everyEvents),
        everyMs,
      },
      this.sealed,
      Date.now(),
    );
    this.core = core;

    // One flush at a time, in order: the consume loop and the timer both enqueue here.
    let chain: Promise<void> = Promise.resolve();
    let failure: unknown;
    const flush = (): Promise<void> => {
      chain = chain.then(async () => {
        if (failure) return;
        const cp = core.cut(new Date());
        if (!cp) return;
        try {
          const ack = await js.publish(subject, JSON.stringify(cp), {
            msgID: `${cp.stream}:${cp.firstSeq}-${cp.lastSeq}`,
            expect: { lastSubjectSequence: lastCpSeq },
          });
          lastCpSeq = ack.seq;
          this.sealed = positionAfter(cp);
          this.count++;
          this.o.onCheckpoint?.(cp);
        } catch (err) {
          failure = err;
          throw err;
        }
      });
      return chain;
    };

    this.flushNow = flush;
    // A live consumer: when the NATS server holding it dies (or its first pull is lost), it is
    // replaced after the last message added, where an ordered consumer alone went deaf and the
    // stream stopped being sealed for the rest of the outage (issue 16).
    let finish!: () => void;
    const ended = new Promise<void>((r) => (finish = r));
    const timer = setInterval(() => {
      if (core.due(Date.now())) flush().catch(() => finish());
    }, Math.min(everyMs, 1000));
    onAbort(() => finish());
    let live: LiveConsumer | undefined;
    try {
      live = await startLiveConsumer({
        nc,
        stream: names.auditStream,
        afterSeq: this.sealed.lastSeq,
        what: "sealer",
        logger: this.o.logger,
        maxMessages: 512,
        onMessage: async (m) => {
          if (failure || aborted()) return finish();
          let events: CloudEvent[] | undefined;
          try {
            events = decodeBatch(m.data);
          } catch {
            events = undefined; // sealed by its raw bytes; verify reports the malformed message
          }
          core.add(m.seq, messageDigest(events, m.data));
          // a failed flush ends this run (failure is set): never thrown, which would deliver it again
          if (core.pending >= this.o.everyEvents) await flush().catch(() => finish());
          if (aborted()) finish();
        },
      });
      if (aborted()) finish();
      await ended;
    } finally {
      this.flushNow = undefined;
      clearInterval(timer);
      await live?.stop();
      // seal what was read before giving up the lease (a graceful stop or step-down)
      if (!failure && this.lease.isLeader) await flush().catch(() => undefined);
      else await chain.catch(() => undefined);
    }
    if (failure) throw failure;
  }
}

export function startSealer(o: SealerOptions): Sealer {
  return new Sealer(o).start();
}
