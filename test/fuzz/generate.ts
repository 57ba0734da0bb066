/**
 * fast-check arbitraries for fuzz cases. A case is an identity, a list of units and approval
 * answers; a unit is a simple Query (one statement, or several joined by `;`), an extended-protocol
 * round (Parse, Describe, Bind, Describe, Execute with or without a row limit, Execute again to
 * resume, Close, in an order that makes sense most of the time) or a lone mutated message (a Bind of
 * a name never parsed or made by SQL PREPARE, an Execute of a closed portal, a Close, a Describe),
 * each ending with Sync, Flush or nothing (pipelined into the next), or a pattern (a portal bound in
 * a transaction block and resumed after a Sync, a SQL PREPAREd name bound with the protocol, a
 * Parse's name used by SQL EXECUTE or DEALLOCATE, a suspended portal resumed after a Flush, an error
 * the client waits on). Every case ends with Sync, so
 * every answer is bounded. Shrinking removes units and moves choices toward the first (simplest)
 * pool entries.
 */
import fc from "fast-check";
import type { IdentityName } from "./fuzz-policy.js";
import type { Op, Param } from "./ops.js";
import type { FuzzCase } from "./run-case.js";
import {
  CURSORS, DENIED_TABLE, INT_VALUES, MASKED_READS, NEEDS_APPROVAL, PREPARED, READS, SETTINGS, TEXT_VALUES, TRANSACTION, WRITES, type PoolSql,
} from "./sql-pool.js";

const STATEMENTS = ["", "s1", "s2", "p1"];
/** Bind parameters for a SQL PREPAREd statement: right, and one too many or too few */
const WITH_ONE_INT: Param[][] = [["4"], [{ bin: "int4", v: "4" }], []];
const WITHOUT: Param[][] = [[], [], ["1"]];
const PORTALS = ["", "c1"];

/**
 * The statement pool, weighted per identity: a read-only job meets writes often enough to be
 * denied them, but not so often that every pipeline stops at its first denied Parse.
 */
const poolFor = (identity: IdentityName): fc.Arbitrary<PoolSql> => {
  const writer = identity === "writer";
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...READS) },
    { weight: 5, arbitrary: fc.constantFrom(...MASKED_READS) },
    { weight: 1, arbitrary: fc.constantFrom(...DENIED_TABLE) },
    { weight: writer ? 5 : 2, arbitrary: fc.constantFrom(...WRITES) },
    { weight: writer ? 2 : 1, arbitrary: fc.constantFrom(...NEEDS_APPROVAL) },
    { weight: 4, arbitrary: fc.constantFrom(...TRANSACTION) },
    { weight: 3, arbitrary: fc.constantFrom(...PREPARED) },
    { weight: 2, arbitrary: fc.constantFrom(...CURSORS) },
    { weight: 3, arbitrary: fc.constantFrom(...SETTINGS) },
  );
};

const intParam: fc.Arbitrary<Param> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...INT_VALUES) },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.constantFrom("1", "2", "7").map((v): Param => ({ bin: "int4", v })) },
);
const textParam: fc.Arbitrary<Param> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...TEXT_VALUES) },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom("b", "fz.bin@example.com").map((v): Param => ({ bin: "text", v })) },
);

/** parameters for a statement: the right number and types, most of the time */
const paramsFor = (p: PoolSql): fc.Arbitrary<Param[]> =>
  fc.oneof(
    { weight: 9, arbitrary: fc.tuple(...(p.p ?? []).map((t) => (t === "int" ? intParam : textParam))).map((xs) => xs as Param[]) },
    { weight: 1, arbitrary: fc.array(intParam, { maxLength: 2 }) },
  );

const terminator: fc.Arbitrary<Op[]> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Op[]>([{ t: "S" }]) },
  { weight: 2, arbitrary: fc.constant<Op[]>([{ t: "H" }]) },
  { weight: 1, arbitrary: fc.constant<Op[]>([{ t: "H" }, { t: "W" }]) },
  { weight: 3, arbitrary: fc.constant<Op[]>([]) },
);

