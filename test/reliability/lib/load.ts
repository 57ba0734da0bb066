/**
 * The load of a scenario: workers, each one pg client through the proxy running statements one
 * after another, every statement naming a marker of its own (`w<worker>-<n>`) so what a client saw
 * succeed can be looked for on the audit stream and in the upstream database afterwards. A worker
 * whose connection ends connects again (after a pause) and goes on; every error is counted by the
 * SQLSTATE the client saw (or `connection: …` when there was none, e.g. a socket closed).
 *
 * The ledger it keeps is the client's view, nothing else: a statement counts as acknowledged only
 * when its result reached the client. A statement whose connection broke before an answer is in
 * doubt (counted, never claimed either way).
 */
import pg from "pg";
import type { ReliabilityStack } from "./reliability-stack.js";

export interface LoadOptions {
  workers: number;
  /** the statement of one turn; it must contain `marker` as a literal (default an INSERT into ledger) */
  sql?: (marker: string) => string;
  /** pause after each statement (ms; default 0) */
  pauseMs?: number;
  /** pause before connecting again after a connection ended (ms; default 200) */
  reconnectPauseMs?: number;
  /** the identity of the workers (default group ci) */
  groups?: string[];
  /** a client-side limit on one statement (ms; default none): the error is `connection: query timeout` */
  queryTimeoutMs?: number;
  /** keep latencies of every statement (for percentiles; default true) */
  latencies?: boolean;
  /** spread the workers' first connections over this long (ms; default all at once) */
  rampMs?: number;
}

export interface ErrorSeen {
  at: number;
  /** when the failed statement (or connection attempt) began */
  startedAt: number;
  worker: number;
  code: string;
  message: string;
  /** while connecting (the statement never started) */
  connecting: boolean;
}

