/**
 * The data plane of `sluice dev`, on a thread of its own (dev-data-plane-worker.ts). In one event
 * loop with the control plane, every statement's relay waited behind the projector's and the
 * sealer's work on the same audit events (a third of a standalone node's throughput); on its own
 * thread the node runs as `sluice data-plane` does, with its own NATS connection, and the stack is
 * still one process that Ctrl-C stops and that cannot leave a child behind.
 *
 * The thread reports ready (or why it could not start), forwards its log lines to this thread (so
 * `sluice dev` can mute them after a failed start), answers waitForRevision and stop, and keeps its
 * count of unstored audit events in shared memory: a stop that ran out of time still says how many
 * were not delivered without asking a thread that may be stuck.
 */
import { Worker } from "node:worker_threads";
import type { SluiceConfig } from "@sluice/shared/config";
import { SluiceError, isErrorCode } from "@sluice/shared/errors";

/** What the thread is started with (workerData). */
export interface DevDataPlaneStart {
  config: SluiceConfig;
  logLevel: string;
  snapshotCacheFile: string;
  /** one Int32: the node's audit events queued or in flight, kept current by the thread */
  pendingCounter: SharedArrayBuffer;
}

/** An error as it crosses the thread boundary: a SluiceError keeps its code. */
export interface WireError {
  code?: string;
  message: string;
}

export type DevDataPlaneRequest =
  | { type: "waitForRevision"; revision: number; timeoutMs: number }
  | { type: "stop"; graceMs: number; flushMs: number };

export type ToWorker = DevDataPlaneRequest & { id: number };

export type FromWorker =
  | { type: "ready"; port: number; httpPort: number | null }
  | { type: "failed"; error: WireError }
  | { type: "log"; chunk: string }
  | { type: "reply"; id: number; value?: unknown; error?: WireError };

export function toWire(e: unknown): WireError {
  const message = e instanceof Error ? e.message : String(e);
  return SluiceError.is(e) ? { code: e.code, message } : { message };
}

function fromWire(w: WireError): Error {
  return w.code !== undefined && isErrorCode(w.code) ? new SluiceError(w.code, w.message) : new Error(w.message);
}

export interface DevDataPlaneOptions {
  config: SluiceConfig;
  logLevel: string;
  snapshotCacheFile: string;
  /** where the thread's log lines go */
  log: (chunk: string) => void;
}

/** The worker's module next to this one: the compiled .js, or the .ts source through tsx (the thread registers it itself). */
function workerFor(start: DevDataPlaneStart): Worker {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const entry = new URL(`./dev-data-plane-worker${ext}`, import.meta.url).href;
  if (ext === ".js") return new Worker(new URL(entry), { workerData: start });
  // module hooks registered on the main thread do not reach a worker: it registers tsx first
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData: start });
}

export class DevDataPlane {
  /** resolves with the listeners once the node serves, rejects with why it could not start */
  readonly ready: Promise<{ port: number; httpPort: number | null }>;
  /** resolves if the thread ends while nobody stopped it (a crash), with what it said */
  readonly lost: Promise<string>;
  port = 0;
  private readonly worker: Worker;
  private readonly pending: Int32Array;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stopping = false;
  private started = false;
  private exited = false;

  constructor(o: DevDataPlaneOptions) {
    const counter = new SharedArrayBuffer(4);
    this.pending = new Int32Array(counter);
    this.worker = workerFor({ config: o.config, logLevel: o.logLevel, snapshotCacheFile: o.snapshotCacheFile, pendingCounter: counter });
    let ready!: (v: { port: number; httpPort: number | null }) => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((ready = res), (failed = rej)));
    // nobody may be waiting yet when it fails: the caller's await sees it all the same
    this.ready.catch(() => undefined);
    let lost!: (why: string) => void;
    this.lost = new Promise((res) => (lost = res));
    let crash: string | undefined;
    this.worker.on("message", (m: FromWorker) => {
      switch (m.type) {
        case "log":
          o.log(m.chunk);
          break;
        case "ready":
          this.port = m.port;
          this.started = true;
          ready({ port: m.port, httpPort: m.httpPort });
          break;
        case "failed":
          this.stopping = true;
          failed(fromWire(m.error));
          void this.worker.terminate();
          break;
        case "reply": {
          const call = this.calls.get(m.id);
          this.calls.delete(m.id);
          if (m.error) call?.reject(fromWire(m.error));
          else call?.resolve(m.value);
          break;
        }
      }
    });
    this.worker.on("error", (e) => {
      crash = e.message;
    });
    this.worker.on("exit", (code) => {
      this.exited = true;
      const why = crash ?? `the data plane thread exited (code ${code})`;
      failed(new Error(why));
      for (const c of this.calls.values()) c.reject(new SluiceError("unavailable", why));
      this.calls.clear();
      if (!this.stopping) lost(why);
    });
  }

  private call<T>(m: DevDataPlaneRequest): Promise<T> {
    if (this.exited) return Promise.reject(new SluiceError("unavailable", "the data plane thread has exited"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const msg: ToWorker = { ...m, id };
      this.worker.postMessage(msg);
    });
  }

  /** Resolves once the node serves policy revision `revision` (or a newer one). */
  async waitForRevision(revision: number, timeoutMs: number): Promise<void> {
    await this.call<unknown>({ type: "waitForRevision", revision, timeoutMs });
  }

  /** audit events queued or in flight, as the thread last counted them (at most 100 ms old) */
  auditPending(): number {
    return Atomics.load(this.pending, 0);
  }

  /**
   * Stops the node like `DataPlaneNode.stop` (sessions get graceMs, their last audit events flushMs),
   * then ends the thread. A thread that has not finished starting is ended at once.
   */
  async stop(graceMs: number, o: { flushMs: number }): Promise<{ undeliveredAuditEvents: number }> {
    this.stopping = true;
    if (this.exited) return { undeliveredAuditEvents: this.auditPending() };
    if (!this.started) {
      // still connecting or starting: it has recorded nothing yet
      await this.worker.terminate();
      return { undeliveredAuditEvents: this.auditPending() };
    }
    const report = await this.call<{ undeliveredAuditEvents: number }>({ type: "stop", graceMs, flushMs: o.flushMs });
    await this.worker.terminate();
    return report;
  }

  /** Ends the thread now, whatever it is doing (a stop that ran out of time). */
  async kill(): Promise<void> {
    this.stopping = true;
    if (!this.exited) await this.worker.terminate();
  }
}
