/**
 * The protobuf encoding of SessionService.List's request and answer (proto/sluice/v1/session.proto),
 * written out for `sluice sessions list` alone: the generated code of @sluice/proto imports
 * @grpc/grpc-js at its top, and loading the two is most of what the command costs to start (~100 ms
 * of CPU of ~360, issue 15). The objects are the generated code's, key for key and in its order
 * (session-list-codec.test.ts holds both against each other), so `--json` prints the same. Pure.
 */
import type { ListSessionsRequest, ListSessionsResponse, SessionSummary } from "@sluice/proto";

/** field number → key of SessionSummary, for its string fields */
const STRING_FIELDS: Record<number, keyof SessionSummary> = {
  1: "sessionId", 2: "region", 3: "node", 4: "resource", 5: "clientAddress", 6: "identity", 7: "issuer",
  9: "status", 10: "denyReason", 11: "endReason", 12: "startedAt", 13: "authenticatedAt", 14: "endedAt",
  18: "clientUser", 19: "applicationName",
};
const INT64_FIELDS: Record<number, keyof SessionSummary> = { 15: "statements", 16: "blocked", 17: "policyRevision" };

function varint(out: number[], v: number): void {
  // int32 negatives go as 10-byte two's complement, as every protobuf writer sends them
  let n = v < 0 ? BigInt.asUintN(64, BigInt(v)) : BigInt(v);
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
}

function str(out: number[], field: number, s: string): void {
  if (s === "") return;
  const b = Buffer.from(s, "utf8");
  varint(out, (field << 3) | 2);
  varint(out, b.length);
  for (const x of b) out.push(x);
}

/** ListSessionsRequest as its fields 1..8 (proto3: a default value is not sent). */
export function encodeListSessionsRequest(r: ListSessionsRequest): Buffer {
  const out: number[] = [];
  str(out, 1, r.identity);
  str(out, 2, r.resource);
  str(out, 3, r.since);
  str(out, 4, r.until);
  str(out, 5, r.decision);
  str(out, 6, r.status);
  if (r.limit !== 0) {
    varint(out, 7 << 3);
    varint(out, r.limit);
  }
  str(out, 8, r.node);
  return Buffer.from(out);
}

class Reader {
  pos: number;
  constructor(
    readonly b: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw new Error("truncated varint in the control plane's answer");
      const x = this.b[this.pos++]!;
      v |= BigInt(x & 0x7f) << shift;
      if (x < 0x80) return v;
    }
    throw new Error("malformed varint in the control plane's answer");
  }

  /** a length-delimited field's bounds */
  bytes(): [number, number] {
    const n = Number(this.varint());
    const s = this.pos;
    if (s + n > this.end) throw new Error("truncated field in the control plane's answer");
    this.pos = s + n;
    return [s, s + n];
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire} in the control plane's answer`);
    if (this.pos > this.end) throw new Error("truncated field in the control plane's answer");
  }
}

/** int64 as a number, refused beyond the safe integers (as the generated code's longToNumber) */
function int64(v: bigint): number {
  const n = Number(BigInt.asIntN(64, v));
  if (!Number.isSafeInteger(n)) throw new Error("a count in the control plane's answer is larger than Number.MAX_SAFE_INTEGER");
  return n;
}

function summary(b: Buffer, start: number, end: number): SessionSummary {
  const s: SessionSummary = {
    sessionId: "", region: "", node: "", resource: "", clientAddress: "", identity: "", issuer: "", groups: [],
    status: "", denyReason: "", endReason: "", startedAt: "", authenticatedAt: "", endedAt: "",
    statements: 0, blocked: 0, policyRevision: 0, clientUser: "", applicationName: "",
  };
  const r = new Reader(b, start, end);
  const fields = s as unknown as Record<string, unknown>;
  while (r.pos < end) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 2 && (STRING_FIELDS[field] || field === 8)) {
      const [i, j] = r.bytes();
      const v = b.toString("utf8", i, j);
      if (field === 8) s.groups.push(v);
      else fields[STRING_FIELDS[field]!] = v;
    } else if (wire === 0 && INT64_FIELDS[field]) fields[INT64_FIELDS[field]!] = int64(r.varint());
    else r.skip(wire);
  }
  return s;
}

/** ListSessionsResponse: its repeated SessionSummary (field 1); unknown fields are skipped. */
export function decodeListSessionsResponse(b: Buffer): ListSessionsResponse {
  const sessions: SessionSummary[] = [];
  const r = new Reader(b, 0, b.length);
  while (r.pos < b.length) {
    const tag = Number(r.varint());
    if (tag === ((1 << 3) | 2)) {
      const [i, j] = r.bytes();
      sessions.push(summary(b, i, j));
    } else r.skip(tag & 7);
  }
  return { sessions };
}
