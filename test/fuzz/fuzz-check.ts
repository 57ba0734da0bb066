/**
 * One call per case for the test, the replay and the long run: run it in the world, judge it, keep
 * the tallies REPORT.md prints; and an op-level minimiser for a failing case.
 *
 * A case runs with waits stretched by the machine's load (patience.ts); a case that failed while a
 * wait ran out is run again at once, alone, with waits RERUN_FACTOR times longer, and the re-run's
 * verdict is the case's: a time-out of a loaded machine is not a finding, a hang still is.
 */
import { availableParallelism, loadavg } from "node:os";
import type { Bundle } from "@sluice/shared/policy";
import type { FuzzWorld } from "./fuzz-world.js";
import { IDENTITIES } from "./fuzz-policy.js";
import { judge, serverWaitsToo, type Failure, type OracleId, type Verdicts } from "./oracles.js";
import { runCase, type Evidence, type FuzzCase } from "./run-case.js";
import type { Op } from "./ops.js";
import { addCoverage, coverageOf, newCoverageTally, type CoverageTally } from "./coverage.js";
import { BASE_PATIENCE, firstRunPatience, needsRerunForTime, rerunPatience, type Patience, type Wait } from "./patience.js";

export interface Tally {
  cases: number;
  messages: number;
  /** statements the server executed (oracles 1 and 2 judge each) */
  executed: number;
  /** ops the proxy answered with its own denial */
  denied: number;
  approvals: number;
  refused: number;
  /** messages the server answered, and those it skipped after an error until Sync (the reference run) */
  answered: number;
  skipped: number;
  checks: Record<OracleId, number>;
  inconclusive: Map<string, number>;
  /** cases that failed while a wait ran out and were run again with long waits */
  rerunForTime: number;
  /** of those, the ones whose re-run failed too (judged on the re-run) */
  rerunStillFailing: number;
  /** the waits that ran out in first runs that were re-run, by wait */
  ranOut: Map<Wait, number>;
  /** the largest stretch a first run had (load per core), and the longest stall wait used */
  maxLoadFactor: number;
  maxIdleMs: number;
  /** the protocol classes the cases reached, by the server's own answers (coverage.ts) */
  coverage: CoverageTally;
  /** each case's wall time, re-runs included (ms): what an hour buys on a loaded machine */
  durations: number[];
}

export const newTally = (): Tally => ({
  cases: 0, messages: 0, executed: 0, denied: 0, approvals: 0, refused: 0, answered: 0, skipped: 0, checks: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, inconclusive: new Map(),
  rerunForTime: 0, rerunStillFailing: 0, ranOut: new Map(), maxLoadFactor: 1, maxIdleMs: 0, coverage: newCoverageTally(), durations: [],
});

export interface Checked {
  ev: Evidence;
  v: Verdicts;
}

/** the first run's waits for the machine's load now */
export const patienceNow = (): Patience => firstRunPatience(loadavg()[0]!, availableParallelism());

export function checker(world: FuzzWorld, tally: Tally = newTally(), patience: () => Patience = patienceNow) {
  const bundle = (): Bundle => world.stack.bundle();
  const runAndJudge = async (c: FuzzCase, p: Patience): Promise<Checked> => {
    const ev = await runCase(world, c, p);
    const b = bundle();
    const id = IDENTITIES[c.identity];
    const v = judge(ev, {
      bundle: b,
      ctx: { resource: world.stack.resource, groups: id.groups, issuer: b.issuers[0]!.name, subject: id.sub },
      secrets: world.secrets,
      hashKey: world.hashKey,
    });
    return { ev, v };
  };
  return {
    tally,
    async check(c: FuzzCase): Promise<Checked> {
      const started = Date.now();
      const { ev, v } = await patientCheck((p) => runAndJudge(c, p), patience(), tally);
      tally.durations.push(Date.now() - started);
      tally.cases++;
      tally.messages += c.ops.length;
      tally.executed += ev.executed.length;
      tally.denied += ev.denied.length;
      tally.approvals += ev.approvals.length;
      if (v.refused) tally.refused++;
      const answers = answeredOps(c.ops, ev);
      tally.answered += answers.answered;
      tally.skipped += answers.skipped;
      addCoverage(tally.coverage, coverageOf(c.ops, ev.reference?.walk.perOp, ev.denied));
      for (const k of [1, 2, 3, 4, 5] as const) tally.checks[k] += v.checks[k];
      for (const i of v.inconclusive) {
        const key = i.replace(/"[^"]*"/g, "…");
        tally.inconclusive.set(key, (tally.inconclusive.get(key) ?? 0) + 1);
      }
      return { ev, v };
    },
  };
}

