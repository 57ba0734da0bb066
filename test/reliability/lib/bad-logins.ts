/**
 * Connection attempts with bad tokens at a steady rate alongside a scenario's load: a token of an
 * issuer nobody trusts (signed by another key), an expired one, and a string that is no JWT at all,
 * in turn. Each attempt is a real pg client's TLS connection and startup through the proxy; what it
 * ended with is counted by SQLSTATE. An attempt that got in is counted as `accepted` (it must never
 * happen); one the node left unanswered for `timeoutMs` as `no answer`.
 *
 * The attempts are made by a process of their own (bad-logins-process.ts), not in the test process:
 * with 1,000 sessions' clients in the same event loop the storm was held to ~30 a second by its
 * generator (issue 17's many-sessions run of 19:47), which said nothing about the node.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type tls from "node:tls";
import { createDevIssuer } from "@sluice/shared/auth";
// types only: the process module listens for its parent's messages when loaded
import type { BadLoginsConfig, BadLoginsTally } from "./bad-logins-process.js";
import { percentile } from "./load.js";
import type { ReliabilityStack } from "./reliability-stack.js";

export type { BadLoginsTally } from "./bad-logins-process.js";

export interface BadLogins {
  readonly attempts: number;
  readonly outcomes: Map<string, number>;
  /** attempts per second actually started (offered to the node) */
  rate(): number;
  /** the last tally the generator reported (the final one after stop) */
  tally(): BadLoginsTally | undefined;
  stop(): Promise<BadLoginsTally>;
}

export interface BadLoginsOptions {
  perSecond: number;
  /** attempts open at once at most (default 10 × perSecond): past it a tick starts none and is counted */
  maxInFlight?: number;
  /** an attempt unanswered this long is closed and counted as `no answer` (default 10 s) */
  timeoutMs?: number;
  /** offer an earlier attempt's TLS session (default false: every attempt a full handshake) */
  resume?: boolean;
  /** processes sharing the rate (default 2) */
  processes?: number;
}

const child = fileURLToPath(new URL("./bad-logins-process.ts", import.meta.url));

export async function startBadLogins(s: ReliabilityStack, o: BadLoginsOptions): Promise<BadLogins> {
  const stranger = await createDevIssuer({ issuer: s.dev.issuer, audience: "sluice" });
  const forged = await stranger.mint({ sub: "repo:evil/forged", groups: ["ci"], ttlSec: 3600 });
  const expired = await s.dev.mint({ sub: "repo:acme/old", groups: ["ci"], ttlSec: 60, now: new Date(Date.now() - 3_600_000) });
  const base = s.pgConfig("");
  const ssl = base.ssl as tls.ConnectionOptions;
  const config: BadLoginsConfig = {
    pg: { host: base.host, port: base.port, database: base.database, user: base.user, application_name: "rel-bad-login", ssl: { ...ssl, ca: String(ssl.ca) } },
    tokens: [forged, expired, "not-a-jwt"],
    perSecond: o.perSecond,
    maxInFlight: o.maxInFlight ?? o.perSecond * 10,
    timeoutMs: o.timeoutMs ?? 10_000,
    resume: o.resume ?? false,
  };
  // a few processes share the rate: on a loaded machine one process's event loop wakes late (a
  // process is scheduled as one task however much it has to do), and both cores are used
  const n = Math.max(1, o.processes ?? 2);
  const parts = await Promise.all(Array.from({ length: n }, () => generator({ ...config, perSecond: config.perSecond / n, maxInFlight: Math.ceil(config.maxInFlight / n) })));
  let final: BadLoginsTally | undefined;
  const current = () => final ?? merge(parts.map((g) => g.last()).filter((t): t is BadLoginsTally => !!t));
  const outcomes = new Map<string, number>();
  return {
    get attempts() {
      return current().attempts;
    },
    get outcomes() {
      outcomes.clear();
      for (const [k, v] of Object.entries(current().outcomes)) outcomes.set(k, v);
      return outcomes;
    },
    rate: () => {
      const t = current();
      return t.seconds > 0 ? t.attempts / t.seconds : 0;
    },
    tally: () => current(),
    async stop() {
      final = merge(await Promise.all(parts.map((g) => g.stop())));
      return final;
    },
  };
}

/** the processes' tallies as one: counts summed, the longest run, percentiles over every answer */
function merge(ts: BadLoginsTally[]): BadLoginsTally {
  const outcomes: Record<string, number> = {};
  for (const t of ts) for (const [k, v] of Object.entries(t.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
  const sum = (f: (t: BadLoginsTally) => number) => ts.reduce((a, t) => a + f(t), 0);
  const answers = ts.flatMap((t) => t.raw?.answerMs ?? []);
  const lates = ts.flatMap((t) => t.raw?.lateMs ?? []);
  const whole = ts.length > 0 && ts.every((t) => t.raw);
  return {
    attempts: sum((t) => t.attempts),
    ended: sum((t) => t.ended),
    outcomes,
    seconds: Math.max(0, ...ts.map((t) => t.seconds)),
    skippedFull: sum((t) => t.skippedFull),
    skippedLate: sum((t) => t.skippedLate),
    answerMs: whole
      ? { p50: percentile(answers, 50), p99: percentile(answers, 99), max: percentile(answers, 100) }
      : { p50: Math.max(0, ...ts.map((t) => t.answerMs.p50)), p99: Math.max(0, ...ts.map((t) => t.answerMs.p99)), max: Math.max(0, ...ts.map((t) => t.answerMs.max)) },
    tlsResumed: sum((t) => t.tlsResumed),
    tlsCompleted: sum((t) => t.tlsCompleted),
    cpuMs: sum((t) => t.cpuMs),
    lateP99Ms: whole ? percentile(lates, 99) : Math.max(0, ...ts.map((t) => t.lateP99Ms)),
  };
}

/** one generator process, started and running when this resolves */
async function generator(config: BadLoginsConfig): Promise<{ last(): BadLoginsTally | undefined; stop(): Promise<BadLoginsTally> }> {
  const p: ChildProcess = fork(child, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let last: BadLoginsTally | undefined;
  let done: (t: BadLoginsTally) => void = () => undefined;
  let running: () => void = () => undefined;
  const started = new Promise<void>((r) => (running = r));
  const finished = new Promise<BadLoginsTally>((r) => (done = r));
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  p.on("message", (m: { type: string; tally: BadLoginsTally }) => {
    last = m.tally;
    running();
    if (m.type === "done") done(m.tally);
  });
  await new Promise<void>((resolve, reject) => {
    p.once("spawn", resolve);
    p.once("error", reject);
  });
  p.send({ type: "start", config });
  // the storm runs once this resolves (the process loads its modules first: a second or more under load)
  await Promise.race([started, exited.then(() => Promise.reject(new Error("the bad-token generator exited before it started")))]);
  return {
    last: () => last,
    async stop() {
      if (p.connected) p.send({ type: "stop" });
      // every open attempt ends within its timeout; a generator that died reports what it last said
      const t = await Promise.race([finished, exited.then(() => last), new Promise<undefined>((r) => setTimeout(() => r(undefined), config.timeoutMs + 30_000).unref())]);
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      if (!t) throw new Error("the bad-token generator reported nothing");
      return t;
    },
  };
}
