/**
 * The statements of a multi-statement simple Query as records of their own. The message is decided
 * (and approved) as a whole, but each of its statements is recorded as a statement: its own text,
 * class, tables and rule, its own completion with its own command tag and rows (contract, Events:
 * a statement is two events). Pure.
 *
 * The part decisions are made once per message decision (the decision cache hands out the same
 * object for every execution of a text, and one per literal shape as `decidedAs`), so the
 * recorder's per-decision caches keep working for them.
 */
import type { Decision } from "@sluice/shared/policy";
import type { StatementRecord } from "./session-hooks.js";

const partDecisions = new WeakMap<Decision, readonly Decision[]>();

/** statement `i` of `d` as a decision of its own: the message's outcome, the statement's own rule */
function partDecisionsOf(d: Decision): readonly Decision[] {
  let out = partDecisions.get(d);
  if (out === undefined) {
    const shared = d.decidedAs ? partDecisionsOf(d.decidedAs) : undefined;
    out = d.statements.map((s, i): Decision => {
      const rule = d.statementRules?.[i];
      const p: Decision = { action: d.action, rule: rule ?? d.rule, reason: d.reason, statementClass: s.class, statementIndex: 0, statements: [s] };
      if (d.policy !== undefined) p.policy = d.policy;
      if (rule !== undefined) p.statementRules = [rule];
      if (d.approval) p.approval = d.approval;
      if (shared?.[i]) p.decidedAs = shared[i];
      return p;
    });
    partDecisions.set(d, out);
  }
  return out;
}

/**
 * The records of `rec`'s statements: `rec` itself for a message of one statement (or of statements
 * the decision does not name), else one per statement, the first with `rec.seq` and the others with
 * the numbers `nextSeq` hands out, in order.
 */
export function statementParts(rec: StatementRecord, nextSeq: () => number): readonly StatementRecord[] {
  const n = rec.decision.statements.length;
  if (n <= 1) return [rec];
  const decisions = partDecisionsOf(rec.decision);
  return rec.decision.statements.map((s, i): StatementRecord => ({
    seq: i === 0 ? rec.seq : nextSeq(),
    protocol: rec.protocol,
    sql: s.text,
    part: i + 1,
    parts: n,
    decision: decisions[i]!,
  }));
}
