import type { Decision } from "./decision.js";

/**
 * Decisions by (snapshot revision, resource, sorted groups, statement text): a bounded LRU. The
 * data plane decides every Query/Parse; repeated statement text from the same kind of identity
 * skips parsing and evaluation entirely. Pure data structure, no clock.
 *
 * The revision is held once for the whole cache: a lookup or store with a NEWER revision clears
 * everything (a new snapshot invalidates every decision), one with an OLDER revision is a miss and
 * is not stored (a session still finishing on an old snapshot never pollutes the new one).
 *
 * Hot path: compute `contextKey(resource, groups)` once per session and use getByKey/setByKey;
 * a hit then costs one string concatenation and two Map operations (the LRU refresh).
 * Cached Decision objects are shared between sessions: treat them as immutable.
 */
export class DecisionCache {
  private readonly entries = new Map<string, Decision>();
  private rev = -1;
  hits = 0;
  misses = 0;

  constructor(readonly maxEntries = 10_000) {
    if (!(maxEntries > 0)) throw new RangeError("maxEntries must be positive");
  }

  /** The per-identity half of the key: resource and sorted, de-duplicated groups. */
  static contextKey(resource: string, groups: readonly string[]): string {
    const sorted = [...new Set(groups)].sort();
    return `${resource}\u0000${sorted.join("\u0001")}`;
  }

  get revision(): number {
    return this.rev;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Returns false when `revision` is older than the cache's (the caller must not use the cache). */
  private sync(revision: number): boolean {
    if (revision === this.rev) return true;
    if (revision < this.rev) return false;
    this.entries.clear();
    this.rev = revision;
    return true;
  }

  getByKey(revision: number, contextKey: string, sql: string): Decision | undefined {
    if (!this.sync(revision)) {
      this.misses++;
      return undefined;
    }
    const key = `${contextKey}\u0000${sql}`;
    const d = this.entries.get(key);
    if (d === undefined) {
      this.misses++;
      return undefined;
    }
    // LRU: move to the most recent end (Map keeps insertion order)
    this.entries.delete(key);
    this.entries.set(key, d);
    this.hits++;
    return d;
  }

  setByKey(revision: number, contextKey: string, sql: string, decision: Decision): void {
    if (!this.sync(revision)) return;
    const key = `${contextKey}\u0000${sql}`;
    if (this.entries.has(key)) this.entries.delete(key);
    else if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, decision);
  }

  get(revision: number, resource: string, groups: readonly string[], sql: string): Decision | undefined {
    return this.getByKey(revision, DecisionCache.contextKey(resource, groups), sql);
  }

  set(revision: number, resource: string, groups: readonly string[], sql: string, decision: Decision): void {
    this.setByKey(revision, DecisionCache.contextKey(resource, groups), sql, decision);
  }

  clear(): void {
    this.entries.clear();
  }
}
