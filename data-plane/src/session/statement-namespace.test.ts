import { test } from "node:test";
import assert from "node:assert/strict";
import type { Decision } from "@sluice/shared/policy";
import type { StatementInfo } from "@sluice/shared/sql";
import { nameKey, StatementNamespace, type Portal, type Statement } from "./statement-namespace.js";

const allow: Decision = { action: "allow", rule: "r", reason: "", statementClass: "read", statementIndex: 0, statements: [] };
const stmt = (sql: string) => (server: string): Statement => ({ sql, decision: allow, name: "n", server });
const info = (over: Partial<StatementInfo>): StatementInfo => ({ text: "", kind: "PrepareStmt", class: "read", tables: { read: [], write: [] }, functions: [], risks: [], ...over });

test("a named statement is renamed; it is known once the server confirms it, and a failed re-Parse changes nothing", () => {
  const ns = new StatementNamespace("_abc_");
  const a = ns.parse("s1", stmt("SELECT 1"));
  assert.match(a.server, /^_abc_s\d+$/);
  const slot = ns.statementSlot("s1")!;
  assert.equal(slot.confirmed, null, "not known before the server confirmed it");
  assert.equal(ns.projected(slot), a);
  ns.answer("ok", "set");
  assert.equal(slot.confirmed, a);
  const b = ns.parse("s1", stmt("DELETE FROM t"));
  assert.equal(b.server, a.server, "one server name per client name");
  assert.equal(ns.projected(slot), b);
  ns.answer("failed", "set"); // 42P05: the name exists
  assert.equal(slot.confirmed, a, "the failed re-Parse left the first statement");
  assert.equal(ns.projected(slot), a);
  assert.equal(ns.clientName(a.server), "s1");
});

test("the unnamed statement: a failed Parse drops the previous one (the server drops it first), a skipped one does not", () => {
  const ns = new StatementNamespace("_abc_");
  const a = ns.parse("", stmt("SELECT 'a'"));
  assert.equal(a.server, "", "the unnamed statement is not renamed");
  ns.answer("ok", "set");
  ns.parse("", stmt("SELECT 'b'"));
  ns.answer("skipped", "set");
  assert.equal(ns.unnamedStatement.confirmed, a);
  ns.parse("", stmt("SELECT nope"));
  ns.answer("failed", "set");
  assert.equal(ns.unnamedStatement.confirmed, null);
  ns.poison(true);
  ns.parse("", stmt("SELECT 'c'"));
  ns.answer("failed", "poison");
  assert.equal(ns.unnamedStatement.confirmed, null, "a denied unnamed Parse drops the previous statement too");
});

test("certainty: an op of the same Sync batch is certain, one of an earlier batch or of a simple Query is not until answered", async () => {
  const ns = new StatementNamespace("_abc_");
  const slot = ns.unnamedStatement;
  ns.parse("", stmt("SELECT 1"));
  assert.equal(ns.certain(slot, false), true, "same batch: if it fails, the server skips the Bind too");
  ns.sync();
  assert.equal(ns.certain(slot, false), false, "the next batch: the Parse may yet fail or have been skipped");
  let ready = false;
  const waiting = ns.whenReady(() => ns.certain(slot, false)).then(() => (ready = true));
  await Promise.resolve();
  assert.equal(ready, false);
  ns.answer("ok", "set");
  await waiting;
  assert.equal(ready, true);
  ns.query();
  assert.equal(ns.certain(slot, false), false, "a Query's failure does not skip what follows it");
  assert.equal(ns.projected(slot), null, "a Query drops the unnamed statement");
  ns.parse("", stmt("SELECT 2"));
  assert.equal(ns.certain(slot, false), true, "a later Parse in the same batch decides, whatever the Query did");
});

test("SQL PREPARE holds once its command completed; DEALLOCATE ALL drops the renamed protocol statements, not the unnamed one", () => {
  const ns = new StatementNamespace("_abc_");
  ns.parse("s1", stmt("SELECT 1"));
  ns.parse("", stmt("SELECT 2"));
  ns.answer("ok", "set");
  ns.answer("ok", "set");
  const [prep] = ns.sqlEffects([info({ prepares: "x", text: "PREPARE x AS DELETE FROM t", class: "write" })], false)!;
  assert.equal(ns.resolve("x")?.class, "write", "the projection is what the enforcer resolves");
  assert.equal(ns.certain(ns.sqlSlot("x"), true), false);
  ns.settle(prep!, true);
  assert.equal(ns.sqlSlot("x")!.confirmed!.text, "PREPARE x AS DELETE FROM t");
  const [failed] = ns.sqlEffects([info({ kind: "DeallocateStmt", deallocates: { all: false, name: "x" } })], false)!;
  ns.settle(failed!, false);
  assert.ok(ns.sqlSlot("x")!.confirmed, "a DEALLOCATE that did not run changes nothing");
  const [all] = ns.sqlEffects([info({ kind: "DeallocateStmt", deallocates: { all: true } })], true)!;
  assert.equal(ns.certain(ns.statementSlot("s1"), true), false, "every named statement waits for DEALLOCATE ALL");
  ns.settle(all!, true);
  assert.equal(ns.projected(ns.statementSlot("s1")), null);
  assert.equal(ns.resolve("x"), undefined);
  assert.ok(ns.unnamedStatement.confirmed, "the unnamed statement is not in the server's table");
});

