/**
 * A time bound per classification. libpg-query's parse runs synchronously inside WASM: on the
 * node's one thread nothing can interrupt it, and a statement that takes seconds to parse (a 1 MiB
 * INSERT … VALUES, thousands of `1+1+…` terms, a pile of nested subqueries) stalls every session
 * of the node for as long. Here a statement is classified
 *  - inline, when it is at most `inlineMaxBytes` long: the cost of a parse grows with its length,
 *    and below the bound even the most expensive shapes measured stay within a millisecond or two
 *    (test/bench/classify-cost.bench.ts), while a hand-off to a thread would cost more than the
 *    parse itself for the statements clients send most;
 *    A statement that may carry a PL/pgSQL body (a DO block, CREATE FUNCTION or PROCEDURE) stays
 *    inline only up to `bodyInlineMaxBytes`: its body is parsed and walked too, so it costs several
 *    times a plain statement of its length (a 4 KiB DO of PERFORMs took 12 ms on the main thread);
 *  - otherwise in a worker thread of the pool, one statement at a time per worker, with a
 *    deadline: a statement still being classified when it passes is denied (57014) and its worker
 *    terminated and replaced, so it holds nothing but itself. A worker that dies on a statement (out
 *    of memory) denies that statement only.
 * Statements that wait for a busy worker wait at most `deadlineMs` too (refused with 57014), and at
 * most `maxQueued` wait at all (53300 beyond): the waiting is bounded even when every worker is
 * held by hostile statements. Workers are started when first needed, so a node that never sees a
 * large statement runs none.
 */
import { Worker } from "node:worker_threads";
import { SluiceError } from "../errors/sluice-error.js";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { compiledParserModule } from "./sql-parser.js";
import type { Classification, StatementAnnotator } from "./statement-info.js";
import type { ClassifyReply, ClassifyRequest } from "./classify-worker.js";

/**
 * Longest statement classified on the calling thread, in UTF-8 bytes. See the header and
 * test/bench/classify-cost.bench.ts for the measurements behind it.
 */
export const INLINE_MAX_BYTES = 4096;
/**
 * Longest statement classified on the calling thread when its text names DO, FUNCTION or
 * PROCEDURE (a PL/pgSQL body is parsed and walked as well as the statement), in UTF-8 bytes.
 */
export const BODY_INLINE_MAX_BYTES = 1024;
/**
 * What a statement with a PL/pgSQL or SQL body must say. A word anywhere (a comment, a string, `ON
 * CONFLICT DO`) only sends a statement to a worker that did not need one: keywords cannot be
 * escaped or split, so a body never hides from this.
 */
const BODY_KEYWORD = /\b(?:do|function|procedure)\b/i;
/**
 * Default deadline of one classification in a worker (config dataPlane.classifier.timeoutMs). The
 * slowest statement shape found within the default size limit (1 MiB of INSERT … VALUES rows) took
 * 2.4 s here at a load of 14 on two cores: an honest bulk statement passes on a busy node, and a
 * worker is never held longer than this.
 */
export const DEFAULT_CLASSIFY_TIMEOUT_MS = 5000;

export interface ClassifierPoolOptions {
  /** worker threads at most (default 2) */
  workers?: number;
  /** how long one classification may run in a worker, and wait for one (default 5000 ms) */
  deadlineMs?: number;
  /** statements up to this many UTF-8 bytes are classified inline (default INLINE_MAX_BYTES) */
  inlineMaxBytes?: number;
  /** statements naming DO, FUNCTION or PROCEDURE up to this many UTF-8 bytes are classified inline (default BODY_INLINE_MAX_BYTES) */
  bodyInlineMaxBytes?: number;
  /** statements waiting for a worker at most; more are refused at once (default 256) */
  maxQueued?: number;
  /** a worker's JavaScript heap limit (default 512 MiB): a statement whose tree needs more is denied */
  workerHeapMb?: number;
  /**
   * URL of a module exporting `annotateStatement` (a StatementAnnotator): every classification, inline
   * or in a worker, carries its annotation of each statement, read off the tree the classifier
   * parsed. (A URL, not a function: a worker imports it for itself.)
   */
  annotator?: string;
}

export interface ClassifierPoolStats {
  inline: number;
  offloaded: number;
  timedOut: number;
  /** statements whose worker died under them (denied) */
  crashed: number;
  /** statements refused because too many were waiting, or waited too long */
  refused: number;
  /** workers started, replacements included */
  started: number;
}

interface Task {
  id: number;
  sql: string;
  resolve(c: Classification): void;
  reject(e: unknown): void;
  /** the queue-wait or run deadline */
  timer?: NodeJS.Timeout;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  task?: Task;
}

/**
 * dist/ runs the compiled worker. The sources run through tsx, which does not register itself in
 * worker threads on Node 20: there the worker registers it first, then imports the TypeScript entry.
 */
