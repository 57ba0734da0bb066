import Database, { type Database as Sqlite } from "better-sqlite3";
import pg from "pg";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction, type SqliteDatabase } from "kysely";
import { isChunkData, reassembleChunks, sessionEventName, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { createSchema, dropSchema, READ_MODEL_TABLES, type ReadModelDb } from "./schema.js";
import { foldEvents, statementKey, touchedKeys, type ExistingRows, type FoldEvent, type FoldResult } from "./read-model-fold.js";
import { SqliteBatchWriter } from "./sqlite-batch-writer.js";

/** A stream as a projection knows it: a name alone is not enough (a fresh server has a stream of the same name). */
export interface StreamIdentity {
  stream: string;
  /** the stream's creation time as the server reports it */
  created: string;
}

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

/** Keys per `IN (…)` list, and bound values per multi-row INSERT (SQLite allows 32,766; PostgreSQL 65,535). */
const IN_LIST = 500;
const MAX_BOUND_VALUES = 30_000;

function rowsPerInsert(rows: readonly object[]): number {
  return rows.length === 0 ? 1 : Math.max(1, Math.floor(MAX_BOUND_VALUES / Object.keys(rows[0]!).length));
}

function* chunked<T>(list: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < list.length; i += size) yield list.slice(i, i + size);
}

/** SQLite's database for the read model: the file (and its directory) created when absent, WAL. */
function openSqlite(url: string): Sqlite {
  if (url !== ":memory:") mkdirSync(dirname(url), { recursive: true });
  const d = new Database(url);
  d.pragma("journal_mode = WAL");
  d.pragma("synchronous = NORMAL");
  d.pragma("busy_timeout = 5000");
  return d;
}

