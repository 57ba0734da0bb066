import type { Decision, DecisionContext } from "./decision.js";

/**
 * Decisions by (snapshot revision, resource, issuer, sorted groups, statement text): bounded, LRU-like. The
 * data plane decides every Query/Parse; repeated statement text from the same kind of identity
 * skips parsing and evaluation entirely. Pure data structure, no clock.
 *
 * The revision is held once for the whole cache: a lookup or store with a NEWER revision clears
 * everything (a new snapshot invalidates every decision), one with an OLDER revision is a miss and
 * is not stored (a session still finishing on an old snapshot never pollutes the new one).
 *
 * Hot path: compute `contextKey(resource, groups, issuer)` once per session and use getByKey/setByKey;
 * a hit then costs two Map lookups (the statement text is hashed once; nothing is allocated).
 * Cached Decision objects are shared between sessions: treat them as immutable.
 */
export class DecisionCache {
  /**
   * Two generations of (context key → statement text → decision): a hit in the current generation
   * is two Map lookups and no allocation; a hit in the previous one promotes the entry; when the
   * current generation is full it becomes the previous one and the old previous is dropped. That is
   * an LRU approximation (an entry unused for a whole generation goes) with O(1) everything and at
   * most `maxEntries` decisions held.
   */
  private cur = new Map<string, Map<string, Decision>>();
  private prev = new Map<string, Map<string, Decision>>();
  private curSize = 0;
  private prevSize = 0;
  private readonly generationSize: number;
  private rev = -1;
  hits = 0;
  misses = 0;

  constructor(readonly maxEntries = 10_000) {
    if (!(maxEntries > 0)) throw new RangeError("maxEntries must be positive");
    this.generationSize = Math.max(1, Math.floor(maxEntries / 2));
  }

  /**
   * The per-identity half of the key: resource, issuer name and sorted, de-duplicated groups. The
   * issuer is part of it because policies may be scoped to issuers: the same groups from another
   * issuer can decide differently. Issuer names are never empty, so "" stands for "none".
   */
  static contextKey(resource: string, groups: readonly string[], issuer: string | undefined): string {
    const sorted = [...new Set(groups)].sort();
    return `${resource}\u0000${issuer ?? ""}\u0000${sorted.join("\u0001")}`;
  }

  get revision(): number {
    return this.rev;
  }

  /** decisions held (an entry promoted from the previous generation may be counted twice) */
  get size(): number {
    return this.curSize + this.prevSize;
  }

  /** Returns false when `revision` is older than the cache's (the caller must not use the cache). */
  private sync(revision: number): boolean {
    if (revision === this.rev) return true;
    if (revision < this.rev) return false;
    this.clear();
    this.rev = revision;
    return true;
  }

  getByKey(revision: number, contextKey: string, sql: string): Decision | undefined {
    if (!this.sync(revision)) {
      this.misses++;
      return undefined;
    }
    let d = this.cur.get(contextKey)?.get(sql);
    if (d !== undefined) {
      this.hits++;
      return d;
    }
    d = this.prev.get(contextKey)?.get(sql);
    if (d !== undefined) {
      this.insert(contextKey, sql, d);
      this.hits++;
      return d;
    }
    this.misses++;
    return undefined;
  }

  setByKey(revision: number, contextKey: string, sql: string, decision: Decision): void {
    if (!this.sync(revision)) return;
    this.insert(contextKey, sql, decision);
  }

  private insert(contextKey: string, sql: string, decision: Decision): void {
    let m = this.cur.get(contextKey);
    if (m?.has(sql)) {
      m.set(sql, decision);
      return;
    }
    if (this.curSize >= this.generationSize) {
      this.prev = this.cur;
      this.prevSize = this.curSize;
      this.cur = new Map();
      this.curSize = 0;
      m = undefined;
    }
    if (m === undefined) {
      m = new Map();
      this.cur.set(contextKey, m);
    }
    m.set(sql, decision);
    this.curSize++;
  }

  get(revision: number, ctx: DecisionContext, sql: string): Decision | undefined {
    return this.getByKey(revision, DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer), sql);
  }

  set(revision: number, ctx: DecisionContext, sql: string, decision: Decision): void {
    this.setByKey(revision, DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer), sql, decision);
  }

  clear(): void {
    this.cur = new Map();
    this.prev = new Map();
    this.curSize = 0;
    this.prevSize = 0;
  }
}
