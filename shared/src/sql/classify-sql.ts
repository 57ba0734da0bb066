/**
 * The SQL classifier (contract: data path step 4). Pure apart from the libpg-query WASM module:
 * the real PostgreSQL 18 parser produces the AST, and this file reads it to say, per statement,
 * its class, the tables it reads and writes, the functions it calls and the named risks it carries.
 * Nothing here is regex guesswork over the text: comments, casing, quoting, unicode escapes and
 * dollar quoting are all resolved by the parser before we look.
 *
 * CLASS MAPPING (the `class` of a statement; `classes` lists every class it exercises):
 *
 * | class   | statements |
 * |---------|------------|
 * | read    | SELECT / VALUES / TABLE without writes or row locks; plain EXPLAIN (of anything: it only plans); DECLARE CURSOR of a read; SHOW-like reads are `utility` |
 * | write   | INSERT, UPDATE, DELETE, MERGE, TRUNCATE (+risk truncate); a SELECT carrying a data-modifying CTE; SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE (Postgres demands UPDATE privilege for row locks, and a read-only identity must not be able to block writers); LOCK TABLE; CALL (a procedure may write); EXPLAIN ANALYZE of a write (it runs it) |
 * | ddl     | CREATE/ALTER/DROP of tables, views, indexes, sequences, types, functions, triggers, schemas, policies, rules; COMMENT; SELECT INTO and CREATE TABLE AS (they create a table); REFRESH MATERIALIZED VIEW; SECURITY LABEL |
 * | admin   | GRANT/REVOKE (+risk grant); reading a superuser-only catalog (pg_authid, pg_shadow, pg_user_mapping, pg_statistic, pg_largeobject, …); roles (CREATE/ALTER/DROP ROLE); databases and tablespaces; ALTER SYSTEM (+alter-system); VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD; extensions, FDWs, servers, user mappings, publications, subscriptions, event triggers, languages; REASSIGN/DROP OWNED; SET ROLE / SET SESSION AUTHORIZATION / RESET ROLE (+risk role-change); any statement calling a superuser function or a function that runs SQL from a string (its effect cannot be bounded by its shape); a DO block / function body in a language other than plpgsql or sql; EXECUTE of a non-constant string inside PL/pgSQL (unknowable) |
 * | utility | SET/RESET/SHOW (other settings), BEGIN/COMMIT/ROLLBACK/SAVEPOINT/…, LISTEN/NOTIFY/UNLISTEN, DEALLOCATE, DISCARD, FETCH/MOVE/CLOSE, SET CONSTRAINTS, a DO block with no SQL inside |
 * | copy    | COPY (FROM: writes the table, TO: reads the table or query) (+copy-program, +copy-file) |
 *
 * Compound statements: `PREPARE n AS q` is classified as `q` (and `prepares: n`); `EXECUTE n` is
 * resolved at evaluation through SqlPrepared; a DO block is the union of the SQL inside its
 * PL/pgSQL body (parsed with the PL/pgSQL parser, nested DO and constant `EXECUTE '…'` strings
 * included) plus `dynamic-sql` for any EXECUTE; CREATE FUNCTION is ddl but carries the tables,
 * functions and risks of its body (creating a function is how one would launder a statement).
 * When `write` is among the classes, `read` is dropped (a read carrying a write is a write).
 *
 * Tables are reported as written: `schema.table` when qualified, bare `table` otherwise (CTE names
 * are resolved away with Postgres scoping, so `WITH secrets AS (SELECT * FROM secrets)` still
 * reports the real `secrets` read inside). Views are reported by name (not expanded).
 *
 * Known limits (documented, not hidden): a user-defined function called from a SELECT may do
 * anything its definition does (policy sees only its name); functions reached through operators or
 * casts are not listed.
 */
import { loadModule, parseSync, parsePlPgSQLSync, fingerprintSync } from "libpg-query";
import type { Risk, StatementClass } from "../policy/bundle.js";
import type { Classification, StatementInfo } from "./statement-info.js";

let loaded = false;

/** Loads the WASM parser once; classifySql and fingerprint are synchronous after this resolves. */
export async function loadSqlParser(): Promise<void> {
  if (loaded) return;
  await loadModule();
  loaded = true;
}

