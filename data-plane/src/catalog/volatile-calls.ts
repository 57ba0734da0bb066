/**
 * Which functions a statement runs that may change the database, according to the upstream's
 * pg_proc (issue 11: "functions with side effects called from a read are not read"). Pure.
 *
 * PostgreSQL itself refuses INSERT/UPDATE/DELETE and utility statements inside a function marked
 * IMMUTABLE or STABLE (SQL and PL/pgSQL: "… is not allowed in a non-volatile function"), so only a
 * VOLATILE function can write when called — the default for CREATE FUNCTION, so most user functions
 * are. A statement that runs one is at least `write`: the class of a CALL of a procedure (whose
 * body may write), rather than ddl or admin, because what such a function does with the upstream
 * role's privileges is what a write of the same identity could do (its DDL in a body is a
 * possibility the class cannot bound, as for CALL). A name the catalog does not know counts the
 * same (fail closed). Built-ins (pg_catalog, information_schema) are judged by name in
 * shared/src/sql/function-tables.ts (sequence setters, advisory locks, notifications, set_config).
 *
 * Names as written are matched loosely where that can only err towards `write`: an unqualified
 * name is volatile if any user function of that name in any schema is (the search_path may reach
 * it, and overload resolution may prefer it to a built-in); a user aggregate counts as volatile
 * when one of its support functions is. A read of a view whose definition (or a view it reads)
 * calls a volatile user function or operator, or of a table whose row security policy does, runs
 * that function too, and counts the same.
 *
 * An operator whose function is a volatile user function counts like a call of it.
 *
 * Known gaps: user-defined casts and type input functions, functions inside a default expression
 * or trigger (those run on writes, which are `write` already).
 */
import type { StatementClass } from "@sluice/shared/policy";
import type { StatementInfo } from "@sluice/shared/sql";

export interface FunctionFacts {
  /** lower-case names of the functions in pg_catalog and information_schema */
  readonly builtins: ReadonlySet<string>;
  /** user function names (`name` and `schema.name`, lower-case) → whether one of them (any overload) is volatile */
  readonly user: ReadonlyMap<string, boolean>;
  /** operators (`op` and `schema.op`) whose function is a volatile user function */
  readonly volatileOperators: ReadonlySet<string>;
  /** relations (`name` and `schema.name`) whose read runs a volatile user function */
  readonly volatileReads: ReadonlySet<string>;
}

/** The reason a statement runs code that may write: a call or a relation read, and why. */
export interface VolatileUse {
  name: string;
  why: "volatile" | "unknown" | "operator" | "reads-volatile";
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

/** The functions and relations of one statement that run volatile (or unknown) user code. */
export function volatileUses(f: FunctionFacts, s: StatementInfo): VolatileUse[] {
  const out: VolatileUse[] = [];
  for (const name of s.calls ?? s.functions) {
    const why = judgeFunction(f, name);
    if (why) out.push({ name, why });
  }
  for (const op of s.operators ?? []) if (f.volatileOperators.has(op)) out.push({ name: op, why: "operator" });
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
    u.why === "reads-volatile"
      ? `it reads ${u.name}, whose definition or row security policy calls a volatile function`
      : u.why === "operator"
        ? `it uses the operator ${u.name}, whose function pg_proc marks volatile (it may write)`
        : u.why === "unknown"
          ? `it calls ${u.name}(), a function the upstream's catalog does not list`
          : `it calls ${u.name}(), a function pg_proc marks volatile (it may write)`;
  return uses.length > 1 ? `${what}, and ${uses.length - 1} more` : what;
}

/** The catalog's JSON document → FunctionFacts (the query is in pg-catalog.ts). */
export function functionFactsFrom(d: { builtins: string[] | null; user: Array<[string, string, boolean]>; operators: string[]; relations: Array<[string, string]> }): FunctionFacts {
  const user = new Map<string, boolean>();
  for (const [schema, name, volatile] of d.user) {
    const n = name.toLowerCase();
    user.set(n, (user.get(n) ?? false) || volatile);
    const q = `${schema.toLowerCase()}.${n}`;
    user.set(q, (user.get(q) ?? false) || volatile);
  }
  const volatileReads = new Set<string>();
  for (const [schema, name] of d.relations) {
    volatileReads.add(name.toLowerCase());
    volatileReads.add(`${schema.toLowerCase()}.${name.toLowerCase()}`);
  }
  const volatileOperators = new Set<string>();
  for (const o of d.operators) {
    const [schema, name] = JSON.parse(o) as [string, string];
    volatileOperators.add(name);
    volatileOperators.add(`${schema.toLowerCase()}.${name}`);
  }
  return { builtins: new Set((d.builtins ?? []).map((b) => b.toLowerCase())), user, volatileOperators, volatileReads };
}
