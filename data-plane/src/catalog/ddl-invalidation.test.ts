import { test } from "node:test";
import assert from "node:assert/strict";
import type { SessionInfo } from "../session/session-hooks.js";
import { ddlInvalidationListener } from "./ddl-invalidation.js";

test("a DDL command tag flushes the resource's catalog; other tags and failed statements do not", () => {
  const flushed: string[] = [];
  const listen = ddlInvalidationListener((r) => flushed.push(r));
  const session = { resource: "orders" } as SessionInfo;
  listen(session, { seq: 1, commandTag: "SELECT 3", rows: 3, durationMs: 1 });
  listen(session, { seq: 2, commandTag: "ALTER TABLE", rows: 0, durationMs: 1 });
  listen(session, { seq: 3, commandTag: "CREATE VIEW", rows: 0, durationMs: 1 });
  listen(session, { seq: 4, rows: 0, durationMs: 1, error: { sqlstate: "42P01", message: "relation does not exist" } });
  listen({ resource: "billing" } as SessionInfo, { seq: 5, commandTag: "DROP TABLE", rows: 0, durationMs: 1 });
  assert.deepEqual(flushed, ["orders", "orders", "billing"]);
});
