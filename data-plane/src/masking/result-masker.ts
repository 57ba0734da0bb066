/**
 * The session's ResultMasker (data-plane/src/session/session-hooks.ts): compiles the current
 * bundle's `masking` entries per resource, plans each result from (B) RowDescription + catalog +
 * the statement's lineage, and rewrites (B) DataRow / CopyData frames. Pure apart from awaiting
 * the injected CatalogLookup; no buffering: each frame is rewritten on its own.
 *
 * A statement's lineage, COPY and cursor facts come from its classification's annotation
 * (statement-annotation.ts, read off the tree where it was classified: a long statement's in a
 * classifier worker). Only a statement without one (a decision shared by shape, a hand-built
 * StatementInfo, a message without statements) is parsed here, and only up to INLINE_MAX_BYTES,
 * the length the classifier parses on this thread too: a longer one is not analysed, and its
 * results are refused rather than guessed.
 */
import { INLINE_MAX_BYTES, loadParser, parseSql } from "@sluice/shared/sql";
import type { MaskingSpec } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import type { StatementInfo } from "@sluice/shared/sql";
import type { MaskPlan, MessageContext, ResultContext, ResultMasker, RowField } from "../session/session-hooks.js";
import type { CatalogLookup } from "./catalog-lookup.js";
import { maskCopyDataFrame } from "./copy-text.js";
import { maskDataRowFrame } from "./data-row.js";
import { alignLineage, type OutputLineage, type SourceUse } from "./lineage.js";
import { annotateStatement, type CopyOutFacts, type ResultAnnotation } from "./statement-annotation.js";
import { compileMasking, maskLooseText, planMask, summarizePlan, type MaskSummary, type CompiledMasking, type FieldFacts, type MaskPlanData, type ResolvedColumn } from "./mask-rules.js";
import { isBuiltinType } from "./type-codecs.js";
import { CLEAN, indexExposure, statementExposure, type Exposure, type ExposureIndex, type SyntaxUses } from "./exposure.js";
import { screenMessageFields, type MessageKind } from "./message-fields.js";

export interface ResultMaskerOptions {
  /** the current masking entries and the snapshot revision they come from */
  masking(): { revision: number; specs: readonly MaskingSpec[] } | undefined;
  catalog: CatalogLookup;
  /** HMAC key of the `hash` strategy (data-plane config); never logged */
  hashKey: Buffer;
}

export interface SluiceResultMasker extends ResultMasker {
  planFor(fields: readonly RowField[], ctx: ResultContext): MaskPlanData | Promise<MaskPlanData | null> | null;
  maskDataRow(plan: MaskPlan, frame: Buffer): Buffer;
  planForCopyOut(ctx: ResultContext): Promise<MaskPlanData | null | "deny"> | null;
  refusal(ctx: ResultContext): Promise<string | undefined> | undefined;
  maskCopyData(plan: MaskPlan, frame: Buffer): Buffer;
  /** true when the resource has masking rules (false = every result of it takes the raw path) */
  masks(resource: string): boolean;
  /**
   * For the recorder: masks a loose value (bound parameter, SQL text) of a resource with every
   * classifier; unchanged when the resource has no masking rules.
   */
  maskLooseText(resource: string, s: string): string;
  /** rule, column and classifiers of a plan, for events (never a value) */
  describe(plan: MaskPlan): MaskSummary[];
  screenMessage(fields: Readonly<Record<string, string>>, kind: MessageKind, ctx: MessageContext): Record<string, string> | null | Promise<Record<string, string> | null>;
  screenParameter(name: string, value: string, ctx: MessageContext): string | null | Promise<string | null>;
}

/** reported settings (GUC_REPORT) whose values the server takes from a fixed set: they cannot carry a value */
const ENUMERATED_PARAMETERS = new Set([
  "datestyle", "intervalstyle", "integer_datetimes", "is_superuser", "server_encoding", "server_version",
  "client_encoding", "standard_conforming_strings", "in_hot_standby", "default_transaction_read_only",
  "scram_iterations", "session_authorization",
]);

