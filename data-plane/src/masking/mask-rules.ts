/**
 * Compiles the bundle's `masking` entries for one resource and plans, per result, which fields
 * get which treatment. Pure.
 */
import type { MaskingSpec, MaskStrategy } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import { maskMatches } from "./mask-strategies.js";
import {
  BUILTIN_CLASSIFIERS,
  scanValue,
  builtinClassifier,
  customClassifier,
  isBuiltinClassifier,
  type Classifier,
  type ValueMatch,
} from "./classifiers.js";
import type { OutputLineage, SourceColumn } from "./lineage.js";
import { compileFastOps, type FastOps } from "./fast-mask.js";
import { canonicalTypeName, codecFor, type FieldCodec } from "./type-codecs.js";

interface ColumnRule {
  schema?: string;
  table?: string;
  column: string;
  strategy: MaskStrategy;
  rule: string;
}

export interface Scanner {
  classifier: Classifier;
  strategy: MaskStrategy;
  rule: string;
}

export interface CompiledMasking {
  resource: string;
  columnRules: ColumnRule[];
  /** lower-case type name → strategy */
  typeRules: Map<string, { strategy: MaskStrategy; rule: string }>;
  /** classifiers the bundle asked for: scanned in every text/JSON field not already masked whole */
  scanners: Scanner[];
  /** every builtin (+ custom) classifier: scanned in fields whose lineage is unknown */
  fallbackScanners: Scanner[];
  /** strongest strategy among the entries: used for unknown lineage */
  defaultStrategy: MaskStrategy;
  hashKey: Buffer;
}

const STRENGTH: Record<MaskStrategy, number> = { partial: 1, hash: 2, redact: 3 };

function stronger(a: MaskStrategy, b: MaskStrategy): MaskStrategy {
  return STRENGTH[a] >= STRENGTH[b] ? a : b;
}

/** Null when no entry names the resource: that resource's results take the raw fast path. */
export function compileMasking(specs: readonly MaskingSpec[], resource: string, hashKey: Buffer): CompiledMasking | null {
  const mine = specs.map((s, i) => ({ s, i })).filter(({ s }) => s.resources.includes(resource) || s.resources.includes("*"));
  if (mine.length === 0) return null;
  const c: CompiledMasking = {
    resource,
    columnRules: [],
    typeRules: new Map(),
    scanners: [],
    fallbackScanners: [],
    defaultStrategy: "partial",
    hashKey,
  };
  const customAll: Scanner[] = [];
  for (const { s, i } of mine) {
    const rule = s.name ?? `masking[${i}]`;
    c.defaultStrategy = stronger(c.defaultStrategy, s.strategy);
    for (const col of s.columns ?? []) {
      const parts = col.toLowerCase().split(".");
      const column = parts.pop()!;
      const table = parts.pop();
      const schema = parts.pop();
      c.columnRules.push({ schema, table, column, strategy: s.strategy, rule });
    }
    for (const t of s.types ?? []) {
      const k = canonicalTypeName(t);
      const prev = c.typeRules.get(k);
      c.typeRules.set(k, { strategy: prev ? stronger(prev.strategy, s.strategy) : s.strategy, rule: prev?.rule ?? rule });
    }
    for (const name of s.classifiers ?? []) {
      if (!isBuiltinClassifier(name)) throw new SluiceError("invalid_argument", `masking ${rule}: unknown classifier ${name}`);
      c.scanners.push({ classifier: builtinClassifier(name), strategy: s.strategy, rule });
    }
    for (const cc of s.custom ?? []) {
      const sc = { classifier: customClassifier(cc.name, cc.pattern), strategy: s.strategy, rule };
      c.scanners.push(sc);
      customAll.push(sc);
    }
  }
  c.fallbackScanners = [
    ...BUILTIN_CLASSIFIERS.map((n) => c.scanners.find((s) => s.classifier.name === n) ?? { classifier: builtinClassifier(n), strategy: c.defaultStrategy, rule: "lineage-unknown" }),
    ...customAll,
  ];
  return c;
}

/** A table column as the catalog resolved it. */
export interface ResolvedColumn {
  /** absent when only known as written (`COPY customers (email)` without a schema) */
  schema?: string;
  table: string;
  column: string;
}

