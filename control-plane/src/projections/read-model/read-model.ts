import Database from "better-sqlite3";
import pg from "pg";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction, type SqliteDatabase } from "kysely";
import { isChunkData, reassembleChunks, sessionEventName, type CloudEvent } from "@sluice/shared/events";
import type {
  SessionAuthenticatedData, SessionDeniedData, SessionEndedData, SessionStartedData, StatementApprovalRequestedData,
  StatementApprovedData, StatementBlockedData, StatementCompletedData, StatementData, StatementRejectedData,
} from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { createSchema, dropSchema, READ_MODEL_TABLES, type ReadModelDb } from "./schema.js";

export type ReadModelDialect = "sqlite" | "postgres";
export interface ReadModelConfig {
  dialect: ReadModelDialect;
  /** SQLite file path (":memory:" allowed) or a postgres:// URL */
  url: string;
}

/** The projection name whose position is kept in projection_position. */
export const AUDIT_PROJECTION = "audit";

type Trx = Transaction<ReadModelDb>;

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

export function openReadModelDb(cfg: ReadModelConfig): Kysely<ReadModelDb> {
  if (cfg.dialect === "postgres") {
    const pool = new pg.Pool({ connectionString: cfg.url, max: 4 });
    // An IDLE pooled connection that the server ends (restart, pg_terminate_backend, DROP DATABASE
    // … FORCE) surfaces as a pool 'error' event; without a listener that is an uncaught exception
    // that kills the control plane. No operation is running on it: the pool has already discarded
    // the client and the next query opens a new one, where any real failure reaches its caller.
    pool.on("error", () => undefined);
    return new Kysely<ReadModelDb>({ dialect: new PostgresDialect({ pool }) });
  }
  if (cfg.dialect !== "sqlite") throw new SluiceError("invalid_argument", `controlPlane.readModel.dialect must be sqlite or postgres, got ${JSON.stringify(cfg.dialect)}`);
  return new Kysely<ReadModelDb>({
    dialect: new SqliteDialect({
      database: () => {
        if (cfg.url !== ":memory:") mkdirSync(dirname(cfg.url), { recursive: true });
        const d = new Database(cfg.url);
        d.pragma("journal_mode = WAL");
        d.pragma("synchronous = NORMAL");
        d.pragma("busy_timeout = 5000");
        return Promise.resolve(d as unknown as SqliteDatabase);
      },
    }),
  });
}

export interface SessionFilter {
  identity?: string;
  resource?: string;
  /** ISO times on started_at */
  since?: string;
  until?: string;
  /** sessions with at least one decision of this kind (allow, deny, approve, approved, rejected); `deny` includes denied connections */
  decision?: string;
  status?: string;
  /** the data-plane node that served it */
  node?: string;
  limit?: number;
}

export type SessionRow = ReadModelDb["sessions"] & { groupsList: string[] };

/**
 * The read model: schema, the fold from audit events to rows, and the queries the CLI needs. The fold
 * (`applyBatch`) runs in one transaction per batch together with the position update; events at or
 * before the stored position are skipped, so a redelivered message changes nothing.
 */
export class ReadModel {
  constructor(readonly db: Kysely<ReadModelDb>, readonly dialect: ReadModelDialect) {}

  static open(cfg: ReadModelConfig): ReadModel {
    return new ReadModel(openReadModelDb(cfg), cfg.dialect);
  }

  async migrate(): Promise<void> {
    await createSchema(this.db);
    // the position row exists before any batch, so `SELECT … FOR UPDATE` always has a row to lock and
    // two replicas projecting into one PostgreSQL database serialize on it (no double effect on seq 1)
    await this.db.insertInto("projection_position").values({ name: AUDIT_PROJECTION, stream_seq: 0 })
      .onConflict((oc) => oc.column("name").doNothing()).execute();
  }