/** libpg-query JSON AST (shapes per @pgsql/types), walked generically: one key per node wrapper. */
type J = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Statement node kind → class, for kinds without special handling below. */
const CLASS_BY_KIND: Readonly<Record<string, StatementClass>> = {
  // read
  SelectStmt: "read",
  // write
  InsertStmt: "write", UpdateStmt: "write", DeleteStmt: "write", MergeStmt: "write",
  TruncateStmt: "write", LockStmt: "write", CallStmt: "write",
  // ddl
  CreateStmt: "ddl", CreateTableAsStmt: "ddl", ViewStmt: "ddl", IndexStmt: "ddl", CreateSeqStmt: "ddl",
  AlterSeqStmt: "ddl", CreateFunctionStmt: "ddl", AlterFunctionStmt: "ddl", CreateTrigStmt: "ddl",
  CreateSchemaStmt: "ddl", CreateEnumStmt: "ddl", AlterEnumStmt: "ddl", CompositeTypeStmt: "ddl",
  CreateDomainStmt: "ddl", AlterDomainStmt: "ddl", DefineStmt: "ddl", AlterTableStmt: "ddl",
  RenameStmt: "ddl", DropStmt: "ddl", CommentStmt: "ddl", AlterObjectSchemaStmt: "ddl",
  AlterOwnerStmt: "ddl", CreatePolicyStmt: "ddl", AlterPolicyStmt: "ddl", RuleStmt: "ddl",
  RefreshMatViewStmt: "ddl", CreateRangeStmt: "ddl", AlterTypeStmt: "ddl", CreateCastStmt: "ddl",
  CreateOpClassStmt: "ddl", CreateOpFamilyStmt: "ddl", AlterOpFamilyStmt: "ddl", AlterOperatorStmt: "ddl",
  CreateConversionStmt: "ddl", CreateTransformStmt: "ddl", CreateStatsStmt: "ddl", AlterStatsStmt: "ddl",
  AlterCollationStmt: "ddl", SecLabelStmt: "ddl", AlterTSDictionaryStmt: "ddl",
  AlterTSConfigurationStmt: "ddl", CreateAmStmt: "ddl", AlterTableMoveAllStmt: "ddl",
  AlterObjectDependsStmt: "ddl", CreateForeignTableStmt: "ddl",
  // admin
  GrantStmt: "admin", GrantRoleStmt: "admin", AlterDefaultPrivilegesStmt: "admin",
  CreateRoleStmt: "admin", AlterRoleStmt: "admin", AlterRoleSetStmt: "admin", DropRoleStmt: "admin",
  CreatedbStmt: "admin", AlterDatabaseStmt: "admin", AlterDatabaseSetStmt: "admin",
  AlterDatabaseRefreshCollStmt: "admin", DropdbStmt: "admin", CreateTableSpaceStmt: "admin",
  DropTableSpaceStmt: "admin", AlterTableSpaceOptionsStmt: "admin", AlterSystemStmt: "admin",
  VacuumStmt: "admin", ClusterStmt: "admin", ReindexStmt: "admin", CheckPointStmt: "admin",
  LoadStmt: "admin", CreateExtensionStmt: "admin", AlterExtensionStmt: "admin",
  AlterExtensionContentsStmt: "admin", CreateFdwStmt: "admin", AlterFdwStmt: "admin",
  CreateForeignServerStmt: "admin", AlterForeignServerStmt: "admin", CreateUserMappingStmt: "admin",
  AlterUserMappingStmt: "admin", DropUserMappingStmt: "admin", ImportForeignSchemaStmt: "admin",
  CreatePublicationStmt: "admin", AlterPublicationStmt: "admin", CreateSubscriptionStmt: "admin",
  AlterSubscriptionStmt: "admin", DropSubscriptionStmt: "admin", CreateEventTrigStmt: "admin",
  AlterEventTrigStmt: "admin", CreatePLangStmt: "admin", ReassignOwnedStmt: "admin",
  DropOwnedStmt: "admin", ReplicaIdentityStmt: "admin",
  // utility
  VariableShowStmt: "utility", TransactionStmt: "utility", ListenStmt: "utility", NotifyStmt: "utility",
  UnlistenStmt: "utility", DeallocateStmt: "utility", DiscardStmt: "utility", FetchStmt: "utility",
  ClosePortalStmt: "utility", ConstraintsSetStmt: "utility", ExecuteStmt: "utility",
  // copy
  CopyStmt: "copy",
};

