/**
 * The orderings of issue 11's "the response queue follows the server exactly" that the fuzz
 * generator does not produce: portal suspension with Execute's row limit then Close (and a rebind
 * of the name, a Describe of the suspended portal, the unnamed portal across Sync), pipelines that
 * only Flush (answers wanted before any Sync, an error among them), COPY inside a pipeline without
 * Sync (TO and FROM, a row limit on a COPY), a binary-format Execute under masking rules without
 * Sync, a message that waits for the server's answers while no Sync is behind it, a SQL PREPARE of
 * a Parse's name among other statements (finding 023), the portals failing simple Queries leave in
 * a transaction block and names the server does not have (finding 028), a Query's DEALLOCATE of a
 * Parse's name among other statements (finding 030) and a Parse's DEALLOCATE of a name made again.
 *
 * Each is sent as raw frames through the proxy and straight to the server; the proxy's answers
 * must be the server's, message for message, with masked values in place of the raw ones (which
 * must reach the client nowhere).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Bundle } from "@sluice/shared/policy";
import { bind, close, copyData, copyDone, copyFail, describe, execute, flush, parse, query, sync } from "../../data-plane/src/wire/encode.js";
import { rawConnect, show, type RawClient, type RawMessage } from "../lib/raw-pg-client.js";
import { ADMIN_URL, startProxyStack } from "./proxy-stack.js";

const EMAILS = ["ann.private@example.com", "bob.hidden@example.org", "cy.secret@example.net"];

/** what the client is told, NoticeResponse and ParameterStatus left out, masked values as one token */
function seen(ms: readonly RawMessage[]): string[] {
  return ms.filter((m) => m.type !== "N" && m.type !== "S").map((m) => show(m).replace(/\[REDACTED\]/g, "MASKED"));
}

