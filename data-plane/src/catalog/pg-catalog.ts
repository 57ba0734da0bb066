/**
 * The masker's catalog lookup on a side connection to each upstream (`pg`): resolves (B)
 * RowDescription table OID + attribute number to `schema.table.column`, view columns back to the
 * base columns their definition reads (the view's `pg_get_viewdef` parsed with libpg-query and run
 * through the same lineage analysis as statements), type names of non-builtin types, and a table's
 * column list for COPY. Results are cached per resource with a TTL (DDL is rare; `invalidate`
 * flushes a resource at once when a session sees a DDL CommandComplete).
 */
import pg from "pg";
import { readFileSync } from "node:fs";
import { classifySql, loadParser, parseSql, type StatementClassifier } from "@sluice/shared/sql";
import { SluiceError } from "@sluice/shared/errors";
import type { UpstreamSpec } from "@sluice/shared/policy";
import type { CatalogLookup, FieldOrigin } from "../masking/catalog-lookup.js";
import { queryLineage, type OutputLineage, type SourceUse } from "../masking/lineage.js";
import type { ResultAnnotation } from "../masking/statement-annotation.js";
import type { ResolvedColumn } from "../masking/mask-rules.js";
import type { ExposureFacts } from "../masking/exposure.js";
import { functionFactsFrom, type FunctionFacts, type FunctionFactsDoc } from "./volatile-calls.js";

/** The part of pg.Client the catalog uses. */
export interface CatalogConnection {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  end(): Promise<void>;
  on(event: "error", cb: (err: Error) => void): unknown;
}

export interface PgCatalogOptions {
  /** opens a side connection to the resource's upstream with its credential (the caller resolves secrets) */
  connect(resource: string): Promise<CatalogConnection>;
  /** cache lifetime; default 60 s */
  ttlMs?: number;
  /** monotonic-enough milliseconds; default Date.now */
  now?: () => number;
  /** classifies the definitions functionFacts reads (default classifySql; the node gives its classifier pool) */
  classify?: StatementClassifier;
}

interface Entry<T> {
  at: number;
  value: T;
}

interface RelInfo {
  oid: number;
  schema: string;
  name: string;
  /** r table, v view, m materialized view, p partitioned table, f foreign table */
  kind: string;
}

interface ResourceCache {
  conn?: Promise<CatalogConnection>;
  attrs: Map<string, Entry<{ rel: RelInfo; column: string } | null>>;
  relByName: Map<string, Entry<RelInfo | null>>;
  viewLineage: Map<number, Entry<OutputLineage[] | null>>;
  types: Map<number, Entry<string>>;
  columns: Map<number, Entry<ResolvedColumn[]>>;
  exposure?: Entry<Promise<ExposureFacts>>;
  /** the last functionFacts read, and a read under way (its result is kept only if no invalidation came meanwhile) */
  functionFacts?: Entry<FunctionFacts>;
  functionFactsRead?: Promise<FunctionFacts>;
  generation: number;
}

const MAX_VIEW_DEPTH = 8;
let parserReady: Promise<void> | undefined;

/**
 * One round trip for exposureFacts. User code is a function outside pg_catalog and
 * information_schema that is not C (or internal) code installed by a superuser; aggregates and
 * procedures outside them always count (their state functions may be PL/pgSQL). A write runs what
 * depends on user code through the table's defaults, constraints, index expressions, triggers (any
 * non-internal one), rules other than a view's, and columns of a type whose cast or domain check is
 * user code; a read runs a view's user functions and any row security policy.
 */