/** What the planner knows about one (B) RowDescription field. */
export interface FieldFacts {
  name: string;
  typeOid: number;
  /** resolved type name when the OID is not a builtin (citext, domains, enums) */
  typeName?: string;
  format: number;
  /** the base column(s): the table column itself, or what a view column is defined from */
  origins: ResolvedColumn[];
  /** extra lineage (from the statement or a view definition); unknown → classifier fallback */
  lineage?: OutputLineage;
  /** a view column whose definition could not be traced */
  originUnknown?: boolean;
}

/** Classifiers of a scanned field, and the strategy of the bundle entry each one came from. */
export interface ScanSet {
  scanners: Scanner[];
  classifiers: Classifier[];
  strategyOf: (m: ValueMatch) => MaskStrategy;
}

export type Treatment =
  | { mode: "whole"; strategy: MaskStrategy; rule: string; reason: "column" | "type" | "lineage" }
  | ({ mode: "json"; strategy: MaskStrategy; rule: string; keys: Map<string, MaskStrategy>; all: boolean } & ScanSet)
  | ({ mode: "scan"; rule: string } & ScanSet);

function scanSet(scanners: Scanner[], fallback: MaskStrategy): ScanSet {
  const by = new Map(scanners.map((s) => [s.classifier.name, s.strategy]));
  return { scanners, classifiers: scanners.map((s) => s.classifier), strategyOf: (m) => by.get(m.classifier) ?? fallback };
}

export interface FieldMask {
  index: number;
  /** for messages and events: `schema.table.column` or the output name */
  label: string;
  codec: FieldCodec;
  treatment: Treatment;
}

export interface MaskPlanData {
  readonly fieldCount: number;
  /** by field index; undefined = passed through */
  readonly byIndex: ReadonlyArray<FieldMask | undefined>;
  readonly masks: readonly FieldMask[];
  /** result format per field: 0 text, 1 binary */
  readonly formats: readonly number[];
  readonly hashKey: Buffer;
  /** byte-level fast path per field (decided once per plan, not per row) */
  readonly fast: FastOps;
}

/** The strongest column rule matching a column (exposure.ts asks it of the catalog's columns). */
export function ruleFor(c: CompiledMasking, schema: string | undefined, table: string | undefined, column: string): ColumnRule | undefined {
  let best: ColumnRule | undefined;
  for (const r of c.columnRules) {
    if (r.column !== column.toLowerCase()) continue;
    if (r.table && table && r.table !== table.toLowerCase()) continue;
    if (r.table && !table) continue;
    // an unqualified source table may live in any schema: match conservatively
    if (r.schema && schema && r.schema !== schema.toLowerCase()) continue;
    if (!best || STRENGTH[r.strategy] > STRENGTH[best.strategy]) best = r;
  }
  return best;
}

/** Rules matching a lineage source. Whole-row sources match every rule on that table. */
function rulesForSource(c: CompiledMasking, s: SourceColumn): ColumnRule[] {
  const tables = s.candidates ?? [{ schema: s.schema, table: s.table }];
  const out: ColumnRule[] = [];
  for (const t of tables) {
    if (s.column === "*") {
      for (const r of c.columnRules) {
        if (r.table && t.table && r.table !== t.table.toLowerCase()) continue;
        if (r.schema && t.schema && r.schema !== t.schema.toLowerCase()) continue;
        out.push(r);
      }
    } else {
      const r = ruleFor(c, t.schema, t.table, s.column);
      if (r) out.push(r);
    }
  }
  return out;
}

