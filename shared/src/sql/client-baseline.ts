/**
 * What every connected client may do without naming a class (contract: "Policy bundle", decided
 * 2026-12-01: with `allow: [read]` the JDBC driver could not even finish connecting). Pure: a
 * top-level statement's AST in, the allowance that covers it (or none) out.
 *
 * | allowance           | statements |
 * |---------------------|------------|
 * | transaction-control | BEGIN/START, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, SET TRANSACTION (… SNAPSHOT), SET CONSTRAINTS |
 * | show                | SHOW name, SHOW ALL |
 * | session-setting     | SET / SET LOCAL / RESET / SET … TO DEFAULT of a setting that changes no privilege (HARMLESS_SETTINGS), SET SESSION CHARACTERISTICS, RESET ALL, search_path (a named risk, `search-path`, and refused where table patterns depend on it: evaluate.ts), a pinned setting set to its pinned value (any other value is `parser-setting`, always denied) |
 * | cursor              | FETCH, MOVE, CLOSE (a cursor exists only if a statement the identity ran made it: DECLARE is judged as its query) |
 * | prepared-statement  | DEALLOCATE (PREPARE is judged as what it prepares, EXECUTE as what it runs) |
 * | discard             | DISCARD ALL / PLANS / SEQUENCES / TEMP |
 *
 * Not in it, on purpose: SET ROLE / SET SESSION AUTHORIZATION (admin, `role-change`),
 * session_replication_role (utility, `session-replication-role`: it switches triggers and rules
 * off), settings sluice does not know to be harmless, custom `x.y` settings (row-level security
 * policies read them), two-phase commit (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED: every
 * identity shares the upstream role, so one could finish another's transaction), LISTEN/NOTIFY
 * (they reach other sessions): all `utility`.
 *
 * A statement carrying an allowance still goes through the deny and approval rules for its named
 * risks (evaluate.ts); the classes of the statement (`utility`) are not what a policy judges it by.
 * Inside a DO body or an EXECUTE string such a statement adds no class either (statement-walker.ts).
 */
import type { BaselineAllowance } from "../policy/bundle.js";
import type { J } from "./ast-util.js";
import { HARMLESS_SETTINGS, isPinnedSetting } from "./session-settings.js";

const TXN_KINDS = new Set([
  "TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK",
  "TRANS_STMT_SAVEPOINT", "TRANS_STMT_RELEASE", "TRANS_STMT_ROLLBACK_TO",
]);

/** The allowance covering one top-level statement (`kind`: its AST node name), if any. */
export function baselineOf(kind: string, node: J): BaselineAllowance | undefined {
  switch (kind) {
    case "TransactionStmt":
      return TXN_KINDS.has(node?.kind) ? "transaction-control" : undefined;
    case "ConstraintsSetStmt":
      return "transaction-control";
    case "VariableShowStmt":
      return "show";
    case "VariableSetStmt":
      return settingAllowance(node);
    case "FetchStmt":
    case "ClosePortalStmt":
      return "cursor";
    case "DeallocateStmt":
      return "prepared-statement";
    case "DiscardStmt":
      return "discard";
    default:
      return undefined;
  }
}

function settingAllowance(node: J): BaselineAllowance | undefined {
  if (node?.kind === "VAR_RESET_ALL") return "session-setting"; // role and session_authorization are not reset by RESET ALL
  const name = String(node?.name ?? "").toLowerCase();
  if (node?.kind === "VAR_SET_MULTI") {
    if (name === "transaction" || name === "transaction snapshot") return "transaction-control";
    if (name === "session characteristics") return "session-setting";
    return undefined;
  }
  if (HARMLESS_SETTINGS.has(name) || name === "search_path") return "session-setting";
  // the walker marks any other value `parser-setting`, which evaluation denies before allowances
  if (isPinnedSetting(name)) return "session-setting";
  return undefined;
}