const EXPOSURE_FACTS_SQL = `
WITH uc AS (
  SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT (l.lanname IN ('c', 'internal') AND p.prokind IN ('f', 'w'))
), on_uc AS (
  SELECT classid, objid FROM pg_depend WHERE refclassid = 'pg_proc'::regclass AND refobjid IN (SELECT oid FROM uc)
), code_types AS (
  SELECT con.contypid AS t FROM on_uc d JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid WHERE con.contypid <> 0
  UNION SELECT casttarget FROM pg_cast WHERE castfunc IN (SELECT oid FROM uc)
), write_code AS (
  SELECT ad.adrelid AS rel FROM on_uc d JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
  UNION SELECT con.conrelid FROM on_uc d JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid WHERE con.conrelid <> 0
  UNION SELECT i.indrelid FROM on_uc d JOIN pg_index i ON d.classid = 'pg_class'::regclass AND i.indexrelid = d.objid
  UNION SELECT tgrelid FROM pg_trigger WHERE NOT tgisinternal
  UNION SELECT ev_class FROM pg_rewrite WHERE rulename <> '_RETURN'
  UNION SELECT a.attrelid FROM pg_attribute a WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN (SELECT t FROM code_types)
), read_code AS (
  SELECT w.ev_class AS rel FROM on_uc d JOIN pg_rewrite w ON d.classid = 'pg_rewrite'::regclass AND w.oid = d.objid WHERE w.rulename = '_RETURN'
  UNION SELECT polrelid FROM pg_policy
  UNION SELECT oid FROM pg_class WHERE relrowsecurity
)
SELECT json_build_object(
  'relations', (SELECT coalesce(json_agg(json_build_array(
      c.oid::int, n.nspname, c.relname, c.relkind::text,
      c.oid IN (SELECT rel FROM read_code),
      c.oid IN (SELECT rel FROM write_code),
      (SELECT coalesce(json_agg(json_build_array(a.attname, t.typname, coalesce(b.typname, '')) ORDER BY a.attnum), '[]')
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
      ARRAY(SELECT d.refobjid::int FROM pg_rewrite w JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
             WHERE w.ev_class = c.oid AND w.rulename = '_RETURN' AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
            UNION SELECT inhrelid::int FROM pg_inherits WHERE inhparent = c.oid),
      ARRAY(SELECT conrelid::int FROM pg_constraint WHERE contype = 'f' AND confrelid = c.oid AND (confdeltype NOT IN ('a', 'r') OR confupdtype NOT IN ('a', 'r'))
            UNION SELECT inhrelid::int FROM pg_inherits WHERE inhparent = c.oid)
    )), '[]')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')),
  'functions', (SELECT coalesce(json_agg(json_build_array(f.schema, f.name, f.user_code)), '[]') FROM (
      SELECT n.nspname AS schema, p.proname AS name, bool_or(p.oid IN (SELECT oid FROM uc)) AS user_code
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace GROUP BY 1, 2) f),
  'operators', (SELECT coalesce(json_agg(DISTINCT o.oprname), '[]') FROM pg_operator o WHERE o.oprcode IN (SELECT oid FROM uc)),
  'castTypes', (SELECT coalesce(json_agg(DISTINCT t.typname), '[]') FROM pg_type t WHERE t.oid IN (SELECT t FROM code_types)),
  'implicitUserCast', EXISTS (SELECT 1 FROM pg_cast WHERE castcontext = 'i' AND castfunc IN (SELECT oid FROM uc))
) AS facts`;

/**
 * One round trip for functionFacts (volatile-calls.ts): the built-in function names; every user
 * function with its volatility, kind and language, the definition of the non-volatile SQL and
 * PL/pgSQL ones (whose bodies may call volatile ones) and an aggregate's support functions; the
 * operators of user functions; the definitions of views and of row security policies (what a read
 * of them runs); the types whose coercion may run user code (domains with their CHECK expressions,
 * types with a user input or receive function, targets of casts by user functions), those casts,
 * and the table columns of a type such an implicit cast targets.
 */