  async reset(): Promise<void> {
    await dropSchema(this.db);
    await this.migrate();
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  async position(name = AUDIT_PROJECTION): Promise<number> {
    const row = await this.db.selectFrom("projection_position").select("stream_seq").where("name", "=", name).executeTakeFirst();
    return num(row?.stream_seq);
  }

  /**
   * Applies stream messages [seq, event] in order, in one transaction with the position. Returns the
   * position after the batch. Throws when the batch does not continue the stored position (a gap): the
   * caller repositions its consumer.
   */
  async applyBatch(batch: ReadonlyArray<{ seq: number; event: CloudEvent | undefined }>, name = AUDIT_PROJECTION): Promise<number> {
    return await this.db.transaction().execute(async (trx) => {
      let q = trx.selectFrom("projection_position").select("stream_seq").where("name", "=", name);
      if (this.dialect === "postgres") q = q.forUpdate();
      let pos = num((await q.executeTakeFirst())?.stream_seq);
      const start = pos;
      for (const m of batch) {
        if (m.seq <= pos) continue; // already applied (redelivery, or another replica got there first)
        if (m.seq !== pos + 1) throw new SluiceError("aborted", `read model: stream seq ${m.seq} does not follow position ${pos}`);
        if (m.event) await this.applyEvent(trx, m.event, m.seq);
        pos = m.seq;
      }
      if (pos !== start) {
        await trx.insertInto("projection_position").values({ name, stream_seq: pos })
          .onConflict((oc) => oc.column("name").doUpdateSet({ stream_seq: pos })).execute();
      }
      return pos;
    });
  }

  private async applyEvent(trx: Trx, raw: CloudEvent, seq: number): Promise<void> {
    let ev = raw;
    if (isChunkData(raw.data)) {
      const d = raw.data;
      await trx.insertInto("projection_chunks").values({ session_id: raw.subject, chunk: d.chunk, event: JSON.stringify(raw) })
        .onConflict((oc) => oc.columns(["session_id", "chunk"]).doUpdateSet({ event: JSON.stringify(raw) })).execute();
      if (d.chunk < d.chunks) return;
      const rows = await trx.selectFrom("projection_chunks").select("event").where("session_id", "=", raw.subject).orderBy("chunk").execute();
      await trx.deleteFrom("projection_chunks").where("session_id", "=", raw.subject).execute();
      try {
        const run = rows.map((r) => JSON.parse(r.event) as CloudEvent);
        ev = { ...run[0]!, data: reassembleChunks(run) };
      } catch {
        return; // a broken chunk run is a verify finding, not a projection crash
      }
    }
    const name = sessionEventName(ev.type);
    if (!name) return;
    const sid = ev.subject;
    const at = ev.time;
    const rev = ev.sluicepolicyrev ?? null;
    // every event makes sure its session row exists and moves its last position
    await trx.insertInto("sessions").values({
      session_id: sid, region: null, node: null, resource: null, client_address: null, client_user: null, application_name: null,
      subject: null, issuer: null, groups: null, status: "connecting", deny_reason: null, end_reason: null,
      started_at: at, authenticated_at: null, ended_at: null, statements: 0, blocked: 0, policy_rev: rev,
      first_stream_seq: seq, last_stream_seq: seq,
    }).onConflict((oc) => oc.column("session_id").doUpdateSet({ last_stream_seq: seq })).execute();
    const upd = (values: Partial<ReadModelDb["sessions"]>) => trx.updateTable("sessions").set(values).where("session_id", "=", sid).execute();

    switch (name) {
      case "session.started": {
        const d = ev.data as SessionStartedData;
        await upd({ region: d.region, node: d.node, resource: d.resource, client_address: d.clientAddress, client_user: d.user ?? null,
          application_name: d.applicationName ?? null, started_at: at });
        return;
      }
      case "session.authenticated": {
        const d = ev.data as SessionAuthenticatedData;
        await upd({ subject: d.subject, issuer: d.issuer, groups: JSON.stringify(d.groups), status: "active", authenticated_at: at, policy_rev: rev });
        return;
      }
      case "session.denied": {
        const d = ev.data as SessionDeniedData;
        await upd({ status: "denied", deny_reason: `${d.stage}: ${d.reason}`, ended_at: at, policy_rev: rev,
          ...(d.subject ? { subject: d.subject, issuer: d.issuer ?? null, groups: d.groups ? JSON.stringify(d.groups) : null } : {}) });
        return;
      }
      case "session.ended": {
        const d = ev.data as SessionEndedData;
        await trx.updateTable("sessions").set({ status: "ended", end_reason: d.reason, ended_at: at })
          .where("session_id", "=", sid).where("status", "!=", "denied").execute();
        return;
      }
      case "statement.allowed":
      case "statement.blocked":
      case "statement.approval_requested": {
        const d = ev.data as StatementData;
        const outcome = name === "statement.allowed" ? "allowed" : name === "statement.blocked" ? "blocked" : "pending_approval";
        await trx.insertInto("statements").values({
          session_id: sid, statement_id: d.statementId, sql: d.sql, params: d.params ? JSON.stringify(d.params) : null,
          protocol: d.protocol, class: d.class, tables: JSON.stringify(d.tables ?? { read: [], write: [] }), decision: d.decision,
          rule: d.rule, policy: d.policy ?? null, outcome, command_tag: null, rows: null, duration_ms: null,
          error_sqlstate: name === "statement.blocked" ? (d as StatementBlockedData).sqlstate : null,
          error_message: name === "statement.blocked" ? (d.reason ?? null) : null,
          policy_rev: rev, decided_at: at, completed_at: null, stream_seq: seq,
        }).onConflict((oc) => oc.columns(["session_id", "statement_id"]).doNothing()).execute();
        await trx.insertInto("decisions").values({ event_id: ev.id, session_id: sid, statement_id: d.statementId, decision: d.decision,
          rule: d.rule, actor: null, policy_rev: rev, at, stream_seq: seq }).onConflict((oc) => oc.column("event_id").doNothing()).execute();
        await trx.updateTable("sessions").set((eb) => ({
          statements: eb("statements", "+", 1),
          blocked: eb("blocked", "+", name === "statement.blocked" ? 1 : 0),
        })).where("session_id", "=", sid).execute();
        if (name === "statement.approval_requested") {
          const a = d as StatementApprovalRequestedData;
          const s = await trx.selectFrom("sessions").select(["subject", "resource"]).where("session_id", "=", sid).executeTakeFirst();
          await trx.insertInto("approvals").values({ approval_id: a.approvalId, session_id: sid, statement_id: a.statementId,
            requester: s?.subject ?? null, resource: s?.resource ?? null, sql: a.sql, approvers: JSON.stringify(a.approvers), status: "pending",
            decided_by: null, requested_at: at, decided_at: null, timeout_ms: a.timeoutMs })
            .onConflict((oc) => oc.column("approval_id").doNothing()).execute();
        }
        return;
      }
      case "statement.approved":
      case "statement.rejected": {
        const d = ev.data as StatementApprovedData | StatementRejectedData;
        const approved = name === "statement.approved";
        const status = approved ? "approved" : (d as StatementRejectedData).reason;
        await trx.insertInto("decisions").values({ event_id: ev.id, session_id: sid, statement_id: d.statementId, decision: approved ? "approved" : "rejected",
          rule: approved ? null : (d as StatementRejectedData).reason, actor: d.approver ?? null, policy_rev: rev, at, stream_seq: seq })
          .onConflict((oc) => oc.column("event_id").doNothing()).execute();
        await trx.updateTable("approvals").set({ status, decided_by: d.approver ?? null, decided_at: at }).where("approval_id", "=", d.approvalId).execute();
        await trx.updateTable("statements").set({ outcome: approved ? "approved" : "rejected",
          ...(approved ? {} : { error_sqlstate: (d as StatementRejectedData).sqlstate }) })
          .where("session_id", "=", sid).where("statement_id", "=", d.statementId).execute();
        if (!approved) await trx.updateTable("sessions").set((eb) => ({ blocked: eb("blocked", "+", 1) })).where("session_id", "=", sid).execute();
        return;
      }
      case "statement.completed": {
        const d = ev.data as StatementCompletedData;
        await trx.updateTable("statements").set({
          outcome: d.error ? "failed" : "completed", command_tag: d.commandTag ?? null, rows: d.rows, duration_ms: d.durationMs,
          error_sqlstate: d.error?.sqlstate ?? null, error_message: d.error?.message ?? null, completed_at: at,
        }).where("session_id", "=", sid).where("statement_id", "=", d.statementId).execute();
        return;
      }
      case "result.rows":
        return; // result values stay in the stream (replay reads them there); counts come with statement.completed
    }
  }

  async listSessions(f: SessionFilter = {}): Promise<SessionRow[]> {
    let q = this.db.selectFrom("sessions").selectAll();
    if (f.identity) q = q.where("subject", "=", f.identity);
    if (f.resource) q = q.where("resource", "=", f.resource);
    if (f.since) q = q.where("started_at", ">=", f.since);
    if (f.until) q = q.where("started_at", "<=", f.until);
    if (f.status) q = q.where("status", "=", f.status);
    if (f.node) q = q.where("node", "=", f.node);
    if (f.decision) {
      const d = f.decision;
      q = q.where((eb) => {
        const has = eb.exists(eb.selectFrom("decisions").select("event_id").whereRef("decisions.session_id", "=", "sessions.session_id").where("decision", "=", d));
        return d === "deny" ? eb.or([has, eb("status", "=", "denied")]) : has;
      });
    }
    const rows = await q.orderBy("started_at", "desc").orderBy("session_id").limit(f.limit ?? 100).execute();
    return rows.map(normalizeSession);
  }

  async getSession(id: string): Promise<{ session: SessionRow; statements: ReadModelDb["statements"][]; approvals: ReadModelDb["approvals"][] } | undefined> {
    const s = await this.db.selectFrom("sessions").selectAll().where("session_id", "=", id).executeTakeFirst();
    if (!s) return undefined;
    const statements = (await this.db.selectFrom("statements").selectAll().where("session_id", "=", id).orderBy("statement_id").execute()).map(normalizeStatement);
    const approvals = (await this.db.selectFrom("approvals").selectAll().where("session_id", "=", id).orderBy("requested_at").execute()).map((a) => ({ ...a, timeout_ms: num(a.timeout_ms) }));
    return { session: normalizeSession(s), statements, approvals };
  }

  /** Every table's rows in key order, with numbers normalised: equal content gives equal dumps on either dialect. */
  async dump(): Promise<Record<string, unknown[]>> {
    const out: Record<string, unknown[]> = {};
    out.sessions = (await this.db.selectFrom("sessions").selectAll().orderBy("session_id").execute()).map(normalizeSession);
    out.statements = (await this.db.selectFrom("statements").selectAll().orderBy("session_id").orderBy("statement_id").execute()).map(normalizeStatement);
    out.decisions = (await this.db.selectFrom("decisions").selectAll().orderBy("event_id").execute()).map((d) => ({ ...d, stream_seq: num(d.stream_seq) }));
    out.approvals = (await this.db.selectFrom("approvals").selectAll().orderBy("approval_id").execute()).map((a) => ({ ...a, timeout_ms: num(a.timeout_ms) }));
    out.projection_position = (await this.db.selectFrom("projection_position").selectAll().orderBy("name").execute()).map((p) => ({ ...p, stream_seq: num(p.stream_seq) }));
    out.projection_chunks = await this.db.selectFrom("projection_chunks").selectAll().orderBy("session_id").orderBy("chunk").execute();
    return out;
  }

  async counts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const t of READ_MODEL_TABLES) {
      const r = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(t)}`.execute(this.db);
      out[t] = num(r.rows[0]?.n);
    }
    return out;
  }
}

function normalizeSession(s: ReadModelDb["sessions"]): SessionRow {
  return {
    ...s,
    statements: num(s.statements),
    blocked: num(s.blocked),
    policy_rev: s.policy_rev === null ? null : num(s.policy_rev),
    first_stream_seq: num(s.first_stream_seq),
    last_stream_seq: num(s.last_stream_seq),
    groupsList: s.groups ? (JSON.parse(s.groups) as string[]) : [],
  };
}

function normalizeStatement(s: ReadModelDb["statements"]): ReadModelDb["statements"] {
  return {
    ...s,
    rows: s.rows === null ? null : num(s.rows),
    duration_ms: s.duration_ms === null ? null : num(s.duration_ms),
    policy_rev: s.policy_rev === null ? null : num(s.policy_rev),
    stream_seq: num(s.stream_seq),
  };
}
