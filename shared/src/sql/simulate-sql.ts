import type { Bundle } from "../policy/bundle.js";
import type { Decision, DecisionContext } from "../policy/decision.js";
import { evaluate } from "../policy/evaluate.js";
import { classifySql } from "./classify-sql.js";
import { SqlPrepared } from "./sql-prepared.js";
import type { Classification } from "./statement-info.js";

export interface Simulation {
  /** the message's decision, exactly as the data plane takes it */
  decision: Decision;
  classification: Classification;
  /** each statement's own verdict, in order (PREPAREs seen by later EXECUTEs), to explain the whole */
  perStatement: Decision[];
}

/**
 * Decides one client message (SQL, possibly several statements) against a bundle as the data plane
 * would, for `sluice policy simulate` and the console's Policy page. The parser must be loaded
 * (loadSqlParser). Pure otherwise.
 */
export function simulateSql(bundle: Bundle, ctx: DecisionContext, sql: string): Simulation {
  const classification = classifySql(sql);
  const decision = evaluate(bundle, ctx, classification, new SqlPrepared());
  const perStatement: Decision[] = [];
  if (classification.ok) {
    const prepared = new SqlPrepared();
    for (const s of classification.statements) {
      perStatement.push(evaluate(bundle, ctx, { ok: true, statements: [s] }, prepared));
      prepared.observe([s]);
    }
  }
  return { decision, classification, perStatement };
}
