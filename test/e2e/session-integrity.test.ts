/**
 * Enforcement integrity of the session state (issue 11): the proxy's picture of the session is the
 * server's. Each attack below got through before the statement namespace and the response queue
 * were the proxy's own; each is sent as raw protocol frames through the real proxy to a private
 * PostgreSQL cluster that logs every statement it runs (`log_statement = all`), and each test checks
 * both what the client saw (SQLSTATE, rows) and what the server ran (its log, the tables).
 *
 * The policy is the contract's example shape: a read-only `ci` identity and a `deployers` identity
 * with requireApproval (an approval gate that rejects, unless a test says otherwise),
 * `tables.deny: [public.secrets]` and masked `customers.email`.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Bundle } from "@sluice/shared/policy";
import { noopAudit, type ApprovalGate, type AuditSink, type StatementCompletion, type StatementRecord } from "@sluice/data-plane";
import { bind, close, copyData, copyDone, describe, execute, flush, parse, query, sync } from "../../data-plane/src/wire/encode.js";
import { startPgCluster, type PgCluster } from "../lib/pg-cluster.js";
import { firstError, rawConnect, show, shown, type RawClient, type RawMessage } from "../lib/raw-pg-client.js";
import { startProxyStack, type ProxyStack } from "./proxy-stack.js";

const EMAIL = "alice.private@example.com";

test("session integrity: the proxy's statements, portals and answers are the server's", { timeout: 240_000 }, async (t) => {
  const cluster = await startPgCluster({ conf: ["log_statement = 'all'", "log_line_prefix = '[%d] '", "log_min_messages = warning"] });
  t.after(() => cluster.stop());
  await t.test("through the proxy", (t2) => attacks(t2, cluster));
});

async function attacks(t: TestContext, cluster: PgCluster): Promise<void> {
  const records: StatementRecord[] = [];
  const completions: StatementCompletion[] = [];
  const ended: string[] = [];
  const audit: AuditSink = {
    ...noopAudit,
    statementAllowed: (_s, r) => void records.push(r),
    statementCompleted: (_s, d) => void completions.push(d),
    sessionEnded: (_i, e) => void ended.push(e.reason),
  };
  const approvalsAsked: StatementRecord[] = [];
  let approveNext = 0;
  const approvals: ApprovalGate = {
    async request(_s, rec, notice) {
      approvalsAsked.push(rec);
      notice(`approval request for statement ${rec.seq}`);
      if (approveNext > 0) {
        approveNext--;
        return "approved";
      }
      return "rejected";
    },
  };
  const s = await startProxyStack(t, {
    adminUrl: cluster.url(),
    upstream: { port: cluster.port },
    dp: { enforcer: undefined, audit, auditFeatures: { decodeParams: true, captureRows: 0 }, approvals },
    bundle: (b): Bundle => ({
      ...b,
      policies: [
        { name: "ci-read", groups: ["ci"], resources: ["app"], allow: ["read"] },
        {
          name: "deployers", groups: ["deployers"], resources: ["app"], allow: ["read", "write", "ddl"],
          requireApproval: ["ddl", "delete-without-where", "update-without-where", "truncate"],
          deny: ["drop-database", "copy-program", "superuser-functions"],
          tables: { deny: ["public.secrets"] },
          approval: { approvers: ["dba"], timeout: "10m" },
        },
        // COPY FROM needs the copy class, which the contract's example gives nobody
        { name: "loaders", groups: ["loaders"], resources: ["app"], allow: ["read", "write", "copy"] },
        // an application whose driver evicts its statement cache with DEALLOCATE (utility)
        { name: "apps", groups: ["apps"], resources: ["app"], allow: ["read", "utility"] },
      ],
      masking: [{ resources: ["app"], columns: ["customers.email", "customers.card_number"], classifiers: ["email", "credit-card", "jwt"], strategy: "partial" }],
    }),
  });
  await s.direct(`
    CREATE TABLE items (id int PRIMARY KEY, name text);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
    CREATE TABLE customers (id int PRIMARY KEY, email text, card_number text);
    INSERT INTO customers VALUES (1, '${EMAIL}', '4111111111111111'), (2, 'bob.hidden@example.org', '5500005555555559');
    CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('the-secret');`);

  const log = serverLog(cluster, s.database);
  const items = async () => (await s.direct("SELECT count(*)::int AS n FROM items")).rows[0].n as number;
  const connect = async (group: "ci" | "deployers" | "loaders" | "apps"): Promise<RawClient> => {
    const c = await rawConnect({ port: s.dp.port, database: "app", user: group, password: await s.token({ sub: `${group}-attacker`, groups: [group] }), tls: true });
    t.after(() => c.end());
    return c;
  };
  /** every byte the client received, as text: a raw masked value must be nowhere in it */
  const noRaw = (ms: RawMessage[]) => assert.ok(!Buffer.concat(ms.map((m) => m.raw)).toString("latin1").includes(EMAIL), `a raw masked value reached the client: ${shown(ms).join(" ")}`);

  await t.test("re-Parse of a name the server rejected: the server keeps the first statement and the proxy knows it", async () => {
    const c = await connect("deployers");
    c.send(parse("s", "DELETE FROM items"), sync(), parse("s", "SELECT 1"), sync(), bind("", "s"), execute(""), sync());
    const got = await c.untilReady(3);
    assert.deepEqual(shown(got), ["1", "Z:I", "E:42P05", "Z:I", "2", "E:42501", "Z:I"]);
    assert.match(firstError(got.slice(2))!.M!, /prepared statement "s" already exists/, "the server's error, in the client's name");
    assert.equal(approvalsAsked.at(-1)?.sql, "DELETE FROM items", "the Execute was decided as what the server holds");
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/^DELETE/), []);
  });

  await t.test("Bind, then re-Parse of the name before Execute: the Execute is the bound statement's", async () => {
    const c = await connect("deployers");
    c.send(parse("", "DELETE FROM items"), bind("", ""), parse("", "SELECT 1"), execute(""), sync());
    const got = await c.untilReady();
    assert.deepEqual(shown(got), ["1", "2", "1", "E:42501", "Z:I"]);
    assert.equal(approvalsAsked.at(-1)?.sql, "DELETE FROM items");
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/^DELETE/), []);
  });

  await t.test("the unnamed portal outlives Sync inside a transaction: executing it later is still masked and recorded", async () => {
    const c = await connect("ci");
    c.send(query("BEGIN"), parse("", "SELECT email FROM customers ORDER BY id"), bind("", ""), sync());
    assert.deepEqual(shown(await c.untilReady(2)), ["C:BEGIN", "Z:T", "1", "2", "Z:T"]);
    const before = records.length;
    c.send(execute(""), sync());
    const got = await c.untilReady();
    assert.deepEqual(shown(got).map((x) => x.replace(/^D:.*/, "D")), ["D", "D", "C:SELECT 2", "Z:T"]);
    noRaw(got);
    assert.equal(records.length, before + 1);
    assert.equal(records.at(-1)!.sql, "SELECT email FROM customers ORDER BY id");
    c.send(query("COMMIT"));
    await c.untilReady();
  });

  await t.test("SQL PREPARE, then protocol Bind/Execute of its name: decided with the prepared statement", async () => {
    const ci = await connect("ci");
    ci.send(query("PREPARE pe AS SELECT email FROM customers ORDER BY id"), bind("", "pe"), execute(""), sync());
    const read = await ci.untilReady(2);
    assert.deepEqual(shown(read).map((x) => x.replace(/^D:.*/, "D")), ["C:PREPARE", "Z:I", "2", "D", "D", "C:SELECT 2", "Z:I"]);
    noRaw(read);
    const dep = await connect("deployers");
    approveNext = 1; // the PREPARE of a DELETE without WHERE is approved, once
    dep.send(query("PREPARE wipe AS DELETE FROM items"));
    assert.deepEqual(shown(await dep.untilReady()), ["C:PREPARE", "Z:I"]);
    const asked = approvalsAsked.length;
    dep.send(bind("", "wipe"), execute(""), sync());
    assert.deepEqual(shown(await dep.untilReady()), ["2", "E:42501", "Z:I"]);
    assert.equal(approvalsAsked.length, asked + 1, "executing it asks for an approval again");
    assert.equal(approvalsAsked.at(-1)!.sql, "PREPARE wipe AS DELETE FROM items");
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/wipe/), ["PREPARE wipe AS DELETE FROM items"], "the PREPARE ran, the DELETE it prepares did not");
  });

  await t.test("a denied Parse followed by Bind/Execute of its name in the same pipeline: nothing of it runs", async () => {
    const c = await connect("ci");
    c.send(parse("d", "DELETE FROM items WHERE id = 1"), bind("", "d"), execute(""), sync(), bind("", "d"), execute(""), sync());
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got), ["E:42501", "Z:I", "E:26000", "Z:I"]);
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/^DELETE/), []);
  });

  await t.test("errors mid-pipeline do not shift the answers: every masked result stays masked, every record is its own", async () => {
    const c = await connect("ci");
    const before = completions.length;
    c.send(
      // the server fails the first Execute and skips the rest of the batch, a masked read among it
      parse("", "SELECT 1 / (id - id) FROM items"), bind("", ""), execute(""),
      parse("", "SELECT email FROM customers ORDER BY id"), bind("", ""), execute(""), sync(),
      query("SELECT 1/0"),
      parse("", "SELECT email FROM customers WHERE id = 1"), bind("", ""), describe("P", ""), execute(""), sync(),
      execute("nosuchportal"), sync(),
    );
    const got = await c.untilReady(4);
    assert.deepEqual(shown(got).map((x) => x.replace(/^D:.*/, "D")), ["1", "2", "E:22012", "Z:I", "E:22012", "Z:I", "1", "2", "T:email", "D", "C:SELECT 1", "Z:I", "E:34000", "Z:I"]);
    noRaw(got);
    const mine = completions.slice(before);
    assert.deepEqual(mine.map((d) => d.error?.sqlstate ?? d.commandTag), ["22012", "22012", "22012", "SELECT 1"], "the failed Execute, the one the server skipped, the failed Query, the read");
  });

  await t.test("portal suspension interleaved with another portal's Execute: each portal's rows are its own and masked", async () => {
    const c = await connect("ci");
    c.send(
      query("BEGIN"),
      parse("a", "SELECT email FROM customers ORDER BY id"), bind("pa", "a"),
      parse("b", "SELECT id FROM items ORDER BY id"), bind("pb", "b"),
      execute("pa", 1), execute("pb", 2), execute("pa", 1), execute("pa", 1), sync(),
    );
    const got = await c.untilReady(2);
    const lines = shown(got).map((x) => (x.startsWith("D:") && x.includes("@") ? "D:email" : x));
    assert.deepEqual(lines, ["C:BEGIN", "Z:T", "1", "2", "1", "2", "D:email", "s", "D:1", "D:2", "s", "D:email", "s", "C:SELECT 0", "Z:T"]);
    noRaw(got);
    c.send(close("P", "pa"), sync(), query("ROLLBACK"));
    await c.untilReady(2);
  });

  await t.test("a simple Query inside a failed extended pipeline is discarded by the server, and by the proxy", async () => {
    const c = await connect("deployers");
    c.send(parse("", "SELECT nope_col FROM customers"), query("DELETE FROM items WHERE id = 1"), sync(), query("SELECT email FROM customers WHERE id = 1"));
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got).map((x) => x.replace(/^D:.*/, "D")), ["E:42703", "Z:I", "T:email", "D", "C:SELECT 1", "Z:I"]);
    noRaw(got);
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/^DELETE/), []);
  });

  await t.test("COPY inside a pipeline: COPY TO of masked columns never leaks; COPY FROM with messages behind it is refused", async () => {
    const ci = await connect("ci");
    ci.send(parse("", "COPY (SELECT email FROM customers) TO STDOUT"), bind("", ""), execute(""), parse("", "SELECT 1"), bind("", ""), execute(""), sync());
    const out = await ci.until((m) => m.type === "Z" || (m.type === "E" && /FATAL/.test(m.raw.toString("latin1"))), 10_000).catch((e: { messages?: RawMessage[] }) => e.messages ?? []);
    noRaw(out);
    const dep = await connect("loaders");
    dep.send(parse("", "COPY items FROM STDIN"), bind("", ""), execute(""), sync(), parse("", "SELECT 1"), bind("", ""), execute(""), sync());
    const refused = await dep.until((m) => m.type === "E" && firstError([m])!.S === "FATAL");
    assert.equal(firstError(refused.filter((m) => m.type === "E").slice(-1))!.C, "08P01");
    await dep.closed;
    assert.equal(await items(), 5);
    const fine = await connect("loaders");
    fine.send(parse("", "COPY items FROM STDIN"), bind("", ""), execute(""), sync());
    assert.deepEqual(shown(await fine.until((m) => m.type === "G")), ["1", "2", "G"]);
    fine.send(copyData("6\tsix\n"), copyDone(), sync());
    assert.deepEqual(shown(await fine.untilReady()), ["C:COPY 1", "Z:I"]);
    assert.equal(await items(), 6);
    await s.direct("DELETE FROM items WHERE id = 6");
  });

  await t.test("what an approval needs never runs unapproved, whichever name it hides under", async () => {
    const c = await connect("deployers");
    c.send(parse("mig", "ALTER TABLE items ADD COLUMN note text"), sync(), describe("S", "mig"), bind("p", "mig"), execute("p"), sync());
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got), ["1", "Z:I", "t", "n", "2", "E:42501", "Z:I"]);
    assert.deepEqual(log.ran(/ALTER/), []);
    assert.equal((await s.direct("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'")).rows[0].n, 0);
  });

  await t.test("SQL naming the proxy's own statements is denied", async () => {
    const c = await connect("ci");
    c.send(parse("mine", "SELECT 1"), sync());
    await c.untilReady();
    c.send(query("SELECT name FROM pg_prepared_statements"));
    const names = shown(await c.untilReady()).filter((x) => x.startsWith("D:")).map((x) => x.slice(2));
    assert.equal(names.length, 1);
    const server = names[0]!;
    assert.notEqual(server, "mine", "the server knows the statement under the proxy's name");
    c.send(query(`EXECUTE ${server}`), query(`DEALLOCATE ${server}`), query(`SELECT '${server}'`));
    const got = await c.untilReady(3);
    assert.deepEqual(shown(got), ["E:42501", "Z:I", "E:42501", "Z:I", "E:42501", "Z:I"]);
    c.send(bind("", "mine"), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady()), ["2", "D:1", "C:SELECT 1", "Z:I"]);
  });

  await t.test("an error before the client sent Sync: the Query it sends behind it is skipped by the server and the proxy alike", async () => {
    const c = await connect("deployers");
    const before = completions.length;
    c.send(parse("", "SELECT 1 / (id - id) FROM items"), bind("", ""), execute(""), flush());
    assert.deepEqual(shown(await c.until((m) => m.type === "E")), ["1", "2", "E:22012"]);
    c.send(query("DELETE FROM items WHERE id = 2"), parse("", "SELECT email FROM customers"), bind("", ""), execute(""), sync(), query("SELECT email FROM customers WHERE id = 1"));
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got).map((x) => x.replace(/^D:.*/, "D")), ["Z:I", "T:email", "D", "C:SELECT 1", "Z:I"]);
    noRaw(got);
    assert.deepEqual(completions.slice(before).map((d) => d.error?.sqlstate ?? d.commandTag), ["22012", "SELECT 1"], "nothing the server skipped is recorded as run");
    assert.equal(await items(), 5);
    assert.deepEqual(log.ran(/^DELETE FROM items WHERE id = 2/), []);
  });

  await t.test("DEALLOCATE of a Parse's name (as psycopg and Rails evict their statement caches) deallocates the server's statement", async () => {
    const c = await connect("apps");
    c.send(parse("cached", "SELECT 1"), sync(), query("DEALLOCATE cached"), query("SELECT count(*) FROM pg_prepared_statements"));
    assert.deepEqual(shown(await c.untilReady(3)), ["1", "Z:I", "C:DEALLOCATE", "Z:I", "T:count", "D:0", "C:SELECT 1", "Z:I"]);
    assert.equal(log.ran(/^DEALLOCATE/).filter((x) => /^DEALLOCATE "_[0-9a-f]{12}_s\d+"$/.test(x)).length, 1, "the server was asked for its own name");
    c.send(bind("", "cached"), execute(""), sync(), parse("again", "SELECT 2"), sync());
    assert.deepEqual(shown(await c.untilReady(2)), ["E:26000", "Z:I", "1", "Z:I"]);
    // among other statements too, only its name changes: the server runs it where it comes, or skips it after an
    // error, and the statement is gone only once the server ran that DEALLOCATE (finding 030)
    c.send(query("SELECT 1/0; DEALLOCATE again"), bind("", "again"), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady(2)), ["E:22012", "Z:I", "2", "D:2", "C:SELECT 1", "Z:I"], "skipped after the error: the statement is still there");
    c.send(query("SELECT 1; DEALLOCATE again; SELECT 1/0"), bind("", "again"), execute(""), sync());
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got), ["T:?column?", "D:1", "C:SELECT 1", "C:DEALLOCATE", "E:22012", "Z:I", "E:26000", "Z:I"], "deallocated, and the error after it does not bring it back");
    assert.equal(got.filter((m) => m.type === "E").map((m) => firstError([m])!.M)[1], 'prepared statement "again" does not exist');
    assert.equal(log.ran(/DEALLOCATE/).filter((x) => /^SELECT 1; DEALLOCATE "_[0-9a-f]{12}_s\d+"; SELECT 1\/0$/.test(x)).length, 1, "the server was asked for its own name, the rest of the text as it came");
  });

  await t.test("a statement the server will skip after an error is never put before an approver (finding 026)", async () => {
    const c = await connect("deployers");
    const asked = approvalsAsked.length;
    c.send(parse("", "SELECT 1 / (id - id) FROM items"), bind("", ""), execute(""), parse("", "UPDATE items SET name = 'x'"), bind("", ""), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady(1, 20_000)), ["1", "2", "E:22012", "Z:I"]);
    assert.equal(approvalsAsked.length, asked, "no approval request for the skipped UPDATE");
    // the same UPDATE behind statements that succeed is put before the approver (who rejects it)
    c.send(parse("", "SELECT 1"), bind("", ""), execute(""), parse("", "UPDATE items SET name = 'x'"), bind("", ""), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady(1, 20_000)), ["1", "2", "D:1", "C:SELECT 1", "1", "2", "E:42501", "Z:I"]);
    assert.equal(approvalsAsked.length, asked + 1);
    assert.deepEqual(log.ran(/^UPDATE items SET name = 'x'/), []);
  });

  await t.test("a message that waits for the server's answer to a pipelined one, with no Sync behind it yet, does not wait forever", async () => {
    const c = await connect("apps");
    // the Describe of a named portal waits until DEALLOCATE ALL (which drops names) has completed;
    // the server answers only at a Sync or a Flush, and the client's Sync is behind the Describe
    c.send(parse("s2", "DEALLOCATE ALL"), bind("c1", "s2"), execute("c1", 1), describe("P", "s1"), sync());
    assert.deepEqual(shown(await c.untilReady(1, 20_000)), ["1", "2", "C:DEALLOCATE ALL", "E:34000", "Z:I"]);
  });

  await t.test("a Query's PREPARE of a Parse's name: the statements before it run and are rolled back with it, nothing after it runs, a denial wins (finding 023)", async () => {
    await s.direct("CREATE SEQUENCE after_seq");
    const c = await connect("deployers");
    const before = records.length;
    // nextval is not rolled back: had it run, the sequence would say so
    c.send(parse("s2", "SELECT 1"), sync(), query("UPDATE items SET name = 'before' WHERE id = 1; PREPARE s2 AS DELETE FROM items WHERE id = 0; SELECT nextval('after_seq')"));
    const got = await c.untilReady(2);
    assert.deepEqual(shown(got), ["1", "Z:I", "C:UPDATE 1", "E:42P05", "Z:I"]);
    assert.equal(firstError(got)!.M, 'prepared statement "s2" already exists', "the server's error, in the client's name");
    assert.equal((await s.direct("SELECT count(*)::int AS n FROM items WHERE name = 'before'")).rows[0].n, 0, "the implicit transaction rolled the UPDATE back");
    assert.equal((await s.direct("SELECT is_called FROM after_seq")).rows[0].is_called, false, "nothing after the failed PREPARE ran");
    const parts = records.slice(before).filter((r) => r.parts === 3);
    assert.deepEqual(parts.map((r) => r.sql.replace(/"_[0-9a-f]{12}_s\d+"/, "<server name>")), ["UPDATE items SET name = 'before' WHERE id = 1", "PREPARE <server name> AS DELETE FROM items WHERE id = 0", "SELECT nextval('after_seq')"], "recorded as the server ran it");
    // s2 is still the Parse's statement
    c.send(bind("", "s2"), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady()), ["2", "D:1", "C:SELECT 1", "Z:I"]);
    // what policy denies never reaches the server: the client gets the denial, not the clash
    const ci = await connect("ci");
    ci.send(parse("s2", "SELECT 1"), sync(), query("PREPARE s2 AS SELECT 2; DELETE FROM items WHERE id = 1"));
    const denied = await ci.untilReady(2);
    assert.deepEqual(shown(denied), ["1", "Z:I", "E:42501", "Z:I"]);
    assert.equal(await items(), 5);
  });

  await t.test("names the server does not have are answered by the server under names it cannot have, with the client's names (finding 028)", async () => {
    const c = await connect("deployers");
    c.send(bind("", "nosuch"), sync(), bind("", ""), sync(), execute("nop"), sync(), describe("S", "nosuch"), sync());
    const got = await c.untilReady(4);
    assert.deepEqual(shown(got), ["E:26000", "Z:I", "E:26000", "Z:I", "E:34000", "Z:I", "E:26000", "Z:I"]);
    assert.deepEqual(got.filter((m) => m.type === "E").map((m) => firstError([m])!.M), [
      'prepared statement "nosuch" does not exist', "unnamed prepared statement does not exist", 'portal "nop" does not exist', 'prepared statement "nosuch" does not exist',
    ]);
    // the failed portal a simple Query leaves in a READ ONLY block: the server's 25P02, not the proxy's 34000
    c.send(parse("p1", "BEGIN READ ONLY"), bind("c1", "p1"), execute("c1"), query("UPDATE items SET name = 'ro' WHERE id = 1"), execute("", 1), sync(), query("ROLLBACK"));
    assert.deepEqual(shown(await c.untilReady(3)), ["1", "2", "C:BEGIN", "E:25006", "Z:E", "E:25P02", "Z:E", "C:ROLLBACK", "Z:I"]);
    assert.equal(await items(), 5);
  });

  void show;
}