/** Severity order, used to pick `class` among `classes`. */
const RANK: Readonly<Record<StatementClass, number>> = { read: 0, utility: 1, write: 2, copy: 3, ddl: 4, admin: 5 };

/** Superuser / server-side functions: file and large-object access, dblink, backend signalling, WAL and replication control. */
const SUPERUSER_FUNCTIONS = new Set([
  "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_terminate_backend", "pg_cancel_backend",
  "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
  "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_drop_replication_slot",
  "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_copy_physical_replication_slot",
  "pg_copy_logical_replication_slot", "pg_logical_emit_message", "pg_log_backend_memory_contexts",
  "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_import_system_collations", "loread", "lowrite",
  "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes", "pg_replication_slot_advance",
]);
const SUPERUSER_PREFIXES = ["lo_", "dblink", "pg_ls_", "pg_file_", "pg_logdir_", "pg_replication_origin_", "pg_stat_reset"];
/** Functions that run SQL given as a string (or read a whole table/schema/database by name). */
const DYNAMIC_SQL_FUNCTIONS = new Set([
  "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
  "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xmlschema",
  "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
  "ts_stat", "dblink", "dblink_exec", "dblink_open", "dblink_send_query",
]);
const ROLE_SETTINGS = new Set(["role", "session_authorization"]);
/**
 * Catalogs only a superuser may read (password hashes, user-mapping secrets, raw large objects and
 * statistics values, server config files): reading one is an admin act, whatever the statement's
 * shape, since only the gateway's own credential could make it succeed.
 */
const SUPERUSER_CATALOGS = new Set([
  "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_largeobject", "pg_statistic",
  "pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings", "pg_subscription",
]);
const MAX_NESTING = 8;

/** Thrown inside the walk; classifySql turns it into `{ ok: false }`. */
class ClassifyError extends Error {}

