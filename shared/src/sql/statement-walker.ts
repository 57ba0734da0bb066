/**
 * The statement walker: reads one statement's AST (and everything nested in it: subqueries, CTEs,
 * DO bodies, EXECUTE strings, function bodies) into a Collector of classes, tables, functions and
 * risks. See classify-sql.ts for the class mapping; node-model.ts for which nodes are modelled
 * (anything else denies). Pure apart from the parser it is given.
 */
import type { Risk, StatementClass } from "../policy/bundle.js";
import {
  ClassifyError,
  constSettingValue,
  constString,
  constStringOrSval,
  cutText,
  defElemsOf,
  firstKey,
  isFalse,
  lastPart,
  nameOf,
  rangeVarName,
  referencesColumn,
  regclassName,
  stripCatalog,
  type J,
} from "./ast-util.js";
import {
  isActivityFunction,
  isAdminRelation,
  isDynamicSqlFunction,
  isSettingsView,
  isSuperuserFunction,
  SEQUENCE_WRITERS,
  sideEffectClass,
} from "./function-tables.js";
import { NEVER_FROM_PARSER, STATEMENT_CLASS, WALKED_NODES } from "./node-model.js";
import { HARMLESS_SETTINGS, isPinnedSetting, keepsPinnedReading } from "./session-settings.js";
import { walkPlpgsql } from "./plpgsql-walker.js";
import { baselineOf } from "./client-baseline.js";
import type { SqlParser } from "./sql-parser.js";

/** Severity order, used to pick `class` among `classes`. */
export const RANK: Readonly<Record<StatementClass, number>> = { read: 0, utility: 1, write: 2, copy: 3, ddl: 4, admin: 5 };

const ROLE_SETTINGS = new Set(["role", "session_authorization"]);
/** switches triggers and rules off for the session (it takes superuser, which the upstream role may have) */
const REPLICATION_ROLE = "session_replication_role";
/** Depth of SQL found inside SQL (DO bodies, EXECUTE strings, function bodies, PREPARE …). */
const MAX_NESTING = 8;
const TABLE_LIKE_OBJECTS = new Set(["OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE"]);

/**
 * The fields of statement kinds whose handler reads flags (not only nodes): a field outside the
 * list is one the handler would not understand, so the statement is denied. node-model.test.ts
 * checks each list against the type definitions.
 */
export const INTERPRETED_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  CopyStmt: new Set(["relation", "query", "attlist", "is_from", "is_program", "filename", "options", "whereClause"]),
  VariableSetStmt: new Set(["kind", "name", "args", "jumble_args", "is_local", "location"]),
  DoStmt: new Set(["args"]),
  CreateFunctionStmt: new Set(["is_procedure", "replace", "funcname", "parameters", "returnType", "options", "sql_body"]),
  ExplainStmt: new Set(["query", "options"]),
  DeclareCursorStmt: new Set(["portalname", "options", "query"]),
  PrepareStmt: new Set(["name", "argtypes", "query"]),
  ExecuteStmt: new Set(["name", "params"]),
  CallStmt: new Set(["funccall", "funcexpr", "outargs"]),
  DropStmt: new Set(["objects", "removeType", "behavior", "missing_ok", "concurrent"]),
};

function checkFields(kind: string, b: J): void {
  const known = INTERPRETED_FIELDS[kind];
  if (!known || !b) return;
  for (const k in b) if (!known.has(k)) throw new ClassifyError(`${kind} has a field sluice does not model (${k})`);
}

/** RangeVars of a FROM list (through joins), by alias and by name. */
function collectFromRangeVars(from: J, out: Map<string, J>): void {
  if (!from || typeof from !== "object") return;
  if (Array.isArray(from)) {
    for (const x of from) collectFromRangeVars(x, out);
    return;
  }
  if (from.RangeVar) {
    const rv = from.RangeVar;
    out.set(rv.alias?.aliasname ?? rv.relname, rv);
  } else if (from.JoinExpr) {
    collectFromRangeVars(from.JoinExpr.larg, out);
    collectFromRangeVars(from.JoinExpr.rarg, out);
  }
}