test("the proxy answers pipelines that Flush, suspend, Close and COPY without Sync exactly as the server does", { timeout: 480_000 }, async (t) => {
  const s = await startProxyStack(t, {
    dp: { enforcer: undefined, maskingHashKey: Buffer.from("orderings") },
    bundle: (b): Bundle => ({
      ...b,
      policies: [{ name: "w", groups: ["w"], resources: ["app"], allow: ["read", "write", "copy", "utility"] }],
      masking: [{ resources: ["app"], columns: ["customers.email"], strategy: "redact" }],
    }),
  });
  await s.direct(`CREATE TABLE customers (id int, email text); CREATE TABLE items (id int);
    INSERT INTO customers VALUES ${EMAILS.map((e, i) => `(${i + 1}, '${e}')`).join(", ")}`);
  const admin = new URL(ADMIN_URL);
  const connect = async (proxied: boolean): Promise<RawClient> => {
    const c = proxied
      ? await rawConnect({ port: s.dp.port, database: "app", user: "w", password: await s.token({ sub: "w", groups: ["w"] }), tls: true })
      : await rawConnect({ host: admin.hostname, port: Number(admin.port || 5432), database: s.database, user: decodeURIComponent(admin.username) || "postgres" });
    t.after(() => c.end());
    return c;
  };
  /** everything that arrives until nothing more does for `quietMs` (the server's answers to a step) */
  const settle = async (c: RawClient, quietMs: number): Promise<RawMessage[]> => {
    const out: RawMessage[] = [];
    for (;;) {
      const got = await c.readFor(quietMs);
      if (got.length === 0) return out;
      out.push(...got);
    }
  };
  /** the proxy's answer to a step: as many messages as the server gave (generous: the machine may be loaded), then nothing more */
  const answer = async (c: RawClient, n: number): Promise<RawMessage[]> => {
    let k = 0;
    const out = n === 0 ? [] : await c.until((m) => m.type !== "N" && m.type !== "S" && ++k === n, 30_000);
    out.push(...(await settle(c, 300)));
    return out;
  };

  const cases: Array<[string, Buffer[][]]> = [
    ["a suspended portal closed, then executed", [[query("BEGIN"), parse("", "SELECT id FROM customers ORDER BY id"), bind("p", ""), execute("p", 1), close("P", "p"), execute("p", 1), sync(), query("ROLLBACK")]]],
    ["a suspended portal closed and its name bound to another statement", [[query("BEGIN"), parse("s", "SELECT email FROM customers ORDER BY id"), bind("p", "s"), execute("p", 1), close("P", "p"), parse("t", "SELECT id FROM customers"), bind("p", "t"), execute("p", 1), sync(), query("ROLLBACK")]]],
    ["the unnamed portal suspended, a Sync outside a transaction, executed again", [[parse("", "SELECT email FROM customers ORDER BY id"), bind("", ""), execute("", 1), sync(), execute("", 1), sync()]]],
    ["a suspended portal described, then resumed", [[query("BEGIN"), parse("", "SELECT email FROM customers ORDER BY id"), bind("p", ""), execute("p", 1), describe("P", "p"), execute("p", 1), sync(), query("ROLLBACK")]]],
    ["a pipeline that only flushes, then its Sync", [[parse("", "SELECT email FROM customers WHERE id = 1"), bind("", ""), execute(""), flush()], [sync()]]],
    ["a flushed pipeline that fails, more behind it, then Sync", [[parse("", "SELECT 1 / (id - id) FROM customers"), bind("", ""), execute(""), flush()], [parse("", "SELECT email FROM customers"), bind("", ""), execute(""), flush()], [sync()]]],
    ["COPY TO in a pipeline without Sync, a statement behind it, Flush", [[parse("", "COPY (SELECT email FROM customers ORDER BY id) TO STDOUT"), bind("", ""), execute(""), parse("", "SELECT 2"), bind("", ""), execute(""), flush()], [sync()]]],
    ["COPY FROM in a pipeline, its data after a Flush", [[parse("", "COPY items FROM STDIN"), bind("", ""), execute(""), flush()], [copyData("7\n"), copyDone(), sync()]]],
    ["a row limit on a COPY", [[parse("", "COPY (SELECT email FROM customers ORDER BY id) TO STDOUT"), bind("", ""), execute("", 1), sync()]]],
    ["two COPY TO in one simple Query", [[query("COPY (SELECT id FROM customers ORDER BY id) TO STDOUT; COPY (SELECT email FROM customers ORDER BY id) TO STDOUT")]]],
    ["a binary-format Execute under masking rules, flushed, then resumed", [[query("BEGIN"), parse("", "SELECT email FROM customers ORDER BY id"), bind("p", "", [], [], [1]), execute("p", 1), flush()], [execute("p", 1), close("P", "p"), execute("p", 1), sync(), query("ROLLBACK")]]],
    // finding 026: the server fails the COPY and skips to Sync; so does the proxy, deciding nothing behind it
    ["CopyFail behind an extended COPY FROM, a write behind it", [[parse("", "COPY items FROM STDIN"), bind("", ""), execute(""), copyFail("no"), parse("w", "UPDATE items SET id = 0"), bind("", "w"), execute(""), sync(), query("SELECT count(*) FROM items WHERE id = 0")]]],
    // finding 024: in an aborted transaction a Parse of a name SQL PREPARE took gets the server's 25P02, not 42P05
    ["a clashing Parse in an aborted transaction", [[query("BEGIN READ ONLY; PREPARE p1 AS SELECT 1"), query("COPY items FROM STDIN"), parse("p1", "SELECT 2"), sync(), query("ROLLBACK")]]],
    ["a clashing Parse, and a clashing PREPARE, outside one", [[query("PREPARE p2 AS SELECT 1"), parse("p2", "SELECT 2"), sync(), parse("p3", "SELECT 3"), sync(), query("PREPARE p3 AS SELECT 4"), query("DEALLOCATE ALL")]]],
    // finding 023: the statements before a PREPARE of a Parse's name run, the PREPARE fails where the server fails it (after
    // its own analysis, behind 25P02), the implicit transaction rolls them back and nothing after it runs
    ["a Query's PREPARE of a name a Parse took, statements before and after it", [
      [parse("s2", "SELECT 1"), sync()],
      [query("SET statement_timeout = 5000; PREPARE s2 AS SELECT 2; SELECT 3")],
      [query("SHOW statement_timeout")],
      [query("SELECT 1; PREPARE s2 AS SELECT nocol")],
      [query("BEGIN; SET statement_timeout = 7000; PREPARE s2 AS SELECT 2; SELECT 3"), query("SHOW statement_timeout"), query("PREPARE s2 AS SELECT 4"), query("ROLLBACK")],
      [query("DEALLOCATE ALL; PREPARE s2 AS SELECT 5"), query("EXECUTE s2"), query("DEALLOCATE ALL")],
    ]],
    // a Parse of DEALLOCATE of a Parse's statement: its Execute deallocates that statement (the server's name for it)
    ["a Parse of DEALLOCATE of a Parse's statement, executed, then the statement used", [
      [parse("s1", "SELECT 1"), parse("d", "DEALLOCATE s1"), sync()], [bind("c", "d"), execute("c"), sync()], [bind("", "s1"), execute(""), sync()],
      [parse("s1", "SELECT 2"), bind("", "s1"), execute(""), sync()],
    ]],
    // finding 030: a Query's DEALLOCATE of a Parse's statement among other statements is the server's to run or skip: the
    // statement is gone once that DEALLOCATE ran (an error after it does not bring it back), and stays when an error before it
    // skipped it; after it the name is free for a SQL PREPARE; DEALLOCATE ALL before it leaves nothing to deallocate
    ["a Query's DEALLOCATE of a Parse's statement first and last among other statements", [
      [parse("p1", "SELECT 1"), sync()], [query("DEALLOCATE p1; SELECT 1/0")], [bind("", "p1"), execute(""), sync()],
      [parse("p1", "SELECT 2"), sync()], [query("SELECT 3; deallocate prepare p1")], [bind("", "p1"), execute(""), sync()],
      [parse("p1", "SELECT 4"), parse("p2", "SELECT 5"), sync()], [query("DEALLOCATE p1; DEALLOCATE p2; DEALLOCATE p1")], [bind("", "p2"), execute(""), sync()],
    ]],
    ["an error before a Query's DEALLOCATE of a Parse's statement: the statement stays usable", [
      [parse("p1", "SELECT 1"), sync()], [query("SELECT 1/0; DEALLOCATE p1")], [bind("", "p1"), execute(""), sync()],
      [query("SELECT nocol; DEALLOCATE p1")], [query("DEALLOCATE nosuch; DEALLOCATE p1")], [bind("", "p1"), execute(""), sync()],
      [query("DEALLOCATE p1")],
    ]],
    ["a Query's DEALLOCATE of a Parse's statement in a transaction block", [
      [parse("p1", "SELECT 1"), parse("p2", "SELECT 2"), sync()],
      [query("BEGIN; DEALLOCATE p1; SELECT 1/0")], [query("DEALLOCATE p2; SELECT 1")], [query("ROLLBACK")],
      [bind("", "p1"), execute(""), sync()], [bind("", "p2"), execute(""), sync()],
      [query("BEGIN")], [query("SELECT 1; DEALLOCATE p2")], [query("COMMIT")], [bind("", "p2"), execute(""), sync()],
    ]],
    ["a Query's DEALLOCATE of a Parse's name next to SQL PREPARE names, and DEALLOCATE ALL", [
      [parse("p1", "SELECT 1"), sync()], [query("PREPARE q1 AS SELECT 11")],
      [query("DEALLOCATE q1; DEALLOCATE p1; PREPARE p1 AS SELECT 12; EXECUTE p1")], [bind("", "p1"), execute(""), sync()], [bind("", "q1"), execute(""), sync()],
      [query("SELECT 13; DEALLOCATE p1; DEALLOCATE p1")], [bind("", "p1"), execute(""), sync()],
      [parse("p2", "SELECT 2"), sync()], [query("SELECT 1; DEALLOCATE ALL; DEALLOCATE p2")], [bind("", "p2"), execute(""), sync()],
      [parse("p3", "SELECT 3"), sync()], [query("DEALLOCATE p3; PREPARE p3 AS SELECT 14; DEALLOCATE p3; PREPARE p3 AS SELECT 15")], [bind("", "p3"), execute(""), sync()], [query("DEALLOCATE ALL")],
    ]],
    // a prepared DEALLOCATE deallocates what its name means when it is executed, the name made again in between too; a Parse
    // of it among other statements is the server's to refuse (42601, before 25P02)
    ["a Parse of DEALLOCATE of a Parse's name, the name closed and made again before its Execute", [
      [parse("s1", "SELECT 1"), parse("d", "DEALLOCATE s1"), sync()], [close("S", "s1"), parse("s1", "SELECT 2"), sync()], [bind("c", "d"), execute("c"), sync()],
      [bind("", "s1"), execute(""), sync()], [parse("s1", "SELECT 3"), sync()], [bind("c", "d"), execute("c"), sync()], [bind("", "s1"), execute(""), sync()],
      [bind("c", "d"), execute("c"), sync()], [parse("s1", "SELECT 4"), parse("m", "DEALLOCATE s1; SELECT 1"), sync()], [bind("", "s1"), execute(""), sync()],
      [query("BEGIN"), query("SELECT 1/0"), parse("m", "DEALLOCATE s1; SELECT 1"), sync(), query("ROLLBACK")],
    ]],
    // finding 028: what portals a failing simple Query leaves in a transaction block, and who answers an Execute of them
    ["the failed portal a Query leaves in a READ ONLY block", [
      [parse("p1", "BEGIN READ ONLY"), bind("c1", "p1"), execute("c1"), query("UPDATE items SET id = 1"), execute("", 1), sync()],
      [describe("P", ""), sync()], [execute(""), sync()], [query("ROLLBACK")], [execute(""), sync()],
    ]],
    ["a runtime error leaves its portal; one before the first statement runs leaves a Bind's", [
      [query("BEGIN")], [query("SELECT 1 / (id - id) FROM customers")], [describe("P", ""), sync()], [execute(""), sync()], [query("ROLLBACK")],
      [query("BEGIN")], [parse("", "ROLLBACK"), bind("", ""), sync()], [query("SELECT nocol")], [describe("P", ""), sync()], [execute(""), sync()], [query("ROLLBACK")],
    ]],
    ["a ROLLBACK bound in an aborted block survives a Query's 25P02 and runs; a completed Query drops the unnamed portal, an empty one keeps it", [
      [query("BEGIN")], [query("SELECT 1 / (id - id) FROM customers")], [parse("", "ROLLBACK"), bind("", ""), sync()], [query("SELECT 1")], [execute(""), sync()],
      [query("BEGIN")], [parse("", "SELECT 7"), bind("", ""), sync()], [query("")], [execute(""), sync()], [query("SELECT 8")], [execute(""), sync()], [query("ROLLBACK")],
    ]],
    ["names the server does not have, in and out of an aborted block", [
      [bind("", "nosuch"), execute(""), sync()], [execute("nop"), sync()], [describe("S", "nosuch"), sync()], [describe("P", "nop"), sync()], [bind("", ""), sync()], [execute(""), sync()],
      [query("BEGIN"), query("SELECT 1 / (id - id) FROM customers"), bind("", "nosuch"), sync(), execute("nop"), sync(), execute(""), sync(), query("ROLLBACK")],
    ]],
    ["a Describe of a named portal waiting for DEALLOCATE ALL, no Sync behind it", [[parse("s2", "DEALLOCATE ALL"), bind("c1", "s2"), execute("c1", 1), describe("P", "s1"), flush()], [sync()]]],
  ];
  for (const [name, steps] of cases) {
    await t.test(name, async () => {
      const server = await connect(false);
      const proxy = await connect(true);
      for (const [i, step] of steps.entries()) {
        server.send(...step);
        const want = await settle(server, 1_000);
        proxy.send(...step);
        const got = await answer(proxy, seen(want).length);
        const raw = Buffer.concat(got.map((m) => m.raw)).toString("latin1");
        for (const e of EMAILS) assert.ok(!raw.includes(e), `${name}, step ${i + 1}: a raw masked value reached the client`);
        const masked = seen(want).map((x) => EMAILS.reduce((y, e) => y.split(e).join("MASKED"), x));
        // binary DataRows are shown as bytes: compare their count and kind, not their text
        const norm = (xs: string[]) => xs.map((x) => (x.startsWith("D:") && /[^\x20-\x7e]/.test(x) ? "D:<binary>" : x));
        assert.deepEqual(norm(seen(got)), norm(masked), `${name}, step ${i + 1}`);
      }
    });
  }
});
