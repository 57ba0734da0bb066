/**
 * A cheap look at a statement before it is parsed (the server has max_stack_depth; the gateway has
 * this). One pass over the text: the deepest nesting of brackets outside literals and comments.
 * It only pre-filters: a statement deeper than any real one is denied without parsing; everything
 * else is still decided by the parser, whose own failures are contained (sql-parser.ts). It reads
 * quotes roughly as the server does; a misreading can only deny or leave the decision to the
 * parser, never allow. Pure.
 */

/**
 * Deepest bracket nesting sluice parses. Real SQL stays in the tens; the server's parser gives up
 * near 10 000 ("memory exhausted"), and far less than that already overflows the WASM parser's
 * stack when the nodes nest (about 3 000 nested subqueries).
 */
export const MAX_BRACKET_DEPTH = 1000;

/** The deepest nesting of `(` and `[` outside string literals, quoted identifiers and comments. */
export function bracketDepth(sql: string): number {
  let depth = 0;
  let max = 0;
  const n = sql.length;
  for (let i = 0; i < n; i++) {
    const c = sql.charCodeAt(i);
    switch (c) {
      case 0x28: // (
      case 0x5b: // [
        if (++depth > max) max = depth;
        break;
      case 0x29: // )
      case 0x5d: // ]
        if (depth > 0) depth--;
        break;
      case 0x27: {
        // '…': E'' (and e'') strings take backslash escapes; '' is a quote in every string
        const prev = i > 0 ? sql.charCodeAt(i - 1) : 0;
        const escapes = (prev === 0x45 || prev === 0x65) && !isIdentChar(i > 1 ? sql.charCodeAt(i - 2) : 0);
        for (i++; i < n; i++) {
          const d = sql.charCodeAt(i);
          if (escapes && d === 0x5c) i++;
          else if (d === 0x27) {
            if (sql.charCodeAt(i + 1) === 0x27) i++;
            else break;
          }
        }
        break;
      }
      case 0x22: // "identifier"
        for (i++; i < n; i++) {
          if (sql.charCodeAt(i) === 0x22) {
            if (sql.charCodeAt(i + 1) === 0x22) i++;
            else break;
          }
        }
        break;
      case 0x2d: // -- comment
        if (sql.charCodeAt(i + 1) === 0x2d) {
          while (i < n && sql.charCodeAt(i) !== 0x0a) i++;
        }
        break;
      case 0x2f: // /* comment */, nested like the server's
        if (sql.charCodeAt(i + 1) === 0x2a) {
          let nest = 1;
          for (i += 2; i < n && nest > 0; i++) {
            const d = sql.charCodeAt(i);
            if (d === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
              nest++;
              i++;
            } else if (d === 0x2a && sql.charCodeAt(i + 1) === 0x2f) {
              nest--;
              i++;
            }
          }
          i--;
        }
        break;
      case 0x24: {
        // $tag$ … $tag$ (not $1, not part of an identifier)
        if (i > 0 && isIdentChar(sql.charCodeAt(i - 1))) break;
        let j = i + 1;
        while (j < n && isTagChar(sql.charCodeAt(j), j === i + 1)) j++;
        if (sql.charCodeAt(j) !== 0x24) break;
        const tag = sql.slice(i, j + 1);
        const end = sql.indexOf(tag, j + 1);
        i = end < 0 ? n : end + tag.length - 1;
        break;
      }
    }
  }
  return max;
}

function isIdentChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x24 || c >= 0x80;
}

function isTagChar(c: number, first: boolean): boolean {
  if (c >= 0x30 && c <= 0x39) return !first;
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c >= 0x80;
}