/** The most privileged class of the set; `utility` for an empty set (a DO block without SQL). */
export function maxClass(set: Set<StatementClass>): StatementClass {
  let best: StatementClass | undefined;
  for (const c of set) if (best === undefined || RANK[c] > RANK[best]) best = c;
  return best ?? "utility";
}

/** A DO body as a function definition the PL/pgSQL parser accepts, with a dollar tag not in the body. */
function wrapDoBody(body: string): string {
  let tag = "$sluice$";
  for (let i = 0; body.includes(tag); i++) tag = `$sluice${i}$`;
  return `CREATE FUNCTION sluice_do_block() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}`;
}

/** Everything learnt about one top-level statement, including what is nested inside it. */
export class Collector {
  readonly reads = new Set<string>();
  readonly writes = new Set<string>();
  readonly functions = new Set<string>();
  /** the functions that run when the statement runs: all of `functions` but those only in a function body it defines */
  readonly calls = new Set<string>();
  /** operators used, a function body's included like `functions` (a user operator runs its function) */
  readonly operators = new Set<string>();
  readonly risks = new Set<Risk>();
  readonly classes = new Set<StatementClass>();
  readonly executes: string[] = [];
  setsSearchPath = false;
  /** CTE names visible at this point (Postgres scoping) */
  private readonly scopes: Set<string>[] = [];
  /** > 0 while walking a CREATE FUNCTION body: its tables and risks count, its classes do not */
  private bodyDepth = 0;

  constructor(readonly parser: SqlParser) {}

  addClass(c: StatementClass): void {
    if (this.bodyDepth === 0) this.classes.add(c);
  }

  private isCte(rv: J): boolean {
    if (rv.schemaname || rv.catalogname) return false;
    for (let i = this.scopes.length - 1; i >= 0; i--) if (this.scopes[i].has(rv.relname)) return true;
    return false;
  }

  /**
   * Records a relation. `cteVisible` is false for DML targets (INSERT/UPDATE/DELETE/MERGE INTO,
   * TRUNCATE, LOCK, COPY, SELECT INTO): Postgres never resolves those to a CTE, so
   * `WITH secrets AS (SELECT 1) DELETE FROM secrets` deletes from the real table.
   */
  table(rv: J, mode: "read" | "write", cteVisible = true): void {
    if (!rv || rv.relname === undefined || (cteVisible && this.isCte(rv))) return;
    (mode === "write" ? this.writes : this.reads).add(rangeVarName(rv));
  }

  /** Runs `fn` with the CTEs of `withClause` in scope; each CTE query sees earlier siblings (or all, if RECURSIVE). */
  withCtes(withClause: J, depth: number, fn: () => void): void {
    if (!withClause?.ctes?.length) return fn();
    const scope = new Set<string>();
    this.scopes.push(scope);
    const ctes: J[] = withClause.ctes.map((c: J) => c.CommonTableExpr).filter(Boolean);
    if (withClause.recursive) for (const c of ctes) scope.add(c.ctename);
    for (const c of ctes) {
      this.walk(c.ctequery, "read", depth);
      // search/cycle clauses name columns only, but are walked like any clause
      this.walk(c.search_clause, "read", depth);
      this.walk(c.cycle_clause, "read", depth);
      this.walk(c.aliascolnames, "read", depth);
      scope.add(c.ctename);
    }
    fn();
    this.scopes.pop();
  }

  /**
   * Generic walk: RangeVars are tables (`mode`), FuncCalls are functions, nested statements
   * (subqueries, CTE bodies) are classified into this collector, modelled expression nodes are
   * walked into, and any other node wrapper denies (node-model.ts).
   */
  walk(node: J, mode: "read" | "write", depth: number): void {
    if (node === null || typeof node !== "object") return;
    if (Array.isArray(node)) {
      for (const x of node) this.walk(x, mode, depth);
      return;
    }
    // a RangeVar held directly in a field (e.g. CreateStmt.relation), not in a { RangeVar } wrapper
    if (typeof node.relname === "string") return this.table(node, mode);
    for (const k in node) {
      const v = node[k];
      if (v === null || typeof v !== "object") continue;
      const c = k.charCodeAt(0);
      if (c < 65 || c > 90) this.walk(v, mode, depth); // a field
      else if (k === "RangeVar") this.table(v, mode);
      else if (k === "FuncCall") this.funcCall(v, mode, depth);
      else if (WALKED_NODES.has(k)) {
        if (k === "A_Expr" || k === "SubLink" || k === "SortBy") this.operator(v.name ?? v.operName ?? v.useOp);
        this.walk(v, mode, depth);
      }
      else if (k in STATEMENT_CLASS && !Array.isArray(v)) this.statement(k, v, "", depth, false);
      else throw new ClassifyError(NEVER_FROM_PARSER.has(k) ? `unexpected node ${k}` : `unmodelled node ${k}`);
    }
  }

