/**
 * Which functions a statement runs that may change the database, according to the upstream's
 * catalog (issue 11: "functions with side effects called from a read are not read"). Pure but for
 * the classifier it is given.
 *
 * A user function MAY WRITE when pg_proc marks it VOLATILE (the default of CREATE FUNCTION, so most
 * are), or when its body may: PostgreSQL refuses INSERT/UPDATE/DELETE directly inside an IMMUTABLE or
 * STABLE SQL or PL/pgSQL function, but not a volatile function called from one (tried: a STABLE
 * wrapper around a PL/pgSQL DELETE deletes). So the bodies of the non-volatile SQL and PL/pgSQL
 * functions are classified like statements, and a function whose body calls one that may write (or
 * a built-in with side effects, or one the catalog does not list), uses such an operator, reads a
 * view or table that runs one, writes, or runs dynamic SQL, may write too — to a fixed point over
 * every user function, view and row security policy. C and internal functions are taken at their
 * pg_proc word (creating them takes a superuser). An aggregate may write when one of its support
 * functions may; a view when its definition runs something that may; a table with a row security
 * policy whose expression does.
 *
 * A statement that runs such a function is at least `write`: the class of a CALL of a procedure
 * (whose body may write), rather than ddl or admin, because what such a function does with the
 * upstream role's privileges is what a write of the same identity could do (its DDL in a body is a
 * possibility the class cannot bound, as for CALL). A name the catalog does not know counts the
 * same (fail closed). Built-ins called by the statement itself (pg_catalog, information_schema)
 * are judged by name in shared/src/sql/function-tables.ts.
 *
 * Names as written are matched loosely where that can only err towards `write`: an unqualified
 * name may write if any user function of that name in any schema may (the search_path may reach it,
 * and overload resolution may prefer it to a built-in).
 *
 * Coercions run code too: a cast to a type runs the cast's function (CREATE CAST … WITH FUNCTION),
 * a literal's input runs the type's input function (typinput, typreceive for a binary parameter),
 * a domain's CHECK constraints run on every value coerced to it (creating a domain takes no
 * privilege). A type whose coercion may run something that may write is a "volatile type" (to the
 * same fixed point; a domain over one is one, and so is one whose CHECK casts to one), and a
 * statement naming one (`'x'::t`, CAST(… AS t), `t 'x'`, an array of it, a DO block or function
 * body that mentions the name at all, which is where a PL/pgSQL variable of the type would be
 * assigned) may write, as does a read of a view or a table whose policy casts to one. Coercions without a name
 * written: a function (or operator) whose argument or result is of a volatile type may write, and
 * so does a read of a table with a column of a type that a writing implicit cast targets (a
 * comparison with its column casts to it). A cast to a type counts whatever its source: which cast
 * applies is the server's analysis, so a writing cast to text makes every `::text` a write.
 *
 * Known gaps: functions inside a default expression or trigger (those run on writes, which are
 * `write` already), implicit and assignment casts to a type the statement neither names nor takes
 * through a function, operator or table column, a function changed on the server behind sluice's
 * back until the catalog is read again.
 */
import type { StatementClass } from "@sluice/shared/policy";
import { isDynamicSqlFunction, isSuperuserFunction, sideEffectClass, type Classification, type StatementInfo } from "@sluice/shared/sql";
import { mentionsAny, volatileTypeNames } from "./type-names.js";

export interface FunctionFacts {
  /** lower-case names of the functions in pg_catalog and information_schema */
  readonly builtins: ReadonlySet<string>;
  /** user function names (`name` and `schema.name`, lower-case) → whether one of them (any overload) may write */
  readonly user: ReadonlyMap<string, boolean>;
  /** operators (`op` and `schema.op`) whose function may write */
  readonly volatileOperators: ReadonlySet<string>;
  /** relations (`name` and `schema.name`) whose read runs something that may write */
  readonly volatileReads: ReadonlySet<string>;
  /** types (`name` and `schema.name`, lower-case) whose coercion may run something that may write (absent: none) */
  readonly volatileTypes?: ReadonlySet<string>;
}

