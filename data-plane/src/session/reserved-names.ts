/**
 * SQL that names the proxy's own prepared statements and portals. Their server names begin with
 * the session's prefix (statement-namespace.ts); SQL naming one (EXECUTE, DEALLOCATE, FETCH, MOVE,
 * CLOSE …) would run or drop what the proxy decided under another name, so a text that contains the
 * prefix, in any case, is denied unread. A Unicode-escaped identifier (`U&"\005f…"`) can spell the
 * prefix without containing it, so one is denied too: the server's own scanner (libpg-query's) tells
 * such an identifier from the same characters inside a literal or a comment, and only texts that
 * contain `u&"` at all are scanned. Pure (the parser is computation, loaded by the composition root).
 */
import { loadedParser } from "@sluice/shared/sql";
import type { Decision } from "@sluice/shared/policy";

const UNICODE_IDENT = /u&"/i;

export class ReservedNames {
  private readonly prefix: RegExp;

  constructor(prefix: string) {
    this.prefix = new RegExp(prefix, "i");
  }

  /** the denial of `sql`, or undefined when it names nothing of the proxy's */
  check(sql: string): Decision | undefined {
    if (this.prefix.test(sql)) return RESERVED;
    if (UNICODE_IDENT.test(sql) && hasUnicodeIdentifier(sql)) return ESCAPED;
    return undefined;
  }
}

/** Whether the scanner reads a Unicode-escaped identifier in `sql`; true when it cannot tell (fail closed). */
function hasUnicodeIdentifier(sql: string): boolean {
  const parser = loadedParser();
  if (parser === undefined) return true;
  try {
    // a token that begins u&" is that identifier: literals begin with a quote or $, comments with -- or /*
    for (const t of parser.scan(sql)) if (UNICODE_IDENT.test(t.text.slice(0, 3))) return true;
    return false;
  } catch {
    // a text the scanner cannot read is denied by the classifier as well
    return true;
  }
}

const RESERVED: Decision = {
  action: "deny",
  rule: "reserved-name",
  reason: "the statement names a prepared statement or portal of the gateway itself",
  statementClass: "unknown",
  statementIndex: 0,
  statements: [],
};

const ESCAPED: Decision = {
  action: "deny",
  rule: "unicode-escaped-identifier",
  reason: "Unicode-escaped identifiers (U&\"…\") are not accepted through sluice: they could name the gateway's own prepared statements and portals",
  statementClass: "unknown",
  statementIndex: 0,
  statements: [],
};
