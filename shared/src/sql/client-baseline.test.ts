/**
 * What every connected client may do without naming a class (contract: "Policy bundle"), judged by
 * the real classifier and evaluate, under the contract's example bundle. Each test reads as
 * given (a bundle, an identity) → when (a client message) → then (the decision, per statement).
 */
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseBundle } from "../policy/parse-bundle.js";
import { evaluate } from "../policy/evaluate.js";
import type { Bundle, PolicySpec } from "../policy/bundle.js";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { SqlPrepared } from "./sql-prepared.js";

before(loadSqlParser);

const contractFile = fileURLToPath(new URL("../../../test/fixtures/policies/valid-contract.yaml", import.meta.url));
function contractBundle(): Bundle {
  const parsed = parseBundle(readFileSync(contractFile, "utf8"), contractFile);
  assert.ok(parsed.bundle, parsed.problems.map((p) => p.message).join("; "));
  return parsed.bundle;
}

/** given(bundle, groups).when(sql).then… — one client message, decided as the data plane would. */
function given(bundle: Bundle, groups: string[], prepared = new SqlPrepared()) {
  return {
    when(sql: string) {
      const d = evaluate(bundle, { resource: "orders", groups }, classifySql(sql), prepared);
      if (d.action === "allow") prepared.observe(d.statements);
      const then = {
        decision: d,
        allows(rule: string, ...perStatement: string[]) {
          assert.deepEqual([d.action, d.rule], ["allow", rule], `${sql}: ${d.reason}`);
          if (perStatement.length) assert.deepEqual(d.statementRules, perStatement, sql);
          return then;
        },
        denies(rule: string) {
          assert.deepEqual([d.action, d.rule], ["deny", rule], `${sql}: ${d.reason}`);
          return then;
        },
        holds(rule: string) {
          assert.deepEqual([d.action, d.rule], ["approve", rule], `${sql}: ${d.reason}`);
          return then;
        },
      };
      return then;
    },
  };
}

const withPolicy = (b: Bundle, extra: PolicySpec): Bundle => ({ ...b, policies: [...b.policies, extra] });

test("given ci-read allows only [read], when the JDBC driver connects, then its start-up statements pass", () => {
  const ci = given(contractBundle(), ["ci"]);
  ci.when("SET extra_float_digits = 3").allows("implicit:session-setting");
  ci.when("SET application_name = 'PostgreSQL JDBC Driver'").allows("implicit:session-setting");
  // pgjdbc's isolation and read-only switches, Hibernate's time zone
  ci.when("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED").allows("implicit:session-setting");
  ci.when("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").allows("implicit:session-setting");
  ci.when("SET TIME ZONE 'UTC'").allows("implicit:session-setting");
  ci.when("set datestyle = 'ISO, MDY'").allows("implicit:session-setting");
  ci.when("SET LOCAL statement_timeout = '5s'").allows("implicit:session-setting");
  ci.when("RESET statement_timeout").allows("implicit:session-setting");
  ci.when("RESET ALL").allows("implicit:session-setting");
  ci.when("SET client_encoding = 'UTF8'").allows("implicit:session-setting");
  ci.when("SHOW transaction_isolation").allows("implicit:show");
  ci.when("show all").allows("implicit:show");
});

test("given ci-read, when a job wraps its reads in a transaction, then each statement says what allowed it", () => {
  const ci = given(contractBundle(), ["ci"]);
  ci.when("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM orders; SAVEPOINT a; ROLLBACK TO a; RELEASE a; COMMIT").allows(
    "ci-read/allow:read",
    "implicit:transaction-control", "ci-read/allow:read", "implicit:transaction-control", "implicit:transaction-control",
    "implicit:transaction-control", "implicit:transaction-control",
  );
  ci.when("START TRANSACTION READ ONLY").allows("implicit:transaction-control");
  ci.when("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").allows("implicit:transaction-control");
  ci.when("SET CONSTRAINTS ALL DEFERRED").allows("implicit:transaction-control");
  ci.when("BEGIN; COMMIT").allows("implicit:transaction-control", "implicit:transaction-control", "implicit:transaction-control");
  // but a write inside the transaction is still the class it is
  const d = ci.when("BEGIN; DELETE FROM orders WHERE id = 1; COMMIT").denies("default-deny").decision;
  assert.equal(d.statementIndex, 1);
  assert.deepEqual(d.statementRules, ["implicit:transaction-control", "default-deny"]);
});

