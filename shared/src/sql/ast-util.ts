/**
 * Small readers over the libpg-query JSON AST (shapes per @pgsql/types: one key per node wrapper,
 * e.g. `{ A_Const: { sval: { sval: "x" } } }`). Pure.
 */

/** libpg-query JSON AST, walked generically. */
export type J = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Thrown inside a walk for anything the classifier cannot analyse; classifySql turns it into `{ ok: false }` (a deny). */
export class ClassifyError extends Error {}

export function lastPart(qualified: string): string {
  const i = qualified.lastIndexOf(".");
  return i < 0 ? qualified : qualified.slice(i + 1);
}

/** A qualified name from a list of String nodes (`funcname`, `names`, …), joined with dots. */
export function nameOf(list: J[] | undefined): string {
  if (!list) return "";
  const parts: string[] = [];
  for (const item of list) if (item?.String) parts.push(item.String.sval ?? "");
  return parts.join(".");
}

export function rangeVarName(rv: J): string {
  return rv.schemaname ? `${rv.schemaname}.${rv.relname}` : rv.relname;
}

/** True when the subtree references a column (or `CURRENT OF`): a WHERE without one is constant. */
export function referencesColumn(node: J): boolean {
  if (node === null || typeof node !== "object") return false;
  if (Array.isArray(node)) {
    for (const x of node) if (referencesColumn(x)) return true;
    return false;
  }
  for (const k in node) {
    if (k === "ColumnRef" || k === "CurrentOfExpr") return true;
    if (referencesColumn(node[k])) return true;
  }
  return false;
}

/**
 * How often the walkers have asked for a constant's value (every reader below counts, whatever it
 * finds). classifySql compares it around a statement to say whether the statement's reading may
 * depend on its literals (StatementInfo.readsConstants). A walker that reads a constant without
 * these readers must count it too.
 */
let constantReads = 0;

export function constantReadCount(): number {
  return constantReads;
}

/** The string constant of an expression, if it is exactly one (possibly cast) string literal. */
export function constString(node: J): string | undefined {
  constantReads++;
  if (!node) return undefined;
  if (node.A_Const?.sval) return node.A_Const.sval.sval ?? "";
  if (node.TypeCast) return constString(node.TypeCast.arg);
  return undefined;
}

/**
 * The value of a constant as Postgres would read it for a setting: strings as they are, numbers
 * and booleans as their text. Undefined for anything that is not one constant.
 */
export function constSettingValue(node: J): string | undefined {
  constantReads++;
  if (!node) return undefined;
  const c = node.A_Const;
  if (c) {
    if (c.sval) return c.sval.sval ?? "";
    if (c.ival) return String(c.ival.ival ?? 0);
    if (c.fval) return c.fval.fval ?? "";
    if (c.boolval) return c.boolval.boolval ? "on" : "off";
    return undefined; // NULL
  }
  if (node.TypeCast) return constSettingValue(node.TypeCast.arg);
  return undefined;
}

export function constStringOrSval(arg: J): string | undefined {
  constantReads++;
  if (!arg) return undefined;
  if (arg.String) return arg.String.sval ?? "";
  return constString(arg);
}

export function defElemsOf(list: J[] | undefined): Map<string, J> {
  const m = new Map<string, J>();
  for (const d of list ?? []) if (d?.DefElem) m.set(d.DefElem.defname, d.DefElem.arg);
  return m;
}

export function firstKey(o: J): string {
  if (!o || typeof o !== "object") return "";
  for (const k in o) return k;
  return "";
}

export function isFalse(arg: J): boolean {
  constantReads++;
  const s = constStringOrSval(arg)?.toLowerCase();
  if (s === "false" || s === "off" || s === "0" || s === "no") return true;
  if (arg?.Boolean) return arg.Boolean.boolval !== true;
  if (arg?.Integer) return !arg.Integer.ival;
  return false;
}

/** `catalog.schema.table` → `schema.table` (the catalog is the database, named by the resource). */
export function stripCatalog(name: string): string {
  const parts = name.split(".");
  return parts.length > 2 ? parts.slice(-2).join(".") : name;
}

/** stmt_location / stmt_len are byte offsets into the UTF-8 text. */
export function cutText(sql: string, bytes: Buffer, location: number | undefined, len: number | undefined): string {
  const start = location ?? 0;
  if (bytes.length === sql.length) {
    return (len ? sql.slice(start, start + len) : sql.slice(start)).trim();
  }
  const end = len ? start + len : bytes.length;
  return bytes.subarray(start, end).toString("utf8").trim();
}

/**
 * A relation name as regclass input reads it (`nextval('Public."My Seq"')`): dot-separated
 * identifiers, unquoted ones folded to lower case, `""` inside quotes one quote. Undefined when the
 * text is not such a name.
 */
export function regclassName(text: string): string | undefined {
  const parts: string[] = [];
  let i = 0;
  const s = text.trim();
  for (;;) {
    if (s[i] === '"') {
      let part = "";
      for (i++; ; i++) {
        if (i >= s.length) return undefined;
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            part += '"';
            i++;
          } else break;
        } else part += s[i];
      }
      i++;
      if (part === "") return undefined;
      parts.push(part);
    } else {
      const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(s.slice(i));
      if (!m) return undefined;
      parts.push(m[0].toLowerCase());
      i += m[0].length;
    }
    if (i === s.length) break;
    if (s[i] !== ".") return undefined;
    i++;
  }
  return parts.length > 3 ? undefined : stripCatalog(parts.join("."));
}
