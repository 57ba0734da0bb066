/**
 * TLS session resumption on the client listener (issue 15, the connect path): a client that offers
 * the ticket of an earlier connection resumes without a full handshake, and resumption changes
 * nothing about who it is — the token is still asked for and verified.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type tls from "node:tls";
import pg from "pg";
import { startProxyStack } from "./proxy-stack.js";

const streamOf = (c: pg.Client) => (c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream;

test("a client that offers a session ticket resumes TLS; it still authenticates with its token", async (t) => {
  const s = await startProxyStack(t);
  const token = await s.token();
  const first = await s.pgClient(token);
  await first.query("SELECT 1");
  assert.equal(streamOf(first).isSessionReused(), false);
  const session = streamOf(first).getSession();
  assert.ok(session, "the proxy issued a session ticket");

  const resumed = await s.pgClient(token, { ssl: { rejectUnauthorized: false, session } });
  assert.equal(streamOf(resumed).isSessionReused(), true, "no full handshake");
  assert.equal((await resumed.query("SELECT current_user AS u")).rows[0].u, "postgres");

  // resuming someone's TLS session is no way past the token
  const forged = token.replace(/\.[^.]+$/, ".AAAA");
  const c = new pg.Client({ ...s.pgConfig(forged), ssl: { rejectUnauthorized: false, session } });
  c.on("error", () => undefined);
  await assert.rejects(c.connect(), { code: "28P01" });
});
