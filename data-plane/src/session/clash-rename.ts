/**
 * A simple Query whose SQL PREPARE or DEALLOCATE names a statement the client made with Parse,
 * rewritten so that the server reads that name as the Parse's statement, which it knows under a
 * name of the proxy's. On the client's own server the two share one namespace:
 *
 * - a PREPARE of a Parse's name fails with 42P05 — after the statements before it ran, after its
 *   own statement's analysis, behind 25P02 in an aborted transaction — and the implicit
 *   transaction rolls those statements back. Through the proxy the PREPARE would succeed: so it is
 *   sent under the Parse's server name, which the server has, and every one of those orderings is
 *   the server's own (finding 023). Its "prepared statement … already exists" names the server
 *   name, which the relay puts back to the client's.
 * - a DEALLOCATE of a Parse's name deallocates that statement, among other statements too (as
 *   psycopg and Rails evict their caches): sent under the server name, it is the server that runs
 *   it or not (an error before it in the message skips it) (finding 030).
 *
 * Only the name token changes; the rest of the text is the client's, byte for byte. The rewritten
 * text is parsed again and must be the same statements, each with the same text where it was not
 * renamed, the renamed one a PREPARE (or DEALLOCATE) of the server name (the client's text cannot
 * contain a server name: see reserved-names.ts), so the rename cannot change what the server
 * reads. Where the statement cannot be found or read exactly, undefined: the caller refuses
 * instead. Pure (the parser is computation, loaded by the composition root).
 */
import { loadedParser, type SqlParser, type StatementInfo } from "@sluice/shared/sql";

/** comments are tokens of the scanner too */
const COMMENT = new Set(["SQL_COMMENT", "C_COMMENT"]);

/** A statement of the message to send under a server name. */
export interface Rename {
  readonly index: number;
  readonly server: string;
}

export interface Renamed {
  /** the whole message to send */
  readonly text: string;
  /** each statement as sent */
  readonly statements: readonly string[];
}

/**
 * `sql` with the name of each PREPARE or DEALLOCATE at a `renames` index replaced by its server
 * name, quoted; `statements` is the text's classification.
 */
export function renamedNames(sql: string, statements: readonly StatementInfo[], renames: readonly Rename[]): Renamed | undefined {
  const parser = loadedParser();
  if (parser === undefined) return undefined;
  let text = sql;
  const texts = statements.map((s) => s.text);
  try {
    for (const r of renames) {
      const next = renameOne(parser, text, texts, statements[r.index], r);
      if (next === undefined) return undefined;
      text = next;
    }
  } catch {
    return undefined;
  }
  return { text, statements: texts };
}

/** one rename of `sql`, whose statements' texts are `texts` (updated); undefined: not exactly */
function renameOne(parser: SqlParser, sql: string, texts: string[], info: StatementInfo | undefined, r: Rename): string | undefined {
  const kind = info?.prepares !== undefined ? "PREPARE" : info?.deallocates && !info.deallocates.all ? "DEALLOCATE" : undefined;
  if (kind === undefined || r.index >= texts.length) return undefined;
  // each statement's text is a cut of `sql`, in order: the first occurrence after the previous
  // one is the statement unless a comment or string before it repeats it; the parse below tells,
  // and the next occurrences of the statement's text are tried (a few: past that it is refused)
  let pos = 0;
  for (let i = 0; i < r.index; i++) {
    const t = texts[i]!;
    const at = t === "" ? -1 : sql.indexOf(t, pos);
    if (at < 0) return undefined;
    pos = at + t.length;
  }
  const own = texts[r.index]!;
  // (a lone statement's text is the whole message, trimmed: it may end with its semicolon)
  const words = parser.scan(own).filter((t) => !COMMENT.has(t.tokenName) && t.text !== ";");
  // PREPARE name [(types)] AS …: the first word after the keyword; DEALLOCATE [PREPARE] name: the last
  const name = kind === "PREPARE" ? words[1] : words.at(-1);
  if (words[0]?.text.toUpperCase() !== kind || name === undefined || words.length < 2) return undefined;
  const bytes = Buffer.from(own, "utf8");
  const statement = `${bytes.toString("utf8", 0, name.start)}"${r.server}"${bytes.toString("utf8", name.end)}`;
  const want = texts.map((t, i) => (i === r.index ? statement : t));
  for (let tries = 0, at = sql.indexOf(own, pos); at >= 0 && tries < MAX_TRIES; tries++, at = sql.indexOf(own, at + 1)) {
    const text = sql.slice(0, at) + statement + sql.slice(at + own.length);
    if (readsAs(parser, text, want, r, kind)) {
      texts[r.index] = statement;
      return text;
    }
  }
  return undefined;
}

type Parsed = { stmts?: Array<{ stmt?: { PrepareStmt?: { name?: string }; DeallocateStmt?: { name?: string; isall?: boolean } }; stmt_location?: number; stmt_len?: number }> };

/** the server reads `text` as the statements `want`, the one renamed a PREPARE / DEALLOCATE of its server name */
function readsAs(parser: SqlParser, text: string, want: readonly string[], r: Rename, kind: "PREPARE" | "DEALLOCATE"): boolean {
  const stmts = (parser.parse(text) as Parsed).stmts ?? [];
  if (stmts.length !== want.length) return false;
  const s = stmts[r.index]!.stmt;
  if (kind === "PREPARE" ? s?.PrepareStmt?.name !== r.server : s?.DeallocateStmt?.name !== r.server || s.DeallocateStmt.isall) return false;
  if (stmts.length === 1) return text.trim() === want[0];
  const bytes = Buffer.from(text, "utf8");
  return stmts.every((st, i) => {
    const start = st.stmt_location ?? 0;
    return bytes.toString("utf8", start, st.stmt_len ? start + st.stmt_len : bytes.length).trim() === want[i];
  });
}

/** occurrences of the statement's text tried before the message is refused instead */
const MAX_TRIES = 4;
