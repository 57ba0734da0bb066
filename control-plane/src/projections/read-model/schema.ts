import { sql, type Kysely } from "kysely";

/**
 * The SQL read model (contract: "Projections ... a SQL read model through kysely"): sessions,
 * statements, decisions and approvals folded from SLUICE_AUDIT, the index of where each session's
 * events are (session_messages), plus the projection's own position,
 * which is written in the same transaction as the rows it produced (exactly-once effect).
 * The same schema runs on SQLite and PostgreSQL: times are ISO-8601 text (sortable), JSON is text.
 */
export interface SessionsTable {
  session_id: string;
  region: string | null;
  node: string | null;
  resource: string | null;
  client_address: string | null;
  client_user: string | null;
  application_name: string | null;
  subject: string | null;
  issuer: string | null;
  /** JSON array */
  groups: string | null;
  /** connecting | active | denied | ended */
  status: string;
  deny_reason: string | null;
  end_reason: string | null;
  started_at: string | null;
  authenticated_at: string | null;
  ended_at: string | null;
  statements: number;
  blocked: number;
  policy_rev: number | null;
  first_stream_seq: number;
  last_stream_seq: number;
}

export interface StatementsTable {
  session_id: string;
  statement_id: number;
  sql: string;
  /** JSON array (masked) */
  params: string | null;
  protocol: string;
  class: string;
  /** JSON {read, write} */
  tables: string;
  /** allow | deny | approve: what policy said */
  decision: string;
  rule: string;
  policy: string | null;
  /** allowed | blocked | pending_approval | approved | rejected | completed | failed */
  outcome: string;
  command_tag: string | null;
  rows: number | null;
  duration_ms: number | null;
  error_sqlstate: string | null;
  error_message: string | null;
  policy_rev: number | null;
  decided_at: string;
  completed_at: string | null;
  stream_seq: number;
}

export interface DecisionsTable {
  event_id: string;
  session_id: string;
  statement_id: number;
  /** allow | deny | approve | approved | rejected */
  decision: string;
  rule: string | null;
  actor: string | null;
  policy_rev: number | null;
  at: string;
  stream_seq: number;
}

export interface ApprovalsTable {
  approval_id: string;
  session_id: string;
  statement_id: number;
  requester: string | null;
  resource: string | null;
  sql: string;
  /** JSON array */
  approvers: string;
  /** pending | approved | rejected | timeout | cancelled */
  status: string;
  decided_by: string | null;
  requested_at: string;
  decided_at: string | null;
  timeout_ms: number;
}

export interface ProjectionPositionTable {
  name: string;
  stream_seq: number;
}

/**
 * Which stream a projection folded: its name and creation time. A position means nothing in another
 * stream of the same name (a fresh NATS server, a stream deleted and created again), so the projector
 * compares this with the stream it reads and rebuilds when they differ.
 */
export interface ProjectionSourceTable {
  name: string;
  stream: string;
  created: string;
}

/**
 * Where each session's events are: one row per stream message holding at least one of them. A
 * message (a batch) carries events of many sessions, so replaying one session reads only these.
 */
export interface SessionMessagesTable {
  session_id: string;
  stream_seq: number;
}

/** Chunks of a payload whose last chunk has not arrived yet: kept in the database, so a restart mid-run loses nothing. */
export interface ProjectionChunksTable {
  session_id: string;
  chunk: number;
  event: string;
}

export interface ReadModelDb {
  sessions: SessionsTable;
  statements: StatementsTable;
  decisions: DecisionsTable;
  approvals: ApprovalsTable;
  projection_position: ProjectionPositionTable;
  projection_source: ProjectionSourceTable;
  projection_chunks: ProjectionChunksTable;
  session_messages: SessionMessagesTable;
}

export const READ_MODEL_TABLES = ["sessions", "statements", "decisions", "approvals", "projection_position", "projection_source", "projection_chunks", "session_messages"] as const;

