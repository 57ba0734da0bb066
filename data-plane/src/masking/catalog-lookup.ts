/**
 * What the masker needs from the upstream's catalog. The implementation (data-plane/src/catalog/)
 * queries a side connection and caches; the masker stays pure and only awaits these calls.
 */
import type { ResolvedColumn } from "./mask-rules.js";
import type { SourceUse } from "./lineage.js";
import type { ExposureFacts } from "./exposure.js";

/** Where a RowDescription field's value comes from. */
export interface FieldOrigin {
  /** base table column(s); a view column maps to what its definition reads */
  origins: ResolvedColumn[];
  /** a view column whose definition could not be traced: classifiers apply */
  unknown: boolean;
  /** a view column: the base columns its definition reads (lineage, may be computed) */
  uses?: SourceUse[];
}

export interface CatalogLookup {
  /** one entry per input, in order; `{ origins: [], unknown: false }` for tableOid 0 */
  resolveFields(resource: string, fields: ReadonlyArray<{ tableOid: number; columnAttr: number }>): Promise<FieldOrigin[]>;
  /** names of non-builtin types (citext, domains over text, enums) */
  typeNames(resource: string, oids: readonly number[]): Promise<Map<number, string>>;
  /**
   * Lineage sources that name a view (by name, as written in a query) → the base columns that
   * view column is computed from (a whole-row `*` of a view → every view column, keyed by its
   * name). Sources naming tables come back unchanged.
   */
  expandSources(resource: string, uses: readonly SourceUse[]): Promise<{ uses: SourceUse[]; unknown: boolean }>;
  /** the live columns of a table or view, in order (for COPY without a column list); null if absent */
  tableColumns(resource: string, schema: string | undefined, table: string): Promise<ResolvedColumn[] | null>;
  /**
   * What decides whether an error or notice of a statement may quote masked values (exposure.ts):
   * every relation with its columns, row security, user code and what it reads and writes through;
   * which function names are user code; operators and casts that run user code. Cached like the rest.
   */
  exposureFacts?(resource: string): Promise<ExposureFacts>;
  /** DDL ran on the resource (CommandComplete tag CREATE/ALTER/DROP…): forget what may have changed */
  invalidate(resource: string): void;
  /**
   * Changes whenever what the catalog said about the resource may have changed (an invalidation,
   * a cache period ending): the masker keeps plans computed under one version only.
   */
  version?(resource: string): number;
}