/** what COPY TO STDOUT of masked columns is refused with, whatever else the reason says */
export const COPY_OUT_MASKED = "COPY TO STDOUT of a result with masking rules is not allowed";
const UNATTRIBUTED = { deny: `${COPY_OUT_MASKED}: sluice cannot tell which columns it copies` } as const;
let parserReady: Promise<void> | undefined;
const parsedHere = new Map<string, ResultAnnotation[]>();

/** Whether the classifier parses `sql` on this thread too (UTF-8 takes at most 3 bytes per UTF-16 unit). */
function parsedInline(sql: string): boolean {
  return sql.length * 3 <= INLINE_MAX_BYTES || (sql.length <= INLINE_MAX_BYTES && Buffer.byteLength(sql, "utf8") <= INLINE_MAX_BYTES);
}

const NOT_ANALYSED: ResultAnnotation = {
  ok: false,
  why: `it was not analysed where it was classified, and sluice parses no statement longer than ${INLINE_MAX_BYTES} bytes on the relay's thread`,
};

/**
 * The annotations of the statements of a text without one, parsed here: a text that does not parse
 * has none (it gets no lineage; the server refuses it), one too long to parse here is NOT_ANALYSED.
 */
async function annotateText(sql: string): Promise<ResultAnnotation[]> {
  const hit = parsedHere.get(sql);
  if (hit !== undefined) return hit;
  if (!parsedInline(sql)) return [NOT_ANALYSED];
  // the guarded parser: a statement that breaks it retires its instance, not the node's masking
  await (parserReady ??= loadParser().then(() => undefined));
  let out: ResultAnnotation[];
  try {
    out = (parseSql(sql).stmts ?? []).map((s: any) => {
      const kind = Object.keys(s.stmt)[0]!;
      return annotateStatement(kind, s.stmt[kind]);
    });
  } catch {
    out = [];
  }
  if (parsedHere.size > 2000) parsedHere.clear();
  parsedHere.set(sql, out);
  return out;
}

function isAnnotation(a: unknown): a is ResultAnnotation {
  return typeof a === "object" && a !== null && typeof (a as { ok?: unknown }).ok === "boolean";
}

/** A statement's annotation from its classification, or read off its text here. */
function annotationsOf(s: StatementInfo): ResultAnnotation[] | Promise<ResultAnnotation[]> {
  return isAnnotation(s.annotation) ? [s.annotation] : annotateText(s.text);
}

function mergeLineages(all: OutputLineage[][]): OutputLineage[] | null {
  if (all.length === 0) return null;
  if (all.length === 1) return all[0]!;
  // several statements could have produced this result: take the union, position by position
  return all[0]!.map((c, i) => ({
    name: c.name,
    sources: all.flatMap((l) => l[i]!.sources),
    unknown: all.some((l) => l[i]!.unknown),
  }));
}

function planKey(fields: readonly RowField[], ctx: ResultContext): string {
  let k = `${ctx.session.resource}\u0000${ctx.statementIndex ?? ""}\u0000`;
  k += ctx.statements.length ? ctx.statements.map((s) => s.text).join("\u0001") : ctx.sql;
  for (const f of fields) k += `\u0000${f.name}/${f.tableOid}/${f.columnAttr}/${f.typeOid}/${f.format}`;
  return k;
}