test("portals: a transaction's end drops them, a Bind in flight keeps its own; DISCARD ALL drops them too", () => {
  const ns = new StatementNamespace("_abc_");
  const st = ns.parse("", stmt("SELECT 1"));
  ns.answer("ok", "set");
  ns.bind("p", (server) => ({ statement: st, name: "p", server }));
  ns.answer("ok", "set");
  ns.bind("", (server) => ({ statement: st, name: "", server }));
  ns.transactionEnded();
  assert.equal(ns.projected(ns.portalSlot("p")), null);
  assert.ok(ns.projected(ns.unnamedPortal), "the Bind in flight still projects its portal");
  ns.answer("ok", "set");
  assert.ok(ns.unnamedPortal.confirmed);
  const [discard] = ns.sqlEffects([info({ kind: "DiscardStmt", deallocates: { all: true } })], false)!;
  ns.settle(discard!, true);
  assert.equal(ns.unnamedPortal.confirmed, null);
});

test("a closed name is forgotten: the next Parse of it gets a new server name", () => {
  const ns = new StatementNamespace("_abc_");
  const a = ns.parse("s1", stmt("SELECT 1"));
  ns.answer("ok", "set");
  ns.close(ns.statementSlot("s1")!);
  ns.answer("ok", "clear");
  assert.equal(ns.statementSlot("s1"), undefined);
  assert.equal(ns.clientName(a.server), undefined);
  const b = ns.parse("s1", stmt("SELECT 2"));
  assert.notEqual(b.server, a.server);
  assert.equal(ns.size.statements, 1);
});

test("an answer of the wrong kind means the proxy lost track: it throws", () => {
  const ns = new StatementNamespace("_abc_");
  assert.throws(() => ns.answer("ok", "set"), /does not expect/);
  ns.query();
  assert.throws(() => ns.answer("ok", "set"), /does not expect/);
});

test("names compare on their first 63 bytes, as the server's tables do", () => {
  const long = Buffer.from("x".repeat(70));
  assert.equal(nameKey(long, 0, 70), "x".repeat(63));
  assert.equal(nameKey(long, 0, 64), nameKey(long, 0, 70));
  const multi = Buffer.from("é".repeat(40)); // 80 bytes
  assert.equal(Buffer.from(nameKey(multi, 0, 80), "latin1").length, 63);
});

test("a simple Query drops the unnamed statement; the unnamed portal goes only when a statement of it ran to completion, a failed one may leave a failed portal", () => {
  const ns = new StatementNamespace("_abc_");
  // read anew each time (not narrowed by the assertions before)
  const unnamed = (): Portal | null => ns.unnamedPortal.confirmed;
  const st = ns.parse("", stmt("SELECT 1"));
  ns.answer("ok", "set");
  const bound = ns.bind("", (server) => ({ statement: st, name: "", server }));
  ns.answer("ok", "set");
  ns.query();
  assert.equal(ns.certain(ns.unnamedPortal, false), false, "until the Query is answered the unnamed portal is in question");
  ns.answerQuery("empty");
  assert.equal(ns.unnamedStatement.confirmed, null, "every Query drops the unnamed statement first");
  assert.equal(unnamed(), bound, "an empty Query runs nothing");
  ns.query();
  ns.answerQuery("failed-first");
  assert.equal(unnamed(), bound, "failed before its first statement ran: the Bind's portal may still be there");
  ns.query();
  ns.answerQuery("failed-later");
  assert.equal(unnamed()?.leftover, true, "its first statement replaced the portal; the failed one may be left");
  ns.query();
  ns.answerQuery("failed-first");
  assert.equal(unnamed()?.leftover, true);
  ns.query();
  ns.answerQuery("completed");
  assert.equal(unnamed(), null);
  ns.query();
  ns.answerQuery("failed-first");
  assert.equal(unnamed()?.leftover, true, "none before, and the failed statement's may be left");
  ns.transactionEnded();
  assert.equal(unnamed(), null, "the block's end drops it");
  ns.query();
  ns.answer("skipped", "query");
  assert.equal(unnamed(), null, "a skipped Query changes nothing");
});