/** Decides each field's treatment. Returns null when nothing is masked (raw fast path). */
export function planMask(c: CompiledMasking, fields: readonly FieldFacts[]): MaskPlanData | null {
  const byIndex: Array<FieldMask | undefined> = new Array(fields.length);
  const masks: FieldMask[] = [];
  fields.forEach((f, index) => {
    const codec = codecFor(f.typeOid, f.typeName);
    const o0 = f.origins[0];
    const label = o0 ? [o0.schema, o0.table, o0.column].filter(Boolean).join(".") : f.name;
    let strategy: MaskStrategy | undefined;
    let rule = "";
    let reason: "column" | "type" | "lineage" = "column";
    const take = (s: MaskStrategy, r: string, why: typeof reason) => {
      if (!strategy || STRENGTH[s] > STRENGTH[strategy]) {
        strategy = s;
        rule = r;
        reason = why;
      }
    };
    for (const o of f.origins) {
      const r = ruleFor(c, o.schema, o.table, o.column);
      if (r) take(r.strategy, r.rule, "column");
    }
    const tr = c.typeRules.get(codec.typeName);
    if (tr) take(tr.strategy, tr.rule, "type");
    // lineage: masked sources, and the JSON keys they end up under
    const keys = new Map<string, MaskStrategy>();
    const addKey = (k: string, st: MaskStrategy) => {
      const prev = keys.get(k);
      keys.set(k, prev ? stronger(prev, st) : st);
    };
    let unkeyed = false;
    for (const use of f.lineage?.sources ?? []) {
      const rs = rulesForSource(c, use.col);
      for (const r of rs) {
        take(r.strategy, r.rule, "lineage");
        if (use.jsonKey !== undefined) addKey(use.jsonKey.toLowerCase(), r.strategy);
        else if (use.col.column === "*" && use.rowKeys) addKey(r.column, r.strategy);
        else unkeyed = true;
      }
    }
    const unknown = f.lineage?.unknown === true || f.originUnknown === true;
    if (unknown) {
      // no lineage (a set-returning function, a cursor FETCH, EXECUTE of an SQL-level prepared
      // statement): an output column named like a masked column is masked, whatever its table
      for (const r of c.columnRules) if (r.column === f.name.toLowerCase()) take(r.strategy, r.rule, "lineage");
    }
    let t: Treatment | undefined;
    if (strategy && (codec.kind === "json" || codec.kind === "jsonb")) {
      // a masked column's own JSON value, or JSON built from masked columns in unkeyed positions → all leaves
      const all = (reason as string) !== "lineage" || unkeyed || unknown;
      t = { mode: "json", strategy, rule, keys, all, ...scanSet(unknown ? c.fallbackScanners : c.scanners, strategy) };
    } else if (strategy) {
      t = { mode: "whole", strategy, rule, reason };
    } else if (codec.kind === "text" || codec.kind === "json" || codec.kind === "jsonb") {
      const scanners = unknown ? c.fallbackScanners : c.scanners;
      if (scanners.length) {
        const ruleName = unknown ? "lineage-unknown" : scanners[0]!.rule;
        const set = scanSet(scanners, c.defaultStrategy);
        t = codec.kind === "text"
          ? { mode: "scan", rule: ruleName, ...set }
          : { mode: "json", strategy: c.defaultStrategy, rule: ruleName, keys, all: false, ...set };
      }
    }
    if (!t) return;
    if (f.format === 1 && !codec.binary)
      throw new SluiceError(
        "permission_denied",
        `cannot mask binary column ${label} of type ${codec.typeName}: request it in text format`,
        { column: label, type: codec.typeName, rule: "rule" in t ? t.rule : undefined },
      );
    const m: FieldMask = { index, label, codec, treatment: t };
    byIndex[index] = m;
    masks.push(m);
  });
  if (masks.length === 0) return null;
  const formats = fields.map((f) => f.format);
  return { fieldCount: fields.length, byIndex, masks, formats, hashKey: c.hashKey, fast: compileFastOps(fields.length, byIndex, formats) };
}

/** What a plan masks, for events and logs: rule, column and classifiers, never a value. */
export interface MaskSummary {
  index: number;
  column: string;
  rule: string;
  mode: Treatment["mode"];
  strategy?: MaskStrategy;
  /** classifiers scanning this column (scan/json modes) */
  classifiers?: string[];
}

export function summarizePlan(plan: MaskPlanData): MaskSummary[] {
  return plan.masks.map((m) => {
    const t = m.treatment;
    return {
      index: m.index,
      column: m.label,
      rule: t.rule,
      mode: t.mode,
      ...(t.mode === "scan" ? {} : { strategy: t.strategy }),
      ...(t.mode === "whole" ? {} : { classifiers: t.classifiers.map((c) => c.name) }),
    };
  });
}

/**
 * Masks a loose text value that has no column (a bound parameter, a literal in recorded SQL):
 * every classifier applies, each with its bundle entry's strategy. Returns `s` when clean.
 */
export function maskLooseText(c: CompiledMasking, s: string): string {
  const set = scanSet(c.fallbackScanners, c.defaultStrategy);
  const matches = scanValue(s, set.classifiers);
  return matches.length ? maskMatches(s, matches, set.strategyOf, c.hashKey) : s;
}
