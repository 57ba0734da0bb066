/**
 * Which client StartupMessage parameters reach the upstream, and what every upstream session is
 * started with. Postgres treats every parameter other than user/database/options/replication as a
 * setting (and `options` may carry `-c name=value`, which is also where libpq puts PGOPTIONS), so a
 * client could start its session as another role, with settings policy never saw, or reading SQL
 * another way than the classifier does. So:
 *   - settings that cannot change who the session is or what it may reach pass;
 *   - an identity switch (role, session_authorization) is refused;
 *   - the settings the classifier's reading of SQL depends on (@sluice/shared/sql PINNED_SETTINGS:
 *     client_encoding UTF8, standard_conforming_strings on, …) are always sent with their pinned
 *     values, so RESET and DISCARD ALL return to them too; a client asking for another value is
 *     refused (a client-only multibyte encoding such as SJIS would let a `\` hide inside a
 *     character). `client_encoding=SQL_ASCII` ("pass the bytes") is taken as UTF8: through
 *     sluice the bytes are UTF-8, and the client is told so in ParameterStatus;
 *   - a search_path is refused where table patterns apply (the caller says so): bare table names
 *     would no longer mean what the patterns assume (the same rule as `SET search_path`).
 * Pure.
 */
import { keepsPinnedReading, PARAMETER_STATUS_WATCH, PINNED_SETTINGS } from "@sluice/shared/sql";

/**
 * The ParameterStatus values the relay accepts from the server for the pinned settings: any other
 * value reported at any time ends the session (the classifier would no longer read SQL as the
 * server does). One list, shared with the classifier.
 */
export { PARAMETER_STATUS_WATCH };

/** Settings a client may choose at connect (lower-case GUC names). */
const SAFE_SETTINGS = new Set([
  "application_name", "datestyle", "timezone", "intervalstyle", "extra_float_digits",
  "search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
  "default_transaction_isolation", "default_transaction_read_only", "work_mem", "bytea_output",
  "client_min_messages", "lc_messages", "lc_monetary", "lc_numeric", "lc_time",
]);

/** Settings that change the session's identity: a connection asking for them is refused. */
const IDENTITY_SETTINGS = new Set(["role", "session_authorization"]);

const NOT_SETTINGS = new Set(["user", "database", "replication", "options"]);

export type StartupRefusal = "identity" | "parser-setting" | "search-path";

export type StartupParamsResult =
  | { ok: true; forward: Record<string, string>; dropped: string[] }
  | { ok: false; setting: string; refusal: StartupRefusal; value?: string };

export interface StartupParamsOptions {
  /** the identity's policies depend on the default search_path (evaluate's searchPathRestricted): a startup search_path is refused */
  restrictsTables?: boolean;
}

/** The client's encoding request as sluice reads it: SQL_ASCII is UTF-8 bytes through sluice. */
function clientEncodingKept(value: string): boolean {
  return keepsPinnedReading("client_encoding", value) || value.toLowerCase().replace(/[^a-z0-9]/g, "") === "sqlascii";
}

/** Why a setting asked for at connect cannot be had, if it cannot. */
function refusalOf(name: string, value: string, o: StartupParamsOptions): StartupRefusal | undefined {
  if (IDENTITY_SETTINGS.has(name)) return "identity";
  if (name === "client_encoding") return clientEncodingKept(value) ? undefined : "parser-setting";
  if (name in PINNED_SETTINGS) return keepsPinnedReading(name, value) ? undefined : "parser-setting";
  if (name === "search_path" && o.restrictsTables) return "search-path";
  return undefined;
}

/** Splits a libpq `options` value: whitespace separates, backslash escapes the next character. */
function splitOptions(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let has = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === "\\" && i + 1 < s.length) {
      cur += s[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** Settings from `options`: `-c name=value`, `-cname=value` and `--name=value`. Unknown switches are returned as-is. */
function settingsFromOptions(options: string): Array<[string, string] | string> {
  const words = splitOptions(options);
  const out: Array<[string, string] | string> = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let kv: string | undefined;
    if (w === "-c") kv = words[++i];
    else if (w.startsWith("-c")) kv = w.slice(2);
    else if (w.startsWith("--")) kv = w.slice(2);
    if (kv === undefined) {
      out.push(w);
      continue;
    }
    const eq = kv.indexOf("=");
    if (eq <= 0) out.push(w);
    else out.push([kv.slice(0, eq).replace(/-/g, "_"), kv.slice(eq + 1)]);
  }
  return out;
}

export function filterStartupParams(params: Readonly<Record<string, string>>, o: StartupParamsOptions = {}): StartupParamsResult {
  const forward: Record<string, string> = {};
  const dropped: string[] = [];
  const keptOptions: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (NOT_SETTINGS.has(k)) continue;
    const name = k.toLowerCase();
    const refusal = refusalOf(name, v, o);
    if (refusal) return { ok: false, setting: name, refusal, value: refusal === "parser-setting" ? v : undefined };
    if (SAFE_SETTINGS.has(name)) forward[k] = v;
    else if (!(name in PINNED_SETTINGS)) dropped.push(k);
  }
  if (params.options) {
    for (const s of settingsFromOptions(params.options)) {
      if (typeof s === "string") {
        dropped.push(`options:${s}`);
        continue;
      }
      const name = s[0].toLowerCase();
      const refusal = refusalOf(name, s[1], o);
      if (refusal) return { ok: false, setting: name, refusal, value: refusal === "parser-setting" ? s[1] : undefined };
      if (SAFE_SETTINGS.has(name)) keptOptions.push(`-c ${s[0]}=${s[1].replace(/[\\\s]/g, (c) => "\\" + c)}`);
      else if (!(name in PINNED_SETTINGS)) dropped.push(`options:${s[0]}`);
    }
    if (keptOptions.length) forward.options = keptOptions.join(" ");
  }
  // the pinned values last, as top-level parameters: they win over anything above
  for (const [k, v] of Object.entries(PINNED_SETTINGS)) forward[k] = v;
  return { ok: true, forward, dropped };
}

/** The one-line reason a refused startup setting gets (no value echoed for identity settings). */
export function startupRefusalMessage(r: { setting: string; refusal: StartupRefusal; value?: string }): string {
  switch (r.refusal) {
    case "identity":
      return `startup setting "${r.setting}" is not allowed through sluice: the session's identity comes from its token`;
    case "parser-setting":
      return `startup setting ${r.setting}=${JSON.stringify(r.value ?? "").slice(0, 40)} is not allowed through sluice: it reads SQL as the server does only with ${Object.entries(PINNED_SETTINGS).map(([k, v]) => `${k}=${v}`).join(", ")}`;
    case "search-path":
      return `startup setting "search_path" is not allowed through sluice for this identity: its policy restricts tables, so bare table names must keep their default meaning`;
  }
}