  private operator(list: J[] | undefined): void {
    if (!list) return;
    const name = nameOf(list).toLowerCase();
    if (!name) return;
    // BETWEEN is spelt as keywords in the tree; it runs the comparison operators
    if (name.includes("between")) for (const op of ["<", "<=", ">", ">="]) this.operators.add(op);
    else this.operators.add(name);
  }

  funcCall(fc: J, mode: "read" | "write", depth: number): void {
    const name = nameOf(fc.funcname).toLowerCase();
    this.functions.add(name);
    if (this.bodyDepth === 0) this.calls.add(name);
    const base = lastPart(name);
    // built-ins with side effects: their class counts where a statement's class would (not in a
    // function body being defined)
    const side = sideEffectClass(base);
    if (side !== undefined) this.addClass(side);
    if (isActivityFunction(base)) this.addClass("admin");
    if (base === "set_config") this.setConfig(fc.args);
    else if (SEQUENCE_WRITERS.has(base)) {
      const seq = constString(fc.args?.[0]);
      const rel = seq === undefined ? undefined : regclassName(seq);
      if (rel !== undefined) this.writes.add(rel);
    }
    this.walk(fc.args, mode, depth);
    this.walk(fc.agg_order, mode, depth);
    this.walk(fc.agg_filter, mode, depth);
    this.walk(fc.over, mode, depth);
  }

  /**
   * `set_config(name, value, is_local)` is SET by another spelling. A non-constant name could be
   * any setting (role, search_path, a pinned one), so it is assumed to be all of them.
   */
  private setConfig(args: J[] | undefined): void {
    const setting = constString(args?.[0])?.toLowerCase();
    if (setting === undefined || ROLE_SETTINGS.has(setting)) {
      this.risks.add("role-change");
      this.risks.add("superuser-functions");
    }
    if (setting === undefined || setting === "search_path") this.setsSearchPath = true;
    if (setting === undefined || setting === REPLICATION_ROLE) this.risks.add("session-replication-role");
    if (setting === undefined || (isPinnedSetting(setting) && !keepsPinnedReading(setting, constSettingValue(args?.[1])))) {
      this.risks.add("parser-setting");
    }
    // a setting that is neither harmless nor handled above changes the session like SET does
    if (setting !== undefined && !HARMLESS_SETTINGS.has(setting) && !isPinnedSetting(setting) && !ROLE_SETTINGS.has(setting)) {
      this.addClass("utility");
    }
  }

  private dmlTarget(b: J, kind: string): void {
    this.table(b.relation, "write", false);
    this.addClass("write");
    if (b.relation?.relname !== undefined && isSettingsView(rangeVarName(b.relation))) {
      // an UPDATE of pg_settings runs set_config for the rows it touches: any setting at all
      this.setConfig(undefined);
    }
    if (kind === "DeleteStmt" || kind === "UpdateStmt") {
      if (!b.whereClause || !referencesColumn(b.whereClause)) {
        this.risks.add(kind === "DeleteStmt" ? "delete-without-where" : "update-without-where");
      }
    }
  }

