/**
 * The PL/pgSQL walker: every SQL expression of a PL/pgSQL body (DO blocks, CREATE FUNCTION /
 * PROCEDURE … LANGUAGE plpgsql) is classified into the statement's Collector. libpg-query dumps
 * the compiled function (its datums and statements, see node-model.ts PLPGSQL_NODES); the SQL is in
 * PLpgSQL_expr nodes, each with the parse mode the server uses for it:
 *   0 a whole statement (PERFORM, FOR … IN query, OPEN … FOR query, RETURN QUERY, CALL, cursor
 *     declarations, any SQL statement): classified as a statement of its own;
 *   2 an expression (conditions, loop bounds, RAISE arguments and USING options, RETURN, defaults,
 *     FOREACH arrays, CASE, cursor arguments, EXECUTE … USING parameters): the server reads it as a
 *     SELECT without the keyword (`x := count(*) FROM t` is valid), so it is classified as
 *     `SELECT <expr>`, for its tables and functions (a subquery's writes still count);
 *   3–5 an assignment `target[subscripts] := expr`: the right-hand side like an expression, and every
 *     subscript of the target too (`a[(SELECT … FROM secrets)] := 1` reads secrets);
 * Dynamic SQL (EXECUTE, OPEN … FOR EXECUTE, RETURN QUERY EXECUTE, FOR … IN EXECUTE) carries the risk
 * `dynamic-sql`; a constant string is classified as the SQL it is, anything computed makes the
 * statement admin (unknowable). Any node or parse mode not modelled here denies. Pure.
 */
import { ClassifyError, constString, type J } from "./ast-util.js";
import { PLPGSQL_NODES } from "./node-model.js";
import type { Collector } from "./statement-walker.js";

/** The parse modes of PLpgSQL_expr (RawParseMode in the server's parser.h). */
const MODE_STATEMENT = 0;
const MODE_EXPR = 2;
const MODE_ASSIGN_FIRST = 3;
const MODE_ASSIGN_LAST = 5;

/** Fields that hold dynamic SQL (the expression computes the statement text). */
function isDynamicField(nodeKind: string, field: string): boolean {
  if (field === "dynquery") return true; // OPEN … FOR EXECUTE, RETURN QUERY EXECUTE
  return field === "query" && (nodeKind === "PLpgSQL_stmt_dynexecute" || nodeKind === "PLpgSQL_stmt_dynfors");
}

export function walkPlpgsql(c: Collector, tree: J, depth: number): void {
  walk(c, tree, "", false, depth);
}

function walk(c: Collector, node: J, nodeKind: string, dynamic: boolean, depth: number): void {
  if (node === null || typeof node !== "object") return;
  if (Array.isArray(node)) {
    for (const x of node) walk(c, x, nodeKind, false, depth);
    return;
  }
  for (const k in node) {
    const v = node[k];
    if (v === null || typeof v !== "object") continue;
    const ch = k.charCodeAt(0);
    if (ch < 65 || ch > 90) {
      walk(c, v, nodeKind, isDynamicField(nodeKind, k), depth); // a field of `nodeKind`
      continue;
    }
    if (!PLPGSQL_NODES.has(k)) throw new ClassifyError(`unmodelled PL/pgSQL node ${k}`);
    if (k === "PLpgSQL_expr") expression(c, v, dynamic, depth);
    else walk(c, v, k, false, depth);
  }
}

