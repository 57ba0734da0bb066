import { test } from "node:test";
import assert from "node:assert/strict";
import { buildSessionEvent, HashChain, makeEvent, CONTROL_PLANE_SOURCE, type CloudEvent, type SessionEventName, type SessionEventPayloads } from "@sluice/shared/events";
import { OcsfMapper, OCSF_VERSION, type OcsfEvent } from "./ocsf.js";

const ctx = { sessionId: "0190f000-0000-7000-8000-000000000001", region: "eu", node: "dp-1" };
let clock = Date.parse("2026-03-01T10:00:00Z");
const chain = new HashChain();
function ev<N extends SessionEventName>(name: N, data: SessionEventPayloads[N], c = ctx, ch = chain): CloudEvent {
  clock += 5;
  return ch.link(buildSessionEvent(c, name, data, { time: new Date(clock), policyRev: 3 }));
}

const stmt = (id: number, sql: string, kind: string, cls: "read" | "write" | "ddl", decision: "allow" | "deny" | "approve", rule: string) => ({
  statementId: id, sql, protocol: "simple" as const, class: cls,
  tables: { read: cls === "read" ? ["public.orders"] : [], write: cls === "read" ? [] : ["public.orders"] },
  risks: [], statements: [{ kind, class: cls, tables: { read: [], write: [] }, functions: [], risks: [] }], decision, rule,
});

function session(): CloudEvent[] {
  return [
    ev("session.started", { clientAddress: "10.1.2.3", clientPort: 50432, resource: "orders", node: "dp-1", region: "eu", tls: { enabled: true } }),
    ev("session.authenticated", { subject: "repo:acme/orders:ref:refs/heads/main", issuer: "github", groups: ["ci"], claims: { repository: "acme/orders" } }),
    ev("statement.allowed", { ...stmt(1, "SELECT * FROM orders", "SelectStmt", "read", "allow", "ci-read/allow:read"), decision: "allow" }),
    ev("statement.completed", { statementId: 1, commandTag: "SELECT 5", rows: 5, durationMs: 3 }),
    ev("statement.blocked", { ...stmt(2, "DELETE FROM orders", "DeleteStmt", "write", "deny", "default-deny"), decision: "deny", sqlstate: "42501" }),
    ev("statement.approval_requested", { ...stmt(3, "DROP TABLE orders", "DropStmt", "ddl", "approve", "deployers/approve:ddl"), decision: "approve", approvalId: "a-1", approvers: ["dba"], timeoutMs: 60000 }),
    ev("statement.rejected", { statementId: 3, approvalId: "a-1", reason: "rejected", approver: "alice", sqlstate: "42501" }),
    ev("statement.allowed", { ...stmt(4, "INSERT INTO orders VALUES (1)", "InsertStmt", "write", "allow", "deployers/allow:write"), decision: "allow" }),
    ev("statement.completed", { statementId: 4, rows: 0, durationMs: 1, error: { sqlstate: "23505", message: "duplicate key value violates unique constraint" } }),
    ev("session.ended", { reason: "client_terminate", durationMs: 40, statements: 4, bytesIn: 100, bytesOut: 200 }),
  ];
}

/** Every class: the OCSF base event's required attributes. */
function assertBase(o: OcsfEvent, classUid: number, categoryUid: number) {
  assert.equal(o.class_uid, classUid);
  assert.equal(o.category_uid, categoryUid);
  assert.ok(Number.isInteger(o.activity_id) && o.activity_id > 0);
  assert.equal(o.type_uid, classUid * 100 + o.activity_id);
  assert.ok(Number.isInteger(o.time) && o.time > 1.7e12, "time in ms since epoch");
  assert.ok([1, 2, 3, 4, 5, 6, 99].includes(o.severity_id));
  assert.ok([1, 2].includes(o.status_id));
  assert.equal(o.metadata.version, OCSF_VERSION);
  assert.equal(o.metadata.product.name, "sluice");
  assert.equal(typeof o.metadata.product.vendor_name, "string");
  assert.equal(typeof o.metadata.uid, "string");
}

