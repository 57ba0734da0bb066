/**
 * The volatile types (volatile-calls.ts) a statement names: every type reference of its syntax tree
 * (a cast `x::t` or CAST(x AS t), a typed literal `t 'x'`, an array of t, a declaration), by its
 * name and its qualified name; and for a DO block, whose PL/pgSQL body is a string to the parser,
 * any whole-word mention of such a type's name in the text (a variable of the type is coerced on
 * every assignment; erring towards write). Asked only when the upstream has volatile types at all.
 * Pure (the parser is computation, loaded by the composition root).
 */
import { parseSql } from "@sluice/shared/sql";

const MAX_DEPTH = 400;

/**
 * The names in `types` (lower-case: `name`, `schema.name`) that `sql`, one statement, refers to;
 * undefined when it cannot be read (the caller counts it as running unknown code).
 */
export function volatileTypeNames(sql: string, types: ReadonlySet<string>): string[] | undefined {
  let ast: unknown;
  try {
    ast = parseSql(sql);
  } catch {
    return undefined;
  }
  const out = new Set<string>();
  let deep = false;
  const walk = (n: unknown, depth: number): void => {
    if (n === null || typeof n !== "object") return;
    if (depth > MAX_DEPTH) {
      deep = true;
      return;
    }
    if (Array.isArray(n)) {
      for (const x of n) walk(x, depth + 1);
      return;
    }
    const o = n as Record<string, unknown>;
    const names = (o.TypeName as { names?: unknown } | undefined)?.names ?? (o.TypeCast as { typeName?: { names?: unknown } } | undefined)?.typeName?.names;
    if (Array.isArray(names) && names.length) {
      const parts = names.map((p) => String((p as { String?: { sval?: string } })?.String?.sval ?? "").toLowerCase());
      const base = parts[parts.length - 1]!;
      const qualified = parts.length > 1 ? `${parts[parts.length - 2]}.${base}` : undefined;
      if (qualified !== undefined && types.has(qualified)) out.add(qualified);
      else if (types.has(base) && qualified === undefined) out.add(base);
    }
    if (o.DoStmt !== undefined && mentionsAny(sql, types)) out.add(firstMentioned(sql, types));
    for (const v of Object.values(o)) walk(v, depth + 1);
  };
  walk(ast, 0);
  // a tree deeper than the walk goes is not read whole: count it as naming what its text mentions
  if (deep && mentionsAny(sql, types)) out.add(firstMentioned(sql, types));
  return [...out];
}

function firstMentioned(sql: string, types: ReadonlySet<string>): string {
  for (const t of types) if (!t.includes(".") && mentionsAny(sql, new Set([t]))) return t;
  return [...types][0]!;
}

/** an identifier character of the scanner's (ASCII letters, digits, _, $ and every non-ASCII byte) */
const IDENT_CHAR = /[a-z0-9_$\u0080-\uffff]/;

/**
 * Whether `text` contains one of `names` (lower-case, unqualified ones) as a whole word, anywhere:
 * in code, a string or a comment alike (a body's PL/pgSQL is not parsed here; erring towards write).
 */
export function mentionsAny(text: string, names: ReadonlySet<string>): boolean {
  const t = text.toLowerCase();
  for (const n of names) {
    if (n.includes(".")) continue;
    for (let i = t.indexOf(n); i >= 0; i = t.indexOf(n, i + 1)) {
      const before = i === 0 ? "" : t[i - 1]!;
      const after = t[i + n.length] ?? "";
      if (!IDENT_CHAR.test(before) && !IDENT_CHAR.test(after)) return true;
    }
  }
  return false;
}