export function createResultMasker(opts: ResultMaskerOptions): SluiceResultMasker {
  let compiledRevision = -1;
  const compiled = new Map<string, CompiledMasking | null>();
  const planCache = new Map<string, { version: string; plan: MaskPlanData | null }>();

  function rulesFor(resource: string): CompiledMasking | null {
    const cur = opts.masking();
    if (!cur) return null;
    if (cur.revision !== compiledRevision) {
      compiled.clear();
      compiledRevision = cur.revision;
    }
    let c = compiled.get(resource);
    if (c === undefined) {
      c = compileMasking(cur.specs, resource, opts.hashKey);
      compiled.set(resource, c);
    }
    return c;
  }

  /** the annotations of the statements that may have produced the result */
  async function candidates(ctx: ResultContext): Promise<ResultAnnotation[]> {
    const own = ctx.statementIndex !== undefined ? ctx.statements[ctx.statementIndex] : undefined;
    if (!own && !ctx.statements.length) return annotateText(ctx.sql);
    const out: ResultAnnotation[] = [];
    for (const s of own ? [own] : ctx.statements) out.push(...(await annotationsOf(s)));
    return out;
  }

  /** Adds the base columns behind lineage sources that name views. */
  async function expandViews(c: CompiledMasking, resource: string, l: OutputLineage): Promise<OutputLineage> {
    if (!c.columnRules.length || !l.sources.length) return l;
    const r = await opts.catalog.expandSources(resource, l.sources);
    return { ...l, sources: r.uses, unknown: l.unknown || r.unknown };
  }

  async function planFor(fields: readonly RowField[], ctx: ResultContext): Promise<MaskPlanData | null> {
    const resource = ctx.session.resource;
    const c = rulesFor(resource);
    if (!c) return null;
    const found = await candidates(ctx);
    // one statement that could not be traced leaves every column's lineage unknown
    const lineages: OutputLineage[][] = [];
    let traced = true;
    for (const a of found) {
      if (!a.ok) traced = false;
      else if (a.lineage) {
        const l = alignLineage(a.lineage, fields.length);
        if (l) lineages.push(l);
      }
    }
    const lineage = traced ? mergeLineages(lineages) : null;
    const origins = await opts.catalog.resolveFields(resource, fields);
    const custom = [...new Set(fields.map((f) => f.typeOid).filter((o) => !isBuiltinType(o)))];
    const typeNames = custom.length ? await opts.catalog.typeNames(resource, custom) : new Map<number, string>();
    const facts: FieldFacts[] = [];
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      let l: OutputLineage = lineage?.[i] ?? { name: f.name, sources: [], unknown: true };
      // a plain table column: RowDescription + catalog are authoritative, whatever the lineage says
      if (f.tableOid !== 0) l = { ...l, unknown: false };
      // a view column: what its definition reads counts as lineage
      const viewUses = origins[i]!.uses;
      if (viewUses?.length) l = { ...l, sources: [...l.sources, ...viewUses] };
      l = await expandViews(c, resource, l);
      facts.push({
        name: f.name,
        typeOid: f.typeOid,
        typeName: typeNames.get(f.typeOid),
        format: f.format,
        origins: origins[i]!.origins,
        originUnknown: origins[i]!.unknown,
        lineage: l,
      });
    }
    return planMask(c, facts);
  }

  async function planForCopyOut(ctx: ResultContext): Promise<MaskPlanData | null | "deny"> {
    const r = await copyOutPlan(ctx);
    return r !== null && "deny" in r ? "deny" : r;
  }

  /** the plan of a COPY TO STDOUT's data, or why it cannot have one */
  async function copyOutPlan(ctx: ResultContext): Promise<MaskPlanData | null | { deny: string }> {
    const resource = ctx.session.resource;
    const c = rulesFor(resource);
    if (!c) return null;
    const copy = (await candidates(ctx)).find((a) => a.ok && a.copyOut);
    if (!copy?.ok || !copy.copyOut) return UNATTRIBUTED; // a CopyOutResponse we cannot attribute to a statement: fail closed
    return copyPlanOf(c, resource, copy.copyOut);
  }

  async function copyPlanOf(c: CompiledMasking, resource: string, copy: CopyOutFacts): Promise<MaskPlanData | null | { deny: string }> {
    const unattributed = UNATTRIBUTED;
    let format = "text";
    let plainText = true;
    for (const o of copy.options) {
      if (o.name === "format") format = (o.value ?? "text").toLowerCase();
      // the text format's own delimiter and NULL string, spelled out (PHP's pg_copy_to always
      // sends DELIMITER E'\t' NULL AS E'\\N'), keep the row syntax this masker parses
      else if (o.name === "delimiter" && o.value === "\t") continue;
      else if (o.name === "null" && o.value === "\\N") continue;
      // other delimiters / NULL strings change the row syntax this masker parses
      else if (["delimiter", "null", "quote", "escape", "encoding", "force_quote"].includes(o.name)) plainText = false;
    }
    let lineage: OutputLineage[] | null = null;
    if (copy.relation) {
      const rv = copy.relation;
      const cols: ResolvedColumn[] | null = copy.columns
        ? copy.columns.map((column) => ({ schema: rv.schema, table: rv.table, column }))
        : await opts.catalog.tableColumns(resource, rv.schema, rv.table);
      if (!cols) return unattributed;
      lineage = cols.map((col) => ({ name: col.column, sources: [{ col: { schema: col.schema, table: col.table, column: col.column } }], unknown: false }));
    } else if (copy.query !== undefined) {
      const items = copy.query;
      if (!items) return unattributed;
      lineage = [];
      for (const it of items) {
        if (it.star) {
          if (it.star.table === "?") return unattributed;
          const cols = await opts.catalog.tableColumns(resource, it.star.schema, it.star.table);
          if (!cols) return unattributed;
          for (const col of cols)
            lineage.push({ name: col.column, sources: [{ col: { schema: col.schema, table: col.table, column: col.column } }], unknown: false });
        } else lineage.push(it);
      }
    } else return unattributed;
    const facts: FieldFacts[] = [];
    for (const l0 of lineage) {
      // COPY has no RowDescription: every column is judged by lineage; types are unknown, so
      // classifiers scan every column as text
      const l = await expandViews(c, resource, l0);
      facts.push({ name: l.name, typeOid: 25, format: 0, origins: [], lineage: l });
    }
    const plan = planMask(c, facts);
    if (!plan) return null;
    if (format !== "text") return { deny: `${COPY_OUT_MASKED} in ${format} format: only the text format can be masked` };
    if (!plainText) return { deny: `${COPY_OUT_MASKED} with its own delimiter, NULL, quote, escape, encoding or FORCE_QUOTE: only the default text format can be masked` };
    return plan;
  }

  /** why a statement's results cannot be masked, before it runs (ResultMasker.refusal) */
  async function refusal(ctx: ResultContext): Promise<string | undefined> {
    const c = rulesFor(ctx.session.resource);
    if (!c) return undefined;
    for (const a of await candidates(ctx)) {
      // what could not be read might be a COPY TO or a BINARY cursor: it does not run unmasked
      if (!a.ok) return `the results of this statement cannot be masked on a resource with masking rules: ${a.why}`;
      if (a.copyOut) {
        const r = await copyPlanOf(c, ctx.session.resource, a.copyOut);
        if (r !== null && "deny" in r) return r.deny;
      }
      // FETCH from a BINARY cursor in a simple Query returns binary rows the masker may not be able
      // to rewrite, and only once the FETCH has run; in the extended protocol Bind chooses the format
      if (a.binaryCursor) return "a BINARY cursor is not allowed on a resource with masking rules (its rows could not be masked): declare it without BINARY";
    }
    return undefined;
  }

  // the catalog's exposure facts judged against the current rules, per resource; undefined = could not be read
  const exposureIndexes = new Map<string, { version: string; index: ExposureIndex | undefined }>();

  function exposureIndex(resource: string, c: CompiledMasking): ExposureIndex | undefined | Promise<ExposureIndex | undefined> {
    const load = opts.catalog.exposureFacts;
    if (!load) return undefined;
    const version = `${compiledRevision}/${opts.catalog.version?.(resource) ?? "-"}`;
    const hit = exposureIndexes.get(resource);
    if (hit && hit.version === version) return hit.index;
    return load.call(opts.catalog, resource).then(
      (facts) => {
        const index = indexExposure(c, facts);
        exposureIndexes.set(resource, { version, index });
        return index;
      },
      // unreadable: nothing is proven clean until the catalog's next period (no retry per message)
      () => {
        exposureIndexes.set(resource, { version, index: undefined });
        return undefined;
      },
    );
  }

  /** the operators and casts of each statement, when the database has some that run user code */
  async function syntaxOf(statements: readonly StatementInfo[]): Promise<Array<SyntaxUses | undefined>> {
    const out: Array<SyntaxUses | undefined> = [];
    for (const s of statements) {
      const found = await annotationsOf(s);
      let u: SyntaxUses | undefined = found.length ? { operators: [], castTypes: [] } : undefined;
      for (const a of found) {
        const x = a.ok ? a.syntax : undefined;
        u = u && x ? { operators: [...u.operators, ...x.operators], castTypes: [...u.castTypes, ...x.castTypes] } : undefined;
      }
      out.push(u);
    }
    return out;
  }

  /** how far what `ctx` names may have seen masked data (exposure.ts) */
  function exposureOf(c: CompiledMasking, ctx: MessageContext): Exposure | Promise<Exposure> {
    switch (ctx.source) {
      case "none":
      case "analysis":
        // parse analysis and describing run no query and read no row: the text quotes only the client's own SQL and names
        return CLEAN;
      case "unattributed":
        return { level: "code", reasons: ["sluice cannot tie the message to a statement it decided (a Bind plans and may run functions, a Sync commits)"] };
      case "statement": {
        const statements = ctx.statements ?? [];
        const judge = (index: ExposureIndex | undefined, syntax?: Array<SyntaxUses | undefined>) =>
          statementExposure(statements, index, syntax ? (i) => syntax[i] : undefined);
        const withIndex = (index: ExposureIndex | undefined) => {
          if (index && (index.userOperators.size || index.userCastTypes.size) && statements.length)
            return syntaxOf(statements).then((syntax) => judge(index, syntax));
          return judge(index);
        };
        const index = exposureIndex(ctx.session.resource, c);
        return isPromiseLike(index) ? index.then(withIndex) : withIndex(index);
      }
    }
  }

  function then<T, R>(x: T | Promise<T>, f: (v: T) => R): R | Promise<R> {
    return isPromiseLike(x) ? x.then(f) : f(x);
  }

  function screenMessage(
    fields: Readonly<Record<string, string>>,
    kind: MessageKind,
    ctx: MessageContext,
  ): Record<string, string> | null | Promise<Record<string, string> | null> {
    const c = rulesFor(ctx.session.resource);
    if (!c) return null;
    return then(exposureOf(c, ctx), (e) => screenMessageFields(fields, kind, e, (s) => maskLooseText(c, s)));
  }

  /**
   * A setting the server reports while a statement runs (ParameterStatus): `set_config(
   * 'application_name', <a masked value>, …)` would hand the value over. Settings whose values are
   * a fixed set pass; any other (application_name, TimeZone's free-form specs, what a server adds)
   * gets the classifiers, and an empty value where the statement may have read masked data.
   */
  function screenParameter(name: string, value: string, ctx: MessageContext): string | null | Promise<string | null> {
    const c = rulesFor(ctx.session.resource);
    if (!c || ENUMERATED_PARAMETERS.has(name.toLowerCase())) return null;
    return then(exposureOf(c, ctx), (e) => {
      const v = e.level === "clean" ? maskLooseText(c, value) : "";
      return v === value ? null : v;
    });
  }

  return {
    screenMessage,
    screenParameter,
    masks: (resource) => rulesFor(resource) !== null,
    maskLooseText(resource, s) {
      const c = rulesFor(resource);
      return c ? maskLooseText(c, s) : s;
    },
    describe: (plan) => summarizePlan(plan as MaskPlanData),
    planFor(fields, ctx) {
      // the raw fast path is decided synchronously: no promise, no catalog round trip
      const resource = ctx.session.resource;
      if (!rulesFor(resource)) return null;
      // a statement seen before with the same result shape reuses its plan synchronously (a
      // prepared statement executed in a loop costs one lookup, not one per Execute)
      const key = planKey(fields, ctx);
      const version = `${compiledRevision}/${opts.catalog.version?.(resource) ?? "-"}`;
      const hit = planCache.get(key);
      if (hit && hit.version === version) return hit.plan;
      return planFor(fields, ctx).then((plan) => {
        if (planCache.size >= 2000) planCache.clear();
        planCache.set(key, { version, plan });
        return plan;
      });
    },
    maskDataRow(plan, frame) {
      return maskDataRowFrame(plan as MaskPlanData, frame);
    },
    planForCopyOut(ctx) {
      if (!rulesFor(ctx.session.resource)) return null;
      return planForCopyOut(ctx);
    },
    refusal(ctx) {
      if (!rulesFor(ctx.session.resource)) return undefined;
      return refusal(ctx);
    },
    maskCopyData(plan, frame) {
      return maskCopyDataFrame(plan as MaskPlanData, frame);
    },
  };
}

function isPromiseLike<T>(x: T | Promise<T>): x is Promise<T> {
  return typeof (x as { then?: unknown } | undefined)?.then === "function";
}

/** The message a session sends (42501) when a result cannot be masked. */
export function maskingDenial(err: unknown): SluiceError {
  return SluiceError.is(err) ? err : new SluiceError("permission_denied", "result cannot be masked", undefined, { cause: err });
}