test("a SQL PREPARE of a Parse's name clashes, unless a DEALLOCATE ALL before it in the message dropped the Parse's; its effect waits on the Parse's name and keeps it", () => {
  const ns = new StatementNamespace("_abc_");
  const a = ns.parse("s2", stmt("SELECT 1"));
  ns.answer("ok", "set");
  const set = info({ kind: "VariableSetStmt", text: "SET a = 1" });
  const prepare = info({ prepares: "s2", text: "PREPARE s2 AS SELECT 2" });
  const clash = ns.prepareClash([set, prepare, info({ prepares: "s3" })]);
  assert.equal(clash?.index, 1);
  assert.equal(clash?.slot, ns.statementSlot("s2"));
  assert.equal(ns.prepareClash([info({ kind: "DeallocateStmt", deallocates: { all: true } }), prepare]), undefined);
  assert.equal(ns.prepareClash([info({ prepares: "other" })]), undefined);
  ns.query();
  const effects = ns.sqlEffects([set, prepare, info({ prepares: "s4" })], false, { deallocates: [], clash })!;
  assert.deepEqual(effects.map((e) => [e.index, e.clash ?? false]), [[1, true]], "nothing after the failing PREPARE");
  assert.equal(ns.sqlSlot("s2"), undefined, "no SQL-level statement of that name is expected");
  assert.equal(ns.certain(ns.statementSlot("s2"), true), false, "a Bind of s2 waits for the Query");
  ns.settle(effects[0]!, false);
  ns.answerQuery("failed-later");
  assert.equal(ns.statementSlot("s2")!.confirmed, a);
  assert.equal(ns.certain(ns.statementSlot("s2"), true), true);
});

test("a message's DEALLOCATEs of Parse's names: each is that statement's, gone only once it ran; after it the name is free for a SQL PREPARE; DEALLOCATE ALL ends the walk", () => {
  const ns = new StatementNamespace("_abc_");
  const p1 = ns.parse("p1", stmt("SELECT 1"));
  ns.answer("ok", "set");
  ns.sqlEffects([info({ prepares: "q1", text: "PREPARE q1 AS SELECT 2" })], false)!.forEach((e) => ns.settle(e, true));
  const dealloc = (name: string) => info({ kind: "DeallocateStmt", deallocates: { all: false, name } });
  const sel = info({ kind: "SelectStmt" });
  // DEALLOCATE p1 (a Parse's), DEALLOCATE q1 (a SQL PREPARE's, as it is), PREPARE p1 (no clash: p1 is free by then), DEALLOCATE p1 (that SQL-level one)
  const msg = [sel, dealloc("p1"), dealloc("q1"), info({ prepares: "p1" }), dealloc("p1")];
  const names = ns.protocolNames(msg)!;
  assert.deepEqual(names.deallocates.map((d) => [d.index, d.slot.server]), [[1, p1.server]]);
  assert.equal(names.clash, undefined);
  assert.equal(ns.protocolNames([info({ kind: "DeallocateStmt", deallocates: { all: true } }), dealloc("p1")]), undefined);
  assert.equal(ns.protocolNames([dealloc("nosuch"), sel]), undefined);
  assert.deepEqual(ns.protocolNames([info({ prepares: "p1" }), dealloc("p1")]), { deallocates: [], clash: { index: 0, slot: ns.statementSlot("p1") } }, "nothing runs after the clash");
  ns.query();
  const effects = ns.sqlEffects(msg, false, names)!;
  assert.deepEqual(effects.map((e) => [e.index, e.slot?.space]), [[1, "s"], [2, "q"], [3, "q"], [4, "q"]]);
  assert.equal(ns.certain(ns.statementSlot("p1"), true), false, "a Bind of p1 waits for the Query");
  // the SELECT before it fails: the server skips the rest, p1 stays
  for (const e of effects) ns.settle(e, false);
  ns.answerQuery("failed-first");
  assert.equal(ns.statementSlot("p1")!.confirmed, p1);
  assert.equal(ns.clientName(p1.server), "p1");
  // now it runs: p1 is gone once its DEALLOCATE completed, and its server name forgotten
  ns.query();
  const again = ns.sqlEffects([dealloc("p1"), sel], false, ns.protocolNames([dealloc("p1"), sel]))!;
  ns.settle(again[0]!, true);
  ns.answerQuery("failed-later");
  assert.equal(ns.statementSlot("p1"), undefined);
  assert.equal(ns.clientName(p1.server), undefined);
  assert.equal(ns.size.statements, 0);
});
