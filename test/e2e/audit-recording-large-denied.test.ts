/**
 * A denied statement above the 512 KiB payload cap, through the real proxy with a real client: its
 * statement.blocked is on the stream as numbered chunk events that reassemble to the text exactly as
 * the client sent it (multibyte characters, quotes and backslashes, which JSON escaping doubles), in
 * the session's order between its neighbours, with the session's hash chain intact. The recorder cuts
 * such a payload's chunks from its one canonical text (issue 11: the relay's thread no longer
 * re-serializes it); this holds that the record did not change for it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  SessionEventType, isChunkData, joinChunks, verifyChain, dataBytes, MAX_EVENT_DATA_BYTES,
  type CloudEvent, type StatementBlockedData, type StatementAllowedData,
} from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack } from "./proxy-stack.js";
import { readStream, recorderOn, sharedAuditStream } from "./audit-recording-support.js";

const T = (n: keyof typeof SessionEventType) => SessionEventType[n];

for (const durability of ["ack", "async"] as const) test(`${durability}: a denied 700 KB statement is recorded exactly, in order, as chained chunks`, { timeout: 120_000 }, async (t) => {
  const { nc, names } = await sharedAuditStream(t);
  let bundle!: Bundle;
  const snaps = { current: () => ({ revision: 1, bundle, hash: "x", appliedBy: "t", appliedAt: new Date(0).toISOString() }), onChange: () => () => {} };
  const publisher = recorderOn(t, nc, names, durability);
  // masking rules on the resource: the SQL text goes through the input masker's scan as well
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 100, maxBytesPerStatement: 65536, snapshots: snaps });
  const ended = new Promise<string>((resolve) => {
    const orig = audit.sessionEnded!.bind(audit);
    audit.sessionEnded = (info, end) => {
      orig(info, end);
      resolve(info.sessionId);
    };
  });
  const stack = await startProxyStack(t, {
    bundle: (b) => {
      bundle = {
        ...b,
        policies: [{ name: "ci-read", groups: ["ci"], resources: ["app"], allow: ["read"] }],
        masking: [{ resources: ["app"], columns: ["items.name"], strategy: "redact" }],
      };
      return bundle;
    },
    dp: { audit, enforcer: undefined },
  });
  await stack.direct("CREATE TABLE items (id int, name text)");
  const client = await stack.pgClient(await stack.token());
  // one long literal: quick to parse, ~0.9 MB of UTF-8, ~1.2 MB once JSON-escaped
  const big = `INSERT INTO items VALUES (1, '${"é\"\\ab".repeat(140_000)}')`;
  assert.equal((await client.query("SELECT 1 AS a")).rows[0].a, 1);
  await assert.rejects(client.query(big), { code: "42501" });
  assert.equal((await client.query("SELECT 2 AS b")).rows[0].b, 2);
  await client.end();
  const sessionId = await ended;
  await publisher.flush(10_000);

  const events: CloudEvent[] = (await readStream(nc, names.auditStream)).map((s) => s.ev).filter((e) => e.subject === sessionId);
  assert.equal(verifyChain(events), undefined, "the session's chain holds over the chunks");
  const chunks = events.filter((e) => isChunkData(e.data));
  assert.ok(chunks.length >= 3, `the payload is split (${chunks.length} chunks)`);
  for (const c of chunks) {
    assert.equal(c.type, T("statement.blocked"));
    assert.ok(dataBytes(c.data) < MAX_EVENT_DATA_BYTES, `chunk data is ${dataBytes(c.data)} bytes`);
  }
  const logical = joinChunks(events);
  assert.deepEqual(logical.map((e) => e.type), [
    T("session.started"), T("session.authenticated"),
    T("statement.allowed"), T("statement.completed"),
    T("statement.blocked"),
    T("statement.allowed"), T("statement.completed"),
    T("session.ended"),
  ]);
  const blocked = logical[4]!.data as StatementBlockedData;
  assert.equal(blocked.sql, big, "the denied text is recorded exactly");
  assert.equal(blocked.statementId, 2);
  assert.equal(blocked.decision, "deny");
  assert.equal(blocked.sqlstate, "42501");
  assert.equal(blocked.class, "write");
  for (const c of chunks) assert.equal((c.data as { statementId?: number }).statementId, 2, "each chunk names its statement");
  assert.deepEqual([logical[2], logical[5]].map((e) => (e!.data as StatementAllowedData).sql), ["SELECT 1 AS a", "SELECT 2 AS b"]);
});