function newWorker(o: { resourceLimits: { maxOldGenerationSizeMb: number }; workerData: { parserModule: object; annotator?: string } }): Worker {
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./classify-worker.js", import.meta.url), o);
  const api = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./classify-worker.ts", import.meta.url).href;
  return new Worker(`import(${JSON.stringify(api)}).then((a) => { a.register(); return import(${JSON.stringify(entry)}); })`, { ...o, eval: true });
}
/**
 * Operator characters a statement longer than BODY_INLINE_MAX_BYTES may have and still be
 * classified inline. A chain of binary operators or casts (`1+1+…`, `'a'||'a'||…`, `1::int::int…`)
 * is a tree as deep as it is long: its parse, walk and lineage recurse once per operator, and on a
 * thread whose code has not run that deep before a 4 KiB chain took 0.15–0.6 s (a victim's
 * statement waited that long, test/bench/hostile-latency.bench.ts). Counted over the whole text,
 * literals and comments included: a miscount only sends a statement to a worker.
 */
const CHAIN_INLINE_MAX_OPERATORS = 256;
const OPERATOR_CHARACTER = new Uint8Array(128);
for (const c of "+-*/<>=~!@#%^&|`?:") OPERATOR_CHARACTER[c.charCodeAt(0)] = 1;

function operatorCharacters(sql: string): number {
  let n = 0;
  for (let i = 0; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c < 128 && OPERATOR_CHARACTER[c]) n++;
  }
  return n;
}

/** Whether `sql` is at most `bytes` long in UTF-8, which takes at most 3 bytes per UTF-16 unit. */
function within(sql: string, bytes: number): boolean {
  if (sql.length * 3 <= bytes) return true;
  return sql.length <= bytes && Buffer.byteLength(sql, "utf8") <= bytes;
}

/** after a worker failed to start, the next start waits this long (no spawn loop on a broken install) */
const RESTART_BACKOFF_MS = 1000;

export class ClassifierPool {
  readonly stats: ClassifierPoolStats = { inline: 0, offloaded: 0, timedOut: 0, crashed: 0, refused: 0, started: 0 };
  private readonly slots = new Set<Slot>();
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;
  private backoffUntil = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private readonly maxWorkers: number;
  readonly deadlineMs: number;
  readonly inlineMaxBytes: number;
  readonly bodyInlineMaxBytes: number;
  private readonly maxQueued: number;
  private readonly heapMb: number;
  private readonly annotatorUrl: string | undefined;

  private constructor(
    o: ClassifierPoolOptions,
    private readonly parserModule: object,
    private readonly annotate: StatementAnnotator | undefined,
  ) {
    this.maxWorkers = Math.max(1, o.workers ?? 2);
    this.deadlineMs = o.deadlineMs ?? DEFAULT_CLASSIFY_TIMEOUT_MS;
    this.inlineMaxBytes = o.inlineMaxBytes ?? INLINE_MAX_BYTES;
    this.bodyInlineMaxBytes = Math.min(this.inlineMaxBytes, o.bodyInlineMaxBytes ?? BODY_INLINE_MAX_BYTES);
    this.maxQueued = o.maxQueued ?? 256;
    this.heapMb = o.workerHeapMb ?? 512;
    this.annotatorUrl = o.annotator;
  }

  /** A pool on the process's parser (loaded here) for the inline statements. */
  static async create(o: ClassifierPoolOptions = {}): Promise<ClassifierPool> {
    await loadSqlParser();
    // every worker, replacements included, makes its instances of this thread's compiled module
    // instead of reading and compiling 1.7 MB of wasm again
    const annotate = o.annotator ? ((await import(o.annotator)) as { annotateStatement: StatementAnnotator }).annotateStatement : undefined;
    if (o.annotator && typeof annotate !== "function") throw new Error(`${o.annotator} exports no annotateStatement`);
    return new ClassifierPool(o, await compiledParserModule(), annotate);
  }

  /** Whether `sql` is classified inline (synchronously). */
  inline(sql: string): boolean {
    if (!within(sql, this.inlineMaxBytes)) return false;
    if (within(sql, this.bodyInlineMaxBytes)) return true;
    return !BODY_KEYWORD.test(sql) && operatorCharacters(sql) <= CHAIN_INLINE_MAX_OPERATORS;
  }

  /**
   * The classification of `sql`: synchronous for short statements, a promise for the rest. The
   * promise rejects with a SluiceError when the statement could not be classified in time
   * (`deadline_exceeded`) or could not wait for it (`resource_exhausted`); either is a deny.
   */
  classify(sql: string): Classification | Promise<Classification> {
    if (this.inline(sql)) {
      this.stats.inline++;
      return classifySql(sql, undefined, this.annotate);
    }
    if (this.closed) return Promise.reject(new SluiceError("unavailable", "the SQL classifier is shutting down"));
    if (this.queue.length >= this.maxQueued) {
      this.stats.refused++;
      return Promise.reject(new SluiceError("resource_exhausted", `too many large statements are waiting to be classified (${this.maxQueued}); try again`));
    }
    this.stats.offloaded++;
    return new Promise<Classification>((resolve, reject) => {
      const task: Task = { id: this.nextId++, sql, resolve, reject };
      this.queue.push(task);
      this.pump();
    });
  }

