import type { BaselineAllowance, Risk, StatementClass } from "../policy/bundle.js";

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
  /**
   * The functions of `functions` that run when this statement runs, i.e. all but those only called
   * in the body of a function it defines (CREATE FUNCTION). Absent = `functions`.
   */
  calls?: string[];
  /** operators used, lower-case (`schema.op` when written OPERATOR(schema.op)); like `functions`, a defined function body's included */
  operators?: string[];
  risks: Risk[];
  /** transaction control statements, for transaction-status bookkeeping */
  txn?: "begin" | "commit" | "rollback" | "savepoint" | "release" | "rollback_to" | "prepare" | "commit_prepared" | "rollback_prepared";
  /**
   * Every class the statement exercises; policy must allow each of them. `class` is the most
   * privileged of these. Differs from `[class]` for compound statements: a DO block running an
   * INSERT and a CREATE TABLE is `[write, ddl]`; a SELECT calling pg_read_file is `[admin]`.
   * Absent = `[class]` (for StatementInfo values built by hand).
   */
  classes?: StatementClass[];
  /** SQL-level `PREPARE name AS …`: the name; the rest of this info describes the prepared statement */
  prepares?: string;
  /** SQL-level `EXECUTE name` (also inside EXPLAIN ANALYZE / CREATE TABLE AS): resolved by SqlPrepared at evaluation */
  executes?: string[];
  /** `DEALLOCATE name` / `DEALLOCATE ALL` / `DISCARD ALL`: what to forget from the session's SqlPrepared */
  deallocates?: { all: true } | { all: false; name: string };
  /**
   * The built-in allowance covering this statement (client-baseline.ts): allowed to every identity
   * that may connect, whatever classes its policies list (deny and approval rules on its risks
   * still apply). Absent = judged by its classes.
   */
  baseline?: BaselineAllowance;
  /** `SET search_path` / set_config('search_path', …): bare table names stop meaning `public.` */
  setsSearchPath?: boolean;
  /**
   * The classifier read the value of a literal in this statement (a setting's name or value, a
   * sequence name, a DO or function body, an EXPLAIN option): the same statement with other
   * literals may be classified differently, so its decision is never shared by shape
   * (literal-shape.ts).
   */
  readsConstants?: true;
  /**
   * What the node's statement annotator (StatementAnnotator) read off this statement's parse tree,
   * on the thread that classified it: the data plane's masker reads result lineage from here
   * instead of parsing the text again. Opaque to this room. Absent: no annotator, or it failed.
   */
  annotation?: unknown;
}

/**
 * Reads something more off one statement's parse tree (`kind`, and the node under that key of the
 * raw statement) while the classifier has it; pure and synchronous. Given to the classifier pool
 * as the URL of a module exporting it as `annotateStatement`, so its workers run it too.
 */
export type StatementAnnotator = (kind: string, node: unknown) => unknown;

export type Classification =
  | { ok: true; statements: StatementInfo[] }
  /** a parse failure is a deny, never a pass */
  | { ok: false; error: string; position?: number };
