/**
 * Which client StartupMessage parameters reach the upstream. Postgres treats every parameter other
 * than user/database/options/replication as a setting (and `options` may carry `-c name=value`), so a
 * client could start its session as another role or with settings policy never saw. Only settings
 * that cannot change who the session is or what it may reach pass; an identity switch is refused.
 * Pure.
 */

/** Settings a client may choose at connect (lower-case GUC names). */
const SAFE_SETTINGS = new Set([
  "application_name", "client_encoding", "datestyle", "timezone", "intervalstyle", "extra_float_digits",
  "search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
  "default_transaction_isolation", "default_transaction_read_only", "work_mem", "bytea_output",
  "standard_conforming_strings", "client_min_messages", "lc_messages", "lc_monetary", "lc_numeric", "lc_time",
]);

/** Settings that change the session's identity: a connection asking for them is refused. */
const IDENTITY_SETTINGS = new Set(["role", "session_authorization"]);

const NOT_SETTINGS = new Set(["user", "database", "replication", "options"]);

export type StartupParamsResult =
  | { ok: true; forward: Record<string, string>; dropped: string[] }
  | { ok: false; setting: string };

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

export function filterStartupParams(params: Readonly<Record<string, string>>): StartupParamsResult {
  const forward: Record<string, string> = {};
  const dropped: string[] = [];
  const keptOptions: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (NOT_SETTINGS.has(k)) continue;
    const name = k.toLowerCase();
    if (IDENTITY_SETTINGS.has(name)) return { ok: false, setting: name };
    if (SAFE_SETTINGS.has(name)) forward[k] = v;
    else dropped.push(k);
  }
  if (params.options) {
    for (const s of settingsFromOptions(params.options)) {
      if (typeof s === "string") {
        dropped.push(`options:${s}`);
        continue;
      }
      const name = s[0].toLowerCase();
      if (IDENTITY_SETTINGS.has(name)) return { ok: false, setting: name };
      if (SAFE_SETTINGS.has(name)) keptOptions.push(`-c ${s[0]}=${s[1].replace(/[\\\s]/g, (c) => "\\" + c)}`);
      else dropped.push(`options:${s[0]}`);
    }
    if (keptOptions.length) forward.options = keptOptions.join(" ");
  }
  return { ok: true, forward, dropped };
}
