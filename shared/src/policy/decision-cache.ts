import type { Decision, DecisionContext } from "./decision.js";

/**
 * Two generations of (context key → key → decision): a hit in the current generation is two Map
 * lookups and no allocation; a hit in the previous one promotes the entry; when the current
 * generation is full it becomes the previous one and the old previous is dropped. That is an LRU
 * approximation (an entry unused for a whole generation goes) with O(1) everything and at most
 * twice `generationSize` decisions held.
 */
class Generations {
  private cur = new Map<string, Map<string, Decision>>();
  private prev = new Map<string, Map<string, Decision>>();
  private curSize = 0;
  private prevSize = 0;

  constructor(private readonly generationSize: number) {}

  get size(): number {
    return this.curSize + this.prevSize;
  }

  get(contextKey: string, key: string): Decision | undefined {
    const d = this.cur.get(contextKey)?.get(key);
    if (d !== undefined) return d;
    const old = this.prev.get(contextKey)?.get(key);
    if (old !== undefined) this.set(contextKey, key, old);
    return old;
  }

  set(contextKey: string, key: string, decision: Decision): void {
    let m = this.cur.get(contextKey);
    if (m?.has(key)) {
      m.set(key, decision);
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
    m.set(key, decision);
    this.curSize++;
  }
}

/**
 * Decisions by (snapshot revision, resource, issuer, sorted groups, statement text): bounded, LRU-like. The
 * data plane decides every Query/Parse; repeated statement text from the same kind of identity
 * skips parsing and evaluation entirely. Decisions that hold for every statement of a shape (the
 * text with its literals replaced, sql/literal-shape.ts) are kept by shape as well, apart from the
 * texts. Pure data structure, no clock.
 *
 * The revision is held once for the whole cache: a lookup or store with a NEWER revision clears
 * everything (a new snapshot invalidates every decision), one with an OLDER revision is a miss and
 * is not stored (a session still finishing on an old snapshot never pollutes the new one).
 *
 * Hot path: compute `contextKey(resource, groups, issuer)` once per session and use getByKey/setByKey;
 * a hit then costs two Map lookups (the statement text is hashed once; nothing is allocated).
 * At most `maxEntries` decisions by text and as many by shape.
 * Cached Decision objects are shared between sessions: treat them as immutable.
 */
export class DecisionCache {
  private texts: Generations;
  /** by statement shape (sql/literal-shape.ts): apart from the texts, so no text can pose as a shape */
  private shapes: Generations;
  private readonly generationSize: number;
  private rev = -1;
  /** lookups answered by the statement's text */
  hits = 0;
  /** lookups not answered by the text (those answered by shape are among them) */
  misses = 0;
  /** lookups answered by the statement's shape */
  shapeHits = 0;

  constructor(readonly maxEntries = 10_000) {
    if (!(maxEntries > 0)) throw new RangeError("maxEntries must be positive");
    this.generationSize = Math.max(1, Math.floor(maxEntries / 2));
    this.texts = new Generations(this.generationSize);
    this.shapes = new Generations(this.generationSize);
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

  /** decisions held, by text and by shape (an entry promoted from the previous generation may be counted twice) */
  get size(): number {
    return this.texts.size + this.shapes.size;
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
    const d = this.sync(revision) ? this.texts.get(contextKey, sql) : undefined;
    if (d !== undefined) this.hits++;
    else this.misses++;
    return d;
  }

  setByKey(revision: number, contextKey: string, sql: string, decision: Decision): void {
    if (this.sync(revision)) this.texts.set(contextKey, sql, decision);
  }

  /**
   * The decision stored for another statement of this shape. It carries THAT statement's text:
   * callers serve it through decisionForText (sql/literal-shape.ts), never as it is.
   */
  getByShape(revision: number, contextKey: string, shape: string): Decision | undefined {
    const d = this.sync(revision) ? this.shapes.get(contextKey, shape) : undefined;
    if (d !== undefined) this.shapeHits++;
    return d;
  }

  /** Stores a decision for every statement of `shape`: only one that decidedByShape says holds for them all. */
  setByShape(revision: number, contextKey: string, shape: string, decision: Decision): void {
    if (this.sync(revision)) this.shapes.set(contextKey, shape, decision);
  }

  get(revision: number, ctx: DecisionContext, sql: string): Decision | undefined {
    return this.getByKey(revision, DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer), sql);
  }

  set(revision: number, ctx: DecisionContext, sql: string, decision: Decision): void {
    this.setByKey(revision, DecisionCache.contextKey(ctx.resource, ctx.groups, ctx.issuer), sql, decision);
  }

  clear(): void {
    this.texts = new Generations(this.generationSize);
    this.shapes = new Generations(this.generationSize);
  }
}
