import type { StatementInfo } from "./statement-info.js";

/**
 * The SQL-level prepared statements of one connection (`PREPARE name AS …` / `EXECUTE name`).
 * Classification is per message and stateless, so the session keeps one of these per connection:
 * after a message was allowed and forwarded it calls `observe(decision.statements)`, and evaluation
 * resolves `EXECUTE name` through `resolve`. An unknown name is a deny (evaluate.ts), never a pass.
 * Pure data structure; bounded so a client cannot grow it without limit.
 */
export class SqlPrepared {
  private readonly byName = new Map<string, StatementInfo>();

  constructor(private readonly maxEntries = 1000) {}

  remember(name: string, info: StatementInfo): void {
    if (!this.byName.has(name) && this.byName.size >= this.maxEntries) {
      // Evicting makes a later EXECUTE of the evicted name deny (unknown): fail closed.
      const oldest = this.byName.keys().next().value;
      if (oldest !== undefined) this.byName.delete(oldest);
    }
    this.byName.set(name, info);
  }

  resolve(name: string): StatementInfo | undefined {
    return this.byName.get(name);
  }

  forget(name: string): void {
    this.byName.delete(name);
  }

  clear(): void {
    this.byName.clear();
  }

  get size(): number {
    return this.byName.size;
  }

  /** Applies the PREPARE / DEALLOCATE / DISCARD ALL statements of a forwarded message, in order. */
  observe(statements: readonly StatementInfo[]): void {
    for (const s of statements) {
      if (s.prepares !== undefined) this.remember(s.prepares, s);
      if (s.deallocates) {
        if (s.deallocates.all) this.clear();
        else this.forget(s.deallocates.name);
      }
    }
  }
}
