/**
 * Column lineage of a query, from the libpg-query AST: for each output column, the source columns
 * its value is computed from. Pure (the AST comes in; parsing is the caller's business).
 *
 * Used so that a column computed from a masked column (`lower(email)`, `email || ''`,
 * `row_to_json(c)`, `json_build_object('e', email)`, a subquery's or CTE's column, a UNION branch)
 * is masked too: (B) RowDescription names a table column only for plain column references.
 *
 * Resolution is conservative: an unqualified column in a join is attributed to every table in
 * scope, a single name that is also a relation alias counts as a whole-row reference too.
 */

/** A column the value may come from. `column: "*"` is a whole-row reference (`row_to_json(c)`). */
export interface SourceColumn {
  schema?: string;
  /** the table (or view, or unknown CTE) as written; absent with `candidates` */
  table?: string;
  /** an unqualified column in a multi-relation scope: any of these `[schema.]table` names */
  candidates?: Array<{ schema?: string; table: string }>;
  column: string;
}

export interface SourceUse {
  col: SourceColumn;
  /** the JSON object key this source ends up under (json_build_object('e', email) → "e") */
  jsonKey?: string;
  /**
   * a whole-row source (`column: "*"`) put into JSON by column name (`row_to_json(c)`): each column
   * ends up under its own name. Absent: the row's values may be anywhere (`concat(c)`, `c::text`).
   */
  rowKeys?: boolean;
}

export interface OutputLineage {
  /** output column name as the server will name it (alias, column, or function name) */
  name: string;
  sources: SourceUse[];
  /** something in the expression could not be traced (a function returning rows, unknown alias) */
  unknown: boolean;
  /** a `*` over a base table: width unknown here, RowDescription + catalog resolve those fields */
  star?: { schema?: string; table: string };
}

type Node = Record<string, any>;

type Relation =
  | { kind: "table"; schema?: string; table: string }
  | { kind: "derived"; columns: OutputLineage[] }
  /** rows of a function in FROM (`json_each(…)`, `unnest(…)`): any column may derive from any argument */
  | { kind: "function"; sources: SourceUse[] }
  | { kind: "unknown" };

interface Scope {
  rels: Map<string, Relation>;
  /** FROM items in order, for unqualified `*` and unqualified columns */
  order: Relation[];
  ctes: Map<string, OutputLineage[]>;
  parent?: Scope;
}

const JSON_ROW_FUNCS = new Set([
  "row_to_json",
  "to_json",
  "to_jsonb",
  "json_agg",
  "jsonb_agg",
  "array_to_json",
  "json_object_agg",
  "jsonb_object_agg",
  "array_agg",
  "string_agg",
  "concat",
  "concat_ws",
  "format",
]);
const JSON_BUILD_OBJECT = new Set(["json_build_object", "jsonb_build_object"]);
/**
 * Functions whose result holds their arguments' values in the same JSON places (wrapped in an
 * array or an outer object, never moved into a key): a source keyed `e` stays keyed `e` through
 * them. Any other function, operator (`->`, `->>`, `||`) or expression strips the keys, so its
 * sources count as unkeyed and the whole JSON value is masked (the masker cannot know where they
 * went: `json_build_object('e', email)->>'e'` is the email itself, no longer under `e`).
 */
const KEY_PRESERVING_FUNCS = new Set([
  "json_agg", "jsonb_agg", "to_json", "to_jsonb", "array_to_json", "array_agg", "row_to_json",
  "json_build_array", "jsonb_build_array", "json_strip_nulls", "jsonb_strip_nulls", "jsonb_pretty",
]);
/** `json_object_agg(key, value)`: the value keeps its keys, the key argument never does */
const JSON_OBJECT_AGG = new Set(["json_object_agg", "jsonb_object_agg", "json_object_agg_strict", "jsonb_object_agg_strict", "json_object_agg_unique", "jsonb_object_agg_unique", "json_object_agg_unique_strict", "jsonb_object_agg_unique_strict"]);
/** expression nodes that pass one of their inputs through unchanged */
const PASS_THROUGH_NODES = new Set(["CaseExpr", "CaseWhen", "CoalesceExpr", "MinMaxExpr", "NullIfExpr"]);
/** results that carry no information about the column values */
const VALUE_FREE_FUNCS = new Set(["count"]);

function sval(n: Node | undefined): string | undefined {
  return n?.String?.sval;
}