export type Checker = ReturnType<typeof checker>;

/**
 * Runs a case with the first run's waits and, when it failed while a wait ran out, once more with
 * the re-run's; returns the verdict that counts and keeps the re-run tallies.
 */
export async function patientCheck(run: (p: Patience) => Promise<Checked>, p: Patience, tally: Tally): Promise<Checked> {
  tally.maxLoadFactor = Math.max(tally.maxLoadFactor, p.idleMs / BASE_PATIENCE.idleMs);
  tally.maxIdleMs = Math.max(tally.maxIdleMs, p.idleMs);
  const first = await run(p);
  if (!needsRerunForTime(first.ev.ranOut, { failures: first.v.failures, referenceIncomplete: referenceIncomplete(first.ev) })) return first;
  tally.rerunForTime++;
  for (const w of new Set(first.ev.ranOut)) tally.ranOut.set(w, (tally.ranOut.get(w) ?? 0) + 1);
  const rp = rerunPatience(p);
  tally.maxIdleMs = Math.max(tally.maxIdleMs, rp.idleMs);
  const again = await run(rp);
  if (again.v.failures.length) tally.rerunStillFailing++;
  return again;
}

/** the direct run did not give every answer: oracle 4 could not compare (inconclusive) */
export const referenceIncomplete = (ev: Pick<Evidence, "reference" | "proxy">): boolean =>
  !ev.proxy.connectError && (!ev.reference || !!ev.reference.walk.violation || (!ev.reference.walk.complete && !serverWaitsToo(ev)));

/** Messages that get an answer of their own (not Sync, Flush, the client's wait or COPY data). */
const ANSWERED = new Set(["Q", "P", "B", "D", "E", "C"]);

/**
 * How many of a case's messages the server answered and how many it skipped after an error: a
 * generator whose pipelines mostly stop at their first error tests little beyond it.
 */
export function answeredOps(ops: readonly Op[], ev: Pick<Evidence, "reference">): { answered: number; skipped: number } {
  const perOp = ev.reference?.walk.perOp;
  let answered = 0, skipped = 0;
  if (!perOp) return { answered, skipped };
  ops.forEach((op, i) => {
    if (!ANSWERED.has(op.t) || i >= perOp.length) return;
    if (perOp[i]!.length) answered++;
    else skipped++;
  });
  return { answered, skipped };
}

export const signature = (f: Pick<Failure, "oracle" | "kind">): string => `${f.oracle}:${f.kind}`;

/**
 * Removes ops (never the final Sync) and statements of multi-statement Queries while a failure with
 * the same signature still occurs; `budget` bounds the runs. Greedy, one element at a time, repeated
 * until nothing more can go: the result is 1-minimal for a deterministic failure (and stops
 * shrinking at the time `until`).
 */
export async function minimise(ck: Checker, c: FuzzCase, sig: string, budget = 150, until = Infinity): Promise<{ c: FuzzCase; failure: Failure; runs: number }> {
  let runs = 0;
  const fails = async (x: FuzzCase): Promise<Failure | undefined> => {
    // past `until` (a hang costs a re-run's long waits per run) every step is taken as passing:
    // what is kept so far still fails
    if (Date.now() > until) return undefined;
    runs++;
    const { v } = await ck.check(x);
    return v.failures.find((f) => signature(f) === sig);
  };
  let best = c;
  let failure = await fails(c);
  if (!failure) throw new Error(`minimise: the case does not fail with ${sig} (any more)`);
  let changed = true;
  while (changed && runs < budget) {
    changed = false;
    for (let i = best.ops.length - 2; i >= 0 && runs < budget; i--) {
      const ops = best.ops.filter((_, k) => k !== i);
      const f = await fails({ ...best, ops });
      if (f) {
        best = { ...best, ops };
        failure = f;
        changed = true;
      }
    }
    for (let i = 0; i < best.ops.length && runs < budget; i++) {
      const op = best.ops[i]!;
      if (op.t !== "Q" || !op.sql.includes("; ")) continue;
      const parts = op.sql.split("; ");
      for (let j = 0; j < parts.length && parts.length > 1 && runs < budget; j++) {
        const sql = parts.filter((_, k) => k !== j).join("; ");
        const ops: Op[] = best.ops.map((o, k) => (k === i ? { t: "Q", sql } : o));
        const f = await fails({ ...best, ops });
        if (f) {
          best = { ...best, ops };
          failure = f;
          changed = true;
          break;
        }
      }
    }
    if (best.approvals.length) {
      const f = await fails({ ...best, approvals: [] });
      if (f) {
        best = { ...best, approvals: [] };
        failure = f;
        changed = true;
      }
    }
  }
  return { c: best, failure, runs };
}
