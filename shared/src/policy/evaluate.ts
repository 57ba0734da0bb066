/**
 * Policy evaluation (contract: "Policy bundle", data path steps 4–6). Pure: bundle + who/where +
 * classified statements in, a Decision out. No clock, no I/O.
 *
 * Which policies apply: those whose `resources` name the resource (or `*`), whose `groups`
 * share a group with the identity (or contain `*`), and, when the policy lists `issuers`, whose
 * list names the identity's issuer (`ctx.issuer`; unknown issuer → the policy does not apply).
 * None → the identity cannot connect (`canConnect`) and every statement is `default-deny`.
 *
 * Per statement, across all applicable policies, in this order:
 *  0. `parser-setting` — a statement that would change a setting the classifier's reading of SQL
 *     depends on (client_encoding, standard_conforming_strings, …) is denied for every identity
 *     (rule `parser-setting`): no policy or approval can make the classifier read SQL another way.
 *  1. deny — any policy's `deny` item (a class the statement exercises, or a risk it carries), any
 *     `tables.deny` pattern matching a table it reads or writes, or a `SET search_path` under a
 *     policy whose table patterns depend on the default search_path (an allow list, or a deny
 *     pattern with a glob in its table part: bare names would no longer mean what the patterns
 *     assume): rules `<policy>/deny:<item>`, `<policy>/tables.deny:<pattern>`, `<policy>/tables:search_path`.
 *     Elsewhere a search_path change is the named risk `search-path`, which a policy may deny or hold.
 *  2. permission — some policy must permit it: every class it exercises is in that policy's `allow`
 *     or `requireApproval`, and (when the policy has `tables.allow`) every table matches one of the
 *     patterns. Otherwise `default-deny` (or `<policy>/tables.allow:<table>` when only a table was
 *     missing). What every connected client needs is permitted for any identity that can connect,
 *     with no class to name (contract: "Policy bundle"): a statement the classifier marks with a
 *     `baseline` allowance (sql/client-baseline.ts: transaction control, SHOW, settings that change
 *     no privilege, FETCH/MOVE/CLOSE, DEALLOCATE, DISCARD) is judged by its risks only, never by
 *     its class, so `deny: [utility]` does not break a driver's start-up either.
 *  3. approval — any applicable policy's `requireApproval` item (class or risk) matching:
 *     `<policy>/requireApproval:<item>`, with that policy's approvers and timeout.
 *  4. allow — `<policy>/allow:<class>` of the first permitting policy, or `implicit:<allowance>`.
 * A message is allowed only if every statement is; the first denied statement decides; a message
 * with any statement needing approval needs approval. A parse failure is `parse-error` (deny).
 * The message's rule is the deciding statement's; for an allowed message, the first statement
 * allowed by a policy (a built-in allowance only when every statement had one). `statementRules`
 * holds each statement's own rule, for the record and the replay.
 *
 * TABLE PATTERNS: `schema.table`, bare `table`, `*` globs in either part (`public.*`, `*.audit_*`),
 * or `*` alone (every table). Matching is case-insensitive (unquoted identifiers fold to lower case;
 * a policy must not be evaded by a quoted spelling). A bare pattern `t` matches the references
 * `t` and `public.t`. A qualified pattern `s.t` matches `s.t`, and matches a bare reference `t` when
 * `s` matches `public`: a bare name resolves through the default search_path, which a client under
 * a policy whose patterns depend on it may not change (step 1 refuses `SET search_path` and
 * set_config('search_path', …)). A DENY pattern with a literal table name (`private.secrets`) also
 * matches the bare reference `secrets`, whatever the schema: so it holds under any search_path (one
 * a client chose, or one set server-side with ALTER ROLE … SET search_path), and a policy with only
 * such patterns lets clients choose their search_path (migration tools do: sqitch, Flyway).
 *
 * SYSTEM CATALOGS: a `tables.allow` list does not need to name them. References qualified with
 * `pg_catalog.` or `information_schema.`, and bare `pg_*` names (pg_catalog is searched first), pass
 * the allow check: every Postgres role may read them and drivers (postgres.js type discovery, psql's
 * \d) need them. `tables.deny` still applies to them, and the superuser-only catalogs (pg_authid, …)
 * are class admin in the classifier, so a read-only policy never reaches them.
 *
 * SQL-level `EXECUTE name` is judged as the statement it runs, found in the same message's earlier
 * `PREPARE` or in the session's SqlPrepared; an unknown name is `unknown-prepared-statement` (deny).
 */