  private selectStmt(b: J, depth: number): void {
    this.withCtes(b.withClause, depth, () => {
      if (b.intoClause) {
        this.table(b.intoClause.rel, "write", false);
        this.addClass("ddl");
      }
      if (b.lockingClause?.length) {
        this.addClass("write");
        // row locks: the locked relations (FOR UPDATE OF names an alias or a table), or every
        // FROM relation when none is named or a name is not a plain relation, count as written
        const inFrom = new Map<string, J>();
        collectFromRangeVars(b.fromClause, inFrom);
        let all = false;
        for (const lc of b.lockingClause) {
          const rels: J[] = lc.LockingClause?.lockedRels ?? [];
          if (rels.length === 0) all = true;
          for (const rel of rels) {
            const rv = inFrom.get((rel.RangeVar ?? rel).relname);
            if (rv) this.table(rv, "write");
            else all = true;
          }
        }
        if (all) this.walk(b.fromClause, "write", depth);
      }
      for (const k in b) {
        if (k === "withClause" || k === "intoClause" || k === "lockingClause") continue;
        // the arms of UNION / INTERSECT / EXCEPT are SelectStmts held without a wrapper
        if ((k === "larg" || k === "rarg") && b[k]) this.selectStmt(b[k], depth);
        else this.walk(b[k], "read", depth);
      }
    });
  }

  /**
   * Classifies one statement node into this collector and returns its own (shape) class.
   * `top` = a statement whose class counts (top level, DO body, EXECUTE string); subqueries do not
   * add their class except through writes they contain.
   */
  statement(kind: string, b: J, text: string, depth: number, top: boolean): StatementClass {
    if (depth > MAX_NESTING) throw new ClassifyError("statement nesting too deep");
    checkFields(kind, b);
    const own = this.classifyKind(kind, b, text, depth);
    // inside a DO body or an EXECUTE string, what every client may do (a SET LOCAL of a harmless
    // setting, COMMIT) adds no class, as at top level; its risks still count
    if (top && !(own === "utility" && baselineOf(kind, b) !== undefined)) this.addClass(own);
    return own;
  }

  private classifyKind(kind: string, b: J, text: string, depth: number): StatementClass {
    switch (kind) {
      case "SelectStmt":
        this.selectStmt(b, depth);
        return b.intoClause ? "ddl" : b.lockingClause?.length ? "write" : "read";
      case "InsertStmt":
      case "UpdateStmt":
      case "DeleteStmt":
      case "MergeStmt":
        this.withCtes(b.withClause, depth, () => {
          this.dmlTarget(b, kind);
          for (const k in b) {
            if (k === "withClause" || k === "relation") continue;
            this.walk(b[k], "read", depth);
          }
        });
        return "write";
      case "TruncateStmt":
        this.risks.add("truncate");
        this.walk(b.relations, "write", depth);
        return "write";
      case "LockStmt":
        this.walk(b.relations, "write", depth);
        return "write";
      case "CallStmt":
        if (b.funcexpr || b.outargs) throw new ClassifyError("CALL carries an analysed call");
        this.walk(b.funccall ? { FuncCall: b.funccall } : b, "read", depth);
        return "write";
      case "ExplainStmt":
        return this.explain(b, depth);
      case "CopyStmt":
        if (b.is_program) this.risks.add("copy-program");
        else if (b.filename) this.risks.add("copy-file");
        if (b.relation) this.table(b.relation, b.is_from ? "write" : "read", false);
        if (b.query) this.walk(b.query, "read", depth);
        this.walk(b.whereClause, "read", depth);
        this.walk(b.options, "read", depth);
        // COPY … TO STDOUT is a read of the table or query (contract: `read` includes it); its rows
        // are masked like any result. FROM STDIN, files and programs stay `copy`.
        return !b.is_from && !b.is_program && !b.filename ? "read" : "copy";
      case "PrepareStmt":
        // classified as what it prepares
        this.walk(b.argtypes, "read", depth);
        return this.statement(firstKey(b.query), b.query?.[firstKey(b.query)], "", depth + 1, false);
      case "ExecuteStmt":
        this.executes.push(b.name);
        this.walk(b.params, "read", depth);
        return "utility";
      case "DeclareCursorStmt":
        return this.statement(firstKey(b.query), b.query?.[firstKey(b.query)], "", depth + 1, false);
      case "CreateTableAsStmt":
        this.table(b.into?.rel, "write");
        this.walk(b.query, "read", depth);
        return "ddl";
      case "ViewStmt":
        this.table(b.view, "write");
        this.walk(b.query, "read", depth);
        this.walk(b.options, "read", depth);
        return "ddl";
      case "DoStmt":
        return this.doBlock(b, depth);
      case "CreateFunctionStmt":
        this.functionBody(b, text, depth);
        return "ddl";
      case "VariableSetStmt":
        return this.variableSet(b);
      case "TransactionStmt":
        return "utility";
      case "ReturnStmt":
        this.walk(b.returnval, "read", depth);
        return "read";
      case "DropStmt":
        this.risks.add("drop");
        if (b.removeType === "OBJECT_TABLE") this.risks.add("drop-table");
        if (b.removeType === "OBJECT_SCHEMA") this.risks.add("drop-schema");
        if (TABLE_LIKE_OBJECTS.has(b.removeType)) {
          for (const o of b.objects ?? []) {
            const n = nameOf(o.List?.items);
            if (n) this.writes.add(stripCatalog(n));
          }
        }
        this.walk(b.objects, "write", depth);
        return "ddl";
      case "DropdbStmt":
        this.risks.add("drop");
        this.risks.add("drop-database");
        return "admin";
      case "DropRoleStmt":
        this.risks.add("drop");
        this.risks.add("drop-role");
        return "admin";
      case "DropTableSpaceStmt":
      case "DropOwnedStmt":
      case "DropSubscriptionStmt":
      case "DropUserMappingStmt":
        this.risks.add("drop");
        this.walk(b, "write", depth);
        return "admin";
      case "AlterSystemStmt":
        this.risks.add("alter-system");
        if (b.setstmt) this.variableSet(b.setstmt);
        return "admin";
      case "AlterRoleSetStmt":
      case "AlterDatabaseSetStmt":
        // the SET is held without a wrapper: the same rules as a SET of the session
        if (b.setstmt) this.variableSet(b.setstmt);
        this.walk({ ...b, setstmt: undefined }, "write", depth);
        return "admin";
      case "GrantStmt":
      case "GrantRoleStmt":
      case "AlterDefaultPrivilegesStmt":
        this.risks.add("grant");
        this.walk(b, "write", depth);
        return "admin";
      case "AlterTableStmt":
        for (const c of b.cmds ?? []) {
          const sub = c.AlterTableCmd?.subtype;
          if (sub === "AT_DropColumn" || sub === "AT_DropConstraint") this.risks.add("drop");
        }
        this.walk(b, "write", depth);
        return "ddl";
      case "DiscardStmt":
        return "utility";
      default: {
        const own = STATEMENT_CLASS[kind];
        // a statement kind the classifier does not know is never waved through
        if (own === undefined) throw new ClassifyError(`unmodelled statement ${kind || "(none)"}`);
        this.walk(b, own === "ddl" || own === "admin" ? "write" : "read", depth);
        return own;
      }
    }
  }