/** The reason a statement runs code that may write: a call or a relation read, and why. */
export interface VolatileUse {
  name: string;
  why: "volatile" | "unknown" | "operator" | "reads-volatile" | "type";
}

const BUILTIN_SCHEMAS = new Set(["pg_catalog", "information_schema"]);

/** What `name` (as written, lower-case) resolves to, as far as writing goes. */
function judgeFunction(f: FunctionFacts, name: string): VolatileUse["why"] | undefined {
  const parts = name.split(".");
  const base = parts[parts.length - 1]!;
  if (parts.length === 1) {
    const v = f.user.get(base);
    if (v !== undefined) return v ? "volatile" : undefined;
    return f.builtins.has(base) ? undefined : "unknown";
  }
  const schema = parts[parts.length - 2]!;
  if (BUILTIN_SCHEMAS.has(schema)) return f.builtins.has(base) ? undefined : "unknown";
  const v = f.user.get(`${schema}.${base}`);
  if (v === undefined) return "unknown";
  return v ? "volatile" : undefined;
}

/**
 * The functions, relations and types of one statement that run volatile (or unknown) user code.
 * `types`: the type names the statement's text names (type-names.ts), when the facts have volatile types.
 */
export function volatileUses(f: FunctionFacts, s: StatementInfo, types?: readonly string[]): VolatileUse[] {
  const out: VolatileUse[] = [];
  if (types && f.volatileTypes?.size) for (const t of types) if (f.volatileTypes.has(t)) out.push({ name: t, why: "type" });
  for (const name of s.calls ?? s.functions) {
    const why = judgeFunction(f, name);
    if (why) out.push({ name, why });
  }
  // a function being defined does not run its body's operators (its calls are `calls` already)
  if (s.kind !== "CreateFunctionStmt") for (const op of s.operators ?? []) if (f.volatileOperators.has(op)) out.push({ name: op, why: "operator" });
  for (const t of s.tables.read) {
    const k = t.toLowerCase();
    if (f.volatileReads.has(k)) out.push({ name: t, why: "reads-volatile" });
  }
  return out;
}

/** Whether a statement names anything volatileUses would look up (the hot path skips the catalog otherwise). */
export function needsFunctionFacts(s: StatementInfo): boolean {
  return (s.calls ?? s.functions).length > 0 || s.tables.read.length > 0 || (s.operators?.length ?? 0) > 0;
}

const RANK: Readonly<Record<StatementClass, number>> = { read: 0, utility: 1, write: 2, copy: 3, ddl: 4, admin: 5 };

/** `s` as a statement that writes: `write` among its classes (and `read` no longer), its class the most privileged. */
export function asWrite(s: StatementInfo): StatementInfo {
  const classes = new Set<StatementClass>(s.classes ?? [s.class]);
  if (classes.has("write")) return s;
  classes.add("write");
  classes.delete("read");
  const sorted = [...classes].sort((a, b) => RANK[a] - RANK[b]);
  return { ...s, classes: sorted, class: sorted[sorted.length - 1]! };
}

/** One line naming what made a statement a write, for the denial's reason. */
export function describeUses(uses: readonly VolatileUse[]): string {
  const u = uses[0]!;
  const what =
    u.why === "type"
      ? `it names the type ${u.name}, whose coercion (a cast, input function or domain CHECK) runs a volatile function`
      : u.why === "reads-volatile"
      ? `it reads ${u.name}, whose definition or row security policy calls a volatile function`
      : u.why === "operator"
        ? `it uses the operator ${u.name}, whose function pg_proc marks volatile (it may write)`
        : u.why === "unknown"
          ? `it calls ${u.name}(), a function the upstream's catalog does not list`
          : `it calls ${u.name}(), a function pg_proc marks volatile (it may write)`;
  return uses.length > 1 ? `${what}, and ${uses.length - 1} more` : what;
}