function isSuperuserFunction(name: string): boolean {
  if (SUPERUSER_FUNCTIONS.has(name)) return true;
  for (const p of SUPERUSER_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

function lastPart(qualified: string): string {
  const i = qualified.lastIndexOf(".");
  return i < 0 ? qualified : qualified.slice(i + 1);
}

function nameOf(list: J[] | undefined): string {
  if (!list) return "";
  const parts: string[] = [];
  for (const item of list) if (item?.String) parts.push(item.String.sval ?? "");
  return parts.join(".");
}

function rangeVarName(rv: J): string {
  return rv.schemaname ? `${rv.schemaname}.${rv.relname}` : rv.relname;
}

/** True when the subtree references a column (or `CURRENT OF`): a WHERE without one is constant. */
function referencesColumn(node: J): boolean {
  if (node === null || typeof node !== "object") return false;
  if (Array.isArray(node)) {
    for (const x of node) if (referencesColumn(x)) return true;
    return false;
  }
  for (const k in node) {
    if (k === "ColumnRef" || k === "CurrentOfExpr") return true;
    if (referencesColumn(node[k])) return true;
  }
  return false;
}

/** The string constant of an expression, if it is exactly one (possibly cast) string literal. */
function constString(node: J): string | undefined {
  if (!node) return undefined;
  if (node.A_Const?.sval) return node.A_Const.sval.sval ?? "";
  if (node.TypeCast) return constString(node.TypeCast.arg);
  return undefined;
}

function defElemsOf(list: J[] | undefined): Map<string, J> {
  const m = new Map<string, J>();
  for (const d of list ?? []) if (d?.DefElem) m.set(d.DefElem.defname, d.DefElem.arg);
  return m;
}

/** Everything learnt about one top-level statement, including what is nested inside it. */
class Collector {
  readonly reads = new Set<string>();
  readonly writes = new Set<string>();
  readonly functions = new Set<string>();
  readonly risks = new Set<Risk>();
  readonly classes = new Set<StatementClass>();
  readonly executes: string[] = [];
  setsSearchPath = false;
  /** CTE names visible at this point (Postgres scoping) */
  private readonly scopes: Set<string>[] = [];
  /** > 0 while walking a CREATE FUNCTION body: its tables and risks count, its classes do not */
  private bodyDepth = 0;

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
      scope.add(c.ctename);
    }
    fn();
    this.scopes.pop();
  }

  /**
   * Generic walk: RangeVars are tables (`mode`), FuncCalls are functions, nested statements
   * (subqueries, CTE bodies) are classified into this collector.
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
      if (k === "RangeVar") this.table(v, mode);
      else if (k === "FuncCall") this.funcCall(v, mode, depth);
      else if (isStmtKey(k) && v && typeof v === "object" && !Array.isArray(v)) this.statement(k, v, "", depth, false);
      else if (typeof v === "object") this.walk(v, mode, depth);
    }
  }

  funcCall(fc: J, mode: "read" | "write", depth: number): void {
    const name = nameOf(fc.funcname).toLowerCase();
    this.functions.add(name);
    const base = lastPart(name);
    if (base === "set_config") {
      const setting = constString(fc.args?.[0])?.toLowerCase();
      if (setting === undefined || ROLE_SETTINGS.has(setting)) {
        // a non-constant setting name could be `role`: assume it is
        this.risks.add("role-change");
        this.risks.add("superuser-functions");
      }
      if (setting === undefined || setting === "search_path") this.setsSearchPath = true;
    }
    this.walk(fc.args, mode, depth);
    this.walk(fc.agg_order, mode, depth);
    this.walk(fc.agg_filter, mode, depth);
    this.walk(fc.over, mode, depth);
  }

  private dmlTarget(b: J, kind: string): void {
    this.table(b.relation, "write", false);
    this.addClass("write");
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
        this.walk(b[k], "read", depth);
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
    const own = this.classifyKind(kind, b, text, depth);
    if (top) this.addClass(own);
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
        return "copy";
      case "PrepareStmt":
        // classified as what it prepares
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
        return "admin";
      case "AlterSystemStmt":
        this.risks.add("alter-system");
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
        const cls = CLASS_BY_KIND[kind];
        // unknown statement kinds are never waved through as harmless
        const own: StatementClass = cls ?? "admin";
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
    const inner = new Collector();
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
    // the DO block's own class: the most privileged class its body exercised, utility if none
    return maxClass(this.classes);
  }

  private functionBody(b: J, text: string, depth: number): void {
    const opts = defElemsOf(b.options);
    const lang = (constStringOrSval(opts.get("language")) ?? (b.sql_body ? "sql" : "")).toLowerCase();
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
      parsed = parseSync(sql);
    } catch (e) {
      throw new ClassifyError(`nested statement: ${(e as Error).message}`);
    }
    for (const s of parsed.stmts ?? []) {
      const k = firstKey(s.stmt);
      const t = cutText(sql, Buffer.from(sql, "utf8"), s.stmt_location, s.stmt_len);
      this.statement(k, s.stmt[k], t, depth, top);
    }
  }

  /** Parses a CREATE FUNCTION … LANGUAGE plpgsql text and classifies every SQL expression inside. */
  private plpgsql(fnText: string, depth: number): void {
    let tree: J;
    try {
      tree = parsePlPgSQLSync(fnText);
    } catch (e) {
      throw new ClassifyError(`plpgsql: ${(e as Error).message}`);
    }
    this.walkPl(tree, false, depth);
  }

  private walkPl(node: J, dynamic: boolean, depth: number): void {
    if (node === null || typeof node !== "object") return;
    if (Array.isArray(node)) {
      for (const x of node) this.walkPl(x, false, depth);
      return;
    }
    for (const k in node) {
      const v = node[k];
      if (k === "PLpgSQL_expr") this.plExpr(v, dynamic, depth);
      else if (k === "PLpgSQL_stmt_dynexecute" || k === "PLpgSQL_stmt_dynfors") {
        for (const k2 in v) this.walkPl(v[k2], k2 === "query", depth);
      } else this.walkPl(v, k === "dynquery", depth);
    }
  }

  private plExpr(e: J, dynamic: boolean, depth: number): void {
    const q: string = e.query ?? "";
    const mode: number = e.parseMode ?? 0;
    if (dynamic) {
      this.risks.add("dynamic-sql");
      const parsed = tryParse(`SELECT ${q}`);
      const target = parsed?.stmts?.[0]?.stmt?.SelectStmt?.targetList;
      const literal = target?.length === 1 ? constString(target[0].ResTarget?.val) : undefined;
      if (literal !== undefined) this.nestedSql(literal, depth + 1);
      else this.addClass("admin"); // the SQL is computed at run time: unknowable, so admin
      if (parsed) this.nestedSql(`SELECT ${q}`, depth + 1, false);
      return;
    }
    if (mode === 0) return this.nestedSql(q, depth + 1);
    // expressions (conditions, RETURN, assignments) add their tables and functions, not a class
    if (mode === 2) return this.nestedSql(`SELECT ${q}`, depth + 1, false);
    // assignment (`target := expr`): classify the right-hand side
    const i = q.indexOf(":=");
    const j = i >= 0 ? i + 2 : q.indexOf("=") + 1;
    this.nestedSql(`SELECT ${q.slice(j)}`, depth + 1, false);
  }

  /** Class escalation by function and final shape of `classes`. */
  finish(own: StatementClass): StatementClass[] {
    for (const f of this.functions) {
      const base = lastPart(f);
      if (isSuperuserFunction(base)) {
        this.risks.add("superuser-functions");
        this.classes.add("admin");
      }
      if (DYNAMIC_SQL_FUNCTIONS.has(base)) {
        this.risks.add("dynamic-sql");
        this.classes.add("admin");
      }
    }
    if (this.risks.has("role-change")) this.classes.add("admin");
    for (const set of [this.reads, this.writes]) {
      for (const t of set) {
        const dot = t.lastIndexOf(".");
        const schema = dot < 0 ? "pg_catalog" : t.slice(0, dot);
        if (schema === "pg_catalog" && SUPERUSER_CATALOGS.has(t.slice(dot + 1))) this.classes.add("admin");
      }
    }
    this.classes.add(own);
    if (this.classes.has("write")) this.classes.delete("read");
    return [...this.classes].sort((a, b) => RANK[a] - RANK[b]);
  }
}

