/**
 * The session's prepared statements and portals as the server has them, owned by the proxy.
 *
 * Every name a client chooses for a named statement or portal is renamed to a name this session
 * allocates (`<prefix>s<n>`, `<prefix>p<n>`, the prefix random per process), as pgbouncer and PgDog
 * rename prepared statements: the server's object under that name can only have been made by the
 * proxy's own Parse or Bind for that client name, so "what runs when this name is executed" is
 * whatever the proxy last saw the server accept for it, or nothing (and the server then says so).
 * The unnamed statement and portal keep their unnamed server objects (no rename on the hot path):
 * no SQL can name them.
 *
 * A change is an op, recorded when its message is forwarded and resolved when the server answers
 * (ok), fails it, or skips it after an earlier error; the value the server holds is `confirmed`.
 * A message decided before the server answered earlier ones uses the projection (confirmed plus the
 * ops still in flight, assumed to succeed), which is what the server will have when it gets there
 * when the last op on that name was sent in the same Sync batch as an extended-protocol message: if
 * that op fails, the server skips the message too. Otherwise (an op of an earlier batch, or of a
 * simple Query, whose failure does not skip what follows) the projection is not certain and the
 * message must wait (`whenCertain`) until it is. Pure.
 *
 * SQL-level PREPARE/DEALLOCATE and DISCARD ALL/DEALLOCATE ALL are ops too, resolved by their
 * command's completion: a protocol Bind of a name made by SQL PREPARE is decided with that
 * statement, and DEALLOCATE ALL drops the renamed protocol statements as it does on the server.
 *
 * A simple Query drops the unnamed statement first thing, and the unnamed portal only when one of
 * its statements gets as far as running (each runs in a fresh unnamed portal, dropped when it
 * completes). So (as measured against PG 15 with raw frames): an empty Query keeps the unnamed
 * portal; one that fails inside a transaction block may leave the portal of the statement that
 * failed (an error at executor start or while running) or the previous portal (an error before,
 * in parsing, analysis or planning, or 25P02), and the transaction's abort marks every portal of
 * the transaction failed, so none of them can run again until the block ends. That is
 * `answerQuery`: the previous portal is kept as it was (the only one that may run, and only when
 * the transaction was already aborted and it is a ROLLBACK), or where there was none, or the
 * Query's first statement had already replaced it, the slot holds a `leftover` portal: "a failed
 * portal, or none", which nothing can run and whose Execute the server answers itself.
 */
import type { Decision } from "@sluice/shared/policy";
import type { StatementInfo } from "@sluice/shared/sql";
import type { BoundParam, RowField } from "./session-hooks.js";

/** A prepared statement the client made with Parse (or one made by SQL PREPARE, bound by a protocol Bind). */
export interface Statement {
  readonly sql: string;
  readonly decision: Decision;
  /** the client's name ("" = unnamed) and the server's */
  readonly name: string;
  readonly server: string;
  /** made by SQL PREPARE and bound by a protocol Bind: its Execute runs what it prepares (no PREPARE of its own) */
  readonly sqlLevel?: boolean;
  /** a Parse of `DEALLOCATE name` of a Parse's statement, sent as `DEALLOCATE <this server name>` */
  readonly deallocates?: string;
  fields?: RowField[];
}

/** A prepared statement made by SQL PREPARE: decided again when a protocol Bind uses it. */
export interface SqlStatement {
  /** the PREPARE statement's own text */
  readonly text: string;
  /** its classification (that of what it prepares) */
  readonly info: StatementInfo;
}

/** A portal: a statement bound with its parameters. */
export interface Portal {
  readonly statement: Statement;
  readonly name: string;
  readonly server: string;
  readonly params?: readonly BoundParam[];
  /** the Bind asked for some result column in binary format */
  readonly binary?: boolean;
  /**
   * Not a Bind's: the unnamed portal after a failed simple Query in a transaction block, which the
   * server may keep, failed, until the block ends (see the header). It can never run.
   */
  readonly leftover?: true;
  fields?: RowField[];
}

