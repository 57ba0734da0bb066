/**
 * How far a statement may have seen masked data: what decides whether the text of its errors and
 * notices can reach the client (message-fields.ts). Pure: the statements (the classifier's
 * StatementInfo), the compiled masking rules and what the catalog said about the resource come in.
 *
 * A statement is `clean` only when it is proven to read no masked column and to run no user code:
 * every relation it names is known to the catalog, holds no masked column (by column or type rule),
 * is not a view, materialized view or inheritance parent over one, has no row security, and (when
 * written) no user trigger, rule, default, constraint or index expression running user code and no
 * cascading foreign key into a table that is not clean; every function, operator and cast it uses is
 * a built-in (pg_catalog, information_schema, or C code installed by a superuser). Anything it does
 * not prove is not clean (fail closed):
 *  - `masked`: it reads a masked column, with server code only: identifier fields can stay;
 *  - `code`: user code may run (a user function, procedure, operator or cast, a trigger, a DO block
 *    over masked data, dynamic SQL, an admin statement, SQL-level EXECUTE, a cursor FETCH, COMMIT and SET CONSTRAINTS,
 *    which run deferred constraint triggers), or a name the catalog does not know (created since it
 *    was read, a temporary table, a typo), or the catalog could not be read.
 */
import type { StatementInfo } from "@sluice/shared/sql";
import { ruleFor, type CompiledMasking } from "./mask-rules.js";
import { canonicalTypeName } from "./type-codecs.js";

export type ExposureLevel = "clean" | "masked" | "code";

export interface Exposure {
  level: ExposureLevel;
  /** why, for the sluice message (names as the statement wrote them, never a value) */
  reasons: string[];
}

export const CLEAN: Exposure = Object.freeze({ level: "clean", reasons: [] }) as Exposure;

/** What the catalog says about the resource, as plain data (data-plane/src/catalog/ reads it). */
export interface ExposureFacts {
  relations: ReadonlyArray<{
    oid: number;
    schema: string;
    name: string;
    /** pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign */
    kind: string;
    /** [column, type name, base type name of a domain ("" otherwise)] */
    columns: ReadonlyArray<readonly [string, string, string]>;
    /** a user trigger, a non-view rule, or a default / constraint / index expression that runs user code */
    writeCode: boolean;
    /** a read runs user code: the view's definition calls some, or row security / a policy applies (policies run on every read) */
    readCode: boolean;
    /** relations a read of this one reads too (a view's tables, an inheritance parent's children) */
    reads: readonly number[];
    /** relations a write to this one writes too (cascading foreign keys, children, a view's tables) */
    writes: readonly number[];
  }>;
  /** function names, bare and `schema.name`, lower case: true = user code (any overload), false = built-in */
  functions: ReadonlyMap<string, boolean>;
  /** operator names whose implementation is user code */
  userOperators: ReadonlySet<string>;
  /** type names a cast to which runs user code (a cast function, a domain constraint), lower case */
  userCastTypes: ReadonlySet<string>;
  /** an implicit cast runs user code: any statement may run it */
  implicitUserCast: boolean;
}

interface RelExposure {
  masked: boolean;
  code: boolean;
  writeMasked: boolean;
  writeCode: boolean;
}

/** The facts judged against one set of masking rules; build once per (facts, rules). */
export interface ExposureIndex {
  /** every relation matching a name as written (bare: any schema), none when unknown */
  lookup(name: string): RelExposure[];
  functions: ExposureFacts["functions"];
  userOperators: ExposureFacts["userOperators"];
  userCastTypes: ExposureFacts["userCastTypes"];
  implicitUserCast: boolean;
}

function hasMaskedColumn(c: CompiledMasking, schema: string, table: string, columns: ExposureFacts["relations"][number]["columns"]): boolean {
  for (const [col, type, base] of columns) {
    if (ruleFor(c, schema, table, col)) return true;
    if (c.typeRules.has(canonicalTypeName(type)) || (base && c.typeRules.has(canonicalTypeName(base)))) return true;
  }
  return false;
}