export async function createSchema(db: Kysely<ReadModelDb>): Promise<void> {
  await db.schema.createTable("sessions").ifNotExists()
    .addColumn("session_id", "text", (c) => c.primaryKey())
    .addColumn("region", "text").addColumn("node", "text").addColumn("resource", "text")
    .addColumn("client_address", "text").addColumn("client_user", "text").addColumn("application_name", "text")
    .addColumn("subject", "text").addColumn("issuer", "text").addColumn("groups", "text")
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("deny_reason", "text").addColumn("end_reason", "text")
    .addColumn("started_at", "text").addColumn("authenticated_at", "text").addColumn("ended_at", "text")
    .addColumn("statements", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("blocked", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("policy_rev", "integer")
    .addColumn("first_stream_seq", "bigint", (c) => c.notNull())
    .addColumn("last_stream_seq", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("sessions_started_at").ifNotExists().on("sessions").column("started_at").execute();
  await db.schema.createIndex("sessions_subject").ifNotExists().on("sessions").column("subject").execute();
  await db.schema.createTable("statements").ifNotExists()
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("statement_id", "integer", (c) => c.notNull())
    .addColumn("sql", "text", (c) => c.notNull())
    .addColumn("params", "text")
    .addColumn("protocol", "text", (c) => c.notNull())
    .addColumn("class", "text", (c) => c.notNull())
    .addColumn("tables", "text", (c) => c.notNull())
    .addColumn("decision", "text", (c) => c.notNull())
    .addColumn("rule", "text", (c) => c.notNull())
    .addColumn("policy", "text")
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("command_tag", "text")
    .addColumn("rows", "bigint")
    .addColumn("duration_ms", "double precision")
    .addColumn("error_sqlstate", "text").addColumn("error_message", "text")
    .addColumn("policy_rev", "integer")
    .addColumn("decided_at", "text", (c) => c.notNull())
    .addColumn("completed_at", "text")
    .addColumn("stream_seq", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("statements_pk", ["session_id", "statement_id"])
    .execute();
  await db.schema.createTable("decisions").ifNotExists()
    .addColumn("event_id", "text", (c) => c.primaryKey())
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("statement_id", "integer", (c) => c.notNull())
    .addColumn("decision", "text", (c) => c.notNull())
    .addColumn("rule", "text").addColumn("actor", "text")
    .addColumn("policy_rev", "integer")
    .addColumn("at", "text", (c) => c.notNull())
    .addColumn("stream_seq", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("decisions_session").ifNotExists().on("decisions").columns(["session_id", "decision"]).execute();
  await db.schema.createTable("approvals").ifNotExists()
    .addColumn("approval_id", "text", (c) => c.primaryKey())
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("statement_id", "integer", (c) => c.notNull())
    .addColumn("requester", "text").addColumn("resource", "text")
    .addColumn("sql", "text", (c) => c.notNull())
    .addColumn("approvers", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("decided_by", "text")
    .addColumn("requested_at", "text", (c) => c.notNull())
    .addColumn("decided_at", "text")
    .addColumn("timeout_ms", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createTable("projection_position").ifNotExists()
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("stream_seq", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createTable("projection_source").ifNotExists()
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("stream", "text", (c) => c.notNull())
    .addColumn("created", "text", (c) => c.notNull())
    .execute();
  await db.schema.createTable("projection_chunks").ifNotExists()
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("chunk", "integer", (c) => c.notNull())
    .addColumn("event", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("projection_chunks_pk", ["session_id", "chunk"])
    .execute();
  await db.schema.createTable("session_messages").ifNotExists()
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("stream_seq", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("session_messages_pk", ["session_id", "stream_seq"])
    .execute();
}

export async function dropSchema(db: Kysely<ReadModelDb>): Promise<void> {
  for (const t of READ_MODEL_TABLES) await db.schema.dropTable(t).ifExists().execute();
}

/** A quick check that the connection works (used at start so a bad URL fails loudly). */
export async function ping(db: Kysely<ReadModelDb>): Promise<void> {
  await sql`select 1`.execute(db);
}
