/**
 * What the classifier knows about built-in functions and catalogs by name. Pure data and lookups.
 * Names are matched on their last part (`pg_catalog.nextval` and `nextval` alike): a user function
 * of the same name in another schema is classified like the built-in, which only ever errs towards
 * the stricter class.
 */
import type { StatementClass } from "../policy/bundle.js";

/** Superuser / server-side functions: file and large-object access, dblink, backend signalling, WAL and replication control. */
const SUPERUSER_FUNCTIONS = new Set([
  "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_terminate_backend", "pg_cancel_backend",
  "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
  "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_drop_replication_slot",
  "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_copy_physical_replication_slot",
  "pg_copy_logical_replication_slot", "pg_logical_emit_message", "pg_log_backend_memory_contexts",
  "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_import_system_collations", "loread", "lowrite",
  "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes", "pg_replication_slot_advance",
  "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_binary_changes", "pg_nextoid",
  "pg_stat_statements_reset", "pg_sync_replication_slots", "pg_log_standby_snapshot",
]);
const SUPERUSER_PREFIXES = ["lo_", "dblink", "pg_ls_", "pg_file_", "pg_logdir_", "pg_replication_origin_", "pg_stat_reset"];

/** Functions that run SQL given as a string (or read a whole table/schema/database by name). */
const DYNAMIC_SQL_FUNCTIONS = new Set([
  "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
  "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xmlschema",
  "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
  "ts_stat", "dblink", "dblink_exec", "dblink_open", "dblink_send_query",
]);

/**
 * Built-ins with side effects, by the class of the statement they would be as SQL. A read calling
 * one is not a read:
 *  - write: sequence setters (nextval, setval: Postgres asks UPDATE or USAGE on the sequence),
 *    advisory locks (like row locks, a read-only identity must not be able to block writers),
 *    index maintenance that changes an index's contents;
 *  - utility: pg_notify (the NOTIFY statement's class).
 */
const SIDE_EFFECT_FUNCTIONS: ReadonlyMap<string, StatementClass> = new Map<string, StatementClass>([
  ["nextval", "write"], ["setval", "write"],
  ["pg_advisory_lock", "write"], ["pg_advisory_lock_shared", "write"], ["pg_advisory_xact_lock", "write"],
  ["pg_advisory_xact_lock_shared", "write"], ["pg_try_advisory_lock", "write"], ["pg_try_advisory_lock_shared", "write"],
  ["pg_try_advisory_xact_lock", "write"], ["pg_try_advisory_xact_lock_shared", "write"], ["pg_advisory_unlock", "write"],
  ["pg_advisory_unlock_shared", "write"], ["pg_advisory_unlock_all", "write"],
  ["brin_summarize_new_values", "write"], ["brin_summarize_range", "write"], ["brin_desummarize_range", "write"],
  ["gin_clean_pending_list", "write"],
  ["pg_notify", "utility"],
]);

/** Sequence functions whose first argument names the sequence they write. */
export const SEQUENCE_WRITERS: ReadonlySet<string> = new Set(["nextval", "setval"]);

/**
 * Catalogs only a superuser may read (password hashes, user-mapping secrets, raw large objects and
 * statistics values, server config files): reading one is an admin act, whatever the statement's
 * shape, since only the gateway's own credential could make it succeed.
 */
const SUPERUSER_CATALOGS = new Set([
  "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_largeobject", "pg_statistic",
  "pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings", "pg_subscription",
]);

/**
 * Views whose content is other sessions' SQL text. Every session through the gateway runs as the
 * resource's one upstream role, so Postgres shows each of them every other sluice session's
 * statements, literal values of masked columns included: reading them is admin. pg_locks (no SQL
 * text) and pg_prepared_statements / pg_cursors (the session's own statements only) stay reads.
 */
const ACTIVITY_CATALOGS = new Set(["pg_stat_activity"]);
/**
 * The statistics views sample column values (most common values, histogram bounds) of every table
 * the upstream role may read, masked columns included, in arrays no mask plan can attribute to a
 * column: like pg_statistic behind them, reading them is admin.
 */
const STATISTICS_VIEWS = new Set(["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"]);
/** pg_stat_statements is an extension: its view lives in whatever schema it was created in. */
const ACTIVITY_VIEWS_ANY_SCHEMA = new Set(["pg_stat_statements"]);
const ACTIVITY_FUNCTIONS = new Set(["pg_stat_get_activity", "pg_stat_get_backend_activity", "pg_stat_statements"]);

export function isSuperuserFunction(base: string): boolean {
  if (SUPERUSER_FUNCTIONS.has(base)) return true;
  for (const p of SUPERUSER_PREFIXES) if (base.startsWith(p)) return true;
  return false;
}

export function isDynamicSqlFunction(base: string): boolean {
  return DYNAMIC_SQL_FUNCTIONS.has(base);
}

export function isActivityFunction(base: string): boolean {
  return ACTIVITY_FUNCTIONS.has(base);
}

/** The class a built-in with side effects gives the statement calling it, if it is one. */
export function sideEffectClass(base: string): StatementClass | undefined {
  return SIDE_EFFECT_FUNCTIONS.get(base);
}

/**
 * Whether reading relation `ref` (`schema.table` or bare, as written) is an admin act: a
 * superuser-only catalog, or a view of other sessions' SQL. Bare `pg_*` names resolve to
 * pg_catalog first (it is searched before the search_path).
 */
export function isAdminRelation(ref: string): boolean {
  const dot = ref.lastIndexOf(".");
  const schema = dot < 0 ? "pg_catalog" : ref.slice(0, dot).toLowerCase();
  const table = ref.slice(dot + 1).toLowerCase();
  if (ACTIVITY_VIEWS_ANY_SCHEMA.has(table)) return true;
  return schema === "pg_catalog" && (SUPERUSER_CATALOGS.has(table) || ACTIVITY_CATALOGS.has(table) || STATISTICS_VIEWS.has(table));
}

/** Writing pg_settings is `set_config` of whatever setting its WHERE names. */
export function isSettingsView(ref: string): boolean {
  const dot = ref.lastIndexOf(".");
  const schema = dot < 0 ? "pg_catalog" : ref.slice(0, dot).toLowerCase();
  return schema === "pg_catalog" && ref.slice(dot + 1).toLowerCase() === "pg_settings";
}
