/**
 * The audit stream's fold — the read model's projector and the sealer — on a thread of its own
 * (audit-fold-worker.ts), with a NATS connection of its own (issue 17).
 *
 * Why: both read every message of SLUICE_AUDIT. A control plane that starts on a long stream (after
 * an outage, 935k events in the reliability run) decodes, folds, hashes and signs for minutes. On
 * the thread and the NATS connection of the command path, every approval request, `policy apply`
 * and /healthz waited behind that work, and their JetStream replies behind megabytes of pulled audit
 * messages on the one socket: requests timed out, consumers of the control stream were declared
 * silent, /healthz took seconds. On their own thread and connection the command path answers while
 * the fold catches up, and nothing it does waits for the read model.
 *
 * The thread writes the read model; this thread reads it through its own connection (SQLite in WAL
 * mode lets a reader beside the writer; PostgreSQL has its own pool). An in-memory SQLite database
 * cannot be shared between threads: that one is folded on this thread (InlineAuditFold).
 */
import { Worker } from "node:worker_threads";
import type { SluiceConfig } from "@sluice/shared/config";
import { SluiceError, isErrorCode } from "@sluice/shared/errors";
import type { Logger } from "@sluice/shared/logging";
import type { ReadModelConfig } from "../projections/read-model/read-model.js";
import type { RebuildResult } from "../projections/read-model/read-model-projector.js";
import type { SealerStatus } from "../sealer/sealer.js";

/** What the command path needs of the read model's projector. */
export interface ProjectorHandle {
  /** audit stream sequence folded into the read model (as last reported by the fold) */
  readonly position: number;
  /** waits until everything stored in the audit stream when called has been folded */
  catchUp(timeoutMs?: number): Promise<number>;
  /** drops and refolds the read model from the stream */
  rebuild(): Promise<RebuildResult>;
}

/** What the command path needs of the sealer. */
export interface SealerHandle {
  status(): SealerStatus;
  /** seals what has been read so far; resolves with the sequence sealed through */
  sealNow(): Promise<number>;
  /** true while this replica holds the sealer lease (as last reported) */
  readonly isLeader: boolean;
  /** stops sealing (a leader seals what it read and hands the lease back); the projector runs on */
  stop(): Promise<void>;
}

export interface AuditFold {
  projector: ProjectorHandle;
  sealer: SealerHandle;
  stop(): Promise<void>;
}

/** What the thread is started with (workerData). */
export interface AuditFoldStart {
  config: SluiceConfig;
  readModel: ReadModelConfig;
  /** unique per process: the durable's and the sealer lease holder's name */
  instance: string;
  logLevel: string;
}

interface WireError {
  code?: string;
  message: string;
}

export type AuditFoldRequest = { type: "catchUp"; timeoutMs: number } | { type: "rebuild" } | { type: "sealNow" } | { type: "stopSealer" } | { type: "stop" };
export type ToAuditFold = AuditFoldRequest & { id: number };

export interface AuditFoldState {
  position: number;
  sealer: SealerStatus;
}

export type FromAuditFold =
  | { type: "ready"; state: AuditFoldState }
  | { type: "failed"; error: WireError }
  | { type: "state"; state: AuditFoldState }
  | { type: "log"; chunk: string }
  | { type: "reply"; id: number; value?: unknown; error?: WireError; state: AuditFoldState };

export function toWire(e: unknown): WireError {
  const message = e instanceof Error ? e.message : String(e);
  return SluiceError.is(e) ? { code: e.code, message } : { message };
}

function fromWire(w: WireError): Error {
  return w.code !== undefined && isErrorCode(w.code) ? new SluiceError(w.code, w.message) : new Error(w.message);
}

/** The thread's module next to this one: the compiled .js, or the .ts source through tsx (the thread registers it itself). */
function workerFor(start: AuditFoldStart): Worker {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const entry = new URL(`./audit-fold-worker${ext}`, import.meta.url).href;
  if (ext === ".js") return new Worker(new URL(entry), { workerData: start });
  // module hooks registered on the main thread do not reach a worker: it registers tsx first
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData: start });
}

const LEVELS: Record<number, "trace" | "debug" | "info" | "warn" | "error" | "fatal"> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };

/** A log line of the thread, written again through this thread's logger (which owns the destination). */
function relog(logger: Logger, chunk: string): void {
  for (const line of chunk.split("\n")) {
    if (!line.trim()) continue;
    try {
      const { level, time: _t, pid: _p, hostname: _h, name: _n, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
      logger[LEVELS[Number(level)] ?? "info"](fields, String(msg ?? ""));
    } catch {
      logger.info(line);
    }
  }
}

/** Starts the fold's thread; resolves once its projector and sealer run. */
export async function startAuditFoldThread(start: Omit<AuditFoldStart, "logLevel">, logger: Logger): Promise<AuditFold> {
  const worker = workerFor({ ...start, logLevel: logger.level });
  let state: AuditFoldState = { position: 0, sealer: { leader: false, sealedThrough: 0, pending: 0, checkpoints: 0 } };
  const calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;
  let stopping = false;
  let crash: string | undefined;
  let ready!: () => void;
  let failed!: (e: Error) => void;
  const started = new Promise<void>((res, rej) => ((ready = res), (failed = rej)));
  worker.on("message", (m: FromAuditFold) => {
    switch (m.type) {
      case "log":
        relog(logger, m.chunk);
        break;
      case "state":
        state = m.state;
        break;
      case "ready":
        state = m.state;
        ready();
        break;
      case "failed":
        failed(fromWire(m.error));
        break;
      case "reply": {
        state = m.state;
        const call = calls.get(m.id);
        calls.delete(m.id);
        if (m.error) call?.reject(fromWire(m.error));
        else call?.resolve(m.value);
        break;
      }
    }
  });
  worker.on("error", (e) => (crash = e.message));
  worker.on("exit", (code) => {
    exited = true;
    const why = crash ?? `the audit fold thread exited (code ${code})`;
    failed(new Error(why));
    for (const c of calls.values()) c.reject(new SluiceError("unavailable", why));
    calls.clear();
    // the command path goes on; what needs the read model or the sealer says it is not there
    if (!stopping) logger.error({ err: why }, "audit fold thread ended: the read model and the sealer stopped");
  });
  const call = <T>(r: AuditFoldRequest): Promise<T> => {
    if (exited) return Promise.reject(new SluiceError("unavailable", "the audit fold thread (read model and sealer) is not running"));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ ...r, id } satisfies ToAuditFold);
    });
  };
  try {
    await started;
  } catch (e) {
    stopping = true;
    await worker.terminate();
    throw e;
  }
  return {
    projector: {
      get position() {
        return state.position;
      },
      catchUp: (timeoutMs = 60_000) => call<number>({ type: "catchUp", timeoutMs }),
      rebuild: () => call<RebuildResult>({ type: "rebuild" }),
    },
    sealer: {
      status: () => state.sealer,
      sealNow: () => call<number>({ type: "sealNow" }),
      get isLeader() {
        return state.sealer.leader;
      },
      stop: () => call<void>({ type: "stopSealer" }),
    },
    async stop() {
      if (exited) return;
      stopping = true;
      // the sealer seals what it read and hands its lease back; the projector removes its durable
      await Promise.race([call({ type: "stop" }).catch(() => undefined), new Promise((r) => setTimeout(r, 10_000).unref())]);
      await worker.terminate();
    },
  };
}
