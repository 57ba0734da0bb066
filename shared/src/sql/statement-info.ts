import type { Risk, StatementClass } from "../policy/bundle.js";

/**
 * What the classifier knows about one statement (contract: data path step 4). Produced from the
 * libpg-query AST by classify-sql.ts; consumed by policy evaluation, the recorder and masking lineage.
 */
export interface StatementInfo {
  /** this statement's own text, cut from a multi-statement string */
  text: string;
  /** AST node name, e.g. `SelectStmt`, `DeleteStmt` */
  kind: string;
  class: StatementClass;
  /** tables as written, schema-qualified when the statement qualifies them (`public.orders`) or bare (`orders`) */
  tables: { read: string[]; write: string[] };
  /** functions called, lower-case, schema-qualified when written so */
  functions: string[];
  risks: Risk[];
  /** transaction control statements, for transaction-status bookkeeping */
  txn?: "begin" | "commit" | "rollback" | "savepoint" | "release" | "rollback_to" | "prepare" | "commit_prepared" | "rollback_prepared";
}

export type Classification =
  | { ok: true; statements: StatementInfo[] }
  /** a parse failure is a deny, never a pass */
  | { ok: false; error: string; position?: number };