/** Lineage of a statement node (`{SelectStmt: …}` or the bare SelectStmt body). Null if not a query. */
export function queryLineage(stmt: Node): OutputLineage[] | null {
  const body = stmt.SelectStmt ?? stmt;
  if (!body || (!body.targetList && !body.op && !body.valuesLists)) return null;
  return selectLineage(body, undefined);
}

function selectLineage(sel: Node, outer: Scope | undefined): OutputLineage[] {
  const ctes = new Map<string, OutputLineage[]>(outer?.ctes ?? []);
  const scope: Scope = { rels: new Map(), order: [], ctes, parent: outer };
  if (sel.withClause?.ctes) {
    for (const c of sel.withClause.ctes) {
      const cte = c.CommonTableExpr;
      if (!cte) continue;
      const q = cte.ctequery?.SelectStmt;
      let cols: OutputLineage[] = q ? selectLineage(q, scope) : [unknownColumn("?column?")];
      if (cte.aliascolnames) cols = renameColumns(cols, cte.aliascolnames.map((a: Node) => sval(a) ?? "?"));
      ctes.set(cte.ctename, cols);
    }
  }
  if (sel.op && sel.op !== "SETOP_NONE") {
    const l = selectLineage(sel.larg, scope);
    const r = selectLineage(sel.rarg, scope);
    return l.map((c, i) => {
      const o = r[i];
      return {
        name: c.name,
        sources: [...c.sources, ...(o?.sources ?? [])],
        unknown: c.unknown || !o || o.unknown || !!c.star || !!o.star,
      };
    });
  }
  if (sel.valuesLists) {
    const first = sel.valuesLists[0]?.List?.items ?? [];
    return first.map((_: Node, i: number) => {
      const out: OutputLineage = { name: `column${i + 1}`, sources: [], unknown: false };
      for (const row of sel.valuesLists) {
        const e = row.List?.items?.[i];
        if (e) mergeExpr(out, exprLineage(e, scope));
      }
      return out;
    });
  }
  for (const item of sel.fromClause ?? []) addFromItem(item, scope);
  const out: OutputLineage[] = [];
  for (const t of sel.targetList ?? []) {
    const rt = t.ResTarget;
    if (!rt) continue;
    const val = rt.val as Node;
    const ref = val?.ColumnRef;
    if (ref && ref.fields?.some((f: Node) => f.A_Star)) {
      out.push(...expandStar(ref.fields, scope));
      continue;
    }
    const l = exprLineage(val, scope);
    l.name = rt.name ?? l.name;
    out.push(l);
  }
  return out;
}

function unknownColumn(name: string): OutputLineage {
  return { name, sources: [], unknown: true };
}

function renameColumns(cols: OutputLineage[], names: string[]): OutputLineage[] {
  return cols.map((c, i) => (names[i] ? { ...c, name: names[i] } : c));
}

function addFromItem(item: Node, scope: Scope): void {
  if (item.RangeVar) {
    const rv = item.RangeVar;
    const alias = rv.alias?.aliasname ?? rv.relname;
    let rel: Relation;
    const cte = !rv.schemaname ? lookupCte(scope, rv.relname) : undefined;
    if (cte) rel = { kind: "derived", columns: rv.alias?.colnames ? renameColumns(cte, rv.alias.colnames.map(sval)) : cte };
    else rel = { kind: "table", schema: rv.schemaname, table: rv.relname };
    scope.rels.set(alias, rel);
    scope.order.push(rel);
  } else if (item.RangeSubselect) {
    const rs = item.RangeSubselect;
    const q = rs.subquery?.SelectStmt;
    let cols = q ? selectLineage(q, rs.lateral ? scope : { rels: new Map(), order: [], ctes: scope.ctes, parent: scope.parent }) : [];
    if (rs.alias?.colnames) cols = renameColumns(cols, rs.alias.colnames.map(sval));
    const rel: Relation = { kind: "derived", columns: cols };
    if (rs.alias?.aliasname) scope.rels.set(rs.alias.aliasname, rel);
    scope.order.push(rel);
  } else if (item.JoinExpr) {
    const j = item.JoinExpr;
    addFromItem(j.larg, scope);
    addFromItem(j.rarg, scope);
    // a join alias (`(a JOIN b USING (id)) AS j`) hides the sides' names: refs through it are unknown
    if (j.alias?.aliasname) scope.rels.set(j.alias.aliasname, { kind: "unknown" });
  } else {
    // RangeFunction, RangeTableFunc, …: rows from a function. Its columns are not known here, so
    // every one of them counts as computed from every argument (`json_each(json_build_object(email,
    // 1))` yields the email as `key`), and as not fully traced (a user function may read anything)
    const alias = item.RangeFunction?.alias?.aliasname ?? item.RangeTableFunc?.alias?.aliasname;
    const args: OutputLineage = { name: "?column?", sources: [], unknown: false };
    walkChildren(item, scope, args, new Set());
    const rel: Relation = { kind: "function", sources: unkeyed(args).sources };
    if (alias) scope.rels.set(alias, rel);
    scope.order.push(rel);
  }
}