test("given ci-read, when a libpq client reads through a server-side cursor, then DECLARE is judged as its query and FETCH/MOVE/CLOSE pass", () => {
  const ci = given(contractBundle(), ["ci"]);
  ci.when("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM orders").allows("ci-read/allow:read");
  ci.when("FETCH 100 FROM c").allows("implicit:cursor");
  ci.when("FETCH ALL IN c").allows("implicit:cursor");
  ci.when("MOVE BACKWARD 5 IN c").allows("implicit:cursor");
  ci.when("CLOSE c").allows("implicit:cursor");
  ci.when("CLOSE ALL").allows("implicit:cursor");
  ci.when("BEGIN; DECLARE d NO SCROLL CURSOR FOR SELECT id FROM customers; FETCH 10 FROM d; CLOSE d; COMMIT").allows("ci-read/allow:read");
  // a cursor over what the identity may not run is refused at its DECLARE
  ci.when("DECLARE c CURSOR FOR SELECT * FROM orders FOR UPDATE").denies("default-deny");
  ci.when("DECLARE c CURSOR FOR SELECT nextval('orders_id_seq')").denies("default-deny");
  ci.when("DECLARE c CURSOR FOR SELECT pg_read_file('PG_VERSION')").denies("default-deny");
  given(contractBundle(), ["deployers"]).when("DECLARE s CURSOR FOR SELECT * FROM secrets").denies("deployers/tables.deny:public.secrets");
});

test("given ci-read, when a client prepares at SQL level, then PREPARE and EXECUTE are what they run and DEALLOCATE passes", () => {
  const ci = given(contractBundle(), ["ci"]);
  ci.when("PREPARE q(int) AS SELECT * FROM orders WHERE id = $1").allows("ci-read/allow:read");
  ci.when("EXECUTE q(1)").allows("ci-read/allow:read");
  ci.when("DEALLOCATE q").allows("implicit:prepared-statement");
  ci.when("EXECUTE q(1)").denies("unknown-prepared-statement");
  ci.when("DEALLOCATE ALL").allows("implicit:prepared-statement");
  ci.when("PREPARE w AS DELETE FROM orders WHERE id = 1").denies("default-deny");
  for (const what of ["ALL", "PLANS", "SEQUENCES", "TEMP"]) ci.when(`DISCARD ${what}`).allows("implicit:discard");
});

test("given read, when a client copies out, then COPY … TO STDOUT is a read of what it copies", () => {
  const ci = given(contractBundle(), ["ci"]);
  ci.when("COPY orders TO STDOUT").allows("ci-read/allow:read");
  ci.when("COPY (SELECT id, email FROM customers) TO STDOUT WITH (FORMAT csv, HEADER)").allows("ci-read/allow:read");
  ci.when("COPY orders (id, total) TO STDOUT").allows("ci-read/allow:read");
  // not a read: into a table, to a file or program, or a query that writes
  ci.when("COPY orders FROM STDIN").denies("default-deny");
  ci.when("COPY orders TO '/tmp/orders.csv'").denies("default-deny");
  ci.when("COPY (DELETE FROM orders WHERE id = 1 RETURNING *) TO STDOUT").denies("default-deny");
  ci.when("COPY (SELECT * FROM orders FOR UPDATE) TO STDOUT").denies("default-deny");
  const deployers = given(contractBundle(), ["deployers"]);
  deployers.when("COPY orders TO STDOUT").allows("deployers/allow:read");
  deployers.when("COPY (SELECT * FROM secrets) TO STDOUT").denies("deployers/tables.deny:public.secrets");
  deployers.when("COPY orders TO PROGRAM 'cat'").denies("deployers/deny:copy-program");
});

