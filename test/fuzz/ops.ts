/**
 * A fuzz sequence: frontend messages as data (JSON in findings files), encoded to exact frames.
 * One op is one protocol message; nothing is added or reordered when it is sent. The one op that
 * is not a message, `W`, makes the client wait until every message before it is answered before
 * it writes the rest: the order in which a proxy sees client frames and server answers then no
 * longer depends on timing.
 */
import { frontend, type WireParam } from "../lib/pg-frames.js";

/** A bound parameter: text, NULL, or a binary value of a type the encoder knows. */
export type Param = string | null | { bin: "int4" | "int8" | "text"; v: string };

export type Op =
  | { t: "Q"; sql: string }
  | { t: "P"; name: string; sql: string; types?: number[] }
  | { t: "B"; portal: string; stmt: string; params: Param[]; results?: number[] }
  | { t: "D"; kind: "S" | "P"; name: string }
  | { t: "E"; portal: string; maxRows: number }
  | { t: "C"; kind: "S" | "P"; name: string }
  | { t: "S" }
  | { t: "H" }
  | { t: "W" }
  | { t: "d"; data: string }
  | { t: "c" }
  | { t: "f"; message: string };

export function wireParam(p: Param): WireParam {
  if (p === null || typeof p === "string") return p;
  switch (p.bin) {
    case "int4": {
      const b = Buffer.alloc(4);
      b.writeInt32BE(Number(p.v) | 0);
      return { binary: b };
    }
    case "int8": {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt(p.v));
      return { binary: b };
    }
    case "text":
      return { binary: Buffer.from(p.v, "utf8") };
  }
}

export function encodeOp(op: Op): Buffer {
  switch (op.t) {
    case "Q": return frontend.query(op.sql);
    case "P": return frontend.parse(op.name, op.sql, op.types ?? []);
    case "B": return frontend.bind(op.portal, op.stmt, op.params.map(wireParam), op.results ?? []);
    case "D": return frontend.describe(op.kind, op.name);
    case "E": return frontend.execute(op.portal, op.maxRows);
    case "C": return frontend.close(op.kind, op.name);
    case "S": return frontend.sync();
    case "H": return frontend.flush();
    case "W": return Buffer.alloc(0);
    case "d": return frontend.copyData(op.data);
    case "c": return frontend.copyDone();
    case "f": return frontend.copyFail(op.message);
  }
}

export const encodeOps = (ops: readonly Op[]): Buffer => Buffer.concat(ops.map(encodeOp));

/** The ops split at each `W`: the client writes one part, then waits for its answers. */
export function writeParts(ops: readonly Op[]): Array<{ end: number; bytes: Buffer }> {
  const parts: Array<{ end: number; bytes: Buffer }> = [];
  let start = 0;
  ops.forEach((op, i) => {
    if (op.t !== "W") return;
    parts.push({ end: i, bytes: encodeOps(ops.slice(start, i)) });
    start = i + 1;
  });
  parts.push({ end: ops.length, bytes: encodeOps(ops.slice(start)) });
  return parts;
}

/** One line per op, for failure messages and REPORT.md. */
export function showOp(op: Op): string {
  const q = (s: string) => JSON.stringify(s);
  switch (op.t) {
    case "Q": return `Query ${q(op.sql)}`;
    case "P": return `Parse ${q(op.name)} ${q(op.sql)}${op.types?.length ? ` types=${op.types.join(",")}` : ""}`;
    case "B": return `Bind portal=${q(op.portal)} stmt=${q(op.stmt)} params=${JSON.stringify(op.params)}${op.results?.length ? ` results=${op.results.join(",")}` : ""}`;
    case "D": return `Describe ${op.kind} ${q(op.name)}`;
    case "E": return `Execute ${q(op.portal)} maxRows=${op.maxRows}`;
    case "C": return `Close ${op.kind} ${q(op.name)}`;
    case "S": return "Sync";
    case "H": return "Flush";
    case "W": return "(client waits for the answers so far)";
    case "d": return `CopyData ${JSON.stringify(op.data)}`;
    case "c": return "CopyDone";
    case "f": return `CopyFail ${JSON.stringify(op.message)}`;
  }
}

/** Binary parameters are rendered by the audit as `\x<hex>` and by the server as text: both forms. */
export function paramForms(p: Param): { audit: string | null; server: string | null } {
  if (p === null || typeof p === "string") return { audit: p, server: p };
  const w = wireParam(p) as { binary: Buffer };
  return { audit: "\\x" + w.binary.toString("hex"), server: p.bin === "int4" ? String(Number(p.v) | 0) : p.v };
}
