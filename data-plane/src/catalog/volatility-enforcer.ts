/**
 * An Enforcer in front of another that holds every statement running a volatile user function (or
 * reading a relation that runs one, or naming a type whose coercion runs one) to what a write
 * needs (volatile-calls.ts): the inner decision
 * is evaluated again with `write` among those statements' classes, so a read-only identity calling
 * a PL/pgSQL function that deletes rows is denied, and the audit records the statement as a write.
 *
 * The catalog's facts are read per resource on its side connection and cached (PgCatalog's TTL,
 * flushed by a DDL CommandComplete of any session): with fresh facts the decision is synchronous,
 * and a decision already judged under the same facts is served from a per-decision memo, so the
 * hot path costs a WeakMap lookup. A name the facts do not know is looked up once more (the
 * function may be newer than the cache) before it counts as volatile. A catalog that cannot be read
 * denies the statements that call functions or read relations (57P03), never passes them.
 */
import { evaluate, type Decision, type DecisionContext } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import type { StatementInfo } from "@sluice/shared/sql";
import type { Enforcer, EnforcerDecision, PreparedStatements, SessionInfo, SnapshotSource } from "../session/session-hooks.js";
import { asWrite, describeUses, needsFunctionFacts, volatileUses, type FunctionFacts, type VolatileUse } from "./volatile-calls.js";
import { volatileTypeNames } from "./type-names.js";

export interface FunctionFactsSource {
  functionFacts(resource: string, maxAgeMs?: number): Promise<FunctionFacts>;
  functionFactsNow(resource: string): FunctionFacts | undefined;
}

/** a name the facts do not know is looked up again when they are older than this */
const UNKNOWN_RECHECK_MS = 1000;

/**
 * Whether a statement's text may coerce a value to a type it names: `::`, CAST(, a typed literal
 * or string prefix (a word right before a quote), a DO block. Loose on purpose: it only decides
 * whether the catalog is asked.
 */
function mayCoerce(s: StatementInfo): boolean {
  return s.kind === "DoStmt" || s.text.includes("::") || /\bcast\s*\(|[a-z0-9_"$]\s*'/i.test(s.text);
}

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === "function";

export function volatilityEnforcer(inner: Enforcer, o: { snapshots: SnapshotSource; catalog: FunctionFactsSource }): Enforcer {
  /**
   * decision → the facts it was judged under and the outcome. Cached decisions are shared objects,
   * and a decision shared by statement shape (literal-shape.ts) points to the one it was made as
   * (`decidedAs`): statements of one shape call the same functions, so "nothing volatile" holds for
   * all of them; an outcome that differs from the decision is kept for that decision object only.
   */
  const memo = new WeakMap<Decision, { facts: FunctionFacts; clean: boolean; out?: Decision }>();
  const memoKey = (d: Decision): Decision => (d as { decidedAs?: Decision }).decidedAs ?? d;
  const executes = (d: Decision): boolean => d.statements.some((s) => s.executes !== undefined);

  /** the statements whose calls count: the message's own, and the prepared statements its EXECUTEs run */
  const statementsOf = (d: Decision, prepared: PreparedStatements | undefined): StatementInfo[] => {
    const out: StatementInfo[] = [];
    for (const s of d.statements) {
      out.push(s);
      for (const n of s.executes ?? []) {
        const r = prepared?.resolve(n);
        if (r) out.push(r);
      }
    }
    return out;
  };

  const judge = (d: Decision, facts: FunctionFacts, session: SessionInfo, prepared: PreparedStatements | undefined, recheck: boolean): EnforcerDecision => {
    // EXECUTE resolves the session's prepared statements: never judged from the memo
    const remember = !executes(d);
    const uses = new Map<StatementInfo, VolatileUse[]>();
    let unknown = false;
    const typed = (facts.volatileTypes?.size ?? 0) > 0;
    for (const s of statementsOf(d, prepared)) {
      // the upstream has types whose coercion may write: which of them the statement names
      const types = typed ? volatileTypeNames(s.text, facts.volatileTypes!) : [];
      const u = types === undefined ? [{ name: "(a statement sluice cannot read for its types)", why: "type" as const }] : volatileUses(facts, s, types);
      if (u.length) uses.set(s, u);
      if (u.some((x) => x.why === "unknown")) unknown = true;
    }
    if (uses.size === 0) {
      if (remember) memo.set(memoKey(d), { facts, clean: true });
      return d;
    }
    if (unknown && recheck) {
      // the function may have been created since the facts were read: read them again, once
      return o.catalog.functionFacts(session.resource, UNKNOWN_RECHECK_MS).then(
        (f) => judge(d, f, session, prepared, false),
        (e: unknown) => unavailable(session, e),
      );
    }
    const out = reevaluate(d, uses, session, prepared);
    if (remember) memo.set(d, { facts, clean: false, out });
    return out;
  };

  const reevaluate = (d: Decision, uses: Map<StatementInfo, VolatileUse[]>, session: SessionInfo, prepared: PreparedStatements | undefined): Decision => {
    const snap = o.snapshots.current();
    if (!snap) return d; // the inner enforcer denied already; nothing to raise
    const ctx: DecisionContext = { resource: session.resource, groups: session.groups, issuer: session.issuer, subject: session.subject };
    const statements = d.statements.map((s) => (uses.has(s) ? asWrite(s) : s));
    const lookup = prepared && {
      resolve: (n: string) => {
        const r = prepared.resolve(n);
        return r && uses.has(r) ? asWrite(r) : r;
      },
    };
    const e = evaluate(snap.bundle, ctx, { ok: true, statements }, lookup);
    const all = [...uses.values()].flat();
    return { ...e, reason: `${e.reason}: ${describeUses(all)}` };
  };

  const unavailable = (session: SessionInfo, e: unknown): never => {
    const why = e instanceof Error ? e.message : String(e);
    throw new SluiceError("unavailable", `the function catalog of "${session.resource}" cannot be read, so statements calling functions are refused (${why})`);
  };

  const check = (d: Decision, session: SessionInfo, prepared: PreparedStatements | undefined): EnforcerDecision => {
    if (d.action === "deny") return d;
    const now = o.catalog.functionFactsNow(session.resource);
    if (now) {
      // the hot path: a decision (or its shape) already found clean under these facts
      const seen = memo.get(memoKey(d));
      if (seen?.facts === now && seen.clean && !executes(d)) return d;
      const own = memo.get(d);
      if (own?.facts === now && own.out && !executes(d)) return own.out;
    }
    // a statement that calls, uses operators or reads relations looks at the catalog; so does one
    // that may coerce to a type (a cast, a typed literal, a DO block) when the facts are not at hand
    // or have volatile types
    let needs = false;
    const typed = now === undefined || (now.volatileTypes?.size ?? 0) > 0;
    for (const s of statementsOf(d, prepared)) if (needsFunctionFacts(s) || (typed && mayCoerce(s))) needs = true;
    if (!needs) return d;
    if (now) return judge(d, now, session, prepared, true);
    return o.catalog.functionFacts(session.resource).then(
      (f) => judge(d, f, session, prepared, true),
      (e: unknown) => unavailable(session, e),
    );
  };

  return {
    decide(sql, protocol, session, prepared) {
      const d = inner.decide(sql, protocol, session, prepared);
      return isPromise(d) ? d.then((x) => check(x, session, prepared)) : check(d, session, prepared);
    },
  };
}
