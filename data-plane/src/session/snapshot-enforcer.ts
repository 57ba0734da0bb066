import { DecisionCache, decideSql, SqlPrepared } from "@sluice/shared/sql";
import type { Decision } from "@sluice/shared/policy";
import type { Enforcer, SessionInfo, SnapshotSource } from "./session-hooks.js";

/**
 * The production Enforcer: every message is decided against the NEWEST snapshot (a new revision
 * takes effect at each session's next statement) through the decision cache, then classify
 * (libpg-query) and evaluate on a miss. SQL-level PREPARE/EXECUTE are resolved per session.
 * `loadSqlParser()` must have completed before the first decision. Pure.
 */
export function snapshotEnforcer(snapshots: SnapshotSource, cache = new DecisionCache()): Enforcer & { cache: DecisionCache } {
  const perSession = new WeakMap<SessionInfo, { key: string; prepared: SqlPrepared }>();
  const state = (s: SessionInfo) => {
    let st = perSession.get(s);
    if (st === undefined) {
      st = { key: DecisionCache.contextKey(s.resource, s.groups, s.issuer), prepared: new SqlPrepared() };
      perSession.set(s, st);
    }
    return st;
  };
  return {
    cache,
    decide(sql, _protocol, session): Decision {
      const snap = snapshots.current();
      if (!snap) {
        return { action: "deny", rule: "no-snapshot", reason: "the data plane has no policy snapshot", statementClass: "unknown", statementIndex: 0, statements: [] };
      }
      const st = state(session);
      return decideSql(cache, snap.revision, snap.bundle, { resource: session.resource, groups: session.groups, issuer: session.issuer, subject: session.subject }, st.key, sql, st.prepared);
    },
    observeForwarded(decision, session) {
      if (decision.statements.length) state(session).prepared.observe(decision.statements);
    },
  };
}