  /** Ends every worker; statements still waiting are refused. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.backoffTimer);
    for (const t of this.queue.splice(0)) this.fail(t, new SluiceError("unavailable", "the SQL classifier is shutting down"));
    const all = [...this.slots];
    this.slots.clear();
    for (const s of all) if (s.task) this.fail(s.task, new SluiceError("unavailable", "the SQL classifier is shutting down"));
    await Promise.all(all.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  /** workers running or starting */
  get workers(): number {
    return this.slots.size;
  }

  private fail(t: Task, e: unknown): void {
    clearTimeout(t.timer);
    t.timer = undefined;
    t.reject(e);
  }

  /** Hands queued statements to idle workers, starting workers up to the maximum. */
  private pump(): void {
    if (this.closed) return;
    for (const s of this.slots) {
      if (this.queue.length === 0) break;
      if (s.ready && !s.task) this.run(s, this.queue.shift()!);
    }
    let starting = 0;
    for (const s of this.slots) if (!s.ready) starting++;
    while (this.queue.length > starting && this.slots.size < this.maxWorkers && Date.now() >= this.backoffUntil) {
      this.start();
      starting++;
    }
    if (this.queue.length > starting && this.slots.size < this.maxWorkers && !this.backoffTimer) {
      // (held: statements are waiting for it)
      this.backoffTimer = setTimeout(() => {
        this.backoffTimer = undefined;
        this.pump();
      }, Math.max(0, this.backoffUntil - Date.now()));
    }
    this.armQueueTimers();
  }

  /**
   * A statement waits at most `deadlineMs` for a worker, counted while one is running: the time a
   * first worker takes to start is not the statement's fault.
   */
  private armQueueTimers(): void {
    let anyReady = false;
    for (const s of this.slots) if (s.ready) anyReady = true;
    if (!anyReady) return;
    for (const t of this.queue) {
      if (t.timer) continue;
      t.timer = setTimeout(() => {
        const i = this.queue.indexOf(t);
        if (i < 0) return;
        this.queue.splice(i, 1);
        this.stats.refused++;
        t.timer = undefined;
        t.reject(new SluiceError("deadline_exceeded", `every SQL classifier was busy for ${this.deadlineMs} ms; the statement is denied, try again`));
      }, this.deadlineMs);
      t.timer.unref();
    }
  }

  private run(s: Slot, t: Task): void {
    clearTimeout(t.timer);
    s.task = t;
    s.worker.ref();
    t.timer = setTimeout(() => {
      if (s.task !== t) return;
      this.stats.timedOut++;
      s.task = undefined;
      this.retire(s);
      this.fail(t, new SluiceError("deadline_exceeded", `the statement could not be classified within ${this.deadlineMs} ms (dataPlane.classifier.timeoutMs); it is denied`));
      this.pump();
    }, this.deadlineMs);
    t.timer.unref();
    s.worker.postMessage({ id: t.id, sql: t.sql } satisfies ClassifyRequest);
  }

  private start(): void {
    this.stats.started++;
    const worker = newWorker({ resourceLimits: { maxOldGenerationSizeMb: this.heapMb }, workerData: { parserModule: this.parserModule, annotator: this.annotatorUrl } });
    // a worker keeps the process alive only while it starts or works on a statement
    const s: Slot = { worker, ready: false };
    this.slots.add(s);
    worker.on("message", (m: ClassifyReply | { ready: true }) => {
      if ("ready" in m) {
        s.ready = true;
        worker.unref();
        this.pump();
        return;
      }
      const t = s.task;
      if (!t || t.id !== m.id) return;
      s.task = undefined;
      worker.unref();
      clearTimeout(t.timer);
      t.resolve(m.result);
      this.pump();
    });
    const gone = (why: string) => {
      if (!this.slots.has(s)) return;
      this.slots.delete(s);
      if (!s.ready) {
        this.backoffUntil = Date.now() + RESTART_BACKOFF_MS;
        // no worker could start: what waits is refused now rather than left waiting for one
        if (this.slots.size === 0) {
          for (const q of this.queue.splice(0)) this.fail(q, new SluiceError("unavailable", `the SQL classifier could not start (${why}); try again`));
        }
      }
      const t = s.task;
      s.task = undefined;
      if (t) {
        // one statement per worker: the one it died on is the cause, and it alone is denied
        this.stats.crashed++;
        clearTimeout(t.timer);
        t.resolve({ ok: false, error: `the SQL classifier failed on this statement (${why})` });
      }
      this.pump();
    };
    worker.on("error", (e) => gone((e as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY" ? "out of memory" : e.message));
    worker.on("exit", (code) => gone(`worker exited with code ${code}`));
  }

  /** Terminates a worker that overran its deadline; a replacement starts when statements wait. */
  private retire(s: Slot): void {
    this.slots.delete(s);
    void s.worker.terminate().catch(() => undefined);
  }
}