export function indexExposure(c: CompiledMasking, facts: ExposureFacts): ExposureIndex {
  const byOid = new Map(facts.relations.map((r) => [r.oid, r]));
  const own = new Map<number, RelExposure>();
  for (const r of facts.relations) {
    // views and materialized views are judged by what they read (below), never by their own columns alone
    own.set(r.oid, { masked: hasMaskedColumn(c, r.schema, r.name, r.columns), code: r.readCode, writeMasked: false, writeCode: r.writeCode });
  }
  // transitive closure over reads / writes; a relation on a cycle or missing from the facts counts as exposed
  const readDone = new Map<number, { masked: boolean; code: boolean }>();
  const readOf = (oid: number, seen: Set<number>): { masked: boolean; code: boolean } => {
    const hit = readDone.get(oid);
    if (hit) return hit;
    const r = byOid.get(oid);
    if (!r || seen.has(oid)) return { masked: true, code: true };
    seen.add(oid);
    const o = own.get(oid)!;
    let masked = o.masked;
    let code = o.code;
    for (const d of r.reads) {
      const x = readOf(d, seen);
      masked ||= x.masked;
      code ||= x.code;
    }
    seen.delete(oid);
    const v = { masked, code };
    readDone.set(oid, v);
    return v;
  };
  const writeDone = new Map<number, { masked: boolean; code: boolean }>();
  const writeOf = (oid: number, seen: Set<number>): { masked: boolean; code: boolean } => {
    const hit = writeDone.get(oid);
    if (hit) return hit;
    const r = byOid.get(oid);
    if (!r || seen.has(oid)) return { masked: true, code: true };
    seen.add(oid);
    const rd = readOf(oid, new Set());
    // a write reads the row it changes (RETURNING, constraint errors quoting the row) and runs what fires on it
    let masked = rd.masked;
    let code = rd.code || own.get(oid)!.writeCode;
    for (const d of r.writes) {
      const x = writeOf(d, seen);
      masked ||= x.masked;
      code ||= x.code;
    }
    seen.delete(oid);
    const v = { masked, code };
    writeDone.set(oid, v);
    return v;
  };
  const byName = new Map<string, RelExposure[]>();
  for (const r of facts.relations) {
    const rd = readOf(r.oid, new Set());
    const wr = writeOf(r.oid, new Set());
    const e: RelExposure = { masked: rd.masked, code: rd.code, writeMasked: wr.masked, writeCode: wr.code };
    for (const k of [r.name, `${r.schema}.${r.name}`]) {
      const l = byName.get(k);
      if (l) l.push(e);
      else byName.set(k, [e]);
    }
  }
  return {
    lookup: (name) => byName.get(name) ?? byName.get(unquote(name)) ?? [],
    functions: facts.functions,
    userOperators: facts.userOperators,
    userCastTypes: facts.userCastTypes,
    implicitUserCast: facts.implicitUserCast,
  };
}

/** `"Customers"` / `public."Customers"` as written → the catalog's spelling */
function unquote(name: string): string {
  return name.replace(/"((?:[^"]|"")*)"/g, (_, s: string) => s.replace(/""/g, '"'));
}

/** What the statement's AST uses that the StatementInfo does not list (operators, cast target types). */
export interface SyntaxUses {
  operators: readonly string[];
  castTypes: readonly string[];
}

/** Statement kinds that run code this proxy cannot see at the time their error comes back. */
const CODE_KINDS: Record<string, string> = {
  ExecuteStmt: "EXECUTE runs a prepared statement",
  FetchStmt: "FETCH reads a cursor",
  CallStmt: "CALL runs a procedure",
  ConstraintsSetStmt: "SET CONSTRAINTS runs deferred constraint checks",
};
const DEFERRED_CHECKS = new Set(["commit", "prepare", "commit_prepared"]);

class Judge {
  level: ExposureLevel = "clean";
  readonly reasons: string[] = [];
  raise(level: "masked" | "code", why: string): void {
    if (level === "code") this.level = "code";
    else if (this.level === "clean") this.level = "masked";
    if (!this.reasons.includes(why) && this.reasons.length < 8) this.reasons.push(why);
  }
  result(): Exposure {
    return { level: this.level, reasons: this.reasons };
  }
}