test("given the built-in allowances, when a statement changes privileges or what later statements mean, then it stays a named risk", () => {
  const b = contractBundle();
  const ci = given(b, ["ci"]);
  ci.when("SET ROLE postgres").denies("default-deny");
  ci.when("SET SESSION AUTHORIZATION postgres").denies("default-deny");
  ci.when("RESET ROLE").denies("default-deny");
  ci.when("SET session_replication_role = replica").denies("default-deny");
  ci.when("SET myapp.tenant_id = '7'").denies("default-deny");
  ci.when("PREPARE TRANSACTION 'x'").denies("default-deny");
  ci.when("COMMIT PREPARED 'x'").denies("default-deny");
  ci.when("LISTEN jobs").denies("default-deny");
  // the pinned reading of SQL: never, for anyone, whatever the policy
  ci.when("SET client_encoding = 'SJIS'").denies("parser-setting");
  ci.when("SET standard_conforming_strings = off").denies("parser-setting");
  // search_path: free where no table pattern depends on it (a literal deny pattern such as the
  // deployers' public.secrets matches a bare `secrets` in any schema), refused where one does
  ci.when("SET search_path = reporting, public").allows("implicit:session-setting");
  given(b, ["deployers"]).when("SET search_path = sqitch").allows("implicit:session-setting");
  given(b, ["deployers"]).when("SET search_path = sqitch; SELECT * FROM secrets").denies("deployers/tables.deny:public.secrets");
  const patterns = withPolicy(b, { name: "reports", groups: ["reports"], resources: ["orders"], allow: ["read"], tables: { allow: ["public.orders"] } });
  given(patterns, ["reports"]).when("SET search_path = reporting, public").denies("reports/tables:search_path");
  given(patterns, ["reports"]).when("SELECT set_config('search_path', 'x', false)").denies("reports/tables:search_path");
  const globs = withPolicy(b, { name: "vaulted", groups: ["vaulted"], resources: ["orders"], allow: ["read"], tables: { deny: ["vault.*"] } });
  given(globs, ["vaulted"]).when("SET search_path = vault").denies("vaulted/tables:search_path");

  // a policy can deny or hold each of them by its risk
  const strict = withPolicy(b, {
    name: "strict", groups: ["ci"], resources: ["orders"], allow: ["read", "utility", "admin"],
    deny: ["session-replication-role"], requireApproval: ["search-path", "role-change"], approval: { approvers: ["dba"], timeout: "5m" },
  });
  const s = given(strict, ["ci"]);
  s.when("SET session_replication_role = replica").denies("strict/deny:session-replication-role");
  s.when("SELECT set_config('session_replication_role', 'replica', false)").denies("strict/deny:session-replication-role");
  s.when("SET search_path = x").holds("strict/requireApproval:search-path");
  s.when("SET ROLE postgres").holds("strict/requireApproval:role-change");
  s.when("SET myapp.tenant_id = '7'").allows("strict/allow:utility");
  s.when("SET application_name = 'x'").allows("implicit:session-setting");
});

test("given a policy that denies utility, when a driver connects, then the built-in allowances still pass and the rest of utility does not", () => {
  const b = withPolicy(contractBundle(), { name: "no-utility", groups: ["ci"], resources: ["orders"], allow: ["read"], deny: ["utility"] });
  const ci = given(b, ["ci"]);
  ci.when("SET extra_float_digits = 3").allows("implicit:session-setting");
  ci.when("BEGIN").allows("implicit:transaction-control");
  ci.when("FETCH 1 FROM c").allows("implicit:cursor");
  ci.when("LISTEN jobs").denies("no-utility/deny:utility");
  ci.when("SET myapp.x = '1'").denies("no-utility/deny:utility");
});

test("given an identity no policy applies to, when it sends a built-in statement, then it is still denied (it cannot even connect)", () => {
  given(contractBundle(), ["nobody"]).when("BEGIN").denies("default-deny");
  given(contractBundle(), ["nobody"]).when("SET application_name = 'x'").denies("default-deny");
});

test("the classifier marks the built-in allowance only on statements that exercise nothing but utility", () => {
  const info = (sql: string) => {
    const c = classifySql(sql);
    assert.ok(c.ok, sql);
    return c.statements[0]!;
  };
  assert.equal(info("SET extra_float_digits = 3").baseline, "session-setting");
  assert.equal(info("FETCH 1 FROM c").baseline, "cursor");
  assert.equal(info("SET ROLE postgres").baseline, undefined);
  assert.equal(info("SET session_replication_role = replica").baseline, undefined);
  assert.deepEqual(info("SET session_replication_role = replica").risks, ["session-replication-role"]);
  assert.deepEqual(info("SET search_path = x").risks, ["search-path"]);
  assert.equal(info("PREPARE TRANSACTION 'x'").baseline, undefined);
  assert.equal(info("SELECT set_config('application_name', 'x', false)").baseline, undefined); // a read, judged as one
  assert.equal(info("COPY orders TO STDOUT").class, "read");
  assert.equal(info("COPY orders FROM STDIN").class, "copy");
  assert.equal(info("COPY orders TO PROGRAM 'cat'").class, "copy");
});