  private explain(b: J, depth: number): StatementClass {
    const opts = defElemsOf(b.options);
    const analyze = opts.has("analyze") && !isFalse(opts.get("analyze"));
    const innerKind = firstKey(b.query);
    if (analyze) {
      // EXPLAIN ANALYZE runs the statement: it is that statement
      return this.statement(innerKind, b.query[innerKind], "", depth + 1, false);
    }
    // plain EXPLAIN only plans: every relation mentioned is read, nothing runs
    const inner = new Collector(this.parser);
    inner.statement(innerKind, b.query?.[innerKind], "", depth + 1, true);
    for (const t of inner.reads) this.reads.add(t);
    for (const t of inner.writes) this.reads.add(t);
    return "read";
  }

  private variableSet(b: J): StatementClass {
    const name = (b.name ?? "").toLowerCase();
    if (ROLE_SETTINGS.has(name)) {
      this.risks.add("role-change");
      return "admin";
    }
    if (name === "search_path" && b.kind !== "VAR_RESET") this.setsSearchPath = true;
    if (name === REPLICATION_ROLE && b.kind !== "VAR_RESET") this.risks.add("session-replication-role");
    // SET / SET LOCAL / a function's SET clause / ALTER ROLE|DATABASE|SYSTEM … SET of a pinned
    // setting to another value. RESET, SET … TO DEFAULT and FROM CURRENT return to (or keep) the
    // value every session starts with, which the data plane pins at connect.
    if (isPinnedSetting(name) && b.kind === "VAR_SET_VALUE") {
      const args: J[] = b.args ?? [];
      if (args.length !== 1 || !keepsPinnedReading(name, constSettingValue(args[0]))) this.risks.add("parser-setting");
    }
    return "utility";
  }

