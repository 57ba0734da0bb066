/**
 * Test support for the audit pieces: a private NATS prefix with the contract's streams, and hash-chained
 * session events published to it. Not part of the public entry.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { HashChain, encodeBatch, eventType, makeEvent, dataPlaneSource, type CloudEvent } from "@sluice/shared/events";
import { buildSessionEvent, chunkSessionEvent, uuidv7, type SessionEventName, type SessionEventPayloads } from "@sluice/shared/events";
import { natsNames, ensureAll, deleteAll, type NatsNames, type JetStreamResources } from "@sluice/shared/nats";

export const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "127.0.0.1:4222";

export interface NatsFixture extends JetStreamResources {
  nc: NatsConnection;
  names: NatsNames;
}

/** Own prefix, memory streams, short lease TTL; everything deleted after the test. */
export async function natsFixture(t: TestContext, o: { leaseTtlMs?: number } = {}): Promise<NatsFixture> {
  const prefix = "t" + randomBytes(5).toString("hex");
  const nc = await connect({ servers: NATS_URL, name: `test-${prefix}` });
  t.after(async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  const res = await ensureAll(nc, prefix, { storage: "memory", leaseTtlMs: o.leaseTtlMs ?? 1500 });
  return { nc, ...res };
}

/** A session's events, linked into its hash chain, as a data plane would publish them. */
export class SessionWriter {
  readonly chain = new HashChain();
  constructor(
    readonly sessionId: string,
    readonly region = "local",
    readonly node = "node-1",
    private clockMs = Date.parse("2026-01-01T00:00:00Z"),
  ) {}
  event<D>(name: string, data: D, policyRev?: number): CloudEvent<D> {
    this.clockMs += 7;
    return this.chain.link(
      makeEvent({ source: dataPlaneSource(this.region, this.node), type: eventType(name), subject: this.sessionId, data, time: new Date(this.clockMs), policyRev }),
    );
  }
  subject(names: NatsNames): string {
    return testLane(names, this.region, this.node);
  }
}

/** The lane test events of a node go through (a data plane names its lanes `<boot id>-<n>`). */
export function testLane(names: NatsNames, region: string, node: string): string {
  return names.auditSubject(region, node, "test-0");
}

/**
 * Publishes events as a data plane's lane does: consecutive events in batches of `perMessage`, each
 * expecting the lane's previous message. Events go to the lane of their own source's node. Returns
 * the number of messages stored.
 */
export async function publishBatches(nc: NatsConnection, names: NatsNames, events: readonly CloudEvent[], perMessage = 4): Promise<number> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const last = new Map<string, number>();
  let messages = 0;
  for (let i = 0; i < events.length; ) {
    const subject = laneOf(names, events[i]!);
    if (!last.has(subject)) last.set(subject, (await jsm.direct.getMessage(names.auditStream, { last_by_subj: subject }))?.seq ?? 0);
    const batch: CloudEvent[] = [];
    while (i < events.length && batch.length < perMessage && laneOf(names, events[i]!) === subject) batch.push(events[i++]!);
    const ack = await js.publish(subject, encodeBatch(batch.map((e) => JSON.stringify(e))), {
      msgID: `${subject}:${batch[0]!.id}`, expect: { lastSubjectSequence: last.get(subject) ?? 0 },
    });
    last.set(subject, ack.seq);
    messages++;
  }
  return messages;
}

function laneOf(names: NatsNames, ev: CloudEvent): string {
  const m = /^sluice:\/\/([^/]+)\/(.+)$/.exec(ev.source);
  return testLane(names, m?.[1] ?? "local", m?.[2] ?? "node-1");
}

