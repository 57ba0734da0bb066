/**
 * A data-plane node in its own process, under a load of real clients (pg over TLS), killed with
 * SIGKILL: no clean stop, no flush. What its audit lane stored is then read back.
 *  - ack: every statement a client saw succeed is on the stream, and every session's chain is whole
 *    from its first event (the lane lost only what came after its last stored batch).
 *  - async: what is lost is bounded (publisher header: the last linger and round trip, at most
 *    dataPlane.audit.bufferEvents events) and is the END of each session: what was stored of a
 *    session is a gap-free beginning of it. The node runs with a buffer of BUFFER events, well
 *    below what the clients run before the kill, so the bound is one a publisher that held events
 *    back would break.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { SessionEventType, verifyChain, type StatementAllowedData } from "@sluice/shared/events";
import { deleteAll, natsNames } from "@sluice/shared/nats";
import { startSluiceNode } from "../bench/lib/sluice-node.js";
import { selfSignedCert } from "../lib/self-signed.js";
import { bySession, readStream } from "./audit-recording-support.js";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";
const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
/** the node's dataPlane.audit.bufferEvents, and the statements the clients run before the kill */
const BUFFER = 200;
const RUN = 400;

for (const durability of ["ack", "async"] as const) {
  test(`${durability}: the data plane killed with SIGKILL under load`, async (t) => {
    const db = `sluice_crash_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Client({ connectionString: PG });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${db}`);
    t.after(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await admin.end();
    });
    const prefix = `crash${randomBytes(4).toString("hex")}`;
    const nc = await connect({ servers: NATS_URL });
    t.after(async () => {
      await deleteAll(nc, prefix).catch(() => undefined);
      await nc.close();
    });
    const node = await startSluiceNode({ name: `crash-${durability}`, upstreamPort: 5432, database: db, cert: selfSignedCert(), durability, masked: false, prefix, bufferEvents: BUFFER });
    t.after(() => node.stop());
    const env = node.target("crash").env;

    const clients = 6;
    const succeeded: string[][] = Array.from({ length: clients }, () => []);
    let killed = false;
    let refused = 0;
    const loop = async (c: number) => {
      const client = new pg.Client({
        host: env.PGHOST, port: Number(env.PGPORT), user: env.PGUSER, password: env.PGPASSWORD, database: db, ssl: { rejectUnauthorized: false },
      });
      client.on("error", () => undefined);
      await client.connect();
      for (let n = 1; !killed; n++) {
        const marker = `c${c}-${n}`;
        try {
          await client.query(`SELECT '${marker}' AS marker`);
          succeeded[c]!.push(marker);
        } catch (e) {
          // async: a full buffer refuses (57P03, backpressure) and the session goes on; anything
          // else (and in ack mode anything at all): the node is gone
          if (durability === "async" && (e as { code?: string }).code === "57P03" && !killed) {
            refused++;
            await sleep(5);
            continue;
          }
          break;
        }
      }
    };
    const loops = Array.from({ length: clients }, (_, c) => loop(c));
    const total = () => succeeded.reduce((a, l) => a + l.length, 0);
    for (let i = 0; i < 1500 && total() < RUN; i++) await sleep(20);
    assert.ok(total() >= RUN, `statements ran before the kill (${total()})`);
    process.kill(node.pid, "SIGKILL");
    killed = true;
    await Promise.allSettled(loops);

    const names = natsNames(prefix);
    const sessions = bySession(await readStream(nc, names.auditStream));
    const stored = new Map<number, string[]>();
    for (const evs of sessions.values()) {
      // what was stored of each session is its beginning: seq 1, 2, … with every link intact
      assert.equal(verifyChain(evs), undefined, "a session's stored events are a gap-free beginning of its chain");
      const markers = evs.filter((e) => e.type === SessionEventType["statement.allowed"])
        .map((e) => /'(c\d+-\d+)'/.exec((e.data as StatementAllowedData).sql)?.[1]).filter((m): m is string => m !== undefined);
      if (markers.length) stored.set(Number(/^c(\d+)/.exec(markers[0]!)![1]), markers);
    }
    let lost = 0;
    for (let c = 0; c < clients; c++) {
      const mine = stored.get(c) ?? [];
      const ok = succeeded[c]!;
      if (durability === "ack") {
        assert.deepEqual(mine.slice(0, ok.length), ok, `client ${c}: every statement it saw succeed is on the stream, in order`);
      } else {
        // async: the stream holds a beginning of what the client saw succeed (lost ones are its end)
        assert.deepEqual(ok.slice(0, mine.length), mine.slice(0, Math.min(mine.length, ok.length)), `client ${c}: the stored statements are the first ones`);
        lost += Math.max(0, ok.length - mine.length);
      }
    }
    if (durability === "async") {
      // the documented bound: a statement is admitted only while fewer than BUFFER events are
      // pending, so at most BUFFER statements' events are unstored at any moment (in practice the
      // last few milliseconds' worth)
      assert.ok(lost <= BUFFER, `lost ${lost} statements, more than a buffer of ${BUFFER} events admits`);
    }
    t.diagnostic(JSON.stringify({ succeeded: total(), sessions: sessions.size, lostAsync: lost, refused }));
  });
}
