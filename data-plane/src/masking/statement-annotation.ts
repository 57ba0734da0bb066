/**
 * What the result masker needs of a statement's parse tree, read where the statement is classified
 * (shared/src/sql's StatementAnnotator: the classifier pool runs this module in its workers for a
 * long statement, inline for a short one): the lineage of its result columns, what a COPY TO
 * copies and how, whether it declares a BINARY cursor, the operators and casts it uses. So the
 * relay's thread never parses a statement again for its results, and a long one never at all.
 * Pure; imports nothing but the pure lineage and exposure readers (a worker thread loads it).
 */
import { queryLineage, type OutputLineage } from "./lineage.js";
import { syntaxUses, type SyntaxUses } from "./exposure.js";

/** A COPY … TO (STDOUT), as the masker plans it. */
export interface CopyOutFacts {
  relation?: { schema?: string; table: string };
  /** the column list, as written */
  columns?: string[];
  /** COPY's options, by name, with the value when it is a string */
  options: Array<{ name: string; value?: string }>;
  /** COPY (query) TO: the query's lineage (null: not traceable) */
  query?: OutputLineage[] | null;
}

export type ResultAnnotation =
  | {
      ok: true;
      /** lineage of the result columns (SELECT targets, a DML statement's RETURNING list); null: none, or not traceable */
      lineage: OutputLineage[] | null;
      copyOut?: CopyOutFacts;
      /** DECLARE … BINARY CURSOR */
      binaryCursor?: true;
      /** undefined: nested too deep to list (exposure judges that as user code) */
      syntax: SyntaxUses | undefined;
    }
  /** the tree could not be read (nested too deep for the walk): whoever masks must not guess */
  | { ok: false; why: string };

/** DeclareCursorStmt.options: the BINARY option (parsenodes.h CURSOR_OPT_BINARY) */
const CURSOR_OPT_BINARY = 0x0001;

type Node = Record<string, any>;

/** Lineage of a statement's result columns: SELECT targets, or a DML statement's RETURNING list. */
function statementLineage(stmt: Node): OutputLineage[] | null {
  if (stmt.SelectStmt) return queryLineage(stmt);
  const dml = stmt.InsertStmt ?? stmt.UpdateStmt ?? stmt.DeleteStmt ?? stmt.MergeStmt;
  // PostgreSQL 18's tree keeps RETURNING in returningClause.exprs (with its OLD/NEW aliases); older ones in returningList
  const returning = dml?.returningClause?.exprs ?? dml?.returningList;
  if (returning && dml.relation) {
    // RETURNING reads the target table (and an UPDATE's FROM list, a MERGE's source) like a SELECT would
    const fromClause = [{ RangeVar: dml.relation }, ...(dml.fromClause ?? []), ...(dml.usingClause ?? []), ...(dml.sourceRelation ? [dml.sourceRelation] : [])];
    return queryLineage({ SelectStmt: { targetList: returning, fromClause } });
  }
  return null;
}

function copyOutFacts(copy: Node): CopyOutFacts {
  const options: CopyOutFacts["options"] = [];
  for (const o of copy.options ?? []) {
    const d = o.DefElem;
    if (!d) continue;
    const v = d.arg?.String?.sval;
    options.push(v === undefined ? { name: String(d.defname) } : { name: String(d.defname), value: String(v) });
  }
  const out: CopyOutFacts = { options };
  if (copy.relation) {
    out.relation = copy.relation.schemaname ? { schema: copy.relation.schemaname, table: copy.relation.relname } : { table: copy.relation.relname };
    if (copy.attlist) out.columns = copy.attlist.map((a: Node) => String(a.String.sval));
  } else if (copy.query) out.query = queryLineage(copy.query);
  return out;
}

/** The StatementAnnotator of the data plane's classifier pool (the name its workers import). */
export function annotateStatement(kind: string, node: unknown): ResultAnnotation {
  const stmt: Node = { [kind]: node };
  try {
    const a: ResultAnnotation = { ok: true, lineage: statementLineage(stmt), syntax: syntaxUses(stmt) };
    const n = node as Node;
    if (kind === "CopyStmt" && !n.is_from) a.copyOut = copyOutFacts(n);
    if (kind === "DeclareCursorStmt" && (Number(n.options ?? 0) & CURSOR_OPT_BINARY) !== 0) a.binaryCursor = true;
    return a;
  } catch (e) {
    // a tree deeper than this thread's stack: the statement's results cannot be attributed
    return { ok: false, why: e instanceof RangeError ? "it is nested too deeply to trace its result columns" : `its result columns cannot be traced (${(e as Error).message})` };
  }
}
