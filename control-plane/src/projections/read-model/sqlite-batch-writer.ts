import type { Database, Statement } from "better-sqlite3";
import { isChunkData, reassembleChunks, sessionEventName, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { foldEvents, statementKey, touchedKeys, type ExistingRows, type FoldEvent, type FoldResult } from "./read-model-fold.js";
import type { ReadModelDb } from "./schema.js";

type Row = Record<string, unknown>;
type Table = keyof ReadModelDb;

/**
 * The read model's write path on SQLite (the `sluice dev` stack's, folding every statement of the
 * data plane beside it on the control plane's thread): better-sqlite3 directly, one transaction per
 * batch, every statement prepared once and run per row. Through kysely each batch built and compiled
 * its queries again and SQLite prepared each text afresh — a multi-row INSERT has a new text for each
 * row count — which was most of the projection's cost (issue 14: ~41 % of `sluice dev`'s main thread).
 * The same rows as the kysely path writes (the dialects' dumps are compared by the read-model tests):
 * an undefined value is NULL in an insert and leaves the column alone in an update, as in kysely.
 */
/** How rows read back are normalized (the read model's own, shared with its kysely path). */
export interface RowNormalizers {
  session(r: ReadModelDb["sessions"]): ReadModelDb["sessions"];
  statement(r: ReadModelDb["statements"]): ReadModelDb["statements"];
  approval(r: ReadModelDb["approvals"]): ReadModelDb["approvals"];
}

export class SqliteBatchWriter {
  private readonly statements = new Map<string, Statement>();

  constructor(private readonly db: Database, private readonly normalize: RowNormalizers) {}

  /** A statement of this text, prepared the first time it is asked for. */
  private prepared(text: string): Statement {
    const known = this.statements.get(text);
    if (known) return known;
    const st = this.db.prepare(text);
    this.statements.set(text, st);
    return st;
  }

  /**
   * Applies stream messages in order with the position, in one transaction (synchronous: nothing
   * else runs on this connection meanwhile). Returns the position after the batch; throws on a gap.
   */
  applyBatch(batch: ReadonlyArray<{ seq: number; events: readonly CloudEvent[] | undefined }>, name: string): number {
    return this.db.transaction(() => {
      const row = this.prepared(`select "stream_seq" from "projection_position" where "name" = ?`).get(name) as { stream_seq: number } | undefined;
      let pos = Number(row?.stream_seq ?? 0);
      const start = pos;
      const events: FoldEvent[] = [];
      const chunkIndex: Array<{ session_id: string; stream_seq: number }> = [];
      for (const m of batch) {
        if (m.seq <= pos) continue; // already applied (a redelivery)
        if (m.seq !== pos + 1) throw new SluiceError("aborted", `read model: stream seq ${m.seq} does not follow position ${pos}`);
        for (const raw of m.events ?? []) {
          const ev = isChunkData(raw.data) ? this.joinChunk(raw) : raw;
          if (ev) events.push({ ev, seq: m.seq });
          else if (sessionEventName(raw.type)) chunkIndex.push({ session_id: raw.subject, stream_seq: m.seq });
        }
        pos = m.seq;
      }
      if (events.length || chunkIndex.length) {
        const f = foldEvents(events, this.existing(touchedKeys(events)));
        f.index.push(...chunkIndex);
        this.write(f);
      }
      if (pos !== start) {
        this.prepared(`insert into "projection_position" ("name", "stream_seq") values (?, ?) on conflict ("name") do update set "stream_seq" = excluded."stream_seq"`).run(name, pos);
      }
      return pos;
    })();
  }

  /** A chunk of a large payload, kept until its run is complete (as the kysely path does). */
  private joinChunk(raw: CloudEvent): CloudEvent | undefined {
    const d = raw.data as { chunk: number; chunks: number };
    const text = JSON.stringify(raw);
    this.prepared(`insert into "projection_chunks" ("session_id", "chunk", "event") values (?, ?, ?) on conflict ("session_id", "chunk") do update set "event" = excluded."event"`)
      .run(raw.subject, d.chunk, text);
    if (d.chunk < d.chunks) return undefined;
    const rows = this.prepared(`select "event" from "projection_chunks" where "session_id" = ? order by "chunk"`).all(raw.subject) as Array<{ event: string }>;
    this.prepared(`delete from "projection_chunks" where "session_id" = ?`).run(raw.subject);
    try {
      const run = rows.map((r) => JSON.parse(r.event) as CloudEvent);
      return { ...run[0]!, data: reassembleChunks(run) };
    } catch {
      return undefined; // a broken chunk run is a verify finding, not a projection crash
    }
  }

  /** The rows a batch touches that exist already, one prepared lookup per key. */
  private existing(keys: ReturnType<typeof touchedKeys>): ExistingRows {
    const sessions = new Map<string, ReadModelDb["sessions"]>();
    const bySession = this.prepared(`select * from "sessions" where "session_id" = ?`);
    for (const id of keys.sessions) {
      const r = bySession.get(id) as ReadModelDb["sessions"] | undefined;
      if (r) sessions.set(id, this.normalize.session(r));
    }
    const statements = new Map<string, ReadModelDb["statements"]>();
    const byStatement = this.prepared(`select * from "statements" where "session_id" = ? and "statement_id" = ?`);
    for (const k of keys.statements) {
      if (!sessions.has(k.sessionId)) continue; // only sessions that exist can have statements
      const r = byStatement.get(k.sessionId, k.statementId) as ReadModelDb["statements"] | undefined;
      if (r) statements.set(statementKey(k.sessionId, k.statementId), this.normalize.statement(r));
    }
    const approvals = new Map<string, ReadModelDb["approvals"]>();
    const byApproval = this.prepared(`select * from "approvals" where "approval_id" = ?`);
    for (const id of keys.approvals) {
      const r = byApproval.get(id) as ReadModelDb["approvals"] | undefined;
      if (r) approvals.set(id, this.normalize.approval(r));
    }
    return { sessions, statements, approvals };
  }

  private insert(table: Table, rows: readonly object[], conflict?: string): void {
    for (const row of rows as Row[]) {
      const cols = Object.keys(row);
      const st = this.prepared(
        `insert into "${table}" (${cols.map((c) => `"${c}"`).join(", ")}) values (${cols.map(() => "?").join(", ")})${conflict ? ` on conflict (${conflict}) do nothing` : ""}`,
      );
      st.run(cols.map((c) => row[c] ?? null));
    }
  }

  private update(table: Table, rows: readonly object[], keys: readonly string[]): void {
    for (const row of rows as Row[]) {
      // the columns this row sets: an undefined value changes nothing (kysely leaves it out too)
      const set = Object.keys(row).filter((c) => !keys.includes(c) && row[c] !== undefined);
      if (set.length === 0) continue;
      const st = this.prepared(
        `update "${table}" set ${set.map((c) => `"${c}" = ?`).join(", ")} where ${keys.map((k) => `"${k}" = ?`).join(" and ")}`,
      );
      st.run([...set.map((c) => row[c]), ...keys.map((k) => row[k])]);
    }
  }

  /** Writes a fold's result in the kysely path's order. */
  private write(f: FoldResult): void {
    this.insert("sessions", f.sessions.insert);
    this.update("sessions", f.sessions.update, ["session_id"]);
    this.insert("statements", f.statements.insert);
    this.update("statements", f.statements.update, ["session_id", "statement_id"]);
    this.insert("approvals", f.approvals.insert);
    this.update("approvals", f.approvals.update, ["approval_id"]);
    this.insert("decisions", f.decisions, `"event_id"`);
    this.insert("session_messages", f.index, `"session_id", "stream_seq"`);
  }
}