import type { Classification, StatementInfo } from "../sql/statement-info.js";
import type { BaselineAllowance, Bundle, PolicySpec, StatementClass } from "./bundle.js";
import type { Decision, DecisionContext } from "./decision.js";

/** What evaluation needs from the session's prepared-statement registry (SqlPrepared implements it). */
export interface PreparedLookup {
  resolve(name: string): StatementInfo | undefined;
}

const DEFAULT_APPROVAL_TIMEOUT_MS = 10 * 60_000;

/** A policy with its patterns compiled once per policy object. */
interface Compiled {
  spec: PolicySpec;
  allow: ReadonlySet<string>;
  approval: readonly string[];
  deny: readonly string[];
  tablesAllow?: readonly TablePattern[];
  tablesDeny: readonly TablePattern[];
  /** bare table names must keep their default meaning for this policy's patterns (see searchPathRestricted) */
  searchPathMatters: boolean;
  approvalInfo: { approvers: string[]; timeoutMs: number };
}

interface TablePattern {
  source: string;
  /** undefined = bare pattern */
  schema?: RegExp;
  schemaIsPublicMatch: boolean;
  table: RegExp;
  /** the table part has no glob */
  tableIsLiteral: boolean;
  everything: boolean;
}

const compiledCache = new WeakMap<PolicySpec, Compiled>();