function lookupCte(scope: Scope, name: string): OutputLineage[] | undefined {
  return scope.ctes.get(name);
}

function lookupRel(scope: Scope | undefined, name: string, schema?: string): Relation | undefined {
  for (let s = scope; s; s = s.parent) {
    if (!schema) {
      const r = s.rels.get(name);
      if (r) return r;
    } else {
      for (const r of s.rels.values()) if (r.kind === "table" && r.table === name && r.schema === schema) return r;
    }
  }
  return undefined;
}

function expandStar(fields: Node[], scope: Scope): OutputLineage[] {
  const qual = fields.length > 1 ? fields.slice(0, -1).map(sval) : [];
  const rels: Relation[] = [];
  if (qual.length === 0) rels.push(...scope.order);
  else {
    const r = lookupRel(scope, qual[qual.length - 1]!, qual.length > 1 ? qual[qual.length - 2] : undefined);
    rels.push(r ?? { kind: "unknown" });
  }
  const out: OutputLineage[] = [];
  for (const r of rels) {
    if (r.kind === "derived") out.push(...r.columns);
    else if (r.kind === "function") out.push({ name: "*", sources: [...r.sources], unknown: true, star: { table: "?" } });
    else if (r.kind === "table")
      out.push({ name: "*", sources: [{ col: { schema: r.schema, table: r.table, column: "*" } }], unknown: false, star: { schema: r.schema, table: r.table } });
    else out.push({ name: "*", sources: [], unknown: true, star: { table: "?" } });
  }
  return out;
}

function mergeExpr(into: OutputLineage, from: OutputLineage): void {
  into.sources.push(...from.sources);
  into.unknown ||= from.unknown;
}

/** `l` with its JSON keys dropped: its values may be anywhere in the result (see KEY_PRESERVING_FUNCS) */
function unkeyed(l: OutputLineage): OutputLineage {
  if (!l.sources.some((s) => s.jsonKey !== undefined || s.rowKeys)) return l;
  return { ...l, sources: l.sources.map((s) => (s.jsonKey === undefined && !s.rowKeys ? s : { col: s.col })) };
}