const TABLE_LIKE_OBJECTS = new Set(["OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE"]);

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

/** A node wrapper key like `SelectStmt` (not a field name like `selectStmt`). */
function isStmtKey(k: string): boolean {
  const c = k.charCodeAt(0);
  return c >= 65 && c <= 90 && k.endsWith("Stmt");
}

function stripCatalog(name: string): string {
  const parts = name.split(".");
  return parts.length > 2 ? parts.slice(-2).join(".") : name;
}

function isFalse(arg: J): boolean {
  const s = constStringOrSval(arg)?.toLowerCase();
  if (s === "false" || s === "off" || s === "0" || s === "no") return true;
  if (arg?.Boolean) return arg.Boolean.boolval !== true;
  if (arg?.Integer) return !arg.Integer.ival;
  return false;
}

function constStringOrSval(arg: J): string | undefined {
  if (!arg) return undefined;
  if (arg.String) return arg.String.sval ?? "";
  return constString(arg);
}

function firstKey(o: J): string {
  if (!o || typeof o !== "object") return "";
  for (const k in o) return k;
  return "";
}

/** The most privileged class of the set; `utility` for an empty set (a DO block without SQL). */
function maxClass(set: Set<StatementClass>): StatementClass {
  let best: StatementClass | undefined;
  for (const c of set) if (best === undefined || RANK[c] > RANK[best]) best = c;
  return best ?? "utility";
}

function tryParse(sql: string): J | undefined {
  try {
    return parseSync(sql);
  } catch {
    return undefined; // the caller treats an unparsable dynamic expression as unknowable (admin)
  }
}

