/**
 * Server settings the SQL classifier's reading of statement text depends on, and the values each
 * may have: libpg-query reads string literals with standard_conforming_strings on and the text as
 * UTF-8. If the server ever reports another value (ParameterStatus, at startup or at any time
 * later), the server and the classifier could split or read a statement differently, so the
 * session ends. Startup parameters and SET are pinned before they reach the server (see
 * startup-params.ts); this is the last line, on what the server itself says. Extend the list when
 * the classifier relies on another setting. Pure.
 */
export const PINNED_SETTINGS: Readonly<Record<string, readonly string[]>> = {
  standard_conforming_strings: ["on"],
  // SQL_ASCII ("pass the bytes", what libpq's client_encoding=auto picks in the C locale): a UTF8
  // server then checks the bytes as UTF-8 and reads them as it reads UTF8, no conversion
  client_encoding: ["UTF8", "SQL_ASCII"],
  // not reported by PostgreSQL 15 (no GUC_REPORT); checked should a server report it
  backslash_quote: ["safe_encoding"],
};

/** Why a reported setting ends the session, or undefined when it may go on. */
export function pinnedSettingViolation(name: string, value: string): string | undefined {
  const allowed = PINNED_SETTINGS[name.toLowerCase()];
  if (allowed === undefined || allowed.some((v) => v.toLowerCase() === value.toLowerCase())) return undefined;
  return `the server reports ${name} = ${JSON.stringify(value)}; sluice reads statements with ${name} = ${allowed[0]}, so the session is closed`;
}
