/**
 * Masks the fields of a (B) ErrorResponse / NoticeResponse, given how far the statement they belong
 * to may have seen masked data (exposure.ts). Pure: fields by their one-letter code in, fields out;
 * decoding and encoding the frame are the wire codec's.
 *
 * Why: a message can quote a value (`invalid input syntax for type integer: "…"`, DETAIL `Key
 * (email)=(…) already exists`, `Failing row contains (…)`, RAISE output, CONTEXT lines quoting
 * PL/pgSQL values), and the value no longer needs to look like what a classifier finds (`replace(
 * email, '@', '#')::int`). So:
 *  - `clean` (the statement provably read no masked column and ran no user code): every field is
 *    scanned with every classifier, nothing else changes.
 *  - `masked` (it read a masked column, server code only): the fields that carry data (message,
 *    detail, hint, context, internal query and position, and any field this code does not know) are
 *    withheld and the message says so; the SQLSTATE, severity, query position, server source location
 *    and the identifier fields (schema, table, column, data type, constraint) stay, since the server
 *    fills those with names, not values, so the client still knows what failed.
 *  - `code` (user code ran, or the statement cannot be attributed): as `masked`, and the identifier
 *    fields go too, because user code sets them at will (`RAISE … USING COLUMN = email`).
 * Kept fields are still scanned by the classifiers (fail closed: a name can hold a value too).
 */
import type { Exposure } from "./exposure.js";

/** Fields the server fills with no data (severity, SQLSTATE, positions, its own source location). */
const STRUCTURAL = new Set(["S", "V", "C", "P", "F", "L", "R"]);
/** Identifier fields: names of database objects when the server sets them. */
const IDENTIFIERS = new Set(["s", "t", "c", "d", "n"]);

/** PostgreSQL's SQLSTATE classes (Appendix A of its manual), to say what failed without the message. */
const CLASSES: Record<string, string> = {
  "00": "successful_completion", "01": "warning", "02": "no_data", "03": "sql_statement_not_yet_complete",
  "08": "connection_exception", "09": "triggered_action_exception", "0A": "feature_not_supported",
  "0B": "invalid_transaction_initiation", "0F": "locator_exception", "0L": "invalid_grantor",
  "0P": "invalid_role_specification", "0Z": "diagnostics_exception", "20": "case_not_found",
  "21": "cardinality_violation", "22": "data_exception", "23": "integrity_constraint_violation",
  "24": "invalid_cursor_state", "25": "invalid_transaction_state", "26": "invalid_sql_statement_name",
  "27": "triggered_data_change_violation", "28": "invalid_authorization_specification",
  "2B": "dependent_privilege_descriptors_still_exist", "2D": "invalid_transaction_termination",
  "2F": "sql_routine_exception", "34": "invalid_cursor_name", "38": "external_routine_exception",
  "39": "external_routine_invocation_exception", "3B": "savepoint_exception", "3D": "invalid_catalog_name",
  "3F": "invalid_schema_name", "40": "transaction_rollback", "42": "syntax_error_or_access_rule_violation",
  "44": "with_check_option_violation", "53": "insufficient_resources", "54": "program_limit_exceeded",
  "55": "object_not_in_prerequisite_state", "57": "operator_intervention", "58": "system_error",
  "72": "snapshot_too_old", "F0": "config_file_error", "HV": "fdw_error", "P0": "plpgsql_error",
  "XX": "internal_error",
};

export type MessageKind = "error" | "notice";

/** The sluice message that stands in for a withheld one: what failed (SQLSTATE and its class) and why the text is not shown. */
export function withheldMessage(kind: MessageKind, sqlstate: string | undefined, exposure: Exposure): string {
  const code = sqlstate && /^[0-9A-Z]{5}$/.test(sqlstate) ? sqlstate : "XX000";
  const cls = CLASSES[code.slice(0, 2)];
  const what = kind === "error" ? "error" : "notice";
  const why = exposure.reasons.length ? exposure.reasons.slice(0, 4).join("; ") : "the statement may have read masked data";
  return `sluice withheld the text of this ${what} (SQLSTATE ${code}${cls ? ` ${cls}` : ""}): ${why}`;
}

const WITHHELD_DETAIL =
  "The message, detail, hint and context of a statement that may have read masked columns can quote their values, so sluice does not pass them on; the SQLSTATE and the names of the objects involved are kept where the server set them.";

/**
 * The fields to send and record instead of `fields`, or null when they pass unchanged.
 * `scan` masks classifier matches in one text (returns it unchanged when clean).
 */
export function screenMessageFields(
  fields: Readonly<Record<string, string>>,
  kind: MessageKind,
  exposure: Exposure,
  scan: (s: string) => string,
): Record<string, string> | null {
  const out: Record<string, string> = {};
  let changed = false;
  if (exposure.level === "clean") {
    for (const [k, v] of Object.entries(fields)) {
      const m = scan(v);
      if (m !== v) changed = true;
      out[k] = m;
    }
    return changed ? out : null;
  }
  const keepIds = exposure.level === "masked";
  // order as the server sent them, the replaced message where the server had its message
  for (const [k, v] of Object.entries(fields)) {
    if (k === "M") {
      out.M = withheldMessage(kind, fields.C, exposure);
      out.D = WITHHELD_DETAIL;
    } else if (STRUCTURAL.has(k) || (keepIds && IDENTIFIERS.has(k))) {
      out[k] = scan(v);
    }
    // everything else (D, H, W, q, p, user-set identifiers, codes this proxy does not know) is withheld
  }
  if (out.M === undefined) {
    out.M = withheldMessage(kind, fields.C, exposure);
    out.D = WITHHELD_DETAIL;
  }
  if (out.C !== undefined && !/^[0-9A-Z]{5}$/.test(out.C)) out.C = "XX000";
  return out;
}