/** How a simple Query ended, as far as its unnamed statement and portal go (see the header). */
export type QueryEnd =
  /** every statement completed */
  | "completed"
  /** EmptyQueryResponse: nothing ran, the unnamed portal is kept */
  | "empty"
  /** failed (or a poison in its place) before its first statement completed */
  | "failed-first"
  /** failed after some statement completed: that statement's portal replaced the previous one */
  | "failed-later";

/** One name's server object and the changes to it still in flight. */
export interface Slot<T> {
  /** where the slot lives: protocol statements, portals, SQL-level statements */
  readonly space: "s" | "p" | "q";
  readonly key: string;
  readonly server: string;
  /** the client's name, for error messages */
  readonly name: string;
  confirmed: T | null;
  /** in flight, oldest first */
  readonly pending: Array<{ readonly gen: number; readonly skips: boolean; readonly value: T | null }>;
  /** a Parse's `DEALLOCATE <server>` names it: kept, empty or not, so that name stays this client name's (see pin) */
  pinned?: true;
}

/** What an op does once resolved. */
const enum OpKind {
  /** Parse / Bind: `value` on success; the unnamed statement is dropped even when the Parse fails */
  Set = 1,
  /** Close */
  Clear,
  /** a simple Query: drops the unnamed statement and portal when the server runs it */
  Query,
  /** a poison Parse (always fails); for a denied unnamed Parse it drops the unnamed statement */
  Poison,
}

interface Op {
  readonly kind: OpKind;
  readonly slots: readonly Slot<unknown>[];
  readonly value: unknown;
  /** a failed Parse of the unnamed statement leaves no unnamed statement (the server drops it first) */
  readonly clearOnFailure: boolean;
}

/** SQL-level changes of a statement (PREPARE, DEALLOCATE, DISCARD ALL), applied at its completion. */
export interface SqlEffect {
  /** the statement's position in its message, and the command tag its completion carries */
  readonly index: number;
  readonly tag: string;
  /** a SQL-level name, or a Parse's statement deallocated under the server's name */
  readonly slot: Slot<SqlStatement> | Slot<Statement> | null;
  /** null: DEALLOCATE name; a statement: PREPARE name; "all": DEALLOCATE ALL / DISCARD ALL */
  readonly value: SqlStatement | Statement | null | "all";
  /** DISCARD ALL also drops every portal */
  readonly portals: boolean;
  /**
   * A SQL PREPARE of a name a protocol Parse took, sent under that statement's server name so that
   * the server refuses it (42P05) itself: `slot` is the Parse's, `value` what it holds, unchanged.
   * Until the server has answered, that name waits; its completion would mean the proxy lost track.
   */
  readonly clash?: true;
}

/** A SQL PREPARE of a Query that names a Parse's statement (see SqlEffect.clash). */
export interface PrepareClash {
  readonly index: number;
  readonly slot: Slot<Statement>;
}

/**
 * The SQL PREPAREs and DEALLOCATEs of a message that name a protocol Parse's statement, which the
 * server knows under its server name: each is sent under that name (clash-rename.ts).
 */
export interface ProtocolNames {
  /** DEALLOCATE of a Parse's statement, in statement order */
  readonly deallocates: readonly PrepareClash[];
  /** the first PREPARE of a name a Parse holds: the server fails it, and runs nothing after it */
  readonly clash?: PrepareClash;
}

export type Outcome = "ok" | "failed" | "skipped";

const OP_OF = { set: OpKind.Set, clear: OpKind.Clear, query: OpKind.Query, poison: OpKind.Poison } as const;

const NAME_BYTES = 63; // NAMEDATALEN - 1: the server compares names on their first 63 bytes
const MAX_NAMES = 65_536;

/**
 * The key of a client name: its first 63 bytes (latin1, one char per byte), as the server's hash
 * tables compare them. `raw` is the name's bytes.
 */
export function nameKey(raw: Buffer, start: number, end: number): string {
  return raw.toString("latin1", start, Math.min(end, start + NAME_BYTES));
}