const FUNCTION_FACTS_SQL = `
WITH uf AS (
  SELECT p.oid, n.nspname AS schema, p.proname AS name, p.provolatile::text AS vol, p.prokind::text AS kind, l.lanname AS lang,
         ARRAY(SELECT unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) UNION SELECT p.prorettype)::int[] AS types
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
), uc AS (
  SELECT castsource, casttarget, castfunc, castcontext FROM pg_cast WHERE castfunc IN (SELECT oid FROM uf)
)
SELECT json_build_object(
  'builtins', (SELECT json_agg(DISTINCT p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('pg_catalog', 'information_schema')),
  'functions', (SELECT coalesce(json_agg(json_build_array(
      uf.oid::int, uf.schema, uf.name, uf.vol, uf.kind, uf.lang,
      CASE WHEN uf.vol <> 'v' AND uf.kind IN ('f', 'p') AND uf.lang IN ('sql', 'plpgsql') THEN pg_get_functiondef(uf.oid) END,
      (SELECT array_remove(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]::oid[]::int[], 0)
         FROM pg_aggregate a WHERE a.aggfnoid = uf.oid), uf.types)), '[]') FROM uf),
  'types', (SELECT coalesce(json_agg(json_build_array(t.oid::int, n.nspname, t.typname, t.typtype::text, t.typbasetype::int, t.typinput::oid::int, t.typreceive::oid::int,
      (SELECT json_agg(pg_get_expr(con.conbin, 0)) FROM pg_constraint con WHERE con.contypid = t.oid AND con.contype = 'c'))), '[]')
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE (n.nspname NOT IN ('pg_catalog', 'information_schema') AND (t.typtype = 'd' OR t.typinput::oid IN (SELECT oid FROM uf) OR t.typreceive::oid IN (SELECT oid FROM uf)))
        OR t.oid IN (SELECT casttarget FROM uc)),
  'casts', (SELECT coalesce(json_agg(json_build_array(castsource::int, casttarget::int, castfunc::int, castcontext::text)), '[]') FROM uc),
  'typedColumns', (SELECT coalesce(json_agg(DISTINCT jsonb_build_array(n.nspname, c.relname, a.atttypid::int)), '[]')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND a.atttypid IN (SELECT casttarget FROM uc WHERE castcontext = 'i')),
  'operators', (SELECT coalesce(json_agg(json_build_array(n.nspname, o.oprname, o.oprcode::oid::int)), '[]')
      FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oprcode::oid IN (SELECT oid FROM uf)),
  'views', (SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, pg_get_viewdef(c.oid))), '[]')
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')),
  'policies', (SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, pg_get_expr(pol.polqual, pol.polrelid))), '[]')
      FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace)
) AS facts`;

interface FactsRow {
  relations: Array<[number, string, string, string, boolean, boolean, Array<[string, string, string]>, number[], number[]]>;
  functions: Array<[string, string, boolean]>;
  operators: string[];
  castTypes: string[];
  implicitUserCast: boolean;
}

/** the query's JSON document → ExposureFacts (a view's writes go to what it reads: auto-updatable views) */
export function exposureFactsFrom(d: FactsRow): ExposureFacts {
  const functions = new Map<string, boolean>();
  for (const [schema, name, user] of d.functions) {
    const n = name.toLowerCase();
    functions.set(n, (functions.get(n) ?? false) || user);
    functions.set(`${schema.toLowerCase()}.${n}`, user);
  }
  return {
    relations: d.relations.map(([oid, schema, name, kind, readCode, writeCode, columns, reads, writes]) => ({
      oid, schema, name, kind, readCode, writeCode, columns,
      reads, writes: kind === "v" ? [...writes, ...reads] : writes,
    })),
    functions,
    userOperators: new Set(d.operators),
    userCastTypes: new Set(d.castTypes.map((t) => t.toLowerCase())),
    implicitUserCast: d.implicitUserCast,
  };
}

export interface PgCatalog extends CatalogLookup {
  /** what volatile-calls.ts judges calls by; cached like the rest, re-read at once when older than `maxAgeMs` */
  functionFacts(resource: string, maxAgeMs?: number): Promise<FunctionFacts>;
  /** the cached functionFacts when fresh: the hot path decides without waiting */
  functionFactsNow(resource: string): FunctionFacts | undefined;
  close(): Promise<void>;
}

