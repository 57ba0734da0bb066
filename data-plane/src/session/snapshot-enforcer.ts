import { DecisionCache, decideSql, type StatementClassifier } from "@sluice/shared/sql";
import type { Decision } from "@sluice/shared/policy";
import type { Enforcer, EnforcerDecision, PreparedStatements, QueryProtocol, SessionInfo, SnapshotSource } from "./session-hooks.js";

/**
 * The production Enforcer: every message is decided against the NEWEST snapshot (a new revision
 * takes effect at each session's next statement) through the decision cache, then classify
 * (libpg-query) and evaluate on a miss. SQL-level EXECUTE names are resolved with the session's own
 * `prepared` (the relay's statement namespace); without it an EXECUTE of a name prepared in an
 * earlier message is unknown (deny).
 * `loadSqlParser()` must have completed before the first decision. Pure.
 */
/** config dataPlane.maxStatementBytes, by default */
export const DEFAULT_MAX_STATEMENT_BYTES = 1024 * 1024;

export interface SnapshotEnforcerOptions {
  /**
   * Statements larger than this are denied without being parsed. Parsing runs on the node's one
   * thread at roughly 0.3 µs a byte (a 64 MiB Query, the frame limit, would stall every session of
   * the node for about 20 s), so the limit bounds that stall; default 1 MiB.
   */
  maxStatementBytes?: number;
  /**
   * Classifies statements the cache does not know; default classifySql on this thread. A
   * ClassifierPool's `classify` takes long statements off the thread, with a deadline (the decision
   * is then a promise for them).
   */
  classify?: StatementClassifier;
}

/** The snapshot enforcer decides synchronously (the relay's fast path). */
export type SyncEnforcer = Omit<Enforcer, "decide"> & { decide(sql: string, protocol: QueryProtocol, session: SessionInfo, prepared?: PreparedStatements): Decision };

export function snapshotEnforcer(snapshots: SnapshotSource, cache?: DecisionCache, o?: SnapshotEnforcerOptions & { classify?: undefined }): SyncEnforcer & { cache: DecisionCache };
export function snapshotEnforcer(snapshots: SnapshotSource, cache: DecisionCache | undefined, o: SnapshotEnforcerOptions): Enforcer & { cache: DecisionCache };
export function snapshotEnforcer(snapshots: SnapshotSource, cache = new DecisionCache(), o: SnapshotEnforcerOptions = {}): Enforcer & { cache: DecisionCache } {
  const maxBytes = o.maxStatementBytes ?? DEFAULT_MAX_STATEMENT_BYTES;
  const keys = new WeakMap<SessionInfo, string>();
  const keyOf = (s: SessionInfo) => {
    let k = keys.get(s);
    if (k === undefined) {
      k = DecisionCache.contextKey(s.resource, s.groups, s.issuer);
      keys.set(s, k);
    }
    return k;
  };
  return {
    cache,
    decide(sql, _protocol, session, prepared): EnforcerDecision {
      const snap = snapshots.current();
      if (!snap) {
        return { action: "deny", rule: "no-snapshot", reason: "the data plane has no policy snapshot", statementClass: "unknown", statementIndex: 0, statements: [] };
      }
      // UTF-8 takes at most 3 bytes per UTF-16 unit: only long texts need counting
      if (sql.length * 3 > maxBytes) {
        const bytes = Buffer.byteLength(sql, "utf8");
        if (bytes > maxBytes) {
          return {
            action: "deny", rule: "statement-too-large", statementClass: "unknown", statementIndex: 0, statements: [],
            reason: `the statement is ${bytes} bytes; sluice evaluates statements of at most ${maxBytes} bytes (dataPlane.maxStatementBytes)`,
          };
        }
      }
      const ctx = { resource: session.resource, groups: session.groups, issuer: session.issuer, subject: session.subject };
      if (!o.classify) return decideSql(cache, snap.revision, snap.bundle, ctx, keyOf(session), sql, prepared);
      return decideSql(cache, snap.revision, snap.bundle, ctx, keyOf(session), sql, prepared, o.classify);
    },
  };
}