function expression(c: Collector, e: J, dynamic: boolean, depth: number): void {
  const q: string = e.query ?? "";
  const mode: number = e.parseMode ?? MODE_STATEMENT;
  if (dynamic) {
    c.risks.add("dynamic-sql");
    const parsed = tryParse(c, `SELECT ${q}`);
    const target = parsed?.stmts?.length === 1 ? parsed.stmts[0].stmt?.SelectStmt?.targetList : undefined;
    const literal = target?.length === 1 ? constString(target[0].ResTarget?.val) : undefined;
    if (literal !== undefined) c.nestedSql(literal, depth + 1);
    else c.addClass("admin"); // the SQL is computed at run time: unknowable, so admin
    // the expression computing it is evaluated too: its tables and functions count
    selectExpressions(c, [q], depth);
    return;
  }
  if (mode === MODE_STATEMENT) return c.nestedSql(q, depth + 1);
  if (mode === MODE_EXPR) return selectExpressions(c, [q], depth);
  if (mode >= MODE_ASSIGN_FIRST && mode <= MODE_ASSIGN_LAST) {
    const { subscripts, value } = splitAssignment(c, q);
    return selectExpressions(c, [...subscripts, value], depth);
  }
  throw new ClassifyError(`unmodelled PL/pgSQL expression mode ${mode}`);
}

/** Classifies `SELECT e1, e2, …` for its tables and functions; it must be exactly one statement. */
function selectExpressions(c: Collector, exprs: string[], depth: number): void {
  // each expression is its own SELECT: an assignment's value may carry FROM/WHERE clauses
  for (const x of exprs) {
    const sql = `SELECT ${x}`;
    const parsed = parseOrDeny(c, sql);
    if ((parsed.stmts ?? []).length !== 1) throw new ClassifyError("a PL/pgSQL expression is not one expression");
    c.nestedSql(sql, depth + 1, false);
  }
}

function tryParse(c: Collector, sql: string): J | undefined {
  try {
    return c.parser.parse(sql);
  } catch {
    return undefined; // the caller treats an unparsable dynamic expression as unknowable (admin)
  }
}

function parseOrDeny(c: Collector, sql: string): J {
  try {
    return c.parser.parse(sql);
  } catch (e) {
    throw new ClassifyError(`PL/pgSQL expression: ${(e as Error).message}`);
  }
}

/**
 * `target[s1][s2:s3].field := value` (or `=`): the subscript expressions and the value, found with
 * the server's own scanner (tokens, so quotes, comments and nested brackets are read as the server
 * reads them). The target outside its subscripts may only be names and dots.
 */
function splitAssignment(c: Collector, q: string): { subscripts: string[]; value: string } {
  const bytes = Buffer.from(q, "utf8");
  const text = (a: number, b: number) => bytes.subarray(a, b).toString("utf8");
  let tokens: Array<{ start: number; end: number; text: string; tokenName: string }>;
  try {
    tokens = c.parser.scan(q).filter((t) => t.tokenName !== "SQL_COMMENT" && t.tokenName !== "C_COMMENT");
  } catch (e) {
    throw new ClassifyError(`PL/pgSQL assignment: ${(e as Error).message}`);
  }
  const subscripts: string[] = [];
  let depth = 0;
  let partStart = -1;
  for (const t of tokens) {
    if (depth === 0) {
      if (t.text === ":=" || t.text === "=") return { subscripts, value: text(t.end, bytes.length) };
      if (t.text === "[") {
        depth = 1;
        partStart = t.end;
      } else if (t.text !== "." && t.tokenName !== "IDENT" && !/^[A-Za-z_]/.test(t.text)) {
        throw new ClassifyError("PL/pgSQL assignment target sluice does not model");
      }
      continue;
    }
    if (t.text === "[" || t.text === "(") depth++;
    else if (t.text === "]" || t.text === ")") {
      depth--;
      if (depth === 0) {
        if (t.text !== "]") throw new ClassifyError("PL/pgSQL assignment target sluice does not model");
        const part = text(partStart, t.start);
        if (part.trim() !== "") subscripts.push(part);
      }
    } else if (depth === 1 && t.text === ":") {
      // a slice `[lo:hi]`: two expressions
      const part = text(partStart, t.start);
      if (part.trim() !== "") subscripts.push(part);
      partStart = t.end;
    }
  }
  throw new ClassifyError("PL/pgSQL assignment without an assignment operator");
}
