/**
 * Attributes a backend message stream to the frontend ops that caused it, by the protocol's rules
 * as the server applies them (PG 15 postgres.c): every Query answers with ReadyForQuery; Parse,
 * Bind, Describe, Execute and Close answer in order; after an ErrorResponse in the extended
 * protocol the server ignores every message (a Query and a Flush too) until Sync; NoticeResponse,
 * ParameterStatus and NotificationResponse may come at any time. Pure.
 *
 * A stream that does not fit is a protocol violation; one that stops early is incomplete (the
 * caller waits for more, or reports the op that was never answered); a FATAL ends it.
 */
import { errorFields, type BackendMessage } from "../lib/pg-frames.js";
import type { Op } from "./ops.js";

const ASYNC = new Set(["N", "S", "A"]);
const IN_QUERY = new Set(["T", "D", "C", "I", "E", "H", "G", "d", "c", "N", "S", "A"]);

export interface Walk {
  /** every op answered (or the stream ended with a FATAL) */
  complete: boolean;
  /** messages per op, in order (asynchronous ones with the op during which they came) */
  perOp: BackendMessage[][];
  /** the op the stream stopped at when incomplete */
  waitingFor?: number;
  /** why the stream does not fit the ops */
  violation?: string;
  /** the stream ended with this FATAL (code, message) while answering op `at` */
  fatal?: { code: string; message: string; at: number };
}

const isFatal = (m: BackendMessage) => m.code === "E" && ["FATAL", "PANIC"].includes(errorFields(m).V ?? errorFields(m).S ?? "");

export function walkResponses(ops: readonly Op[], msgs: readonly BackendMessage[]): Walk {
  const perOp: BackendMessage[][] = ops.map(() => []);
  let i = 0;
  let skipping = false;
  const show = (m: BackendMessage | undefined) => (m ? `'${m.code}'${m.code === "E" ? ` ${errorFields(m).C} ${errorFields(m).M}` : ""}` : "nothing");
  for (let k = 0; k < ops.length; k++) {
    const op = ops[k]!;
    if (skipping && op.t !== "S") continue;
    const next = (): BackendMessage | undefined => {
      while (i < msgs.length && ASYNC.has(msgs[i]!.code)) perOp[k]!.push(msgs[i++]!);
      return msgs[i];
    };
    const take = (m: BackendMessage) => {
      perOp[k]!.push(m);
      i++;
    };
    const incomplete = (): Walk => ({ complete: false, perOp, waitingFor: k });
    const fatal = (m: BackendMessage): Walk => {
      const f = errorFields(m);
      return { complete: true, perOp, fatal: { code: f.C ?? "", message: f.M ?? "", at: k }, ...(i < msgs.length ? { violation: `messages after a FATAL at op ${k}` } : {}) };
    };
    const bad = (m: BackendMessage | undefined, expected: string): Walk => ({ complete: true, perOp, violation: `op ${k} (${op.t}): expected ${expected}, got ${show(m)}` });
    /** one answer of `ok` codes, or an ErrorResponse that starts skipping */
    const single = (ok: string[], expected: string): Walk | undefined => {
      const m = next();
      if (!m) return incomplete();
      if (isFatal(m)) return take(m), fatal(m);
      if (ok.includes(m.code)) return void take(m);
      if (m.code === "E") {
        take(m);
        skipping = true;
        return undefined;
      }
      return bad(m, expected);
    };
    switch (op.t) {
      case "H":
      case "W":
      // COPY FROM STDIN data: answered, when at all, within the Query or Execute that started it
      case "d":
      case "c":
      case "f":
        continue;
      case "S": {
        const m = next();
        if (!m) return incomplete();
        if (isFatal(m)) return take(m), fatal(m);
        if (m.code !== "Z") return bad(m, "ReadyForQuery");
        take(m);
        skipping = false;
        continue;
      }
      case "Q": {
        for (;;) {
          const m = next();
          if (!m) return incomplete();
          if (isFatal(m)) return take(m), fatal(m);
          take(m);
          if (m.code === "Z") break;
          if (!IN_QUERY.has(m.code)) return bad(m, "a simple-query answer");
        }
        continue;
      }
      case "P": {
        const w = single(["1"], "ParseComplete");
        if (w) return w;
        continue;
      }
      case "B": {
        const w = single(["2"], "BindComplete");
        if (w) return w;
        continue;
      }
      case "C": {
        const w = single(["3"], "CloseComplete");
        if (w) return w;
        continue;
      }
      case "D": {
        if (op.kind === "S") {
          const w = single(["t"], "ParameterDescription");
          if (w) return w;
          if (skipping) continue;
        }
        const w = single(["T", "n"], "RowDescription or NoData");
        if (w) return w;
        continue;
      }
      case "E": {
        for (;;) {
          const m = next();
          if (!m) return incomplete();
          if (isFatal(m)) return take(m), fatal(m);
          take(m);
          if (m.code === "D" || m.code === "H" || m.code === "G" || m.code === "d" || m.code === "c") continue;
          if (m.code === "C" || m.code === "s" || m.code === "I") break;
          if (m.code === "E") {
            skipping = true;
            break;
          }
          return bad(m, "DataRow, CommandComplete, PortalSuspended, EmptyQueryResponse or ErrorResponse");
        }
        continue;
      }
    }
  }
  // whatever comes after the last answer: only asynchronous messages may
  while (i < msgs.length && ASYNC.has(msgs[i]!.code)) perOp[ops.length - 1]?.push(msgs[i++]!);
  if (i < msgs.length) return { complete: true, perOp, violation: `unexpected ${show(msgs[i])} after the last op was answered` };
  return { complete: true, perOp };
}