export function openReadModelDb(cfg: ReadModelConfig, sqlite?: Sqlite): Kysely<ReadModelDb> {
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
    dialect: new SqliteDialect({ database: () => Promise.resolve((sqlite ?? openSqlite(cfg.url)) as unknown as SqliteDatabase) }),
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
  /** SQLite's write path: the fold's rows through statements prepared once (kysely for everything else) */
  private readonly sqliteWriter: SqliteBatchWriter | undefined;

  constructor(readonly db: Kysely<ReadModelDb>, readonly dialect: ReadModelDialect, sqlite?: Sqlite) {
    this.sqliteWriter = sqlite ? new SqliteBatchWriter(sqlite, { session: normalizeSessionRow, statement: normalizeStatement, approval: normalizeApproval }) : undefined;
  }

  static open(cfg: ReadModelConfig): ReadModel {
    if (cfg.dialect !== "sqlite") return new ReadModel(openReadModelDb(cfg), cfg.dialect);
    // one connection, kysely's and the writer's: the writer's transaction is synchronous, so no
    // query of kysely's can run inside it
    const sqlite = openSqlite(cfg.url);
    return new ReadModel(openReadModelDb(cfg, sqlite), cfg.dialect, sqlite);
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

  /** The stream this projection folded (undefined: none recorded yet). */
  async source(name = AUDIT_PROJECTION): Promise<StreamIdentity | undefined> {
    const row = await this.db.selectFrom("projection_source").select(["stream", "created"]).where("name", "=", name).executeTakeFirst();
    return row ? { stream: row.stream, created: row.created } : undefined;
  }

  /** Records the stream this projection folds, unless one is recorded already (another replica's). */
  async recordSource(src: StreamIdentity, name = AUDIT_PROJECTION): Promise<void> {
    await this.db.insertInto("projection_source").values({ name, stream: src.stream, created: src.created })
      .onConflict((oc) => oc.column("name").doNothing()).execute();
  }

  /**
   * Applies stream messages (a seq and the events of its batch) in order, in one transaction with
   * the position. Returns the position after the batch. Throws when the batch does not continue the
   * stored position (a gap): the caller repositions its consumer.
   */
  async applyBatch(batch: ReadonlyArray<{ seq: number; events: readonly CloudEvent[] | undefined }>, name = AUDIT_PROJECTION): Promise<number> {
    if (this.sqliteWriter) return this.sqliteWriter.applyBatch(batch, name);
    return await this.db.transaction().execute(async (trx) => {
      let q = trx.selectFrom("projection_position").select("stream_seq").where("name", "=", name);
      if (this.dialect === "postgres") q = q.forUpdate();
      let pos = num((await q.executeTakeFirst())?.stream_seq);
      const start = pos;
      const events: FoldEvent[] = [];
      // chunks before the last of a run fold into nothing, but replay must find their messages too
      const chunkIndex: Array<{ session_id: string; stream_seq: number }> = [];
      for (const m of batch) {
        if (m.seq <= pos) continue; // already applied (redelivery, or another replica got there first)
        if (m.seq !== pos + 1) throw new SluiceError("aborted", `read model: stream seq ${m.seq} does not follow position ${pos}`);
        for (const raw of m.events ?? []) {
          const ev = isChunkData(raw.data) ? await this.joinChunk(trx, raw) : raw;
          if (ev) events.push({ ev, seq: m.seq });
          else if (sessionEventName(raw.type)) chunkIndex.push({ session_id: raw.subject, stream_seq: m.seq });
        }
        pos = m.seq;
      }
      if (events.length || chunkIndex.length) {
        const f = foldEvents(events, await this.existing(trx, touchedKeys(events)));
        f.index.push(...chunkIndex);
        await this.write(trx, f);
      }
      if (pos !== start) {
        await trx.insertInto("projection_position").values({ name, stream_seq: pos })
          .onConflict((oc) => oc.column("name").doUpdateSet({ stream_seq: pos })).execute();
      }
      return pos;
    });
  }

  /**
   * A chunk of a payload above 512 KiB: kept in projection_chunks until its run is complete (a run
   * may span batches and restarts), then the logical event. Rare, so one statement per chunk is fine.
   */
  private async joinChunk(trx: Trx, raw: CloudEvent): Promise<CloudEvent | undefined> {
    const d = raw.data as { chunk: number; chunks: number };
    await trx.insertInto("projection_chunks").values({ session_id: raw.subject, chunk: d.chunk, event: JSON.stringify(raw) })
      .onConflict((oc) => oc.columns(["session_id", "chunk"]).doUpdateSet({ event: JSON.stringify(raw) })).execute();
    if (d.chunk < d.chunks) return undefined;
    const rows = await trx.selectFrom("projection_chunks").select("event").where("session_id", "=", raw.subject).orderBy("chunk").execute();
    await trx.deleteFrom("projection_chunks").where("session_id", "=", raw.subject).execute();
    try {
      const run = rows.map((r) => JSON.parse(r.event) as CloudEvent);
      return { ...run[0]!, data: reassembleChunks(run) };
    } catch {
      return undefined; // a broken chunk run is a verify finding, not a projection crash
    }
  }

  /** The rows a batch touches that exist already. */
  private async existing(trx: Trx, keys: ReturnType<typeof touchedKeys>): Promise<ExistingRows> {
    const sessions = new Map<string, ReadModelDb["sessions"]>();
    for (const part of chunked(keys.sessions, IN_LIST)) {
      for (const r of await trx.selectFrom("sessions").selectAll().where("session_id", "in", part).execute()) sessions.set(r.session_id, normalizeSessionRow(r));
    }
    const statements = new Map<string, ReadModelDb["statements"]>();
    const bySession = new Map<string, number[]>();
    for (const k of keys.statements) {
      const list = bySession.get(k.sessionId);
      if (list) list.push(k.statementId);
      else bySession.set(k.sessionId, [k.statementId]);
    }
    for (const [sid, ids] of bySession) {
      // only sessions that exist can have statements
      if (!sessions.has(sid)) continue;
      for (const part of chunked(ids, IN_LIST)) {
        const rows = await trx.selectFrom("statements").selectAll().where("session_id", "=", sid).where("statement_id", "in", part).execute();
        for (const r of rows) statements.set(statementKey(sid, num(r.statement_id)), normalizeStatement(r));
      }
    }
    const approvals = new Map<string, ReadModelDb["approvals"]>();
    for (const part of chunked(keys.approvals, IN_LIST)) {
      for (const r of await trx.selectFrom("approvals").selectAll().where("approval_id", "in", part).execute()) approvals.set(r.approval_id, normalizeApproval(r));
    }
    return { sessions, statements, approvals };
  }

  /** Writes a fold's result: multi-row inserts, one update per changed row. */
  private async write(trx: Trx, f: FoldResult): Promise<void> {
    for (const rows of chunked(f.sessions.insert, rowsPerInsert(f.sessions.insert))) await trx.insertInto("sessions").values(rows).execute();
    for (const r of f.sessions.update) {
      const { session_id, ...set } = r;
      await trx.updateTable("sessions").set(set).where("session_id", "=", session_id).execute();
    }
    for (const rows of chunked(f.statements.insert, rowsPerInsert(f.statements.insert))) await trx.insertInto("statements").values(rows).execute();
    for (const r of f.statements.update) {
      const { session_id, statement_id, ...set } = r;
      await trx.updateTable("statements").set(set).where("session_id", "=", session_id).where("statement_id", "=", statement_id).execute();
    }
    for (const rows of chunked(f.approvals.insert, rowsPerInsert(f.approvals.insert))) await trx.insertInto("approvals").values(rows).execute();
    for (const r of f.approvals.update) {
      const { approval_id, ...set } = r;
      await trx.updateTable("approvals").set(set).where("approval_id", "=", approval_id).execute();
    }
    for (const rows of chunked(f.decisions, rowsPerInsert(f.decisions))) {
      await trx.insertInto("decisions").values(rows).onConflict((oc) => oc.column("event_id").doNothing()).execute();
    }
    for (const rows of chunked(f.index, rowsPerInsert(f.index))) {
      await trx.insertInto("session_messages").values(rows).onConflict((oc) => oc.columns(["session_id", "stream_seq"]).doNothing()).execute();
    }
  }

  /** The stream sequences of the messages that hold a session's events, in order (the index replay reads). */
  async sessionMessages(sessionId: string): Promise<number[]> {
    const rows = await this.db.selectFrom("session_messages").select("stream_seq").where("session_id", "=", sessionId).orderBy("stream_seq").execute();
    return rows.map((r) => num(r.stream_seq));
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

  async getSessionRow(id: string): Promise<SessionRow | undefined> {
    const s = await this.db.selectFrom("sessions").selectAll().where("session_id", "=", id).executeTakeFirst();
    return s ? normalizeSession(s) : undefined;
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
    out.session_messages = (await this.db.selectFrom("session_messages").selectAll().orderBy("session_id").orderBy("stream_seq").execute())
      .map((r) => ({ ...r, stream_seq: num(r.stream_seq) }));
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

/** A sessions row with its numbers as numbers (PostgreSQL returns bigint as text). */
function normalizeSessionRow(s: ReadModelDb["sessions"]): ReadModelDb["sessions"] {
  return {
    ...s,
    statements: num(s.statements),
    blocked: num(s.blocked),
    policy_rev: s.policy_rev === null ? null : num(s.policy_rev),
    first_stream_seq: num(s.first_stream_seq),
    last_stream_seq: num(s.last_stream_seq),
  };
}

function normalizeSession(s: ReadModelDb["sessions"]): SessionRow {
  return { ...normalizeSessionRow(s), groupsList: s.groups ? (JSON.parse(s.groups) as string[]) : [] };
}

function normalizeApproval(a: ReadModelDb["approvals"]): ReadModelDb["approvals"] {
  return { ...a, timeout_ms: num(a.timeout_ms) };
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