/** A DO body as a function definition the PL/pgSQL parser accepts, with a dollar tag not in the body. */
function wrapDoBody(body: string): string {
  let tag = "$sluice$";
  for (let i = 0; body.includes(tag); i++) tag = `$sluice${i}$`;
  return `CREATE FUNCTION sluice_do_block() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}`;
}

/** stmt_location / stmt_len are byte offsets into the UTF-8 text. */
function cutText(sql: string, bytes: Buffer, location: number | undefined, len: number | undefined): string {
  const start = location ?? 0;
  if (bytes.length === sql.length) {
    return (len ? sql.slice(start, start + len) : sql.slice(start)).trim();
  }
  const end = len ? start + len : bytes.length;
  return bytes.subarray(start, end).toString("utf8").trim();
}

const TXN: Readonly<Record<string, StatementInfo["txn"]>> = {
  TRANS_STMT_BEGIN: "begin", TRANS_STMT_START: "begin", TRANS_STMT_COMMIT: "commit",
  TRANS_STMT_ROLLBACK: "rollback", TRANS_STMT_SAVEPOINT: "savepoint", TRANS_STMT_RELEASE: "release",
  TRANS_STMT_ROLLBACK_TO: "rollback_to", TRANS_STMT_PREPARE: "prepare",
  TRANS_STMT_COMMIT_PREPARED: "commit_prepared", TRANS_STMT_ROLLBACK_PREPARED: "rollback_prepared",
};

function classifyOne(kind: string, node: J, text: string): StatementInfo {
  const c = new Collector();
  const own = c.statement(kind, node, text, 0, false);
  const classes = c.finish(own);
  const info: StatementInfo = {
    text,
    kind,
    class: classes[classes.length - 1],
    tables: { read: [...c.reads], write: [...c.writes] },
    functions: [...c.functions],
    risks: [...c.risks],
    classes,
  };
  if (kind === "TransactionStmt") info.txn = TXN[node.kind];
  if (kind === "PrepareStmt") info.prepares = node.name;
  if (c.executes.length) info.executes = c.executes;
  if (kind === "DeallocateStmt") info.deallocates = node.isall || !node.name ? { all: true } : { all: false, name: node.name };
  if (kind === "DiscardStmt" && node.target === "DISCARD_ALL") info.deallocates = { all: true };
  if (c.setsSearchPath) info.setsSearchPath = true;
  return info;
}

/**
 * Classifies a client message: every statement of a (possibly multi-statement) string. A parse
 * failure, or anything the classifier cannot analyse, is `{ ok: false }`: the caller denies.
 * An empty or comment-only string is `{ ok: true, statements: [] }` (Postgres answers EmptyQueryResponse).
 */
export function classifySql(sql: string): Classification {
  if (!loaded) throw new Error("classifySql: call loadSqlParser() first");
  if (sql.trim() === "") return { ok: true, statements: [] };
  let parsed: J;
  try {
    parsed = parseSync(sql);
  } catch (e) {
    const err = e as Error & { sqlDetails?: { cursorPosition?: number } };
    const position = err.sqlDetails?.cursorPosition;
    return position === undefined ? { ok: false, error: err.message } : { ok: false, error: err.message, position };
  }
  const stmts: J[] = parsed.stmts ?? [];
  const bytes = stmts.length > 1 || /[^\x00-\x7f]/.test(sql) ? Buffer.from(sql, "utf8") : Buffer.alloc(0);
  const statements: StatementInfo[] = [];
  try {
    for (const s of stmts) {
      const kind = firstKey(s.stmt);
      const text = stmts.length === 1 ? sql.trim() : cutText(sql, bytes, s.stmt_location, s.stmt_len);
      statements.push(classifyOne(kind, s.stmt[kind], text));
    }
  } catch (e) {
    // anything the walk cannot analyse (including a stack overflow on a pathological tree) denies
    return { ok: false, error: e instanceof ClassifyError ? e.message : `statement cannot be classified: ${(e as Error).message}` };
  }
  return { ok: true, statements };
}

/** The libpg-query fingerprint (stable across literal values and formatting): approvals bind to it. */
export function fingerprint(sql: string): string {
  if (!loaded) throw new Error("fingerprint: call loadSqlParser() first");
  return fingerprintSync(sql);
}