export const LEDGER_DDL = "CREATE TABLE IF NOT EXISTS ledger (marker text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())";
/** the default statement: its result names its own marker, so a result that belongs to another statement is seen */
export const ledgerInsert = (marker: string): string => `INSERT INTO ledger (marker) VALUES ('${marker}') RETURNING marker`;

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** ends a client, destroying its socket when a clean end does not finish in `ms` (a silent peer) */
export async function endClient(c: pg.Client, ms = 2000): Promise<void> {
  const ended = c.end().then(() => true, () => true);
  const t = new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref());
  if (!(await Promise.race([ended, t]))) (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

/** The code a client saw: the SQLSTATE of an ErrorResponse, else `connection: <what>`. */
export function codeOf(e: unknown): string {
  const err = e as { code?: unknown; message?: string };
  if (typeof err.code === "string" && SQLSTATE.test(err.code)) return err.code;
  if (typeof err.code === "string" && err.code) return `connection: ${err.code}`;
  const m = String(err.message ?? e);
  if (/timeout/i.test(m)) return "connection: query timeout";
  if (/terminated|closed|not queryable|ended|ECONNRESET|socket/i.test(m)) return "connection: closed";
  return `connection: ${m.slice(0, 60)}`;
}

export class Load {
  /** per worker: markers acknowledged to the client, in order, and when */
  readonly acked: string[][];
  readonly ackedAt: number[][];
  /** statements whose connection broke before an answer (outcome unknown to the client) */
  inDoubt = 0;
  readonly errorCounts = new Map<string, number>();
  /** the first 2,000 errors (counts above are complete) */
  readonly errors: ErrorSeen[] = [];
  /** workers that saw any error or lost their connection */
  readonly affected = new Set<number>();
  readonly latenciesMs: number[] = [];
  connects = 0;
  /** results that named another statement's marker (a connection handed over with another session's answer) */
  wrongResults = 0;
  readonly wrongExamples: string[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly clients = new Set<pg.Client>();

  constructor(private readonly stack: ReliabilityStack, readonly o: LoadOptions) {
    this.acked = Array.from({ length: o.workers }, () => []);
    this.ackedAt = Array.from({ length: o.workers }, () => []);
  }

  start(): this {
    this.running = true;
    this.loops = Array.from({ length: this.o.workers }, (_, w) => this.worker(w));
    return this;
  }

  /** stops every worker after its current statement (in-flight ones are waited for, up to `ms`) */
  async stop(ms = 60_000): Promise<void> {
    this.running = false;
    const all = Promise.allSettled(this.loops);
    const late = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), ms).unref())]);
    if (late) for (const c of this.clients) (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await all;
    await Promise.all([...this.clients].map((c) => endClient(c)));
  }

  /** workers connected now */
  get connected(): number {
    return this.clients.size;
  }

  get total(): number {
    return this.acked.reduce((a, l) => a + l.length, 0);
  }

  /** acknowledged statements after `since` (ms epoch) */
  ackedSince(since: number): number {
    let n = 0;
    for (const at of this.ackedAt) for (let i = at.length - 1; i >= 0 && at[i]! > since; i--) n++;
    return n;
  }

  /** per worker, the first acknowledgement after `since`; undefined for a worker with none */
  firstAckAfter(since: number): Array<number | undefined> {
    return this.ackedAt.map((at) => at.find((x) => x > since));
  }

  errorsBy(): Record<string, number> {
    return Object.fromEntries([...this.errorCounts].sort((a, b) => b[1] - a[1]));
  }

  /** waits until `n` more statements were acknowledged (or `ms` passed); true when they were */
  async waitForAcks(n: number, ms: number): Promise<boolean> {
    const target = this.total + n;
    const until = Date.now() + ms;
    while (this.total < target && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.total >= target;
  }

  private noteError(w: number, e: unknown, connecting: boolean, startedAt: number): string {
    const code = codeOf(e);
    this.errorCounts.set(code, (this.errorCounts.get(code) ?? 0) + 1);
    if (this.errors.length < 2000) this.errors.push({ at: Date.now(), startedAt, worker: w, code, message: String((e as Error).message ?? e).slice(0, 200), connecting });
    this.affected.add(w);
    return code;
  }

  private async connect(w: number): Promise<pg.Client | undefined> {
    const token = await this.stack.token({ sub: `repo:acme/load-${w}`, groups: this.o.groups ?? ["ci"] });
    const c = new pg.Client({ ...this.stack.pgConfig(token), application_name: `rel-w${w}`, ...(this.o.queryTimeoutMs ? { query_timeout: this.o.queryTimeoutMs } : {}) });
    c.on("error", () => undefined);
    const t0 = Date.now();
    try {
      this.connects++;
      await c.connect();
      this.clients.add(c);
      return c;
    } catch (e) {
      this.noteError(w, e, true, t0);
      await endClient(c);
      return undefined;
    }
  }

  private async worker(w: number): Promise<void> {
    const sql = this.o.sql ?? ledgerInsert;
    let n = 0;
    if (this.o.rampMs) await new Promise((r) => setTimeout(r, (this.o.rampMs! * w) / this.o.workers));
    while (this.running) {
      const c = await this.connect(w);
      if (!c) {
        await new Promise((r) => setTimeout(r, this.o.reconnectPauseMs ?? 200));
        continue;
      }
      let alive = true;
      while (alive && this.running) {
        const marker = `w${w}-${++n}`;
        const t0 = performance.now();
        const started = Date.now();
        try {
          const res = await c.query(sql(marker));
          const got = (res.rows?.[0] as { marker?: unknown } | undefined)?.marker;
          if (got !== undefined && got !== marker) {
            this.wrongResults++;
            if (this.wrongExamples.length < 10) this.wrongExamples.push(`${marker} got ${String(got)}`);
            this.affected.add(w);
            continue;
          }
          if (this.o.latencies !== false) this.latenciesMs.push(performance.now() - t0);
          this.acked[w]!.push(marker);
          this.ackedAt[w]!.push(Date.now());
        } catch (e) {
          const code = this.noteError(w, e, false, started);
          const fatal = (e as { severity?: string }).severity === "FATAL";
          if (code.startsWith("connection:") || fatal) {
            alive = false;
            if (code.startsWith("connection:")) this.inDoubt++;
          } else {
            // an ErrorResponse: the session goes on (a refusal is not the end of it)
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        if (this.o.pauseMs) await new Promise((r) => setTimeout(r, this.o.pauseMs));
      }
      this.clients.delete(c);
      await endClient(c);
      if (this.running && !alive) await new Promise((r) => setTimeout(r, this.o.reconnectPauseMs ?? 200));
    }
  }
}

/** The p-th percentile (0..100) of `xs` (nearest rank); NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
