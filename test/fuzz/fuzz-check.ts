/**
 * One call per case for the test, the replay and the long run: run it in the world, judge it, keep
 * the tallies REPORT.md prints; and an op-level minimiser for a failing case.
 */
import type { Bundle } from "@sluice/shared/policy";
import type { FuzzWorld } from "./fuzz-world.js";
import { IDENTITIES } from "./fuzz-policy.js";
import { judge, type Failure, type OracleId, type Verdicts } from "./oracles.js";
import { runCase, type Evidence, type FuzzCase } from "./run-case.js";
import type { Op } from "./ops.js";

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
}

export const newTally = (): Tally => ({ cases: 0, messages: 0, executed: 0, denied: 0, approvals: 0, refused: 0, answered: 0, skipped: 0, checks: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, inconclusive: new Map() });

export interface Checked {
  ev: Evidence;
  v: Verdicts;
}

export function checker(world: FuzzWorld, tally: Tally = newTally()) {
  const bundle = (): Bundle => world.stack.bundle();
  return {
    tally,
    async check(c: FuzzCase): Promise<Checked> {
      const ev = await runCase(world, c);
      const b = bundle();
      const id = IDENTITIES[c.identity];
      const v = judge(ev, {
        bundle: b,
        ctx: { resource: world.stack.resource, groups: id.groups, issuer: b.issuers[0]!.name, subject: id.sub },
        secrets: world.secrets,
        hashKey: world.hashKey,
      });
      tally.cases++;
      tally.messages += c.ops.length;
      tally.executed += ev.executed.length;
      tally.denied += ev.denied.length;
      tally.approvals += ev.approvals.length;
      if (v.refused) tally.refused++;
      const answers = answeredOps(c.ops, ev);
      tally.answered += answers.answered;
      tally.skipped += answers.skipped;
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
 * until nothing more can go: the result is 1-minimal for a deterministic failure.
 */
export async function minimise(ck: Checker, c: FuzzCase, sig: string, budget = 150): Promise<{ c: FuzzCase; failure: Failure; runs: number }> {
  let runs = 0;
  const fails = async (x: FuzzCase): Promise<Failure | undefined> => {
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