/**
 * The exposure of a statement (or of the statements of one simple Query that may have produced the
 * message). `index` absent: the catalog could not be read, nothing is proven. `syntax(i)` gives the
 * operators and casts of statement `i`, when the index says some of those run user code.
 */
export function statementExposure(
  statements: readonly StatementInfo[] | undefined,
  index: ExposureIndex | undefined,
  syntax?: (i: number) => SyntaxUses | undefined,
): Exposure {
  const j = new Judge();
  if (!statements || statements.length === 0) {
    j.raise("code", "the message cannot be attributed to a statement sluice decided");
    return j.result();
  }
  if (!index) {
    j.raise("code", "the masking catalog could not be read");
    return j.result();
  }
  if (index.implicitUserCast) j.raise("code", "an implicit cast of this database runs user code");
  statements.forEach((s, i) => {
    const why = CODE_KINDS[s.kind];
    if (why) j.raise("code", why);
    if (s.txn && DEFERRED_CHECKS.has(s.txn)) j.raise("code", "COMMIT runs deferred constraint checks");
    if (s.risks.includes("dynamic-sql")) j.raise("code", "it runs dynamic SQL");
    if ((s.classes ?? [s.class]).includes("admin")) j.raise("code", "it is an admin statement");
    for (const f of s.functions) {
      const user = index.functions.get(f) ?? index.functions.get(unquote(f));
      if (user === undefined) j.raise("code", `it calls ${f}(), which the masking catalog does not know`);
      else if (user) j.raise("code", `it calls the user function ${f}()`);
    }
    // a DO block is user code: over masked data its RAISE can put a value in any field, names included
    const userCode = s.kind === "DoStmt";
    for (const t of s.tables.read) judgeRelation(j, t, false, userCode);
    for (const t of s.tables.write) judgeRelation(j, t, true, userCode);
    if (index.userOperators.size || index.userCastTypes.size) {
      if (s.kind === "DoStmt") j.raise("code", "a DO block may use operators or casts that run user code");
      const u = syntax?.(i);
      if (!u) j.raise("code", "its operators and casts could not be checked");
      else {
        for (const op of u.operators) if (index.userOperators.has(op)) j.raise("code", `it uses the operator ${op}, which runs user code`);
        for (const t of u.castTypes) if (index.userCastTypes.has(t)) j.raise("code", `a cast to ${t} runs user code`);
      }
    }
  });
  return j.result();

  function judgeRelation(j: Judge, name: string, write: boolean, userCode: boolean): void {
    const rels = index!.lookup(name);
    if (rels.length === 0) {
      // a relation the catalog does not list: created since it was read, temporary, or not there at all
      j.raise("code", `it uses ${name}, which the masking catalog does not know`);
      return;
    }
    for (const r of rels) {
      if (write ? r.writeCode : r.code) j.raise("code", `${name} runs user code when ${write ? "written" : "read"}`);
      if (write ? r.writeMasked : r.masked) j.raise(userCode ? "code" : "masked", `it reads masked columns through ${name}`);
    }
  }
}

/** The operators and cast target types of a libpg-query statement AST (everything below it); undefined when it nests too deep to list. */
export function syntaxUses(ast: unknown): SyntaxUses | undefined {
  const operators = new Set<string>();
  const castTypes = new Set<string>();
  let tooDeep = false;
  const walk = (n: unknown, depth: number): void => {
    if (n === null || typeof n !== "object") return;
    // what lies deeper is not listed, so the statement's syntax is not known (never "none")
    if (depth > 200) {
      tooDeep = true;
      return;
    }
    if (Array.isArray(n)) {
      for (const x of n) walk(x, depth + 1);
      return;
    }
    const o = n as Record<string, any>;
    if (o.A_Expr?.name) for (const p of o.A_Expr.name) if (p?.String?.sval) operators.add(p.String.sval);
    const tn = o.TypeCast?.typeName?.names ?? o.TypeName?.names;
    if (Array.isArray(tn) && tn.length) {
      const last = tn[tn.length - 1]?.String?.sval;
      if (last) castTypes.add(String(last).toLowerCase());
    }
    for (const v of Object.values(o)) walk(v, depth + 1);
  };
  walk(ast, 0);
  return tooDeep ? undefined : { operators: [...operators], castTypes: [...castTypes] };
}