/** the statement of a `leftover` portal: nothing is decided for it, as nothing of it can run */
const LEFTOVER_STATEMENT: Statement = {
  sql: "",
  decision: { action: "deny", rule: "leftover-portal", reason: "a failed portal cannot run", statementClass: "unknown", statementIndex: 0, statements: [] },
  name: "",
  server: "",
};

/** a fresh one each time: a Describe's answer may set its fields */
const leftoverPortal = (): Portal => ({ statement: LEFTOVER_STATEMENT, name: "", server: "", leftover: true });

export class StatementNamespace {
  /** the current Sync batch: messages of one batch are skipped together after an error */
  private gen = 0;
  private readonly statements = new Map<string, Slot<Statement>>();
  private readonly portals = new Map<string, Slot<Portal>>();
  private readonly sql = new Map<string, Slot<SqlStatement>>();
  readonly unnamedStatement: Slot<Statement>;
  readonly unnamedPortal: Slot<Portal>;
  /** ops in the order their messages were forwarded (the order the server answers them) */
  private ops: Op[] = [];
  private opHead = 0;
  /** DEALLOCATE ALL / DISCARD ALL in flight: every named statement (and portal) is uncertain */
  private globalPending = 0;
  private waiters: Array<{ ready: () => boolean; resolve: () => void }> = [];
  /** server name → client name, to put the client's names back into the server's messages */
  private readonly clientNames = new Map<string, string>();
  private counter = 0;
  /** matches the server names of this process in a message */
  readonly serverNamePattern: RegExp;

  constructor(readonly prefix: string) {
    this.unnamedStatement = { space: "s", key: "", server: "", name: "", confirmed: null, pending: [] };
    this.unnamedPortal = { space: "p", key: "", server: "", name: "", confirmed: null, pending: [] };
    this.serverNamePattern = new RegExp(`${prefix}[sp]\\d+`, "g");
  }

  /** a Sync was forwarded: a new batch begins */
  sync(): void {
    this.gen++;
  }

  // ---------------------------------------------------------------- lookups

  /** the protocol-level statement slot of a client name (undefined: never used) */
  statementSlot(key: string): Slot<Statement> | undefined {
    return key === "" ? this.unnamedStatement : this.statements.get(key);
  }

  portalSlot(key: string): Slot<Portal> | undefined {
    return key === "" ? this.unnamedPortal : this.portals.get(key);
  }

  /** the SQL-level (PREPARE) statement slot of a name */
  sqlSlot(name: string): Slot<SqlStatement> | undefined {
    return this.sql.get(name);
  }

  /** what the server will hold under this slot once everything forwarded so far has run */
  projected<T>(slot: Slot<T> | undefined): T | null {
    if (slot === undefined) return null;
    const n = slot.pending.length;
    return n === 0 ? slot.confirmed : slot.pending[n - 1]!.value;
  }

  /** whether `projected(slot)` is what the server has when it gets to a message sent now (see the header) */
  certain(slot: Slot<unknown> | undefined, named: boolean): boolean {
    if (named && this.globalPending > 0) return false;
    if (slot === undefined) return true;
    const n = slot.pending.length;
    if (n === 0) return true;
    const last = slot.pending[n - 1]!;
    return last.gen === this.gen && last.skips;
  }

