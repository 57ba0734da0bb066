/**
 * The session settings the classifier's reading of SQL depends on, and the ones that change
 * nothing a policy looks at. Pure data and predicates.
 *
 * ONE READING OF EVERY STRING. libpg-query reads a statement as a server does whose client sends
 * UTF-8 with `standard_conforming_strings = on` and the default `backslash_quote`. A client that
 * changes how the server reads bytes and string literals makes the two disagree about where a
 * literal ends, and so where a statement ends:
 *   - `standard_conforming_strings = off`: `'\'; DROP TABLE t; --'` is one literal to the server,
 *     a literal and a DROP to a reader that assumes `on` (or the reverse);
 *   - a client-only multibyte encoding (SJIS, BIG5, GBK, GB18030, UHC, JOHAB, SHIFT_JIS_2004)
 *     whose second byte can be `\` (0x5c) or other ASCII: the server converts the whole character,
 *     a UTF-8 reader sees an ASCII backslash;
 *   - any encoding but UTF-8: identifiers and literals with non-ASCII bytes read differently, so a
 *     table pattern or a masking rule that names them would not match what the server resolves;
 *   - `backslash_quote`, `escape_string_warning`: they belong to the same literal syntax; pinned so
 *     that the whole set has one value the classifier knows.
 * So these are pinned: the data plane starts every upstream session with the values below (so RESET
 * and DISCARD ALL return to them), refuses a client that asks for others at connect, and the
 * classifier marks every statement that would change them (`parser-setting`, always denied).
 */

/** The values every upstream session is started with (lower-case GUC names). */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  client_encoding: "UTF8",
  standard_conforming_strings: "on",
  backslash_quote: "safe_encoding",
  escape_string_warning: "on",
};

/**
 * The pinned settings the server reports in ParameterStatus (GUC_REPORT), with the only value the
 * session may report. The relay watches ParameterStatus frames against this list and ends a
 * session whose server reports another value (however it got there): one list for both sides.
 * `backslash_quote` and `escape_string_warning` are not reported by the server.
 */
export const PARAMETER_STATUS_WATCH: ReadonlyMap<string, string> = new Map([
  ["client_encoding", "UTF8"],
  ["standard_conforming_strings", "on"],
]);

/** Postgres compares encoding names without case and without non-alphanumerics (`utf-8` = `UTF8`). */
function cleanEncodingName(v: string): string {
  return v.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/** Postgres's boolean input: on/off, true/false, yes/no, 1/0 and unambiguous prefixes. */
function boolValue(v: string): boolean | undefined {
  const s = v.trim().toLowerCase();
  if (s === "") return undefined;
  if ("true".startsWith(s) || "yes".startsWith(s) || s === "on" || s === "1") return true;
  if ("false".startsWith(s) || "no".startsWith(s) || s === "off" || s === "of" || s === "0") return false;
  return undefined;
}

/**
 * Whether setting `name` to `value` keeps what the classifier assumes. `name` is a lower-case
 * GUC name; settings that are not pinned are always true. `undefined` (a value computed at run
 * time) is never safe for a pinned setting.
 */
export function keepsPinnedReading(name: string, value: string | undefined): boolean {
  if (!(name in PINNED_SETTINGS)) return true;
  if (value === undefined) return false;
  switch (name) {
    case "client_encoding": {
      const e = cleanEncodingName(value);
      return e === "utf8" || e === "unicode";
    }
    case "standard_conforming_strings":
    case "escape_string_warning":
      return boolValue(value) === true;
    case "backslash_quote":
      return value.trim().toLowerCase() === "safe_encoding";
    default:
      return false;
  }
}

export function isPinnedSetting(name: string): boolean {
  return name in PINNED_SETTINGS;
}

/**
 * Settings that change nothing a policy looks at: how values are formatted, time-outs, planner and
 * memory knobs of the session itself. `set_config()` of one of them inside a read keeps it a read.
 * Not here, on purpose: role and session_authorization (identity), search_path (what bare names
 * mean), session_replication_role (skips triggers and rules), custom `x.y` settings (row-level
 * security policies read them), and the pinned settings above.
 */
export const HARMLESS_SETTINGS: ReadonlySet<string> = new Set([
  "application_name", "datestyle", "timezone", "intervalstyle", "extra_float_digits", "bytea_output",
  "client_min_messages", "lc_messages", "lc_monetary", "lc_numeric", "lc_time", "xmlbinary", "xmloption",
  "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout",
  "transaction_timeout", "work_mem", "maintenance_work_mem", "temp_buffers", "hash_mem_multiplier",
  "default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable",
  "transaction_isolation", "transaction_read_only", "transaction_deferrable", "synchronous_commit",
  "jit", "plan_cache_mode", "random_page_cost", "seq_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost",
  "cpu_operator_cost", "effective_cache_size", "effective_io_concurrency", "default_statistics_target",
  "from_collapse_limit", "join_collapse_limit", "geqo", "cursor_tuple_fraction", "constraint_exclusion",
  "max_parallel_workers_per_gather", "parallel_setup_cost", "parallel_tuple_cost", "quote_all_identifiers",
  "array_nulls", "default_text_search_config", "gin_fuzzy_search_limit", "timezone_abbreviations",
  "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout",
  "row_security", "enable_seqscan", "enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan",
  "enable_hashjoin", "enable_mergejoin", "enable_nestloop", "enable_hashagg", "enable_sort",
  "enable_material", "enable_memoize", "enable_partitionwise_join", "enable_partitionwise_aggregate",
  "enable_parallel_append", "enable_parallel_hash", "enable_partition_pruning", "enable_tidscan",
  "enable_incremental_sort", "enable_async_append", "enable_presorted_aggregate", "enable_group_by_reordering",
  "enable_distinct_reordering", "enable_self_join_elimination", "enable_gathermerge",
]);