  private doBlock(b: J, depth: number): StatementClass {
    const opts = defElemsOf(b.args);
    const lang = (constStringOrSval(opts.get("language")) ?? "plpgsql").toLowerCase();
    const body = constStringOrSval(opts.get("as")) ?? "";
    if (lang !== "plpgsql") {
      this.risks.add("dynamic-sql");
      this.addClass("admin");
      return "admin";
    }
    this.plpgsql(wrapDoBody(body), depth + 1);
    // the DO block's own class: the most privileged class its body exercised. A body that runs no
    // SQL of a class (RAISE, assignments of expressions, SET LOCAL of a harmless setting) computes
    // like a SELECT of expressions: read (sqitch's registry check is such a block)
    return this.classes.size ? maxClass(this.classes) : "read";
  }

  private functionBody(b: J, text: string, depth: number): void {
    const opts = defElemsOf(b.options);
    const lang = (constStringOrSval(opts.get("language")) ?? (b.sql_body ? "sql" : "")).toLowerCase();
    // parameter defaults, the return type and the options (a SET clause among them) are walked too
    this.walk(b.parameters, "read", depth);
    this.walk(b.returnType, "read", depth);
    this.walk(b.options?.filter((o: J) => o?.DefElem?.defname !== "as"), "read", depth);
    this.bodyDepth++;
    try {
      if (b.sql_body) this.walk(b.sql_body, "read", depth + 1);
      const as = opts.get("as");
      const src: string | undefined = as?.List?.items?.[0]?.String?.sval;
      if (lang === "sql" && src !== undefined) this.nestedSql(src, depth + 1);
      else if (lang === "plpgsql") {
        if (!text) throw new ClassifyError("cannot analyse a nested plpgsql function definition");
        this.plpgsql(text, depth + 1);
      }
    } finally {
      this.bodyDepth--;
    }
    if (lang !== "sql" && lang !== "plpgsql") {
      // C, internal, untrusted languages: nothing to analyse, and creating them takes superuser
      this.risks.add("dynamic-sql");
      this.addClass("admin");
    }
  }

  /** Classifies SQL text found inside another statement (DO body, EXECUTE string, SQL function body). */
  nestedSql(sql: string, depth: number, top = true): void {
    if (depth > MAX_NESTING) throw new ClassifyError("statement nesting too deep");
    if (sql.trim() === "") return;
    let parsed: J;
    try {
      parsed = this.parser.parse(sql);
    } catch (e) {
      throw new ClassifyError(`nested statement: ${(e as Error).message}`);
    }
    const stmts: J[] = parsed.stmts ?? [];
    const bytes = stmts.length > 1 ? Buffer.from(sql, "utf8") : undefined;
    for (const s of stmts) {
      const k = firstKey(s.stmt);
      const t = bytes ? cutText(sql, bytes, s.stmt_location, s.stmt_len) : sql;
      this.statement(k, s.stmt[k], t, depth, top);
    }
  }

  /** Parses a CREATE FUNCTION … LANGUAGE plpgsql text and classifies every SQL expression inside. */
  private plpgsql(fnText: string, depth: number): void {
    let tree: J;
    try {
      tree = this.parser.parsePlpgsql(fnText);
    } catch (e) {
      throw new ClassifyError(`plpgsql: ${(e as Error).message}`);
    }
    walkPlpgsql(this, tree, depth);
  }

  /** Class escalation by function and relation, and the final shape of `classes`. */
  finish(own: StatementClass): StatementClass[] {
    for (const f of this.functions) {
      const base = lastPart(f);
      if (isSuperuserFunction(base)) {
        this.risks.add("superuser-functions");
        this.classes.add("admin");
      }
      if (isDynamicSqlFunction(base)) {
        this.risks.add("dynamic-sql");
        this.classes.add("admin");
      }
    }
    if (this.risks.has("role-change")) this.classes.add("admin");
    if (this.setsSearchPath) this.risks.add("search-path");
    for (const set of [this.reads, this.writes]) for (const t of set) if (isAdminRelation(t)) this.classes.add("admin");
    this.classes.add(own);
    if (this.classes.has("write")) this.classes.delete("read");
    return [...this.classes].sort((a, b) => RANK[a] - RANK[b]);
  }
}
