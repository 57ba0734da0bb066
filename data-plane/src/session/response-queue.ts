/**
 * The answers the upstream still owes, oldest first: one entry per forwarded message that the
 * server answers (Parse, Bind, Describe, Execute, Close, Sync, Query) in the order it will answer
 * them, plus the proxy's own poison and injected messages. Skip-to-Sync: after an error in the
 * extended protocol the server discards every message up to the next Sync, so their entries go
 * too. Pure.
 */
import type { MaskPlan, RowField, StatementRecord } from "./session-hooks.js";
import type { Portal, Slot, SqlEffect, Statement } from "./statement-namespace.js";

/** What a pending upstream response belongs to. */
export const enum K {
  Parse = 1,
  Bind,
  DescribeS,
  DescribeP,
  Execute,
  Close,
  Sync,
  Query,
  /** a denied Parse/Bind/Execute replaced by a Parse that fails: its error is swapped for `replacement` */
  PoisonParse,
  /** a denied Query (or FunctionCall) replaced by a Query that fails */
  PoisonQuery,
  /** an injected Describe(P) whose answer the client must not see */
  InjectedDescribe,
}

/**
 * What an injected Describe of a portal told before its Execute was forwarded (a binary-format
 * result is planned before the statement runs): the fields (none: NoData) and their mask plan, the
 * reason the rows cannot be masked, or that the server skipped the Describe (an earlier error).
 */
export type Described = { readonly fields?: RowField[]; readonly plan: MaskPlan | null } | { readonly refused: string } | "skipped";

export interface Pending {
  kind: K;
  /** Query/Execute: the statement */
  rec?: StatementRecord;
  startedAt?: number;
  rows?: number;
  tag?: string;
  error?: { sqlstate: string; message: string };
  /** poison: the ErrorResponse to show instead of the upstream's */
  replacement?: Buffer;
  /** a message the server answers itself under a name of the proxy's (`server`), which its answer puts back */
  rename?: { readonly server: string; readonly client: string; readonly statement: boolean };
  /** Describe / Execute: names for field bookkeeping */
  name?: string;
  fields?: RowField[];
  /** undefined: not computed yet; null: raw */
  plan?: MaskPlan | null;
  captured?: Buffer[];
  /** Query/Execute: masking applies to this statement's results (decided when it was forwarded) */
  mask?: boolean;
  /** simple query: how many of its statements have completed (the index of the one running) */
  stmtIndex?: number;
  /** simple query: answered with EmptyQueryResponse (no statement) */
  empty?: boolean;
  /**
   * simple query: the records of its statements, each completed at its own CommandComplete (one,
   * `rec`, for a Query of one statement); absent when the decision does not say what the
   * statements are, and then `rec` is completed once at ReadyForQuery with `tagRows`
   */
  parts?: readonly StatementRecord[];
  /** simple query without `parts`: rows summed over the command tags of its statements */
  tagRows?: number;
  /** Describe: the slot whose server object the answer describes (row capture labels columns with it) */
  slot?: Slot<Statement> | Slot<Portal>;
  /** Query/Execute: SQL-level PREPARE / DEALLOCATE / DISCARD ALL of its statements, in order */
  effects?: SqlEffect[];
  /** InjectedDescribe sent ahead of an Execute that waits for it: told the fields (undefined: NoData) or that the server skipped it */
  described?: (fields: RowField[] | undefined | "skipped") => void;
  /** Query/Execute: the server answered with CopyInResponse (1) or CopyOutResponse (2) */
  copy?: 0 | 1 | 2;
}

/** Whether the server answers an entry of this kind with a change of the statement namespace to resolve. */
export function opOf(kind: K): "set" | "clear" | "query" | "poison" | undefined {
  switch (kind) {
    case K.Parse:
    case K.Bind:
      return "set";
    case K.Close:
      return "clear";
    case K.Query:
    case K.PoisonQuery:
      return "query";
    case K.PoisonParse:
      return "poison";
    default:
      return undefined;
  }
}

// payload-free entries are shared: no allocation per forwarded frame
export const PARSE: Pending = { kind: K.Parse };
export const BIND: Pending = { kind: K.Bind };
export const CLOSE: Pending = { kind: K.Close };
export const SYNC: Pending = { kind: K.Sync };
export const DESCRIBE_S: Pending = { kind: K.DescribeS };
export const DESCRIBE_P: Pending = { kind: K.DescribeP };

/** A FIFO with O(1) pop (a head index instead of shift()). */
export class ResponseQueue {
  private items: Pending[] = [];
  private head = 0;
  /** entries ever pushed / popped: absolute positions (the head's is `popped`) */
  private pushedTotal = 0;
  private poppedTotal = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  get pushed(): number {
    return this.pushedTotal;
  }

  get popped(): number {
    return this.poppedTotal;
  }

  push(p: Pending): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.items.push(p);
    this.pushedTotal++;
  }

  peek(): Pending | undefined {
    return this.items[this.head];
  }

  /** the entry `i` places behind the head */
  at(i: number): Pending | undefined {
    return this.items[this.head + i];
  }

  pop(): Pending | undefined {
    const p = this.items[this.head];
    if (p !== undefined) {
      this.items[this.head] = undefined as unknown as Pending;
      this.head++;
      this.poppedTotal++;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
    }
    return p;
  }

  /**
   * The server skips every message up to the next Sync after an error: drops those entries (the
   * Sync's own stays), handing each to `skipped` in order.
   */
  discardUntilSync(skipped: (p: Pending) => void): void {
    for (let p = this.peek(); p !== undefined && p.kind !== K.Sync; p = this.peek()) skipped(this.pop()!);
  }

  /** takes the `n` entries right behind the head out of the queue (Syncs the server swallows during COPY FROM STDIN) */
  removeBehindHead(n: number): void {
    if (n <= 0) return;
    this.items.splice(this.head + 1, n);
    this.pushedTotal -= n;
  }
}
