/**
 * The SQL classifier (contract: data path step 4). The real PostgreSQL 18 parser (libpg-query,
 * WASM, behind sql-parser.ts) produces the AST, and the walkers read it to say, per statement, its
 * class, the tables it reads and writes, the functions it calls and the named risks it carries.
 * Nothing here is regex guesswork over the text: comments, casing, quoting, unicode escapes and
 * dollar quoting are all resolved by the parser before we look. The reading is the server's only
 * under the session settings session-settings.ts pins (UTF-8, standard_conforming_strings on).
 *
 * CLASS MAPPING (the `class` of a statement; `classes` lists every class it exercises):
 *
 * | class   | statements |
 * |---------|------------|
 * | read    | SELECT / VALUES / TABLE without writes or row locks; plain EXPLAIN (of anything: it only plans); DECLARE CURSOR of a read; COPY … TO STDOUT of a table or a read (contract: `read` includes it); a DO block whose body runs no SQL of a class |
 * | write   | INSERT, UPDATE, DELETE, MERGE, TRUNCATE (+risk truncate); a SELECT carrying a data-modifying CTE; SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE (Postgres demands UPDATE privilege for row locks, and a read-only identity must not be able to block writers); LOCK TABLE; CALL (a procedure may write); EXPLAIN ANALYZE of a write (it runs it); any statement calling a built-in with side effects: nextval/setval (the sequence is a written table), advisory locks, index maintenance (function-tables.ts); on the data plane, any statement running a volatile user function (data-plane/src/catalog/volatile-calls.ts, from `calls`, `operators` and the relations read) |
 * | ddl     | CREATE/ALTER/DROP of tables, views, indexes, sequences, types, functions, triggers, schemas, policies, rules; COMMENT; SELECT INTO and CREATE TABLE AS (they create a table); REFRESH MATERIALIZED VIEW; SECURITY LABEL |
 * | admin   | GRANT/REVOKE (+risk grant); reading a superuser-only catalog (pg_authid, pg_shadow, pg_user_mapping, pg_statistic, pg_largeobject, …) or a view of other sessions' SQL (pg_stat_activity, pg_stat_statements, pg_stat_get_activity()); roles (CREATE/ALTER/DROP ROLE); databases and tablespaces; ALTER SYSTEM (+alter-system); VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD; extensions, FDWs, servers, user mappings, publications, subscriptions, event triggers, languages; REASSIGN/DROP OWNED; SET ROLE / SET SESSION AUTHORIZATION / RESET ROLE (+risk role-change); any statement calling a superuser function or a function that runs SQL from a string (its effect cannot be bounded by its shape); a DO block / function body in a language other than plpgsql or sql; EXECUTE of a non-constant string inside PL/pgSQL (unknowable) |
 * | utility | SET/RESET/SHOW, BEGIN/COMMIT/ROLLBACK/SAVEPOINT/…, two-phase commit, LISTEN/NOTIFY/UNLISTEN, DEALLOCATE, DISCARD, FETCH/MOVE/CLOSE, SET CONSTRAINTS; pg_notify(), and set_config() of a setting that is not harmless (session-settings.ts), inside any statement. Most of these carry a `baseline` allowance (client-baseline.ts) that every connected identity has: what is left to the class is two-phase commit, LISTEN/NOTIFY/UNLISTEN, pg_notify and settings outside the harmless list (session_replication_role +session-replication-role, custom `x.y` settings, settings sluice does not know) |
 * | copy    | COPY FROM STDIN (writes the table); COPY to or from a file or program (+copy-program, +copy-file) |
 *
 * Compound statements: `PREPARE n AS q` is classified as `q` (and `prepares: n`); `EXECUTE n` is
 * resolved at evaluation through SqlPrepared; a DO block is the union of the SQL inside its
 * PL/pgSQL body (plpgsql-walker.ts: every expression, assignment subscripts, loop bounds, RAISE
 * arguments, cursors, handlers) plus `dynamic-sql` for any EXECUTE; CREATE FUNCTION is ddl but
 * carries the tables, functions and risks of its body (creating a function is how one would launder
 * a statement). When `write` is among the classes, `read` is dropped (a read carrying a write is a write).
 * A change of a pinned setting (SET, set_config, a function's SET clause, ALTER ROLE/DATABASE … SET,
 * an UPDATE of pg_settings) carries `parser-setting`, which evaluation always denies. A change of the
 * search_path carries `search-path`, of session_replication_role `session-replication-role`.
 *
 * Tables are reported as written: `schema.table` when qualified, bare `table` otherwise (CTE names
 * are resolved away with Postgres scoping, so `WITH secrets AS (SELECT * FROM secrets)` still
 * reports the real `secrets` read inside). Views are reported by name (not expanded).
 *
 * Anything the walkers do not model denies: node kinds outside node-model.ts, statement fields a
 * handler does not know, PL/pgSQL nodes and parse modes, nesting beyond the pre-scan's bound.
 *
 * Known limits (documented, not hidden): a user-defined function called by name is judged by the
 * data plane's catalog (pg_proc volatility: data-plane/src/catalog/volatile-calls.ts makes a
 * statement calling a volatile one, or one the catalog does not know, at least `write`) — here
 * only its name is reported, in `calls` when it runs with the statement; functions reached
 * through operators, casts, type input functions, views, defaults, triggers and row-level security
 * policies are not listed.
 */
import type { StatementInfo, Classification, StatementAnnotator } from "./statement-info.js";
import { ClassifyError, constantReadCount, cutText, firstKey, type J } from "./ast-util.js";
import { Collector } from "./statement-walker.js";
import { baselineOf } from "./client-baseline.js";
import { bracketDepth, MAX_BRACKET_DEPTH } from "./pre-scan.js";
import { loadedParser, loadParser, ParserFailure, SqlSyntaxError, type SqlParser } from "./sql-parser.js";

