/**
 * The bad-token generator's own process (forked by bad-logins.ts). It runs apart from the test
 * process on purpose: that process also drives a scenario's 1,000 pg sessions, and on 2 shared
 * cores a storm's TLS handshakes sharing its event loop offered ~30 attempts a second instead of
 * 200 — the scenario measured the generator, not the node. Here one event loop does nothing but
 * start attempts on schedule and count how each ended.
 *
 * Every attempt is a real pg client's TLS connection and startup through the proxy. The pace is set
 * by a clock, not by answers: an attempt the node is slow to answer does not hold back the next one
 * (up to `maxInFlight` open at once; an attempt still unanswered after `timeoutMs` is counted as
 * `no answer` and closed), and a late wake-up of this process starts what was due meanwhile. With `resume`, a client offers the TLS session of an earlier attempt
 * (what a client that connects again may do; the node decides whether to resume it).
 *
 * Messages: in, one `start` (BadLoginsConfig) and later `stop`; out, `progress` at once (it runs)
 * and every second, and a final `done` (BadLoginsTally) once every open attempt has ended.
 */
import tls from "node:tls";
import pg from "pg";
import { codeOf, percentile } from "./load.js";

export interface BadLoginsConfig {
  pg: Omit<pg.ClientConfig, "ssl"> & { ssl: tls.ConnectionOptions };
  tokens: string[];
  perSecond: number;
  maxInFlight: number;
  timeoutMs: number;
  resume: boolean;
}

export interface BadLoginsTally {
  /** attempts started */
  attempts: number;
  /** attempts that had ended (with any outcome) */
  ended: number;
  outcomes: Record<string, number>;
  /** seconds the generator ran (start to now, or to stop) */
  seconds: number;
  /** attempts due that did not start: `maxInFlight` were open (the node holds them) */
  skippedFull: number;
  /** attempts due that did not start: this process fell more than a second behind its clock */
  skippedLate: number;
  /** time from an attempt's start to its outcome (ms): p50, p99, max */
  answerMs: { p50: number; p99: number; max: number };
  /** TLS handshakes that resumed an earlier session, of those that completed */
  tlsResumed: number;
  tlsCompleted: number;
  /** this process's CPU over the run (user + system, ms) */
  cpuMs: number;
  /** how late the pacing ticks woke, p99 (ms): this process's own event loop under the machine's load */
  lateP99Ms: number;
  /** in the final tally only: every answer time and tick lateness (ms), for a parent that merges processes */
  raw?: { answerMs: number[]; lateMs: number[] };
}

type Msg = { type: "start"; config: BadLoginsConfig } | { type: "stop" };

/** the pacing tick (ms): a late wake-up of up to a second loses nothing (see the loop) */
const TICK_MS = 20;

function run(cfg: BadLoginsConfig): { stop(): Promise<BadLoginsTally>; tally(): BadLoginsTally } {
  const outcomes: Record<string, number> = {};
  const answerMs: number[] = [];
  const late: number[] = [];
  const open = new Set<Promise<void>>();
  let attempts = 0;
  let ended = 0;
  let skippedFull = 0;
  let skippedLate = 0;
  let tlsResumed = 0;
  let tlsCompleted = 0;
  let session: Buffer | undefined;
  let running = true;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let stoppedAt: number | undefined;

  const one = async (token: string): Promise<void> => {
    const at = performance.now();
    const c = new pg.Client({ ...cfg.pg, password: token, ssl: { ...cfg.pg.ssl, ...(cfg.resume && session ? { session } : {}) }, connectionTimeoutMillis: cfg.timeoutMs });
    c.on("error", () => undefined);
    const conn = (c as unknown as { connection: NodeJS.EventEmitter & { stream: tls.TLSSocket } }).connection;
    conn.once("sslconnect", () => {
      const s = conn.stream;
      s.once("secureConnect", () => {
        tlsCompleted++;
        if (s.isSessionReused()) tlsResumed++;
      });
      if (cfg.resume) s.on("session", (b: Buffer) => (session = b));
    });
    let code = "accepted";
    try {
      await c.connect();
    } catch (e) {
      code = codeOf(e);
      if (code === "connection: query timeout" || /timeout/i.test(String((e as Error).message))) code = "no answer";
    } finally {
      await c.end().catch(() => undefined);
    }
    answerMs.push(performance.now() - at);
    ended++;
    outcomes[code] = (outcomes[code] ?? 0) + 1;
  };

  // Paced by the clock in ticks of TICK_MS: each tick starts the attempts due by now, so a tick that
  // wakes late (a starved process on a loaded machine) catches up instead of losing them. At most
  // a second's worth is owed: what is due beyond it is dropped and counted as `skippedLate`.
  const loop = (async () => {
    let owed = 0;
    let last = performance.now();
    let due = last + TICK_MS;
    while (running) {
      const now = performance.now();
      late.push(Math.max(0, now - due));
      owed += ((now - last) / 1000) * cfg.perSecond;
      last = now;
      if (owed > cfg.perSecond) {
        skippedLate += Math.floor(owed - cfg.perSecond);
        owed -= Math.floor(owed - cfg.perSecond);
      }
      while (owed >= 1) {
        owed--;
        if (open.size >= cfg.maxInFlight) {
          skippedFull++;
          continue;
        }
        const p: Promise<void> = one(cfg.tokens[attempts % cfg.tokens.length]!).finally(() => open.delete(p));
        open.add(p);
        attempts++;
      }
      due = now + TICK_MS;
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  })();

  const tally = (): BadLoginsTally => {
    const cpu = process.cpuUsage(cpu0);
    return {
      attempts,
      ended,
      outcomes: { ...outcomes },
      seconds: ((stoppedAt ?? performance.now()) - t0) / 1000,
      skippedFull,
      skippedLate,
      answerMs: { p50: percentile(answerMs, 50), p99: percentile(answerMs, 99), max: percentile(answerMs, 100) },
      tlsResumed,
      tlsCompleted,
      cpuMs: (cpu.user + cpu.system) / 1000,
      lateP99Ms: percentile(late, 99),
    };
  };
  return {
    tally,
    async stop() {
      running = false;
      await loop;
      stoppedAt = performance.now();
      await Promise.allSettled([...open]);
      return { ...tally(), raw: { answerMs, lateMs: late } };
    },
  };
}

let current: ReturnType<typeof run> | undefined;
let progress: NodeJS.Timeout | undefined;
process.on("message", (m: Msg) => {
  if (m.type === "start" && !current) {
    current = run(m.config);
    process.send?.({ type: "progress", tally: current.tally() });
    progress = setInterval(() => process.send?.({ type: "progress", tally: current!.tally() }), 1000);
  } else if (m.type === "stop" && current) {
    clearInterval(progress);
    void current.stop().then((tally) => process.send?.({ type: "done", tally }, () => process.exit(0)));
  }
});
// the test process is gone: nothing to report to
process.on("disconnect", () => process.exit(0));