/** What the catalog query reads (pg-catalog.ts FUNCTION_FACTS_SQL). */
export interface FunctionFactsDoc {
  builtins: string[] | null;
  /**
   * oid, schema, name, provolatile, prokind, language, definition (non-volatile SQL and PL/pgSQL
   * functions), an aggregate's support function oids, its argument and result type oids
   */
  functions: Array<[number, string, string, string, string, string, string | null, number[] | null, (number[] | null)?]>;
  /** oid, schema, name, typtype, base type oid (a domain's), input and receive function oids, a domain's CHECK expressions: types whose coercion may run user code */
  types?: Array<[number, string, string, string, number, number, number, string[] | null]>;
  /** source type oid, target type oid, function oid, castcontext: casts by user functions */
  casts?: Array<[number, number, number, string]>;
  /** schema, table, type oid: columns of a type that an implicit cast by a user function targets */
  typedColumns?: Array<[string, string, number]>;
  /** schema, name, function oid: operators whose function is a user function */
  operators: Array<[string, string, number]>;
  /** schema, name, definition: views */
  views: Array<[string, string, string | null]>;
  /** schema, table, USING expression: row security policies */
  policies: Array<[string, string, string | null]>;
}

type Classify = (sql: string) => Classification | Promise<Classification>;

/** A built-in whose call has effects beyond its result (function-tables.ts), as a function body may call it. */
function builtinWrites(name: string): boolean {
  const base = name.slice(name.lastIndexOf(".") + 1);
  return sideEffectClass(base) !== undefined || isSuperuserFunction(base) || isDynamicSqlFunction(base) || base === "set_config";
}

const key2 = (schema: string, name: string) => [name.toLowerCase(), `${schema.toLowerCase()}.${name.toLowerCase()}`];


/**
 * The catalog's document → FunctionFacts: the definitions of non-volatile functions, views and row
 * security policies classified with `classify`, then what may write found to a fixed point.
 */