/** The units of a case, drawing statements from `poolSql`. */
function unitsFrom(poolSql: fc.Arbitrary<PoolSql>): fc.Arbitrary<Op[]> {
  const queryUnit: fc.Arbitrary<Op[]> = fc
    .array(poolSql, { minLength: 1, maxLength: 3 })
    .filter((xs) => xs.every((x) => !x.p))
    .map((xs): Op[] => [{ t: "Q", sql: xs.map((x) => x.sql).join("; ") }]);

  /**
   * An extended-protocol round. Each part is there most of the time but not always, so names are
   * parsed in one round and bound or executed in another, a portal outlives its statement, and so on.
   */
  const extendedUnit: fc.Arbitrary<Op[]> = fc
    .record({
      sql: poolSql,
      name: fc.constantFrom(...STATEMENTS),
      portal: fc.constantFrom(...PORTALS),
      parse: fc.constantFrom(true, true, true, true, true, true, false),
      bind: fc.constantFrom(true, true, true, true, true, true, false),
      execute: fc.constantFrom(true, true, true, true, true, true, false),
      describeS: fc.boolean(),
      describeP: fc.boolean(),
      maxRows: fc.constantFrom(0, 0, 0, 1, 2),
      again: fc.boolean(),
      close: fc.constantFrom("none", "none", "portal", "statement"),
      binaryResults: fc.boolean(),
      term: terminator,
    })
    .chain((u) => paramsFor(u.sql).map((params) => ({ ...u, params })))
    .map((u): Op[] => {
      const ops: Op[] = [];
      if (u.parse) ops.push({ t: "P", name: u.name, sql: u.sql.sql });
      if (u.describeS) ops.push({ t: "D", kind: "S", name: u.name });
      if (u.bind) ops.push({ t: "B", portal: u.portal, stmt: u.name, params: u.params, ...(u.binaryResults ? { results: [1] } : {}) });
      if (u.describeP) ops.push({ t: "D", kind: "P", name: u.portal });
      if (u.execute) ops.push({ t: "E", portal: u.portal, maxRows: u.maxRows });
      if (u.execute && u.again) ops.push({ t: "E", portal: u.portal, maxRows: u.maxRows });
      if (u.close === "portal") ops.push({ t: "C", kind: "P", name: u.portal });
      if (u.close === "statement") ops.push({ t: "C", kind: "S", name: u.name });
      return [...ops, ...u.term];
    });

  /** one message out of its usual place */
  const loneUnit: fc.Arbitrary<Op[]> = fc.oneof(
    fc.record({ stmt: fc.constantFrom(...STATEMENTS), portal: fc.constantFrom(...PORTALS), params: fc.array(intParam, { maxLength: 1 }) })
      .map(({ stmt, portal, params }): Op[] => [{ t: "B", portal, stmt, params }, { t: "E", portal, maxRows: 0 }]),
    fc.record({ portal: fc.constantFrom(...PORTALS), maxRows: fc.constantFrom(0, 1) }).map(({ portal, maxRows }): Op[] => [{ t: "E", portal, maxRows }]),
    fc.record({ kind: fc.constantFrom<"S" | "P">("S", "P"), name: fc.constantFrom(...STATEMENTS, ...PORTALS) }).map(({ kind, name }): Op[] => [{ t: "C", kind, name }]),
    fc.record({ kind: fc.constantFrom<"S" | "P">("S", "P"), name: fc.constantFrom(...STATEMENTS, ...PORTALS) }).map(({ kind, name }): Op[] => [{ t: "D", kind, name }]),
    fc.constant<Op[]>([{ t: "S" }]),
    fc.constant<Op[]>([{ t: "H" }]),
  );

  /**
   * Shapes that stress what the proxy must mirror, with statements from the pool: a statement name
   * re-parsed under a bound portal (which must keep what was bound), and an error the server answers
   * before the client sends more (so what follows meets a server that skips to Sync).
   */
  const patternUnit: fc.Arbitrary<Op[]> = fc.oneof(
    fc.record({ first: poolSql, then: poolSql, name: fc.constantFrom("s1", "p1"), portal: fc.constantFrom(...PORTALS) })
      .chain((u) => paramsFor(u.first).map((params) => ({ ...u, params })))
      .map(({ first, then, name, portal, params }): Op[] => [
        { t: "P", name, sql: first.sql }, { t: "B", portal, stmt: name, params }, { t: "C", kind: "S", name },
        { t: "P", name, sql: then.sql }, { t: "E", portal, maxRows: 0 }, { t: "S" },
      ]),
    fc.record({ failing: fc.constantFrom("SELECT 1/0", "SELECT email::int FROM customers", "INSERT INTO items VALUES (1, 'dup', 1)"), wait: fc.boolean() })
      .map(({ failing, wait }): Op[] => [
        { t: "P", name: "", sql: failing }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 },
        ...(wait ? [{ t: "H" } as Op, { t: "W" } as Op] : []),
      ]),
    // a portal bound inside a transaction block outlives the Sync (the unnamed one too): executed
    // in part before it and resumed after it, then the block ends one way or another
    fc.record({ sql: poolSql, name: fc.constantFrom(...STATEMENTS), portal: fc.constantFrom("", "", "c1"), first: fc.constantFrom(0, 1, 2), then: fc.constantFrom(0, 1), end: fc.constantFrom("COMMIT", "ROLLBACK", "") })
      .chain((u) => paramsFor(u.sql).map((params) => ({ ...u, params })))
      .map(({ sql, name, portal, first, then, end, params }): Op[] => [
        { t: "Q", sql: "BEGIN" }, { t: "P", name, sql: sql.sql }, { t: "B", portal, stmt: name, params }, { t: "E", portal, maxRows: first }, { t: "S" },
        { t: "E", portal, maxRows: then }, { t: "S" },
        ...(end ? [{ t: "Q", sql: end } as Op] : []),
      ]),
    // a name made by SQL PREPARE, bound and executed with the protocol; and a Parse's name used
    // by SQL EXECUTE or DEALLOCATE, alone or among other statements
    fc.record({ prep: fc.constantFrom(...PREPARED.filter((p) => p.sql.startsWith("PREPARE "))), portal: fc.constantFrom(...PORTALS), maxRows: fc.constantFrom(0, 0, 1), describe: fc.boolean(), sync: fc.boolean() })
      .chain((u) => fc.constantFrom(...(u.prep.sql.includes("(int)") ? WITH_ONE_INT : WITHOUT)).map((params) => ({ ...u, params })))
      .map(({ prep, portal, maxRows, describe, sync, params }): Op[] => {
        const name = /^PREPARE (\w+)/.exec(prep.sql)![1]!;
        return [
          { t: "Q", sql: prep.sql }, ...(sync ? [{ t: "S" } as Op] : []),
          { t: "B", portal, stmt: name, params }, ...(describe ? [{ t: "D", kind: "P", name: portal } as Op] : []), { t: "E", portal, maxRows }, { t: "S" },
        ];
      }),
    fc.record({ sql: poolSql, name: fc.constantFrom("s1", "s2", "p1"), use: fc.constantFrom("EXECUTE", "DEALLOCATE", "DEALLOCATE PREPARE"), more: fc.constantFrom("", "", "SELECT 1", "SELECT 1/0"), before: fc.boolean() })
      .map(({ sql, name, use, more, before }): Op[] => {
        const stmt = `${use} ${name}`;
        const q = more ? (before ? `${more}; ${stmt}` : `${stmt}; ${more}`) : stmt;
        return [{ t: "P", name, sql: sql.sql }, { t: "S" }, { t: "Q", sql: q }];
      }),
    // a portal suspended by its row limit, resumed after a Flush the client waits on, pipelined
    fc.record({ sql: fc.constantFrom(...READS.filter((r) => /generate_series|FROM items/.test(r.sql) && !r.p), ...MASKED_READS.filter((r) => /FROM customers/.test(r.sql) && !r.p)), portal: fc.constantFrom(...PORTALS), rows: fc.constantFrom(1, 2) })
      .map(({ sql, portal, rows }): Op[] => [
        { t: "P", name: "", sql: sql.sql }, { t: "B", portal, stmt: "", params: [] }, { t: "E", portal, maxRows: rows }, { t: "H" }, { t: "W" },
        { t: "E", portal, maxRows: rows }, { t: "E", portal, maxRows: 0 }, { t: "S" },
      ]),
  );

  /** COPY FROM STDIN with its data in the same pipeline, ended by CopyDone or CopyFail */
  const copyInUnit: fc.Arbitrary<Op[]> = fc
    .record({
      table: fc.constantFrom("items", "customers", "secrets"),
      rows: fc.constantFrom(["30\tcopied\t1\n"], ["31\tx\t1\n", "1\tdup\t1\n"], ["bad row\n"], []),
      end: fc.constantFrom<"c" | "f">("c", "c", "f"),
      extended: fc.boolean(),
      term: terminator,
    })
    .map(({ table, rows, end, extended, term }): Op[] => {
      const sql = `COPY ${table} FROM STDIN`;
      const start: Op[] = extended ? [{ t: "P", name: "", sql }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 }] : [{ t: "Q", sql }];
      return [...start, ...rows.map((data): Op => ({ t: "d", data })), end === "c" ? { t: "c" } : { t: "f", message: "fuzz" }, ...(extended ? term : [])];
    });

  return fc.oneof(
    { weight: 4, arbitrary: queryUnit },
    { weight: 5, arbitrary: extendedUnit },
    { weight: 1, arbitrary: loneUnit },
    { weight: 3, arbitrary: patternUnit },
    { weight: 1, arbitrary: copyInUnit },
  );
}

const units = { reader: unitsFrom(poolFor("reader")), writer: unitsFrom(poolFor("writer")) };

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .constantFrom<IdentityName>("reader", "writer")
  .chain((identity) =>
    fc.record({
      units: fc.array(units[identity], { minLength: 1, maxLength: 10 }),
      approvals: fc.array(fc.boolean(), { maxLength: 3 }),
    }).map(({ units, approvals }): FuzzCase => ({ identity, ops: [...units.flat(), { t: "S" }], approvals })),
  );
