import type { Bundle } from "../policy/bundle.js";
import type { Decision, DecisionContext } from "../policy/decision.js";
import { DecisionCache } from "../policy/decision-cache.js";
import { dependsOnSession, evaluate, type PreparedLookup } from "../policy/evaluate.js";
import { classifySql } from "./classify-sql.js";
import { decidedByShape, decisionForText, literalShape } from "./literal-shape.js";
import type { Classification } from "./statement-info.js";

/**
 * What classifies a statement: classifySql, or a ClassifierPool's `classify` (which answers long
 * statements with a promise, from a worker with a deadline; a rejection is a deny).
 */
export type StatementClassifier = (sql: string) => Classification | Promise<Classification>;

/**
 * The data plane's per-message decision: cache → classify → evaluate → cache. Lives in the sql
 * room (not policy) because it needs the WASM parser; policy stays importable without it.
 *
 * `contextKey` is `DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer)`, computed once per session.
 * A message containing a SQL-level `EXECUTE name` depends on the session's prepared statements, so
 * it is decided fresh every time and never cached. After an allowed message is forwarded, the
 * session applies its PREPAREs/DEALLOCATEs with `prepared.observe(decision.statements)`.
 * With an asynchronous `classify`, the decision is a promise exactly when the classification is.
 * A text the cache does not know may still share the decision of another statement of its shape
 * (the same text with other literals, literal-shape.ts): a normalize instead of a parse.
 */
export function decideSql(cache: DecisionCache, revision: number, bundle: Bundle, ctx: DecisionContext, contextKey: string, sql: string, prepared?: PreparedLookup): Decision;
export function decideSql(
  cache: DecisionCache, revision: number, bundle: Bundle, ctx: DecisionContext, contextKey: string, sql: string,
  prepared: PreparedLookup | undefined, classify: StatementClassifier,
): Decision | Promise<Decision>;
export function decideSql(
  cache: DecisionCache,
  revision: number,
  bundle: Bundle,
  ctx: DecisionContext,
  contextKey: string,
  sql: string,
  prepared?: PreparedLookup,
  classify: StatementClassifier = classifySql,
): Decision | Promise<Decision> {
  const hit = cache.getByKey(revision, contextKey, sql);
  if (hit !== undefined) return hit;
  const shape = literalShape(sql);
  const byShape = shape === undefined ? undefined : cache.getByShape(revision, contextKey, shape);
  if (byShape !== undefined) return decisionForText(byShape, sql);
  const decide = (c: Classification): Decision => {
    const d = evaluate(bundle, ctx, c, prepared);
    if (!dependsOnSession(c)) {
      cache.setByKey(revision, contextKey, sql, d);
      if (shape !== undefined && decidedByShape(c)) cache.setByShape(revision, contextKey, shape, d);
    }
    return d;
  };
  const c = classify(sql);
  return c instanceof Promise ? c.then(decide) : decide(c);
}