const hasUser = (u: unknown) => typeof u === "object" && u !== null && typeof (u as { name?: unknown }).name === "string";
const hasEndpoint = (e: unknown) => typeof e === "object" && e !== null && ["ip", "hostname", "name"].some((k) => k in (e as object));

test("statements map to Datastore Activity (6005) with its required fields", () => {
  const m = new OcsfMapper();
  const out = session().flatMap((e) => m.map(e));
  const ds = out.filter((o) => o.class_uid === 6005);
  assert.equal(ds.length, 4);
  for (const o of ds) {
    assertBase(o, 6005, 6);
    assert.ok(hasUser((o.actor as { user: unknown }).user), "actor.user required");
    assert.ok(hasEndpoint(o.src_endpoint), "src_endpoint required");
    assert.ok(o.database || o.table || o.databucket, "at least one of database, databucket, table");
    assert.equal((o.query_info as { query_string: string }).query_string.length > 0, true);
  }
  const [sel, del, drop, ins] = ds;
  assert.deepEqual([sel!.activity_id, sel!.status_id, sel!.count], [4, 1, 5]);
  assert.equal((sel!.actor as { user: { name: string } }).user.name, "repo:acme/orders:ref:refs/heads/main");
  assert.deepEqual(sel!.src_endpoint, { ip: "10.1.2.3", port: 50432 });
  assert.deepEqual([del!.activity_id, del!.status_id, del!.status_code], [7, 2, "42501"]);
  assert.match(String(del!.status_detail), /default-deny/);
  assert.deepEqual([drop!.activity_id, drop!.status_id], [7, 2]);
  assert.match(String(drop!.status_detail), /a-1 rejected by alice/);
  assert.deepEqual([ins!.activity_id, ins!.status_id, ins!.status_code], [5, 2, "23505"]);
});

test("session authentication and end map to Authentication (3002) with its required fields", () => {
  const m = new OcsfMapper();
  const denied = ev("session.denied",
    { stage: "authentication", reason: "token_expired", message: "token expired", sqlstate: "28P01" },
    { ...ctx, sessionId: "0190f000-0000-7000-8000-000000000002" }, new HashChain());
  const out = [...session(), denied].flatMap((e) => m.map(e)).filter((o) => o.class_uid === 3002);
  assert.equal(out.length, 3);
  for (const o of out) {
    assertBase(o, 3002, 3);
    assert.ok(hasUser(o.user), "user required");
    assert.ok(o.service || o.dst_endpoint, "at least one of service, dst_endpoint");
  }
  const [logon, logoff, failed] = out;
  assert.deepEqual([logon!.activity_id, logon!.status_id, logoff!.activity_id, failed!.status_id], [1, 1, 2, 2]);
  assert.equal(failed!.status_code, "28P01");
  assert.equal((failed!.user as { name: string }).name, "unknown");
});

test("policy changes from SLUICE_CONTROL map to Entity Management (3004) with its required fields", () => {
  const m = new OcsfMapper();
  const applied = (revision: number) => makeEvent({
    source: CONTROL_PLANE_SOURCE, type: "dev.sluice.control.policy.bundle_applied.v1", subject: "policy/bundle",
    data: { revision, hash: "ab".repeat(32), actor: { subject: "alice", groups: ["sluice-admins"], issuer: "dev" } },
    time: new Date("2026-03-01T10:00:00Z"),
  });
  const retired = makeEvent({ source: CONTROL_PLANE_SOURCE, type: "dev.sluice.control.resource.resource_retired.v1", subject: "resource/orders", data: { name: "orders" } });
  const out = [applied(1), applied(2), retired].flatMap((e) => m.map(e));
  assert.equal(out.length, 3);
  for (const o of out) {
    assertBase(o, 3004, 3);
    assert.equal(typeof (o.entity as { name: string }).name, "string", "entity required");
  }
  assert.deepEqual(out.map((o) => o.activity_id), [1, 3, 4]);
  assert.equal((out[1]!.actor as { user: { name: string } }).user.name, "alice");
  assert.deepEqual(new OcsfMapper().map(makeEvent({ source: "x", type: "dev.sluice.control.approval.approval_granted.v1", subject: "approval/a", data: {} })), []);
});