  /** resolves once `ready()` holds (checked after every resolution) */
  whenReady(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ ready, resolve }));
  }

  /** the SQL-level statement a name will mean (the enforcer's PreparedStatements) */
  resolve(name: string): StatementInfo | undefined {
    return this.projected(this.sql.get(name))?.info;
  }

  /** whether the SQL-level meaning of every name in `names` is certain now */
  sqlCertain(names: readonly string[]): boolean {
    for (const n of names) if (!this.certain(this.sql.get(n), true)) return false;
    return true;
  }

  // ---------------------------------------------------------------- ops (in forwarding order)

  /** a Parse of `key` is forwarded: returns the statement's server name */
  parse(key: string, make: (server: string) => Statement): Statement {
    const slot = key === "" ? this.unnamedStatement : this.slot(this.statements, "s", key);
    const st = make(slot.server);
    this.push({ kind: OpKind.Set, slots: [slot], value: st, clearOnFailure: key === "" }, true);
    return st;
  }

  /** a Bind into portal `key` is forwarded */
  bind(key: string, make: (server: string) => Portal): Portal {
    const slot = key === "" ? this.unnamedPortal : this.slot(this.portals, "p", key);
    const p = make(slot.server);
    this.push({ kind: OpKind.Set, slots: [slot], value: p, clearOnFailure: false }, true);
    return p;
  }

  /** a Close of a slot is forwarded (null: of a name the server does not have; nothing changes) */
  close(slot: Slot<unknown> | null): void {
    this.push({ kind: OpKind.Clear, slots: slot ? [slot] : [], value: null, clearOnFailure: false }, true);
  }

  /** a simple Query (or the poison in its place) is forwarded; `answerQuery` resolves it */
  query(): void {
    this.push({ kind: OpKind.Query, slots: [this.unnamedStatement, this.unnamedPortal], value: null, clearOnFailure: false }, false);
  }

  /** a poison Parse is forwarded; `unnamed`: it stands for a denied unnamed Parse */
  poison(unnamed: boolean): void {
    this.push({ kind: OpKind.Poison, slots: unnamed ? [this.unnamedStatement] : [], value: null, clearOnFailure: unnamed }, true);
  }

  /**
   * The server answered, failed or skipped the oldest op, which was forwarded as a message of kind
   * `of` (a mismatch means the proxy lost track of the server: the caller ends the session). A
   * simple Query the server ran is answered with `answerQuery`; "ok" here stands for "completed".
   */
  answer(outcome: Outcome, of: "set" | "clear" | "query" | "poison"): void {
    if (of === "query" && outcome !== "skipped") return this.answerQuery("completed");
    const op = this.take(of);
    for (const slot of op.slots) {
      slot.pending.shift();
      if (outcome === "ok") slot.confirmed = op.kind === OpKind.Set ? op.value : null;
      else if (outcome === "failed" && op.clearOnFailure) slot.confirmed = null;
      this.release(slot);
    }
    this.wake();
  }

  /**
   * The server ran the oldest op, a simple Query (or its poison), which ended as `end`: the unnamed
   * statement is gone; the unnamed portal as the header says. The transaction's end, if the Query
   * ended it, is told after this (`transactionEnded`).
   */
  answerQuery(end: QueryEnd): void {
    this.take("query");
    const st = this.unnamedStatement;
    const portal = this.unnamedPortal;
    st.pending.shift();
    portal.pending.shift();
    st.confirmed = null;
    if (end === "completed") portal.confirmed = null;
    else if (end === "failed-later" || (end === "failed-first" && portal.confirmed === null)) portal.confirmed = leftoverPortal();
    this.wake();
  }

  private take(of: "set" | "clear" | "query" | "poison"): Op {
    const op = this.ops[this.opHead];
    if (op === undefined || op.kind !== OP_OF[of]) throw new Error(`the server answered a ${of} message the proxy does not expect`);
    this.ops[this.opHead] = undefined as unknown as Op;
    this.opHead++;
    if (this.opHead === this.ops.length) {
      this.ops.length = 0;
      this.opHead = 0;
    } else if (this.opHead > 1024 && this.opHead * 2 > this.ops.length) {
      this.ops = this.ops.slice(this.opHead);
      this.opHead = 0;
    }
    return op;
  }

  /**
   * SQL-level effects of a statement about to be forwarded (PREPARE / DEALLOCATE / DISCARD ALL),
   * applied by `settle` at its completion. `skips`: an extended-protocol Execute (a failure skips
   * the rest of the batch); a simple Query's does not. `clash`: the PREPARE sent to fail under a
   * Parse's server name (the server runs nothing after it).
   */
  sqlEffects(statements: readonly StatementInfo[], skips: boolean, names?: ProtocolNames): SqlEffect[] | undefined {
    let out: SqlEffect[] | undefined;
    const clash = names?.clash;
    const n = clash ? clash.index + 1 : statements.length;
    let d = 0;
    for (let index = 0; index < n; index++) {
      const s = statements[index]!;
      let e: SqlEffect | undefined;
      if (index === names?.deallocates[d]?.index) {
        // a Parse's statement, deallocated under its server name: gone once that DEALLOCATE completed
        e = { index, tag: "DEALLOCATE", slot: names.deallocates[d++]!.slot, value: null, portals: false };
      } else if (index === clash?.index) {
        e = { index, tag: "PREPARE", slot: clash.slot, value: this.projected(clash.slot), portals: false, clash: true };
      } else if (s.prepares !== undefined) {
        e = { index, tag: "PREPARE", slot: this.slot(this.sql, "q", s.prepares), value: { text: s.text, info: s }, portals: false };
      } else if (s.deallocates) {
        const discard = s.kind === "DiscardStmt";
        e = s.deallocates.all
          ? { index, tag: discard ? "DISCARD ALL" : "DEALLOCATE ALL", slot: null, value: "all", portals: discard }
          : { index, tag: "DEALLOCATE", slot: this.slot(this.sql, "q", s.deallocates.name), value: null, portals: false };
      }
      if (e === undefined) continue;
      if (e.slot) (e.slot as Slot<unknown>).pending.push({ gen: this.gen, skips, value: e.value });
      else this.globalPending++;
      (out ??= []).push(e);
    }
    return out;
  }

  /** `DEALLOCATE <server name>` of a Parse's statement is forwarded as a Parse's, by its Execute (`skips`) */
  deallocateProtocol(slot: Slot<Statement>, skips: boolean): SqlEffect {
    slot.pending.push({ gen: this.gen, skips, value: null });
    return { index: 0, tag: "DEALLOCATE", slot, value: null, portals: false };
  }

  /** a statement with SQL-level effects completed (`ran`) or did not run */
  settle(e: SqlEffect, ran: boolean): void {
    if (e.slot) {
      e.slot.pending.shift();
      if (ran) (e.slot as Slot<unknown>).confirmed = e.value;
      this.release(e.slot);
    } else {
      this.globalPending--;
      if (ran) {
        // the server dropped every prepared statement, the renamed protocol ones too (the unnamed one stays)
        const dropped: Slot<unknown>[] = [...this.statements.values(), ...this.sql.values()];
        if (e.portals) dropped.push(...this.portals.values(), this.unnamedPortal);
        for (const slot of dropped) {
          slot.confirmed = null;
          this.release(slot);
        }
      }
    }
    this.wake();
  }

  /**
   * The first SQL PREPARE among `statements` whose name a protocol Parse holds (as the server
   * will have it when it gets there): the server refuses it, since on the client's server the two
   * share one namespace. A DEALLOCATE ALL (or DISCARD ALL) before it in the same message drops the
   * Parse's statement first, so nothing after it clashes. `slot` may be uncertain.
   */
  /**
   * Whether every protocol statement a PREPARE of `statements` names is settled on the server, so
   * that prepareClash reads what the server will have: a Close of the name the server may yet skip
   * (an error before it, finding 035) leaves the name taken there though the projection has it free
   */
  preparesCertain(statements: readonly StatementInfo[]): boolean {
    for (const s of statements) {
      if (s.prepares === undefined) continue;
      const slot = this.statementSlot(nameKey(Buffer.from(s.prepares, "utf8"), 0, Buffer.byteLength(s.prepares, "utf8")));
      if (slot !== undefined && !this.certain(slot, true)) return false;
    }
    return true;
  }

  prepareClash(statements: readonly StatementInfo[]): PrepareClash | undefined {
    return this.protocolNames(statements)?.clash;
  }

  /**
   * The statements of a message that name a protocol Parse's statement (as the server will have
   * it when it gets there; the slots may be uncertain): each DEALLOCATE of one (unless the name is
   * a SQL PREPARE's), and the first PREPARE of one (see prepareClash). A DEALLOCATE of a name drops
   * it for the statements after it, so a PREPARE of that name after it makes a SQL-level statement
   * and does not clash, and a DEALLOCATE of it again is the server's to refuse or to run on that
   * SQL-level statement. After a DEALLOCATE ALL (or DISCARD ALL) no Parse's statement is left.
   * Undefined when there is none.
   */
  protocolNames(statements: readonly StatementInfo[]): ProtocolNames | undefined {
    let deallocates: PrepareClash[] | undefined;
    let gone: Set<string> | undefined;
    let clash: PrepareClash | undefined;
    for (let index = 0; index < statements.length && clash === undefined; index++) {
      const s = statements[index]!;
      if (s.deallocates?.all) break;
      const name = s.prepares ?? s.deallocates?.name;
      if (name === undefined) continue;
      const key = nameKey(Buffer.from(name, "utf8"), 0, Buffer.byteLength(name, "utf8"));
      if (gone?.has(key)) continue;
      const slot = this.statementSlot(key);
      if (slot === undefined || this.projected(slot) === null) continue;
      if (s.prepares !== undefined) clash = { index, slot };
      else if (this.projected(this.sql.get(name)) === null) {
        (deallocates ??= []).push({ index, slot });
        (gone ??= new Set()).add(key);
      }
    }
    return deallocates || clash ? { deallocates: deallocates ?? [], clash } : undefined;
  }

  /**
   * The server said it is outside any transaction (ReadyForQuery 'I'): no portal exists any more
   * (portals of the extended protocol end with their transaction). Binds still in flight keep theirs.
   */
  transactionEnded(): void {
    this.unnamedPortal.confirmed = null;
    if (this.portals.size === 0) return;
    for (const slot of [...this.portals.values()]) {
      slot.confirmed = null;
      this.release(slot);
    }
  }

  // ---------------------------------------------------------------- messages

  /** the client's name for a server name of this session (undefined: not ours) */
  clientName(server: string): string | undefined {
    return this.clientNames.get(server);
  }

  private push(op: Op, skips: boolean): void {
    for (const slot of op.slots) slot.pending.push({ gen: this.gen, skips, value: op.kind === OpKind.Set ? op.value : null });
    this.ops.push(op);
  }

  private slot<T>(map: Map<string, Slot<T>>, space: "s" | "p" | "q", key: string): Slot<T> {
    let s = map.get(key);
    if (s === undefined) {
      if (this.statements.size + this.portals.size + this.sql.size >= MAX_NAMES) {
        throw Object.assign(new Error(`more than ${MAX_NAMES} prepared statements and portals in one session`), { sqlstate: "54000" });
      }
      // SQL-level names are the server's own (and already the classifier's strings); protocol names get one of this session's
      const sqlLevel = space === "q";
      const server = sqlLevel ? key : `${this.prefix}${space}${++this.counter}`;
      const name = sqlLevel ? key : Buffer.from(key, "latin1").toString("utf8");
      s = { space, key, server, name, confirmed: null, pending: [] };
      map.set(key, s);
      if (!sqlLevel) this.clientNames.set(server, name);
    }
    return s;
  }

  /**
   * A Parse of `DEALLOCATE name` was sent as `DEALLOCATE <this slot's server name>`: the slot keeps
   * that server name for the session, whatever the name holds meanwhile, so that the prepared
   * DEALLOCATE, executed later, deallocates what the client's name means then, as on the client's
   * server (a Close and a new Parse of the name in between get the same server name).
   */
  pin(slot: Slot<Statement>): void {
    slot.pinned = true;
  }

  /** a named slot that holds nothing and expects nothing is forgotten (its server name is not reused), unless pinned */
  private release(slot: Slot<unknown>): void {
    if (slot.server === "" || slot.confirmed !== null || slot.pending.length > 0 || slot.pinned) return;
    const map: Map<string, Slot<unknown>> = slot.space === "s" ? this.statements : slot.space === "p" ? this.portals : this.sql;
    if (map.get(slot.key) !== slot) return;
    map.delete(slot.key);
    this.clientNames.delete(slot.server);
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.ready()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** for tests and metrics */
  get size(): { statements: number; portals: number; sql: number; ops: number } {
    return { statements: this.statements.size, portals: this.portals.size, sql: this.sql.size, ops: this.ops.length - this.opHead };
  }
}