/** Loads the WASM parser once; classifySql and fingerprint are synchronous after this resolves. */
export async function loadSqlParser(): Promise<void> {
  await loadParser();
}

/**
 * Statements one message may carry. Each statement's decision, audit part and volatility check is
 * work on the relay's thread, whoever classified it: a 1 MiB Query of 116 000 `SELECT 1;` that a
 * worker classified in time held every other session of the node 0.3–5.7 s while the node
 * evaluated and recorded it (test/bench/hostile-latency.bench.ts). Real clients send a script's
 * statements one at a time or in batches far below this; more in one message is refused, and is
 * bounded before it is walked.
 */
export const MAX_STATEMENTS_PER_MESSAGE = 1000;

function parserOrThrow(): SqlParser {
  const p = loadedParser();
  if (!p) throw new Error("classifySql: call loadSqlParser() first");
  return p;
}

const TXN: Readonly<Record<string, StatementInfo["txn"]>> = {
  TRANS_STMT_BEGIN: "begin", TRANS_STMT_START: "begin", TRANS_STMT_COMMIT: "commit",
  TRANS_STMT_ROLLBACK: "rollback", TRANS_STMT_SAVEPOINT: "savepoint", TRANS_STMT_RELEASE: "release",
  TRANS_STMT_ROLLBACK_TO: "rollback_to", TRANS_STMT_PREPARE: "prepare",
  TRANS_STMT_COMMIT_PREPARED: "commit_prepared", TRANS_STMT_ROLLBACK_PREPARED: "rollback_prepared",
};

function classifyOne(parser: SqlParser, kind: string, node: J, text: string, annotate: StatementAnnotator | undefined): StatementInfo {
  const c = new Collector(parser);
  const reads = constantReadCount();
  const own = c.statement(kind, node, text, 0, false);
  const classes = c.finish(own);
  const info: StatementInfo = {
    text,
    kind,
    class: classes[classes.length - 1],
    tables: { read: [...c.reads], write: [...c.writes] },
    functions: [...c.functions],
    calls: [...c.calls],
    operators: [...c.operators],
    risks: [...c.risks],
    classes,
  };
  if (kind === "TransactionStmt") info.txn = TXN[node.kind];
  if (kind === "PrepareStmt") info.prepares = node.name;
  if (c.executes.length) info.executes = c.executes;
  if (kind === "DeallocateStmt") info.deallocates = node.isall || !node.name ? { all: true } : { all: false, name: node.name };
  if (kind === "DiscardStmt" && node.target === "DISCARD_ALL") info.deallocates = { all: true };
  if (c.setsSearchPath) info.setsSearchPath = true;
  // only a statement that exercises nothing but `utility` can be one every client may run
  const allowance = baselineOf(kind, node);
  if (allowance !== undefined && classes.every((k) => k === "utility")) info.baseline = allowance;
  if (constantReadCount() !== reads) info.readsConstants = true;
  if (annotate) {
    try {
      info.annotation = annotate(kind, node);
    } catch {
      // none: what reads the annotation treats a statement without one as unanalysed
    }
  }
  return info;
}

/**
 * Classifies a client message: every statement of a (possibly multi-statement) string. A parse
 * failure, or anything the classifier cannot analyse, is `{ ok: false }`: the caller denies.
 * An empty or comment-only string is `{ ok: true, statements: [] }` (Postgres answers EmptyQueryResponse).
 * `parser` defaults to the process's (loadSqlParser); `annotate` adds each statement's `annotation`.
 */
export function classifySql(sql: string, parser: SqlParser = parserOrThrow(), annotate?: StatementAnnotator): Classification {
  if (sql.trim() === "") return { ok: true, statements: [] };
  const depth = bracketDepth(sql);
  if (depth > MAX_BRACKET_DEPTH) {
    return { ok: false, error: `statement nesting too deep: ${depth} levels of brackets (sluice parses at most ${MAX_BRACKET_DEPTH})` };
  }
  let parsed: J;
  try {
    parsed = parser.parse(sql);
  } catch (e) {
    if (e instanceof SqlSyntaxError) {
      return e.cursorPosition === undefined ? { ok: false, error: e.message } : { ok: false, error: e.message, position: e.cursorPosition };
    }
    return { ok: false, error: (e as Error).message };
  }
  const stmts: J[] = parsed.stmts ?? [];
  if (stmts.length > MAX_STATEMENTS_PER_MESSAGE) {
    return { ok: false, error: `the message has ${stmts.length} statements; sluice decides at most ${MAX_STATEMENTS_PER_MESSAGE} in one message (send them in several)` };
  }
  const bytes = stmts.length > 1 || /[^\x00-\x7f]/.test(sql) ? Buffer.from(sql, "utf8") : Buffer.alloc(0);
  const statements: StatementInfo[] = [];
  try {
    for (const s of stmts) {
      const kind = firstKey(s.stmt);
      const text = stmts.length === 1 ? sql.trim() : cutText(sql, bytes, s.stmt_location, s.stmt_len);
      statements.push(classifyOne(parser, kind, s.stmt[kind], text, annotate));
    }
  } catch (e) {
    // anything the walk cannot analyse (including a stack overflow on a pathological tree) denies
    if (e instanceof ClassifyError || e instanceof ParserFailure) return { ok: false, error: e.message };
    return { ok: false, error: `statement cannot be classified: ${(e as Error).message}` };
  }
  return { ok: true, statements };
}

/** The libpg-query fingerprint (stable across literal values and formatting): approvals bind to it. */
export function fingerprint(sql: string): string {
  return parserOrThrow().fingerprint(sql);
}