export async function functionFactsFrom(d: FunctionFactsDoc, classify: Classify): Promise<FunctionFacts> {
  const builtins = new Set((d.builtins ?? []).map((b) => b.toLowerCase()));
  /** the statements a definition consists of; null when it cannot be classified (then it may write) */
  const read = async (sql: string | null): Promise<StatementInfo[] | null> => {
    if (sql === null) return null;
    try {
      const c = await classify(sql);
      return c.ok ? c.statements : null;
    } catch {
      return null;
    }
  };
  interface Fn { oid: number; keys: string[]; writes: boolean; body?: StatementInfo[] | null; def?: string | null; support: number[]; types: number[] }
  const fns = await Promise.all(
    d.functions.map(async ([oid, schema, name, vol, kind, lang, def, support, types]): Promise<Fn> => {
      const f: Fn = { oid, keys: key2(schema, name), writes: vol === "v", support: (support ?? []).filter((x) => x !== 0), types: types ?? [] };
      if (!f.writes && (kind === "f" || kind === "p") && (lang === "sql" || lang === "plpgsql")) {
        f.body = await read(def);
        f.def = def;
      }
      return f;
    }),
  );
  interface Ty { oid: number; keys: string[]; writes: boolean; base: number; fns: number[]; checks: Array<StatementInfo[] | null>; checkTexts: string[] }
  const types = await Promise.all(
    (d.types ?? []).map(async ([oid, schema, name, _kind, base, input, receive, checks]): Promise<Ty> => {
      const checkTexts = (checks ?? []).map((e) => `SELECT (${e})`);
      return { oid, keys: key2(schema, name), writes: false, base, fns: [input, receive].filter((x) => x !== 0), checks: await Promise.all(checkTexts.map(read)), checkTexts };
    }),
  );
  const typeByOid = new Map(types.map((t) => [t.oid, t]));
  const casts = d.casts ?? [];
  const ops = d.operators.map(([schema, name, fn]) => ({ keys: [name, `${schema.toLowerCase()}.${name}`], fn }));
  const views = await Promise.all(d.views.map(async ([schema, name, def]) => ({ keys: key2(schema, name), code: await read(def), text: def })));
  const policies = await Promise.all(d.policies.map(async ([schema, table, expr]) => {
    const text = expr === null ? null : `SELECT (${expr})`;
    return { keys: key2(schema, table), code: text === null ? [] : await read(text), text };
  }));

  const byOid = new Map(fns.map((f) => [f.oid, f]));
  const user = new Map<string, boolean>();
  const volatileOperators = new Set<string>();
  const volatileReads = new Set<string>();
  const volatileTypes = new Set<string>();
  const facts: FunctionFacts = { builtins, user, volatileOperators, volatileReads, volatileTypes };
  /** a function of the catalog's that may write (one it does not list is a built-in: taken at its name) */
  const fnWrites = (oid: number) => byOid.get(oid)?.writes ?? false;
  const typeWrites = (oid: number) => typeByOid.get(oid)?.writes ?? false;
  /** whether a function body's text names a volatile type (a PL/pgSQL variable of it is coerced on assignment) */
  const namesVolatileType = (def: string | null | undefined) => volatileTypes.size > 0 && typeof def === "string" && mentionsAny(def, volatileTypes);
  /** whether a query or expression (a view's, a policy's, a CHECK's) casts to a volatile type; unreadable: it may */
  const castsVolatileType = (text: string | null) => volatileTypes.size > 0 && text !== null && (volatileTypeNames(text, volatileTypes)?.length ?? 1) > 0;
  const refresh = () => {
    user.clear();
    for (const f of fns) for (const k of f.keys) user.set(k, (user.get(k) ?? false) || f.writes);
    for (const o of ops) if (byOid.get(o.fn)?.writes) for (const k of o.keys) volatileOperators.add(k);
  };
  /** whether code (a body's statements, a view's or policy's query) may write, as the facts stand */
  const codeWrites = (code: StatementInfo[] | null | undefined, body: boolean): boolean => {
    if (code === null || code === undefined) return true;
    for (const s of code) {
      if (s.risks.includes("dynamic-sql") || s.tables.write.length > 0) return true;
      // a view or policy that notifies or sets a setting has effects beyond its rows too
      if (!body && (s.classes ?? [s.class]).some((c) => c !== "read")) return true;
      if (body && s.functions.some(builtinWrites)) return true;
      if (body && s.operators?.some((op) => volatileOperators.has(op))) return true;
      const probe: StatementInfo = body ? { ...s, kind: "SelectStmt", calls: s.functions } : s;
      if (volatileUses(facts, probe).length > 0) return true;
    }
    return false;
  };
  refresh();
  for (let changed = true, round = 0; changed && round <= fns.length + views.length + policies.length + types.length; round++) {
    changed = false;
    for (const t of types) {
      if (t.writes) continue;
      const w =
        t.fns.some(fnWrites) || typeWrites(t.base) || t.checks.some((c) => codeWrites(c, false)) || t.checkTexts.some(castsVolatileType) ||
        casts.some(([, target, fn]) => target === t.oid && fnWrites(fn));
      if (w) {
        t.writes = changed = true;
        for (const k of t.keys) volatileTypes.add(k);
      }
    }
    for (const f of fns) {
      if (f.writes) continue;
      const w =
        f.support.length > 0
          ? f.support.some((o) => byOid.get(o)?.writes ?? true)
          : f.types.some(typeWrites) || (f.body !== undefined && (codeWrites(f.body, true) || namesVolatileType(f.def)));
      if (w) f.writes = changed = true;
    }
    refresh();
    // a column of a type that a writing implicit cast targets: comparing it with another type casts to it
    for (const [schema, table, type] of d.typedColumns ?? []) {
      const keys = key2(schema, table);
      if (keys.every((k) => volatileReads.has(k))) continue;
      if (casts.some(([, target, fn, context]) => target === type && context === "i" && fnWrites(fn))) {
        for (const k of keys) volatileReads.add(k);
        changed = true;
      }
    }
    for (const r of [...views, ...policies]) {
      if (r.keys.every((k) => volatileReads.has(k))) continue;
      if (codeWrites(r.code, false) || castsVolatileType(r.text)) {
        for (const k of r.keys) volatileReads.add(k);
        changed = true;
      }
    }
  }
  return facts;
}
