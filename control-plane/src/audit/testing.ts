/**
 * Test support for the audit pieces: a private NATS prefix with the contract's streams, and hash-chained
 * session events published to it. Not part of the public entry.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { HashChain, encodeEvent, eventType, makeEvent, dataPlaneSource, type CloudEvent } from "@sluice/shared/events";
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
    return names.auditSubject(this.region, this.node, this.sessionId);
  }
}

export async function publishEvents(nc: NatsConnection, names: NatsNames, evs: Array<{ w: SessionWriter; ev: CloudEvent }>): Promise<void> {
  const js = jetstream(nc);
  for (const { w, ev } of evs) await js.publish(w.subject(names), encodeEvent(ev), { msgID: ev.id });
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
    return names.auditSubject(this.region, this.node, this.sessionId);
  }
}

/** Publishes scripted sessions interleaved round-robin, as concurrent sessions land in the stream. */
export async function publishInterleaved(nc: NatsConnection, names: NatsNames, sessions: SessionScript[]): Promise<number> {
  const js = jetstream(nc);
  const cursors = sessions.map(() => 0);
  let n = 0;
  for (let more = true; more; ) {
    more = false;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      const ev = s.events[cursors[i]!];
      if (!ev) continue;
      more = true;
      cursors[i]!++;
      await js.publish(s.subject(names), encodeEvent(ev), { msgID: ev.id });
      n++;
    }
  }
  return n;
}
