import type { StatementClass } from "./bundle.js";
import type { StatementInfo } from "../sql/statement-info.js";

/** Who is asking, where: the identity's groups (from claim rules) and the resource (database) name. */
export interface DecisionContext {
  resource: string;
  groups: readonly string[];
  /**
   * The NAME (`issuers[].name`) of the issuer that verified the identity. A policy with `issuers`
   * applies only when this is one of them; undefined matches no such policy (fail closed).
   */
  issuer?: string;
  subject?: string;
}

export type DecisionAction = "allow" | "deny" | "approve";

/** The outcome of policy evaluation for one client message (all its statements). */
export interface Decision {
  action: DecisionAction;
  /** the matched rule, e.g. `deployers/deny:drop-database`, `default-deny`, `parse-error` */
  rule: string;
  /** the policy the rule belongs to, when one matched */
  policy?: string;
  /** human-readable, secret-free reason, used in the 42501 message */
  reason: string;
  /** class of the statement that decided (the denied one, or the first) */
  statementClass: StatementClass | "unknown";
  /** index of the deciding statement in a multi-statement message */
  statementIndex: number;
  statements: readonly StatementInfo[];
  /**
   * Each statement's own rule, in order, up to the deciding one for a deny (e.g. `implicit:transaction-control`,
   * `ci-read/allow:read`): what the record and the replay show per statement. Absent when no
   * statement was judged (parse error, no policy, empty query).
   */
  statementRules?: readonly string[];
  /** for action `approve` */
  approval?: { approvers: string[]; timeoutMs: number };
  /**
   * Set when the decision cache served this decision for a statement that differs from the one
   * decided only in its literals (decide-sql.ts, literal-shape.ts): the decision as it was made.
   * The two have the same outcome and statement shapes; only the statements' texts differ, so
   * per-decision work that ignores texts (the recorder's summaries) is keyed on it.
   */
  decidedAs?: Decision;
}
