/**
 * A statement's shape: its text with every constant replaced by a placeholder, so that statements
 * that differ only in their literals (`pgbench -M simple` sends a new `aid` every time) can share
 * one policy decision instead of paying a parse each.
 *
 * THE SERVER'S READING, NOT OURS. The shape is libpg-query's normalize: PostgreSQL's own parser
 * finds the constants (A_Const nodes, by location) and PostgreSQL's own scanner their extent, and
 * everything else (keywords, identifiers, comments, whitespace) is copied byte for byte. No
 * tokenizer here decides where a literal ends: `E'\''`, dollar quoting, `U&"…" UESCAPE '!'`,
 * quotes inside comments are all read by the code the server runs. The scanner reads strings with
 * standard_conforming_strings on, the value every upstream session is pinned to (session-settings.ts)
 * and the relay holds it to (ParameterStatus): should the pin ever change, shapes are off.
 *
 * WHY TWO STATEMENTS OF ONE SHAPE GET THE SAME DECISION. Their texts agree outside the constants'
 * extents, and both parse (normalize parses; a text that does not parse has no shape). The grammar
 * sees only token kinds there, and a constant of another kind either is another A_Const in the
 * same place or does not parse (`int4 '5'` → `int4 5`), so the two parse trees differ only in
 * A_Const values. The classifier's result depends on those values only where it reads one
 * (StatementInfo.readsConstants), and then the decision is never shared; nor is it for statements
 * whose text or effects the session uses beyond the decision (PREPARE, EXECUTE, DEALLOCATE, SET,
 * transaction control), for several statements in one message, or for anything but plain DML.
 *
 * Not shaped (decided by their text, as before): texts with `$` before a digit (normalize writes
 * `$n` placeholders; a real parameter or an identifier like `a$1` could be mistaken for one), texts
 * longer than SHAPE_MAX_BYTES (a long statement's parse belongs off the relay's thread), texts
 * nested deeper than the parser is given, and texts without constants (the text is the shape).
 */
import type { Decision } from "../policy/decision.js";
import { bracketDepth, MAX_BRACKET_DEPTH } from "./pre-scan.js";
import { PINNED_SETTINGS } from "./session-settings.js";
import { loadedParser } from "./sql-parser.js";
import type { Classification } from "./statement-info.js";

/**
 * Longer statements (UTF-8 bytes) are decided by their text only. Normalize runs on the relay's
 * thread before the classifier pool decides where the statement is parsed, and it recurses deeper
 * than a parse: a 4 KiB chain of `1+1+…` overflowed the thread's stack in it (retiring the parser
 * instance, which is made again on this thread; two such in one turn leave every session without
 * a parser until then) and stalled other sessions 0.6 s (test/bench/hostile-latency.bench.ts).
 * The pool's bound for statements that recurse deeply (classifier-pool.ts BODY_INLINE_MAX_BYTES;
 * a test holds the two equal); pgbench's statements, what shapes are for, are a tenth of it.
 */
export const SHAPE_MAX_BYTES = 1024;

/** The statement kinds whose decisions are shared by shape: their literals are values, never names or code. */
const SHAPED_KINDS: ReadonlySet<string> = new Set(["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

const PLACEHOLDER_LIKE = /\$\d/;

/** normalize reads strings as a server with this setting does */
const SCANNER_READS_STANDARD_STRINGS = PINNED_SETTINGS.standard_conforming_strings === "on";

/**
 * The statement's shape, or undefined when it has none (see the file comment): no constants, a
 * `$` before a digit, too long or too deep, not parseable, or no parser loaded.
 */
export function literalShape(sql: string, parser: { normalize(sql: string): string } | undefined = loadedParser()): string | undefined {
  if (!SCANNER_READS_STANDARD_STRINGS || parser === undefined) return undefined;
  if (sql.length > SHAPE_MAX_BYTES || (sql.length * 3 > SHAPE_MAX_BYTES && Buffer.byteLength(sql) > SHAPE_MAX_BYTES)) return undefined;
  if (PLACEHOLDER_LIKE.test(sql)) return undefined;
  if (bracketDepth(sql) > MAX_BRACKET_DEPTH) return undefined;
  let shape: string;
  try {
    shape = parser.normalize(sql);
  } catch {
    // a syntax error, or the parser failed on it: the classifier will say so
    return undefined;
  }
  return placeholdersReadable(shape, sql) ? shape : undefined;
}

/**
 * Whether `shape` reads one way only: at most nine placeholders, each `$` and one digit followed
 * by no other digit, with the text between them found in `sql` in order. The text has no `$` before
 * a digit, so every such `$` in the shape is a placeholder; one digit each means nothing after it
 * can belong to it. That rules out normalize's readings of a negative constant with a comment or a
 * bracket after its sign (`-(1)` → `$11)`: the sign replaced, the digits kept), which a longer
 * placeholder could not be told from; and it rules out anything normalize reports that is not a
 * reading of this text (an error message, which it does not always mark as one).
 */
function placeholdersReadable(shape: string, sql: string): boolean {
  const placeholders = [...shape.matchAll(/\$\d/g)].map((m) => m.index);
  if (placeholders.length === 0 || placeholders.length > 9) return false;
  if (placeholders.some((p) => isDigit(shape.charCodeAt(p + 2)))) return false;
  // the text between placeholders, each found after the one before with a constant (≥ 1 character) between
  const first = shape.slice(0, placeholders[0]);
  if (!sql.startsWith(first)) return false;
  let at = first.length;
  for (let i = 0; i < placeholders.length; i++) {
    const chunk = shape.slice(placeholders[i]! + 2, placeholders[i + 1] ?? shape.length);
    if (i === placeholders.length - 1) return sql.endsWith(chunk) && sql.length - chunk.length > at;
    const found = sql.indexOf(chunk, at + 1);
    if (found < 0) return false;
    at = found + chunk.length;
  }
  return false;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Whether a classification holds for every statement of its shape: one statement of a shaped kind
 * whose constants the classifier did not read, and nothing the session does with the statement's
 * text or effects beyond the decision.
 */
export function decidedByShape(c: Classification): boolean {
  if (!c.ok || c.statements.length !== 1) return false;
  const s = c.statements[0]!;
  return SHAPED_KINDS.has(s.kind) && !s.readsConstants && !s.executes && !s.prepares && !s.deallocates && !s.setsSearchPath && s.txn === undefined;
}

/**
 * The decision `decided` (made for another statement of the same shape) as the decision for
 * `sql`: the same outcome, with this statement's own text (as classifySql cuts a one-statement
 * message: trimmed), and `decidedAs` pointing at the shared decision. The statement's annotation
 * is not shared: it was read off the other statement's tree and may hold its literals (the data
 * plane's result lineage keeps `json_build_object('key', …)`'s keys), so whoever needs one reads
 * it off this text (at most SHAPE_MAX_BYTES).
 */
export function decisionForText(decided: Decision, sql: string): Decision {
  const s = decided.statements[0];
  const text = sql.trim();
  if (s === undefined || s.text === text) return decided;
  const { annotation: _theirs, ...own } = s;
  return { ...decided, statements: [{ ...own, text }], decidedAs: decided.decidedAs ?? decided };
}