test("the server reporting another standard_conforming_strings or client_encoding ends the session (FATAL, recorded)", { timeout: 60_000 }, async (t) => {
  const ended: string[] = [];
  // the proxy's own protocol enforcer lets the SET through, as a classifier that missed it would
  const s = await startProxyStack(t, { dp: { audit: { ...noopAudit, sessionEnded: (_i, e) => void ended.push(e.reason) } } });
  for (const [setting, value] of [["standard_conforming_strings", "off"], ["client_encoding", "SJIS"]] as const) {
    const c = await rawConnect({ port: s.dp.port, database: "app", user: "ci", password: await s.token(), tls: true });
    assert.equal(c.parameters[setting], setting === "client_encoding" ? "UTF8" : "on");
    c.send(query(`SELECT set_config('${setting}', '${value}', false)`));
    const got = await c.until((m) => m.type === "E");
    const fatal = firstError(got)!;
    assert.deepEqual([fatal.S, fatal.C], ["FATAL", "0A000"]);
    assert.match(fatal.M!, new RegExp(`${setting} = "${value}"`));
    assert.ok(!got.some((m) => m.type === "S" || m.type === "Z"), "the new value and what follows it never reach the client");
    await c.closed;
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(ended.filter((r) => /pinned setting changed/.test(r)).length, 2, JSON.stringify(ended));
});

/** The statements the server of `cluster` ran in `database`, from its log (log_statement = all). */
function serverLog(cluster: PgCluster, database: string) {
  const file = join(cluster.dataDir, "server.log");
  const line = new RegExp(`^\\[${database}\\] LOG:  (?:statement|execute [^:]*): (.*)$`);
  return {
    ran(pattern: RegExp): string[] {
      const out: string[] = [];
      for (const l of readFileSync(file, "utf8").split("\n")) {
        const m = line.exec(l);
        if (m && pattern.test(m[1]!)) out.push(m[1]!);
      }
      return out;
    },
  };
}

void (null as unknown as ProxyStack);
