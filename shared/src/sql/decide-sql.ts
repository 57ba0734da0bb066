import type { Bundle } from "../policy/bundle.js";
import type { Decision, DecisionContext } from "../policy/decision.js";
import { DecisionCache } from "../policy/decision-cache.js";
import { dependsOnSession, evaluate, type PreparedLookup } from "../policy/evaluate.js";
import { classifySql } from "./classify-sql.js";

/**
 * The data plane's per-message decision: cache → classify → evaluate → cache. Lives in the sql
 * room (not policy) because it needs the WASM parser; policy stays importable without it.
 *
 * `contextKey` is `DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer)`, computed once per session.
 * A message containing a SQL-level `EXECUTE name` depends on the session's prepared statements, so
 * it is decided fresh every time and never cached. After an allowed message is forwarded, the
 * session applies its PREPAREs/DEALLOCATEs with `prepared.observe(decision.statements)`.
 */
export function decideSql(
  cache: DecisionCache,
  revision: number,
  bundle: Bundle,
  ctx: DecisionContext,
  contextKey: string,
  sql: string,
  prepared?: PreparedLookup,
): Decision {
  const hit = cache.getByKey(revision, contextKey, sql);
  if (hit !== undefined) return hit;
  const c = classifySql(sql);
  const d = evaluate(bundle, ctx, c, prepared);
  if (!dependsOnSession(c)) cache.setByKey(revision, contextKey, sql, d);
  return d;
}