function globToRegExp(glob: string): RegExp {
  const body = glob
    .toLowerCase()
    .split("*")
    .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`);
}

function compilePattern(source: string): TablePattern {
  const s = source.trim();
  const dot = s.indexOf(".");
  if (dot < 0) {
    return { source, table: globToRegExp(s), schemaIsPublicMatch: true, tableIsLiteral: !s.includes("*"), everything: s === "*" };
  }
  const schema = globToRegExp(s.slice(0, dot));
  return {
    source,
    schema,
    schemaIsPublicMatch: schema.test("public"),
    table: globToRegExp(s.slice(dot + 1)),
    tableIsLiteral: !s.slice(dot + 1).includes("*"),
    everything: s === "*.*",
  };
}

/** Parses `10m`, `30s`, `1h`, `500ms`, `1d` (a pure copy of the rule config uses; policy may not import config). */
function durationMs(s: string | undefined): number {
  const m = s ? /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim()) : null;
  if (!m) return DEFAULT_APPROVAL_TIMEOUT_MS;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

function compile(p: PolicySpec): Compiled {
  let c = compiledCache.get(p);
  if (c) return c;
  const tablesDeny = (p.tables?.deny ?? []).map(compilePattern);
  c = {
    spec: p,
    allow: new Set(p.allow),
    approval: p.requireApproval ?? [],
    deny: p.deny ?? [],
    tablesAllow: p.tables?.allow ? p.tables.allow.map(compilePattern) : undefined,
    tablesDeny,
    // an allow list resolves bare names as public.; a deny pattern with a glob in its table part
    // (`vault.*`) matches a bare name only through the default search_path. A deny pattern naming
    // its table literally matches the bare name in any schema, so it holds whatever the path.
    searchPathMatters: !!p.tables?.allow?.length || tablesDeny.some((t) => !t.tableIsLiteral && !t.everything),
    approvalInfo: {
      approvers: [...(p.approval?.approvers ?? [])],
      timeoutMs: durationMs(p.approval?.timeout),
    },
  };
  compiledCache.set(p, c);
  return c;
}

/** Does a table reference (`schema.table` or bare `table`) match a pattern? See the header for the rule. */
export function tableMatches(pattern: string, table: string, forDeny: boolean): boolean {
  return matchCompiled(compilePattern(pattern), table, forDeny);
}

function matchCompiled(p: TablePattern, ref: string, forDeny: boolean): boolean {
  if (p.everything) return true;
  const r = ref.toLowerCase();
  const dot = r.lastIndexOf(".");
  const schema = dot < 0 ? undefined : r.slice(0, dot);
  const table = dot < 0 ? r : r.slice(dot + 1);
  if (!p.table.test(table)) return false;
  if (p.schema === undefined) return schema === undefined || schema === "public";
  if (schema === undefined) return p.schemaIsPublicMatch || (forDeny && p.tableIsLiteral);
  return p.schema.test(schema);
}

/** System catalog references that `tables.allow` lists need not name (see the header). */
function isCatalogReference(ref: string): boolean {
  const dot = ref.lastIndexOf(".");
  if (dot < 0) return ref.startsWith("pg_");
  const schema = ref.slice(0, dot).toLowerCase();
  return schema === "pg_catalog" || schema === "information_schema";
}

function policyApplies(p: PolicySpec, ctx: DecisionContext): boolean {
  if (!p.resources.includes(ctx.resource) && !p.resources.includes("*")) return false;
  // `!= null`: a bundle that skipped normalizeBundle may carry `issuers: null` (= not scoped)
  if (p.issuers != null && (ctx.issuer === undefined || !p.issuers.includes(ctx.issuer))) return false;
  if (p.groups.includes("*")) return true;
  for (const g of p.groups) if (ctx.groups.includes(g)) return true;
  return false;
}

function applicable(bundle: Bundle, ctx: DecisionContext): Compiled[] {
  const out: Compiled[] = [];
  for (const p of bundle.policies) if (policyApplies(p, ctx)) out.push(compile(p));
  return out;
}

/**
 * An identity that matches no policy for a resource cannot connect (contract: default deny). The
 * data plane's connect check (mayConnect) delegates here, so connect and statements share one rule.
 */
export function canConnect(bundle: Bundle, ctx: DecisionContext): boolean {
  for (const p of bundle.policies) if (policyApplies(p, ctx)) return true;
  return false;
}

/**
 * Whether the identity may not choose its session's search_path: some policy that applies to it
 * has table patterns that depend on what bare names mean (an allow list, or a deny pattern with a
 * glob in its table part; SET search_path is then denied in step 1), or denies or holds the
 * `search-path` risk. The data plane refuses a search_path asked for at connect when this is true
 * (a start-up parameter cannot wait for an approval).
 */
export function searchPathRestricted(bundle: Bundle, ctx: DecisionContext): boolean {
  for (const p of applicable(bundle, ctx)) {
    if (p.searchPathMatters || p.deny.includes("search-path") || p.approval.includes("search-path")) return true;
  }
  return false;
}

/** The view of one statement evaluation works on: EXECUTE resolved to what it runs. */
interface Effective {
  classes: readonly StatementClass[];
  risks: readonly string[];
  tables: readonly string[];
  setsSearchPath: boolean;
  /** the built-in allowance that permits it (its classes are then not judged) */
  baseline?: BaselineAllowance;
}

function effective(s: StatementInfo, resolved: StatementInfo[]): Effective {
  const base = s.kind === "ExecuteStmt" ? [] : (s.classes ?? [s.class]);
  if (resolved.length === 0) {
    return {
      classes: s.baseline ? [] : base,
      risks: s.risks,
      tables: s.tables.write.length ? [...s.tables.read, ...s.tables.write] : s.tables.read,
      setsSearchPath: !!s.setsSearchPath,
      baseline: s.baseline,
    };
  }
  const classes = new Set<StatementClass>(base);
  const risks = new Set<string>(s.risks);
  const tables = new Set<string>([...s.tables.read, ...s.tables.write]);
  let sp = !!s.setsSearchPath;
  for (const r of resolved) {
    for (const c of r.classes ?? [r.class]) classes.add(c);
    for (const x of r.risks) risks.add(x);
    for (const t of r.tables.read) tables.add(t);
    for (const t of r.tables.write) tables.add(t);
    sp ||= !!r.setsSearchPath;
  }
  if (classes.has("write")) classes.delete("read");
  return { classes: [...classes], risks: [...risks], tables: [...tables], setsSearchPath: sp };
}

type Verdict =
  | { action: "allow"; rule: string; policy?: string; reason: string }
  | { action: "deny"; rule: string; policy?: string; reason: string }
  | { action: "approve"; rule: string; policy: string; reason: string; approval: { approvers: string[]; timeoutMs: number } };

/** The reason given for `parser-setting`, whatever the policy (see sql/session-settings.ts). */
const PARSER_SETTING_REASON =
  "sluice reads SQL as the server does only with client_encoding UTF8 and standard_conforming_strings, backslash_quote and escape_string_warning at their defaults; this statement would change one of them";

function judge(e: Effective, policies: readonly Compiled[], ctx: DecisionContext): Verdict {
  const name = (c: Compiled) => c.spec.name;
  // 0. a statement that would change how the server reads later statements: never, for anyone
  if (e.risks.includes("parser-setting")) return { action: "deny", rule: "parser-setting", reason: PARSER_SETTING_REASON };
  // 1. deny rules
  for (const p of policies) {
    for (const item of p.deny) {
      if ((e.classes as readonly string[]).includes(item) || e.risks.includes(item)) {
        return { action: "deny", rule: `${name(p)}/deny:${item}`, policy: name(p), reason: `policy ${name(p)} denies ${item}` };
      }
    }
    for (const pat of p.tablesDeny) {
      for (const t of e.tables) {
        if (matchCompiled(pat, t, true)) {
          return {
            action: "deny",
            rule: `${name(p)}/tables.deny:${pat.source}`,
            policy: name(p),
            reason: `policy ${name(p)} denies table ${t} (pattern ${pat.source})`,
          };
        }
      }
    }
    if (p.searchPathMatters && e.setsSearchPath) {
      return {
        action: "deny",
        rule: `${name(p)}/tables:search_path`,
        policy: name(p),
        reason: `policy ${name(p)} restricts tables by patterns that depend on the default search_path, so the search_path may not be changed`,
      };
    }
  }
  // 2. some policy must permit every class and every table (a built-in allowance permits by itself)
  let permitting: Compiled | undefined;
  let tableMiss: { policy: string; table: string } | undefined;
  for (const p of e.baseline ? [] : policies) {
    let classesOk = e.classes.length > 0;
    for (const c of e.classes) if (!p.allow.has(c) && !p.approval.includes(c)) classesOk = false;
    if (!classesOk) continue;
    if (p.tablesAllow) {
      const miss = e.tables.find((t) => !isCatalogReference(t) && !p.tablesAllow!.some((pat) => matchCompiled(pat, t, false)));
      if (miss !== undefined) {
        tableMiss ??= { policy: name(p), table: miss };
        continue;
      }
    }
    permitting = p;
    break;
  }
  if (!permitting && !e.baseline) {
    if (tableMiss) {
      return {
        action: "deny",
        rule: `${tableMiss.policy}/tables.allow:${tableMiss.table}`,
        policy: tableMiss.policy,
        reason: `table ${tableMiss.table} is not among the tables policy ${tableMiss.policy} allows`,
      };
    }
    return {
      action: "deny",
      rule: "default-deny",
      reason: `no policy allows ${e.classes.join("+") || "this statement"} for groups [${ctx.groups.join(", ")}] on ${ctx.resource}`,
    };
  }
  // 3. approval rules (any applicable policy)
  for (const p of policies) {
    for (const item of p.approval) {
      if ((e.classes as readonly string[]).includes(item) || e.risks.includes(item)) {
        return {
          action: "approve",
          rule: `${name(p)}/requireApproval:${item}`,
          policy: name(p),
          reason: `policy ${name(p)} requires approval for ${item}`,
          approval: { approvers: [...p.approvalInfo.approvers], timeoutMs: p.approvalInfo.timeoutMs },
        };
      }
    }
  }
  // 4. allow
  if (!permitting) return { action: "allow", rule: `implicit:${e.baseline}`, reason: BASELINE_REASON[e.baseline!] };
  const top = e.classes[e.classes.length - 1];
  return { action: "allow", rule: `${name(permitting)}/allow:${top}`, policy: name(permitting), reason: `policy ${name(permitting)} allows ${e.classes.join("+")}` };
}

/** Why a built-in allowance allowed a statement (the reason of `implicit:<allowance>`). */
const BASELINE_REASON: Readonly<Record<BaselineAllowance, string>> = {
  "transaction-control": "transaction control is allowed to every connected identity",
  show: "SHOW is allowed to every connected identity",
  "session-setting": "a session setting that changes no privilege is allowed to every connected identity",
  cursor: "FETCH, MOVE and CLOSE of a cursor are allowed to every connected identity (its DECLARE was judged as its query)",
  "prepared-statement": "DEALLOCATE is allowed to every connected identity (PREPARE and EXECUTE are judged as what they run)",
  discard: "DISCARD is allowed to every connected identity",
};

/**
 * Decides one client message (all its statements). `prepared` resolves SQL-level EXECUTE names;
 * PREPAREs earlier in the same message are seen too.
 */
export function evaluate(bundle: Bundle, ctx: DecisionContext, c: Classification, prepared?: PreparedLookup): Decision {
  if (!c.ok) {
    return {
      action: "deny",
      rule: "parse-error",
      reason: `statement could not be parsed: ${c.error}`,
      statementClass: "unknown",
      statementIndex: 0,
      statements: [],
    };
  }
  const statements = c.statements;
  const policies = applicable(bundle, ctx);
  const first = statements[0];
  if (policies.length === 0) {
    return {
      action: "deny",
      rule: "default-deny",
      reason: `no policy for groups [${ctx.groups.join(", ")}] on ${ctx.resource}`,
      statementClass: first ? first.class : "unknown",
      statementIndex: 0,
      statements,
    };
  }
  if (!first) {
    return { action: "allow", rule: "empty-query", reason: "empty query", statementClass: "unknown", statementIndex: 0, statements };
  }
  let local: Map<string, StatementInfo> | undefined;
  let approval: { v: Verdict & { action: "approve" }; index: number } | undefined;
  let allowed: { v: Verdict; index: number } | undefined;
  let builtin: { v: Verdict; index: number } | undefined;
  const statementRules: string[] = [];
  for (let i = 0; i < statements.length; i++) {
    const s = statements[i];
    const resolved: StatementInfo[] = [];
    if (s.executes) {
      for (const n of s.executes) {
        const r = local?.get(n) ?? prepared?.resolve(n);
        if (!r) {
          statementRules.push("unknown-prepared-statement");
          return {
            action: "deny",
            rule: "unknown-prepared-statement",
            reason: `prepared statement ${JSON.stringify(n)} is not known to the gateway`,
            statementClass: s.class,
            statementIndex: i,
            statements,
            statementRules,
          };
        }
        resolved.push(r);
      }
    }
    const v = judge(effective(s, resolved), policies, ctx);
    const cls = resolved.length && s.kind === "ExecuteStmt" ? resolved[0].class : s.class;
    statementRules.push(v.rule);
    if (v.action === "deny") {
      return { action: "deny", rule: v.rule, policy: v.policy, reason: v.reason, statementClass: cls, statementIndex: i, statements, statementRules };
    }
    if (v.action === "approve") approval ??= { v, index: i };
    else if (v.policy === undefined) builtin ??= { v, index: i };
    else allowed ??= { v, index: i };
    if (s.prepares !== undefined) (local ??= new Map()).set(s.prepares, s);
  }
  if (approval) {
    const { v, index } = approval;
    return {
      action: "approve",
      rule: v.rule,
      policy: v.policy,
      reason: v.reason,
      statementClass: statements[index].class,
      statementIndex: index,
      statements,
      statementRules,
      approval: v.approval,
    };
  }
  const { v, index } = (allowed ?? builtin)!;
  return { action: "allow", rule: v.rule, policy: v.policy, reason: v.reason, statementClass: statements[index].class, statementIndex: index, statements, statementRules };
}

/** Whether a decision depends on session state (SQL-level EXECUTE) and so must not be cached by text. */
export function dependsOnSession(c: Classification): boolean {
  if (!c.ok) return false;
  for (const s of c.statements) if (s.executes) return true;
  return false;
}
