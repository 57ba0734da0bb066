/**
 * A simple Query whose SQL PREPARE names a statement the client made with Parse, rewritten so the
 * server refuses that PREPARE itself. On the client's own server the two share one namespace, so
 * the PREPARE fails with 42P05 — after the statements before it ran, after its own statement's
 * analysis, behind 25P02 in an aborted transaction — and the implicit transaction rolls those
 * statements back. Through the proxy the Parse's statement has a name of the proxy's, and the
 * PREPARE would succeed: so it is sent under that server name, which the server has, and every
 * one of those orderings is the server's own (finding 023). Its "prepared statement … already
 * exists" names the server name, which the relay puts back to the client's.
 *
 * Only the PREPARE's name token changes; the rest of the text is the client's, byte for byte. The
 * rewritten text is parsed again and must be the same number of statements with that PREPARE, of
 * the server name, where the client's was (the client's text cannot contain a server name: see
 * reserved-names.ts). Where the statement cannot be found or read exactly, undefined: the caller
 * refuses instead. Pure (the parser is computation, loaded by the composition root).
 */
import { loadedParser, type StatementInfo } from "@sluice/shared/sql";

/** comments are tokens of the scanner too; the PREPARE's name is the first word after its keyword */
const COMMENT = new Set(["SQL_COMMENT", "C_COMMENT"]);

export interface RenamedPrepare {
  /** the whole message to send */
  readonly text: string;
  /** statement `index` as sent */
  readonly statement: string;
}

/**
 * `sql` with the name of the PREPARE that is statement `index` of `statements` (its
 * classification) replaced by `server`, quoted.
 */
export function renamedPrepare(sql: string, statements: readonly StatementInfo[], index: number, server: string): RenamedPrepare | undefined {
  const parser = loadedParser();
  if (parser === undefined || index >= statements.length) return undefined;
  // each statement's text is a cut of `sql`, in order: the first occurrence after the previous
  // one is the statement unless a comment or string before it repeats it; the parse below tells,
  // and the next occurrences of the PREPARE's text are tried (a few: past that it is refused)
  let pos = 0;
  for (let i = 0; i < index; i++) {
    const t = statements[i]!.text;
    const at = t === "" ? -1 : sql.indexOf(t, pos);
    if (at < 0) return undefined;
    pos = at + t.length;
  }
  const own = statements[index]!.text;
  try {
    const words = parser.scan(own).filter((t) => !COMMENT.has(t.tokenName));
    const name = words[1];
    if (words[0]?.text.toUpperCase() !== "PREPARE" || name === undefined) return undefined;
    const bytes = Buffer.from(own, "utf8");
    const statement = `${bytes.toString("utf8", 0, name.start)}"${server}"${bytes.toString("utf8", name.end)}`;
    for (let tries = 0, at = sql.indexOf(own, pos); at >= 0 && tries < MAX_TRIES; tries++, at = sql.indexOf(own, at + 1)) {
      const text = sql.slice(0, at) + statement + sql.slice(at + own.length);
      // the server must read the same statements, the one at `index` a PREPARE of that name
      const stmts = (parser.parse(text) as { stmts?: Array<{ stmt?: { PrepareStmt?: { name?: string } } }> }).stmts ?? [];
      if (stmts.length === statements.length && stmts[index]!.stmt?.PrepareStmt?.name === server) return { text, statement };
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** occurrences of the PREPARE's text tried before the message is refused instead */
const MAX_TRIES = 4;