export function createPgCatalog(opts: PgCatalogOptions): PgCatalog {
  const ttl = opts.ttlMs ?? 60_000;
  const classify: StatementClassifier = opts.classify ?? ((sql) => classifySql(sql));
  const now = opts.now ?? Date.now;
  const caches = new Map<string, ResourceCache>();
  const invalidations = new Map<string, number>();

  function cache(resource: string): ResourceCache {
    let c = caches.get(resource);
    if (!c) {
      c = { attrs: new Map(), relByName: new Map(), viewLineage: new Map(), types: new Map(), columns: new Map(), generation: 0 };
      caches.set(resource, c);
    }
    return c;
  }
  function fresh<T>(e: Entry<T> | undefined): e is Entry<T> {
    return e !== undefined && now() - e.at < ttl;
  }

  async function conn(resource: string): Promise<CatalogConnection> {
    const c = cache(resource);
    c.conn ??= opts.connect(resource).then((cl) => {
      // a broken side connection is dropped; the next lookup reconnects
      cl.on("error", () => {
        if (caches.get(resource) === c) c.conn = undefined;
      });
      return cl;
    });
    try {
      return await c.conn;
    } catch (e) {
      c.conn = undefined;
      throw new SluiceError("unavailable", `masking catalog lookup on ${resource} failed: cannot connect`, undefined, { cause: e });
    }
  }

  async function q<R extends pg.QueryResultRow>(resource: string, text: string, values: unknown[]): Promise<R[]> {
    const cl = await conn(resource);
    try {
      return (await cl.query<R>(text, values)).rows;
    } catch (e) {
      const c = cache(resource);
      if (c.conn) {
        const old = c.conn;
        c.conn = undefined;
        old.then((x) => x.end()).catch(() => undefined);
      }
      throw new SluiceError("unavailable", `masking catalog lookup on ${resource} failed`, undefined, { cause: e });
    }
  }

  async function relByName(resource: string, schema: string | undefined, table: string): Promise<RelInfo | null> {
    const c = cache(resource);
    const k = `${schema ?? ""}.${table}`;
    const hit = c.relByName.get(k);
    if (fresh(hit)) return hit.value;
    const rows = await q<{ oid: number; schema: string; name: string; kind: string }>(
      resource,
      `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass(CASE WHEN $1::text IS NULL THEN quote_ident($2) ELSE quote_ident($1) || '.' || quote_ident($2) END)`,
      [schema ?? null, table],
    );
    const v = rows[0] ?? null;
    c.relByName.set(k, { at: now(), value: v });
    return v;
  }

  async function viewLineage(resource: string, oid: number): Promise<OutputLineage[] | null> {
    const c = cache(resource);
    const hit = c.viewLineage.get(oid);
    if (fresh(hit)) return hit.value;
    const rows = await q<{ def: string }>(resource, "SELECT pg_get_viewdef($1::oid) AS def", [oid]);
    let v: OutputLineage[] | null = null;
    if (rows[0]?.def) {
      v = await definitionLineage(rows[0].def);
      if (v?.some((x) => x.star)) v = null; // the stored definition has stars expanded; if not, give up
    }
    c.viewLineage.set(oid, { at: now(), value: v });
    return v;
  }

  /**
   * A view definition's lineage: from its classification's annotation (the node's classifier pool
   * reads it in a worker when the definition is long, so a view with a huge definition costs the
   * relay's thread nothing), else parsed here. null: not traceable.
   */
  async function definitionLineage(def: string): Promise<OutputLineage[] | null> {
    await (parserReady ??= loadParser().then(() => undefined));
    try {
      const c = await classify(def);
      const a = c.ok && c.statements.length === 1 ? (c.statements[0]!.annotation as ResultAnnotation | undefined) : undefined;
      if (a !== undefined) return a.ok ? a.lineage : null;
    } catch {
      return null;
    }
    try {
      const stmt = parseSql(def).stmts?.[0]?.stmt as any;
      return stmt ? queryLineage(stmt) : null;
    } catch {
      return null;
    }
  }

  /** Replaces sources that name views by what the view columns read, recursively. */
  async function expand(resource: string, uses: readonly SourceUse[], depth: number): Promise<{ uses: SourceUse[]; unknown: boolean }> {
    const out: SourceUse[] = [];
    let unknown = false;
    for (const u of uses) {
      out.push(u);
      const tables = u.col.candidates ?? (u.col.table ? [{ schema: u.col.schema, table: u.col.table }] : []);
      for (const t of tables) {
        const rel = await relByName(resource, t.schema, t.table);
        if (!rel || (rel.kind !== "v" && rel.kind !== "m")) continue;
        if (depth >= MAX_VIEW_DEPTH) {
          unknown = true;
          continue;
        }
        const vl = await viewLineage(resource, rel.oid);
        if (!vl) {
          unknown = true;
          continue;
        }
        const picked = u.col.column === "*" ? vl : vl.filter((x) => x.name === u.col.column);
        const inner: SourceUse[] = [];
        for (const col of picked) {
          if (col.unknown) unknown = true;
          // a view's whole row keeps its column names as keys only where the query put it into JSON by name
          for (const s of col.sources) inner.push({ col: s.col, jsonKey: u.jsonKey ?? s.jsonKey ?? (u.col.column === "*" && u.rowKeys ? col.name : undefined) });
        }
        const r = await expand(resource, inner, depth + 1);
        out.push(...r.uses);
        unknown ||= r.unknown;
      }
    }
    return { uses: out, unknown };
  }

  function functionFacts(resource: string, maxAgeMs = ttl): Promise<FunctionFacts> {
    const c = cache(resource);
    const e = c.functionFacts;
    if (e !== undefined && now() - e.at < Math.min(ttl, maxAgeMs)) return Promise.resolve(e.value);
    // a read already under way serves this request too (at most one per resource at a time)
    if (c.functionFactsRead) return c.functionFactsRead;
    const at = now();
    const gen = c.generation;
    const p = q<{ facts: FunctionFactsDoc }>(resource, FUNCTION_FACTS_SQL, []).then(async (rows) => {
        await (parserReady ??= loadParser().then(() => undefined));
        return functionFactsFrom(rows[0]!.facts, classify);
      }).then(
      (f) => {
        if (c.generation === gen) {
          c.functionFacts = { at, value: f };
          c.functionFactsRead = undefined;
        }
        return f;
      },
      (err: unknown) => {
        if (c.generation === gen) c.functionFactsRead = undefined;
        throw err;
      },
    );
    c.functionFactsRead = p;
    return p;
  }

  return {
    async resolveFields(resource, fields) {
      const c = cache(resource);
      const missing = new Map<string, { oid: number; attnum: number }>();
      for (const f of fields) {
        if (f.tableOid === 0) continue;
        const k = `${f.tableOid}/${f.columnAttr}`;
        if (!fresh(c.attrs.get(k))) missing.set(k, { oid: f.tableOid, attnum: f.columnAttr });
      }
      if (missing.size) {
        const ks = [...missing.values()];
        const rows = await q<{ oid: number; attnum: number; schema: string; name: string; kind: string; column: string }>(
          resource,
          `SELECT c.oid::int AS oid, a.attnum::int AS attnum, n.nspname AS schema, c.relname AS name,
                  c.relkind::text AS kind, a.attname AS column
             FROM unnest($1::oid[], $2::int2[]) AS k(oid, attnum)
             JOIN pg_class c ON c.oid = k.oid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum`,
          [ks.map((x) => x.oid), ks.map((x) => x.attnum)],
        );
        const at = now();
        for (const k of missing.keys()) c.attrs.set(k, { at, value: null });
        for (const r of rows)
          c.attrs.set(`${r.oid}/${r.attnum}`, { at, value: { rel: { oid: r.oid, schema: r.schema, name: r.name, kind: r.kind }, column: r.column } });
      }
      const out: FieldOrigin[] = [];
      for (const f of fields) {
        if (f.tableOid === 0) {
          out.push({ origins: [], unknown: false });
          continue;
        }
        const a = c.attrs.get(`${f.tableOid}/${f.columnAttr}`)?.value;
        if (!a) {
          // a table OID the catalog does not know (dropped meanwhile): let classifiers look at it
          out.push({ origins: [], unknown: true });
          continue;
        }
        const own: ResolvedColumn = { schema: a.rel.schema, table: a.rel.name, column: a.column };
        if (a.rel.kind !== "v" && a.rel.kind !== "m") {
          out.push({ origins: [own], unknown: false });
          continue;
        }
        const r = await expand(resource, [{ col: { schema: a.rel.schema, table: a.rel.name, column: a.column } }], 0);
        out.push({ origins: [own], unknown: r.unknown, uses: r.uses.slice(1) });
      }
      return out;
    },

    async typeNames(resource, oids) {
      const c = cache(resource);
      const missing = oids.filter((o) => !fresh(c.types.get(o)));
      if (missing.length) {
        const rows = await q<{ oid: number; name: string }>(
          resource,
          // a domain is masked like its base type
          `SELECT t.oid::int AS oid, coalesce(b.typname, t.typname) AS name
             FROM pg_type t LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
            WHERE t.oid = ANY($1::oid[])`,
          [missing],
        );
        const at = now();
        for (const r of rows) c.types.set(r.oid, { at, value: r.name });
      }
      const m = new Map<number, string>();
      for (const o of oids) {
        const e = c.types.get(o);
        if (e) m.set(o, e.value);
      }
      return m;
    },

    expandSources(resource, uses) {
      return expand(resource, uses, 0);
    },

    async tableColumns(resource, schema, table) {
      const rel = await relByName(resource, schema, table);
      if (!rel) return null;
      const c = cache(resource);
      const hit = c.columns.get(rel.oid);
      if (fresh(hit)) return hit.value;
      const rows = await q<{ column: string }>(
        resource,
        `SELECT attname AS column FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        [rel.oid],
      );
      const v = rows.map((r) => ({ schema: rel.schema, table: rel.name, column: r.column }));
      c.columns.set(rel.oid, { at: now(), value: v });
      return v;
    },

    exposureFacts(resource) {
      const c = cache(resource);
      if (fresh(c.exposure)) return c.exposure.value;
      const p = q<{ facts: FactsRow }>(resource, EXPOSURE_FACTS_SQL, []).then((rows) => exposureFactsFrom(rows[0]!.facts));
      // a failed read is not kept: the next message asks again (meanwhile nothing is proven clean)
      const entry = { at: now(), value: p };
      c.exposure = entry;
      p.catch(() => {
        if (c.exposure === entry) c.exposure = undefined;
      });
      return p;
    },

    functionFacts,

    functionFactsNow(resource) {
      const e = caches.get(resource)?.functionFacts;
      if (e === undefined) return undefined;
      const age = now() - e.at;
      if (age < ttl) return e.value;
      // one period past its time it still serves, while a fresh read is made in the background;
      // a DDL statement through any session flushes it at once (invalidate)
      if (age < 2 * ttl) {
        functionFacts(resource).catch(() => undefined);
        return e.value;
      }
      return undefined;
    },

    version(resource) {
      // every invalidation, and every TTL period, makes plans built on older lookups stale
      return (invalidations.get(resource) ?? 0) * 1e9 + Math.floor(now() / ttl);
    },

    invalidate(resource) {
      invalidations.set(resource, (invalidations.get(resource) ?? 0) + 1);
      const c = caches.get(resource);
      if (!c) return;
      c.attrs.clear();
      c.relByName.clear();
      c.viewLineage.clear();
      c.types.clear();
      c.columns.clear();
      c.exposure = undefined;
      c.functionFacts = undefined;
      c.functionFactsRead = undefined;
      c.generation++;
    },

    async close() {
      const all = [...caches.values()];
      caches.clear();
      await Promise.all(all.map((c) => c.conn?.then((x) => x.end()).catch(() => undefined)));
    },
  };
}

/**
 * A `connect` for createPgCatalog from resource specs: `specFor(resource)` gives the upstream and
 * `password(ref)` resolves its credential reference (the data plane's resolveSecret).
 */
export function pgCatalogConnector(
  specFor: (resource: string) => UpstreamSpec | undefined,
  password: (ref: string) => Promise<string>,
): (resource: string) => Promise<CatalogConnection> {
  return async (resource) => {
    const spec = specFor(resource);
    if (!spec) throw new SluiceError("not_found", `resource ${resource} is not in the policy bundle`);
    const mode = spec.tls ?? "disable";
    const ssl =
      mode === "disable"
        ? false
        : mode === "require"
          ? { rejectUnauthorized: false }
          : { rejectUnauthorized: true, servername: spec.host, ...(spec.ca?.startsWith("file:") ? { ca: readFileSync(spec.ca.slice(5), "utf8") } : {}) };
    const client = new pg.Client({
      host: spec.host,
      port: spec.port,
      database: spec.database,
      user: spec.user,
      password: spec.password ? await password(spec.password) : undefined,
      ssl,
      application_name: "sluice-masking-catalog",
      connectionTimeoutMillis: 10_000,
    });
    await client.connect();
    return client;
  };
}