/** Lineage of one expression: every column it references, with JSON keys where they are known. */
function exprLineage(e: Node | undefined, scope: Scope): OutputLineage {
  const out: OutputLineage = { name: "?column?", sources: [], unknown: false };
  if (!e) return out;
  if (e.ColumnRef) {
    const f = e.ColumnRef.fields as Node[];
    out.name = sval(f[f.length - 1]) ?? "?column?";
    resolveColumnRef(f, scope, out);
    return out;
  }
  if (e.FuncCall) {
    const fc = e.FuncCall;
    const fname = sval(fc.funcname[fc.funcname.length - 1]) ?? "?column?";
    out.name = fname;
    if (VALUE_FREE_FUNCS.has(fname)) return out;
    const args: Node[] = fc.args ?? [];
    if (JSON_BUILD_OBJECT.has(fname)) {
      for (let i = 0; i + 1 < args.length; i += 2) {
        const key = args[i]?.A_Const?.sval?.sval as string | undefined;
        const v = exprLineage(args[i + 1], scope);
        out.unknown ||= v.unknown;
        for (const s of v.sources) out.sources.push(key !== undefined && !s.jsonKey ? { col: s.col, jsonKey: key } : s);
        // a computed key: what it is computed from ends up in a key, unkeyed
        if (key === undefined) mergeExpr(out, unkeyed(exprLineage(args[i], scope)));
      }
      if (args.length % 2) mergeExpr(out, unkeyed(exprLineage(args[args.length - 1], scope)));
      return out;
    }
    const keeps = KEY_PRESERVING_FUNCS.has(fname);
    args.forEach((a, i) => {
      // a bare relation name as an argument is a whole-row reference: row_to_json(c)
      if (a.ColumnRef && a.ColumnRef.fields.length === 1 && sval(a.ColumnRef.fields[0]) && JSON_ROW_FUNCS.has(fname)) {
        const name = sval(a.ColumnRef.fields[0])!;
        const rel = lookupRel(scope, name);
        if (rel) addWholeRow(rel, out, keeps);
      }
      const l = exprLineage(a, scope);
      mergeExpr(out, keeps || (JSON_OBJECT_AGG.has(fname) && i === 1) ? l : unkeyed(l));
    });
    const rest: OutputLineage = { name: fname, sources: [], unknown: false };
    walkChildren(fc, scope, rest, new Set(["args", "funcname"]));
    mergeExpr(out, unkeyed(rest));
    return out;
  }
  if (e.TypeCast) {
    // only a cast to json/jsonb keeps the JSON places; `j::text` makes the keys and values one string
    const names: Node[] = e.TypeCast.typeName?.names ?? [];
    const to = sval(names[names.length - 1]);
    const inner = exprLineage(e.TypeCast.arg, scope);
    return to === "json" || to === "jsonb" ? inner : unkeyed(inner);
  }
  if (e.SubLink) {
    const sub = e.SubLink.subselect?.SelectStmt;
    if (sub) {
      const cols = selectLineage(sub, scope);
      for (const c of cols) mergeExpr(out, c);
    }
    if (e.SubLink.testexpr) mergeExpr(out, unkeyed(exprLineage(e.SubLink.testexpr, scope)));
    return out;
  }
  if (e.RowExpr) {
    out.name = "row";
    for (const a of e.RowExpr.args ?? []) mergeExpr(out, unkeyed(exprLineage(a, scope)));
    return out;
  }
  if (e.A_Const || e.ParamRef || e.SQLValueFunction) return out;
  walkChildren(e, scope, out, new Set());
  const node = Object.keys(e)[0] ?? "";
  return PASS_THROUGH_NODES.has(node) ? out : unkeyed(out);
}

/**
 * A whole-row reference to `rel`: a table's every column, a derived table's columns under their
 * names (the keys `row_to_json` gives them), a function's arguments. `keyed`: the caller puts the
 * row into JSON by column name; otherwise (`concat(c)`, `c::text`) the names do not survive.
 */
function addWholeRow(rel: Relation, out: OutputLineage, keyed = true): void {
  if (rel.kind === "table") out.sources.push(keyed ? { col: { schema: rel.schema, table: rel.table, column: "*" }, rowKeys: true } : { col: { schema: rel.schema, table: rel.table, column: "*" } });
  else if (rel.kind === "derived") {
    for (const c of rel.columns) {
      if (c.unknown) out.unknown = true;
      for (const s of c.sources) {
        if (!keyed) out.sources.push({ col: s.col });
        // a `*` of the derived table: its columns appear under their own names, not under "*"
        else if (c.star) out.sources.push(s.col.column === "*" ? { col: s.col, rowKeys: true } : { col: s.col });
        else out.sources.push({ col: s.col, jsonKey: s.jsonKey ?? c.name });
      }
    }
  } else if (rel.kind === "function") {
    out.sources.push(...rel.sources);
    out.unknown = true;
  } else out.unknown = true;
}

/** Generic descent: any nested node's column references count (operators, CASE, COALESCE, …). */
function walkChildren(node: Node, scope: Scope, out: OutputLineage, skip: Set<string>): void {
  for (const [k, v] of Object.entries(node)) {
    if (skip.has(k) || v === null || typeof v !== "object") continue;
    if (Array.isArray(v)) {
      for (const x of v) if (x && typeof x === "object") mergeExpr(out, exprOrWalk(x, scope));
    } else mergeExpr(out, exprOrWalk(v, scope));
  }
}

function exprOrWalk(v: Node, scope: Scope): OutputLineage {
  const keys = Object.keys(v);
  // node wrappers have one PascalCase key; bare bodies (e.g. A_Expr's fields) are walked
  if (keys.length === 1 && /^[A-Z]/.test(keys[0]!)) return exprLineage(v, scope);
  const out: OutputLineage = { name: "?column?", sources: [], unknown: false };
  walkChildren(v, scope, out, new Set());
  return out;
}