export async function publishEvents(nc: NatsConnection, names: NatsNames, evs: Array<{ w: SessionWriter; ev: CloudEvent }>, perMessage = 1): Promise<number> {
  return publishBatches(nc, names, evs.map((e) => e.ev), perMessage);
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// Realistic sessions built with the recorder's builders (shared/events/session-events.ts)
// ---------------------------------------------------------------------------------------------

export interface ScriptedSession {
  sessionId: string;
  region: string;
  node: string;
  events: CloudEvent[];
}

/** A session as the data plane records it: started, authenticated, statements, ended. */
export class SessionScript {
  readonly chain = new HashChain();
  readonly events: CloudEvent[] = [];
  private stmt = 0;
  constructor(
    readonly sessionId: string,
    private clockMs: number,
    readonly region = "local",
    readonly node = "node-1",
  ) {}

  emit<N extends SessionEventName>(name: N, data: SessionEventPayloads[N], policyRev = 1): this {
    this.clockMs += 3;
    const ev = buildSessionEvent({ sessionId: this.sessionId, region: this.region, node: this.node }, name, data, { time: new Date(this.clockMs), policyRev });
    for (const part of chunkSessionEvent(ev, () => uuidv7(this.clockMs))) this.events.push(this.chain.link(part));
    return this;
  }

  start(identity: string, resource = "orders", groups = ["ci"]): this {
    return this.emit("session.started", { clientAddress: "127.0.0.1", clientPort: 40000, resource, node: this.node, region: this.region, tls: { enabled: true } })
      .emit("session.authenticated", { subject: identity, issuer: "dev", groups, claims: { repository: "acme/orders" } });
  }

  private part(sql: string, cls: "read" | "write" | "ddl") {
    const kind = /^select/i.test(sql) ? "SelectStmt" : /^insert/i.test(sql) ? "InsertStmt" : /^delete/i.test(sql) ? "DeleteStmt" : /^drop/i.test(sql) ? "DropStmt" : "UpdateStmt";
    return { kind, class: cls, tables: { read: cls === "read" ? ["orders"] : [], write: cls === "read" ? [] : ["orders"] }, functions: [], risks: [] };
  }

  allowed(sql: string, rows = 1, cls: "read" | "write" = "read"): this {
    const id = ++this.stmt;
    const p = this.part(sql, cls);
    this.emit("statement.allowed", { statementId: id, sql, protocol: "simple", class: cls, tables: p.tables, risks: [], statements: [p], decision: "allow", rule: "ci-read/allow:read", policy: "ci-read" });
    if (rows > 0) this.emit("result.rows", { statementId: id, columns: [{ name: "id", typeOid: 23 }, { name: "email", typeOid: 25, masked: true }],
      values: Array.from({ length: Math.min(rows, 3) }, (_, i) => [String(i + 1), "a***@example.com"]), rows, recorded: Math.min(rows, 3), truncated: rows > 3, recordedBytes: 20 });
    return this.emit("statement.completed", { statementId: id, commandTag: `SELECT ${rows}`, rows, durationMs: 1.5 });
  }

  blocked(sql: string, rule = "default-deny"): this {
    const id = ++this.stmt;
    const p = this.part(sql, "write");
    return this.emit("statement.blocked", { statementId: id, sql, protocol: "simple", class: "write", tables: p.tables, risks: [], statements: [p], decision: "deny", rule, reason: "not allowed", sqlstate: "42501" });
  }

  approval(sql: string, approvalId: string, outcome: "approved" | "rejected"): this {
    const id = ++this.stmt;
    const p = this.part(sql, "ddl");
    this.emit("statement.approval_requested", { statementId: id, sql, protocol: "simple", class: "ddl", tables: p.tables, risks: [], statements: [p], decision: "approve",
      rule: "deployers/approve:ddl", approvalId, approvers: ["dba"], timeoutMs: 600_000 });
    if (outcome === "approved") {
      return this.emit("statement.approved", { statementId: id, approvalId, approver: "dba-alice" })
        .emit("statement.completed", { statementId: id, commandTag: "DROP TABLE", rows: 0, durationMs: 4 });
    }
    return this.emit("statement.rejected", { statementId: id, approvalId, reason: "rejected", approver: "dba-alice", sqlstate: "42501" });
  }

  end(): this {
    return this.emit("session.ended", { reason: "client_terminate", durationMs: 100, statements: this.stmt, bytesIn: 1000, bytesOut: 2000 });
  }

  subject(names: NatsNames): string {
    return testLane(names, this.region, this.node);
  }
}

/** Scripted sessions interleaved round-robin, as concurrent sessions' events reach their lanes. */
export function interleave(sessions: readonly SessionScript[]): CloudEvent[] {
  const out: CloudEvent[] = [];
  const cursors = sessions.map(() => 0);
  for (let more = true; more; ) {
    more = false;
    for (let i = 0; i < sessions.length; i++) {
      const ev = sessions[i]!.events[cursors[i]!];
      if (!ev) continue;
      more = true;
      cursors[i]!++;
      out.push(ev);
    }
  }
  return out;
}

/**
 * Publishes scripted sessions interleaved round-robin in batches of `perMessage` events (the
 * events of many sessions share a message). Returns the number of messages stored.
 */
export async function publishInterleaved(nc: NatsConnection, names: NatsNames, sessions: SessionScript[], perMessage = 4): Promise<number> {
  return publishBatches(nc, names, interleave(sessions), perMessage);
}
