import { test } from "node:test";
import assert from "node:assert/strict";
import type { AuditSink, SessionInfo } from "../session/session-hooks.js";
import { withDdlInvalidation } from "./ddl-invalidation.js";

class CountingSink implements AuditSink {
  completed = 0;
  ended = 0;
  statementCompleted(): void {
    this.completed++;
  }
  sessionEnded(): void {
    this.ended++;
  }
}

test("a DDL command tag flushes the resource's catalog; the wrapped sink still gets every call with its own this", () => {
  const flushed: string[] = [];
  const inner = new CountingSink();
  const sink = withDdlInvalidation(inner, (r) => flushed.push(r));
  const session = { resource: "orders" } as SessionInfo;
  sink.statementCompleted!(session, { seq: 1, commandTag: "SELECT 3", rows: 3, durationMs: 1 });
  sink.statementCompleted!(session, { seq: 2, commandTag: "ALTER TABLE", rows: 0, durationMs: 1 });
  sink.statementCompleted!(session, { seq: 3, commandTag: "CREATE VIEW", rows: 0, durationMs: 1 });
  sink.sessionEnded!(session, { reason: "x", statements: 3, bytesIn: 0, bytesOut: 0 });
  assert.deepEqual(flushed, ["orders", "orders"]);
  assert.equal(inner.completed, 3);
  assert.equal(inner.ended, 1);
  // a sink without statementCompleted still gets the invalidation hook, and nothing else appears
  const bare = withDdlInvalidation({}, (r) => flushed.push(r));
  bare.statementCompleted!(session, { seq: 4, commandTag: "DROP TABLE", rows: 0, durationMs: 1 });
  assert.equal(flushed.length, 3);
  assert.equal(bare.resultRows, undefined);
});
