/**
 * What a case actually exercised, by the protocol classes issue 11 names, read from the server's
 * own answers in the direct (reference) run. A message the server skipped after an error, or a
 * statement that never reached it, covers nothing: a generator whose cases mostly stop at their
 * first error would otherwise look as if it reached everything. Pure.
 *
 * Each class is counted once per case that reached it (how many sequences) and once per
 * occurrence; REPORT.md prints both, so a class that is never reached shows as 0.
 */
import { commandTag, errorFields, readyStatus, type BackendMessage } from "../lib/pg-frames.js";
import type { Op } from "./ops.js";

/** The classes, in REPORT.md's order, with what counts as reaching each. */
export const COVERAGE_CLASSES = {
  "simple Query": "a Query the server answered",
  "multi-statement Query": "a Query of several statements the server answered",
  "error in a simple Query": "a Query the server answered with an ErrorResponse",
  "extended Execute": "an Execute the server answered (rows, a completion, a suspension or an error)",
  "named statement": "a Parse of a named statement the server completed",
  "unnamed statement": "a Parse of the unnamed statement the server completed",
  "named portal": "a Bind of a named portal the server completed",
  "unnamed portal": "a Bind of the unnamed portal the server completed",
  "binary parameters or results": "a Bind with a binary parameter or binary result format the server completed",
  "Describe": "a Describe (statement or portal) the server answered",
  "Close": "a Close the server completed",
  "pipelined without Sync": "two or more Executes the server answered with no Sync (or Query) between them",
  "Flush": "a Flush the server was not skipping past, with answers before it in its Sync group",
  "Flush then wait": "a client wait (W) after a Flush, the server not skipping",
  "portal suspended (max rows)": "an Execute answered with PortalSuspended",
  "suspended portal resumed": "a later Execute of a suspended portal answered with rows or its completion",
  "error mid-pipeline": "an extended message answered with an error, and at least one later message skipped until Sync",
  "transaction block": "a ReadyForQuery with status T (in a transaction block)",
  "failed transaction block": "a ReadyForQuery with status E (aborted block), or a 25P02",
  "unnamed portal survives Sync in a transaction": "an Execute of the unnamed portal, bound before a Sync that left a transaction open, answered without error",
  "named portal survives Sync in a transaction": "the same, for a named portal",
  "SQL PREPARE, protocol Bind": "a Bind the server completed of a name last made by SQL PREPARE",
  "protocol Parse, SQL EXECUTE": "a SQL EXECUTE the server answered of a name last made by Parse",
  "protocol Parse, SQL DEALLOCATE": "a SQL DEALLOCATE (or DEALLOCATE ALL / DISCARD ALL) the server answered after a Parse of a named statement",
  "SQL PREPARE/EXECUTE": "a Query that PREPAREd or EXECUTEd, answered",
  "COPY FROM STDIN (simple)": "a Query answered with CopyInResponse",
  "COPY FROM STDIN in a pipeline": "an Execute answered with CopyInResponse, with further messages before the Sync",
  "COPY TO STDOUT": "an answer with CopyOutResponse",
  "cursor": "a DECLARE the server completed",
  "setting that changes how SQL is read": "a statement that sets standard_conforming_strings, client_encoding or backslash_quote, sent by the client (denied or run)",
  "setting that changes how SQL is read, run by the server": "such a statement the server ran in the direct run (the proxy must have denied it or ended the session)",
  "statement denied by the proxy": "an op the proxy answered with its own denial",
} as const;

export type CoverageClass = keyof typeof COVERAGE_CLASSES;

/** matches a statement that changes how the server reads string literals or bytes */
export const READING_SETTING = /\b(standard_conforming_strings|client_encoding|backslash_quote)\b|\bSET\s+NAMES\b/i;

const hasCode = (msgs: readonly BackendMessage[], code: string) => msgs.some((m) => m.code === code);
const errorOf = (msgs: readonly BackendMessage[]) => msgs.find((m) => m.code === "E");