function resolveColumnRef(f: Node[], scope: Scope, out: OutputLineage): void {
  const names = f.map(sval);
  if (names.some((n) => n === undefined)) {
    // `c.*` inside an expression: whole row of c
    const q = names.filter((n): n is string => n !== undefined);
    const rel = q.length ? lookupRel(scope, q[q.length - 1]!, q.length > 1 ? q[q.length - 2] : undefined) : undefined;
    if (rel) addWholeRow(rel, out);
    else if (q.length === 0) for (const r of scope.order) addWholeRow(r, out);
    else out.unknown = true;
    return;
  }
  const col = names[names.length - 1]!;
  if (names.length >= 2) {
    const relName = names[names.length - 2]!;
    const schema = names.length >= 3 ? names[names.length - 3] : undefined;
    const rel = lookupRel(scope, relName, schema);
    if (!rel) {
      out.unknown = true;
      return;
    }
    fromRelation(rel, col, out);
    return;
  }
  // unqualified: a column of any relation in scope (innermost first), or a whole-row reference
  let found = false;
  for (let s: Scope | undefined = scope; s && !found; s = s.parent) {
    const tables: Array<{ schema?: string; table: string }> = [];
    for (const r of s.order) {
      if (r.kind === "table") tables.push({ schema: r.schema, table: r.table });
      else if (r.kind === "derived") {
        const c = r.columns.find((x) => x.name === col);
        if (c) {
          mergeExpr(out, c);
          found = true;
        } else if (r.columns.some((x) => x.star || x.unknown)) out.unknown = true;
      } else if (r.kind === "function") {
        // the column may be one of the function's: it derives from the arguments
        out.sources.push(...r.sources);
        out.unknown = true;
      } else out.unknown = true;
    }
    if (tables.length === 1) out.sources.push({ col: { ...tables[0]!, column: col } });
    else if (tables.length > 1) out.sources.push({ col: { candidates: tables, column: col } });
    if (tables.length) found = true;
    const rel = s.rels.get(col);
    if (rel) {
      addWholeRow(rel, out);
      found = true;
    }
  }
  if (!found) out.unknown = true;
}

function fromRelation(rel: Relation, col: string, out: OutputLineage): void {
  if (rel.kind === "table") out.sources.push({ col: { schema: rel.schema, table: rel.table, column: col } });
  else if (rel.kind === "derived") {
    const c = rel.columns.find((x) => x.name === col);
    if (c) mergeExpr(out, c);
    else {
      // may come from a `*` inside the derived table
      const stars = rel.columns.filter((x) => x.star);
      for (const s of stars) out.sources.push({ col: { schema: s.star!.schema, table: s.star!.table, column: col } });
      if (!stars.length || rel.columns.some((x) => x.star?.table === "?")) out.unknown = true;
    }
  } else if (rel.kind === "function") {
    out.sources.push(...rel.sources);
    out.unknown = true;
  } else out.unknown = true;
}

/**
 * Aligns lineage items with the result's fields. A base-table `*` has unknown width: fields before
 * the first and after the last such star align by position; fields covered by stars are plain
 * table columns that RowDescription's table OID/attribute number identify, so they get an empty,
 * known lineage. Returns null when the counts cannot be reconciled.
 */
export function alignLineage(items: readonly OutputLineage[], fieldCount: number): OutputLineage[] | null {
  const firstStar = items.findIndex((x) => x.star);
  if (firstStar < 0) return items.length === fieldCount ? [...items] : null;
  let lastStar = firstStar;
  for (let i = items.length - 1; i > firstStar; i--)
    if (items[i]!.star) {
      lastStar = i;
      break;
    }
  const head = items.slice(0, firstStar);
  const tail = items.slice(lastStar + 1);
  const middle = items.slice(firstStar, lastStar + 1);
  const fixedMiddle = middle.filter((x) => !x.star);
  const width = fieldCount - head.length - tail.length;
  if (width < 0) return null;
  const midSources = middle.flatMap((x) => x.sources);
  const midUnknown = middle.some((x) => x.unknown);
  // between stars, positions are ambiguous: every middle field gets the union of the middle's
  // non-star lineage (over-masking rather than under-masking)
  const filler: OutputLineage = {
    name: "*",
    sources: fixedMiddle.length ? midSources.filter((s) => s.col.column !== "*") : [],
    unknown: fixedMiddle.length ? midUnknown : middle.some((x) => x.star?.table === "?"),
  };
  return [...head, ...Array.from({ length: width }, () => ({ ...filler, sources: [...filler.sources] })), ...tail];
}