/**
 * The classes one case reached, with their occurrence counts. `perOp` is the server's answers per
 * op (the reference walk); `denied` the ops the proxy denied itself.
 */
export function coverageOf(ops: readonly Op[], perOp: readonly (readonly BackendMessage[])[] | undefined, denied: readonly number[] = []): Map<CoverageClass, number> {
  const out = new Map<CoverageClass, number>();
  const hit = (c: CoverageClass, n = 1) => void (n > 0 && out.set(c, (out.get(c) ?? 0) + n));
  hit("statement denied by the proxy", denied.length);
  for (const op of ops) if ((op.t === "Q" || op.t === "P") && READING_SETTING.test(op.sql)) hit("setting that changes how SQL is read");
  if (!perOp) return out;

  /** where each statement name was last made: by a Parse or by SQL PREPARE */
  const origin = new Map<string, "parse" | "sql">();
  /** op index of the last completed Bind of each portal */
  const boundAt = new Map<string, number>();
  const suspended = new Set<string>();
  /** the op indexes of Syncs whose ReadyForQuery said T */
  const syncsInBlock: number[] = [];
  let skipping = false;
  let answeredInGroup = 0;
  let answersBefore = false;
  let errorAt = -1;
  let skippedSinceError = 0;

  ops.forEach((op, k) => {
    const msgs = perOp[k] ?? [];
    for (const m of msgs) {
      if (m.code === "Z" && readyStatus(m) === "T") hit("transaction block");
      if ((m.code === "Z" && readyStatus(m) === "E") || (m.code === "E" && errorFields(m).C === "25P02")) hit("failed transaction block");
      if (m.code === "H") hit("COPY TO STDOUT");
    }
    const isAnswered = op.t === "Q" || op.t === "P" || op.t === "B" || op.t === "D" || op.t === "E" || op.t === "C";
    if (skipping && op.t !== "S") {
      if (isAnswered) skippedSinceError++;
      return;
    }
    switch (op.t) {
      case "S": {
        if (errorAt >= 0 && skippedSinceError > 0) hit("error mid-pipeline");
        if (answeredInGroup >= 2) hit("pipelined without Sync");
        if (msgs.some((m) => m.code === "Z" && readyStatus(m) === "T")) syncsInBlock.push(k);
        skipping = false;
        answeredInGroup = 0;
        answersBefore = false;
        errorAt = -1;
        skippedSinceError = 0;
        return;
      }
      case "H":
        if (answersBefore) hit("Flush");
        return;
      case "W":
        if (ops[k - 1]?.t === "H") hit("Flush then wait");
        return;
      case "d": case "c": case "f":
        return;
      case "Q": {
        if (!msgs.length) return;
        answersBefore = true;
        // a Query ends with its own ReadyForQuery, as a Sync would
        answeredInGroup = 0;
        hit("simple Query");
        if (op.sql.includes(";")) hit("multi-statement Query");
        if (errorOf(msgs)) hit("error in a simple Query");
        if (hasCode(msgs, "G")) hit("COPY FROM STDIN (simple)");
        if (READING_SETTING.test(op.sql) && msgs.some((m) => m.code === "C" && /^(SET|SELECT)/.test(commandTag(m)))) hit("setting that changes how SQL is read, run by the server");
        const tags = msgs.filter((m) => m.code === "C").map(commandTag);
        // the statements of the Query that completed, in order: the names they made or used
        const stmts = op.sql.split(";").map((s) => s.trim()).filter(Boolean).slice(0, tags.length);
        if (stmts.some((s) => /^(PREPARE|EXECUTE)\b/i.test(s))) hit("SQL PREPARE/EXECUTE");
        for (const s of stmts) {
          const prep = /^PREPARE\s+(\w+)/i.exec(s);
          if (prep) origin.set(prep[1]!, "sql");
          const exec = /^EXECUTE\s+(\w+)/i.exec(s);
          if (exec && origin.get(exec[1]!) === "parse") hit("protocol Parse, SQL EXECUTE");
          const dealloc = /^DEALLOCATE\s+(?:PREPARE\s+)?(\w+)/i.exec(s);
          if (dealloc) {
            if (dealloc[1]!.toUpperCase() === "ALL") {
              if ([...origin.values()].includes("parse")) hit("protocol Parse, SQL DEALLOCATE");
              origin.clear();
            } else {
              if (origin.get(dealloc[1]!) === "parse") hit("protocol Parse, SQL DEALLOCATE");
              origin.delete(dealloc[1]!);
            }
          }
          if (/^DISCARD\s+ALL/i.test(s)) {
            if ([...origin.values()].includes("parse")) hit("protocol Parse, SQL DEALLOCATE");
            origin.clear();
          }
          if (/^DECLARE\b/i.test(s)) hit("cursor");
        }
        return;
      }
      case "P":
      case "B":
      case "D":
      case "C":
      case "E": {
        if (!msgs.length) return;
        answersBefore = true;
        const err = errorOf(msgs);
        if (err) {
          skipping = true;
          errorAt = k;
        }
        if (op.t === "P" && !err) {
          hit(op.name ? "named statement" : "unnamed statement");
          if (op.name) origin.set(op.name, "parse");
        }
        if (op.t === "B" && !err) {
          hit(op.portal ? "named portal" : "unnamed portal");
          if (origin.get(op.stmt) === "sql") hit("SQL PREPARE, protocol Bind");
          if (op.results?.some((f) => f === 1) || op.params.some((p) => p !== null && typeof p === "object")) hit("binary parameters or results");
          boundAt.set(op.portal, k);
          suspended.delete(op.portal);
        }
        if (op.t === "D") hit("Describe");
        if (op.t === "C" && !err) {
          hit("Close");
          if (op.kind === "S") origin.delete(op.name);
          else boundAt.delete(op.name);
        }
        if (op.t === "E") {
          answeredInGroup++;
          hit("extended Execute");
          if (hasCode(msgs, "G")) {
            const end = ops.findIndex((o, j) => j > k && (o.t === "c" || o.t === "f"));
            if (end >= 0 && ops[end + 1] && ops[end + 1]!.t !== "S") hit("COPY FROM STDIN in a pipeline");
          }
          if (hasCode(msgs, "s")) {
            hit("portal suspended (max rows)");
            if (suspended.has(op.portal)) hit("suspended portal resumed");
            suspended.add(op.portal);
          } else if (suspended.has(op.portal) && !err && (hasCode(msgs, "D") || hasCode(msgs, "C"))) {
            hit("suspended portal resumed");
            suspended.delete(op.portal);
          }
          const b = boundAt.get(op.portal);
          if (!err && b !== undefined && syncsInBlock.some((s) => s > b)) hit(op.portal ? "named portal survives Sync in a transaction" : "unnamed portal survives Sync in a transaction");
          if (!err && b !== undefined) {
            const bindOp = ops[b] as Extract<Op, { t: "B" }>;
            const parsed = [...ops.slice(0, b)].reverse().find((o): o is Extract<Op, { t: "P" }> => o.t === "P" && o.name === bindOp.stmt);
            if (parsed && READING_SETTING.test(parsed.sql) && hasCode(msgs, "C")) hit("setting that changes how SQL is read, run by the server");
          }
        }
        return;
      }
    }
  });
  return out;
}

/** Per-class tallies over a run: sequences that reached each class, and occurrences. */
export interface CoverageTally {
  cases: Map<CoverageClass, number>;
  hits: Map<CoverageClass, number>;
}

export const newCoverageTally = (): CoverageTally => ({ cases: new Map(), hits: new Map() });

export function addCoverage(t: CoverageTally, c: ReadonlyMap<CoverageClass, number>): void {
  for (const [k, n] of c) {
    t.cases.set(k, (t.cases.get(k) ?? 0) + 1);
    t.hits.set(k, (t.hits.get(k) ?? 0) + n);
  }
}
