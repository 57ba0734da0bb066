/** Encoders for the messages the proxy itself sends. Pure. */
import { B, F, AuthType, type TxStatus } from "./codes.js";

function frame(code: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = code;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

export type Severity = "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "DEBUG" | "INFO" | "LOG";

export interface ErrorFields {
  severity: Severity;
  sqlstate: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fields(code: number, f: ErrorFields): Buffer {
  const parts = [
    Buffer.from("S"), cstr(f.severity),
    Buffer.from("V"), cstr(f.severity),
    Buffer.from("C"), cstr(f.sqlstate),
    Buffer.from("M"), cstr(f.message),
  ];
  if (f.detail) parts.push(Buffer.from("D"), cstr(f.detail));
  if (f.hint) parts.push(Buffer.from("H"), cstr(f.hint));
  parts.push(Buffer.from([0]));
  return frame(code, Buffer.concat(parts));
}

/** (B) ErrorResponse / NoticeResponse (`code`) with every field of `fields` (one-letter codes, in order) */
export function encodeErrorFields(code: number, fields: Readonly<Record<string, string>>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(Buffer.from(k, "latin1"), cstr(v));
  parts.push(Buffer.from([0]));
  return frame(code, Buffer.concat(parts));
}

/** (B) ErrorResponse */
export function errorResponse(f: ErrorFields): Buffer {
  return fields(B.ErrorResponse, f);
}

/** (B) NoticeResponse */
export function noticeResponse(f: Omit<ErrorFields, "severity"> & { severity?: Severity }): Buffer {
  return fields(B.NoticeResponse, { severity: "NOTICE", ...f });
}

/** (B) DataRow from column values (null = SQL NULL), lengths computed */
export function encodeDataRow(values: ReadonlyArray<Buffer | null>): Buffer {
  let size = 7;
  for (const v of values) size += 4 + (v ? v.length : 0);
  const b = Buffer.allocUnsafe(size);
  b[0] = B.DataRow;
  b.writeInt32BE(size - 1, 1);
  b.writeInt16BE(values.length, 5);
  let p = 7;
  for (const v of values) {
    if (v === null) {
      b.writeInt32BE(-1, p);
      p += 4;
    } else {
      b.writeInt32BE(v.length, p);
      p += 4;
      v.copy(b, p);
      p += v.length;
    }
  }
  return b;
}

/** (B) ReadyForQuery */
export function readyForQuery(status: TxStatus): Buffer {
  return frame(B.ReadyForQuery, Buffer.from(status, "latin1"));
}

/** (B) AuthenticationCleartextPassword */
export function authCleartextPassword(): Buffer {
  return frame(B.Authentication, int32(AuthType.CleartextPassword));
}

/** (B) AuthenticationOk */
export function authOk(): Buffer {
  return frame(B.Authentication, int32(AuthType.Ok));
}

/** (B) BackendKeyData */
export function backendKeyData(pid: number, secret: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeInt32BE(pid | 0, 0);
  body.writeInt32BE(secret | 0, 4);
  return frame(B.BackendKeyData, body);
}

/** (B) ParameterStatus */
export function parameterStatus(name: string, value: string): Buffer {
  return frame(B.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

/** (F) Query */
export function query(sql: string): Buffer {
  return frame(F.Query, cstr(sql));
}

/** (F) Parse; `paramTypes` are type OIDs (0 = let the server infer) */
export function parse(name: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  const types = Buffer.alloc(2 + 4 * paramTypes.length);
  types.writeInt16BE(paramTypes.length, 0);
  paramTypes.forEach((t, i) => types.writeUInt32BE(t >>> 0, 2 + 4 * i));
  return frame(F.Parse, Buffer.concat([cstr(name), cstr(sql), types]));
}

/** (F) Bind of `statement` into `portal`: values (null = SQL NULL) with per-value formats, result formats */
export function bind(
  portal: string,
  statement: string,
  values: ReadonlyArray<Buffer | string | null> = [],
  paramFormats: readonly number[] = [],
  resultFormats: readonly number[] = [],
): Buffer {
  const parts: Buffer[] = [cstr(portal), cstr(statement), int16s(paramFormats)];
  const n = Buffer.alloc(2);
  n.writeInt16BE(values.length, 0);
  parts.push(n);
  for (const v of values) {
    if (v === null) parts.push(int32(-1));
    else {
      const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
      parts.push(int32(b.length), b);
    }
  }
  parts.push(int16s(resultFormats));
  return frame(F.Bind, Buffer.concat(parts));
}

function int16s(xs: readonly number[]): Buffer {
  const b = Buffer.alloc(2 + 2 * xs.length);
  b.writeInt16BE(xs.length, 0);
  xs.forEach((x, i) => b.writeInt16BE(x, 2 + 2 * i));
  return b;
}

/** Describe (F) of a prepared statement ('S') or portal ('P'). */
export function describe(kind: "S" | "P", name: string): Buffer {
  return frame(F.Describe, Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)]));
}

/** Close (F) of a prepared statement ('S') or portal ('P'). */
export function close(kind: "S" | "P", name: string): Buffer {
  return frame(F.Close, Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)]));
}

/** Execute (F) of a portal; `maxRows` 0 = no row limit. */
export function execute(portal: string, maxRows = 0): Buffer {
  return frame(F.Execute, Buffer.concat([cstr(portal), int32(maxRows)]));
}

/**
 * `f` (a whole frame) with the `count` C strings that start at byte `at` replaced by `names`, the
 * length recomputed: how the proxy renames the statement and portal names of Parse, Bind, Execute,
 * Describe and Close. One allocation; the rest of the frame is copied once.
 */
export function withNames(f: Buffer, at: number, count: number, names: ReadonlyArray<string | Buffer>): Buffer {
  let end = at;
  for (let i = 0; i < count; i++) end = f.indexOf(0, end) + 1;
  let size = 0;
  for (const n of names) size += (typeof n === "string" ? Buffer.byteLength(n, "utf8") : n.length) + 1;
  const out = Buffer.allocUnsafe(f.length - (end - at) + size);
  f.copy(out, 0, 0, at);
  let p = at;
  for (const n of names) {
    p += typeof n === "string" ? out.write(n, p, "utf8") : n.copy(out, p);
    out[p++] = 0;
  }
  f.copy(out, p, end);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** (F) Sync */
export function sync(): Buffer {
  return frame(F.Sync, Buffer.alloc(0));
}

/** (F) Flush */
export function flush(): Buffer {
  return frame(F.Flush, Buffer.alloc(0));
}

/** (F) CopyData */
export function copyData(data: Buffer | string): Buffer {
  return frame(F.CopyData, typeof data === "string" ? Buffer.from(data, "utf8") : data);
}

/** (F) CopyDone */
export function copyDone(): Buffer {
  return frame(F.CopyDone, Buffer.alloc(0));
}

/** (F) CopyFail */
export function copyFail(message: string): Buffer {
  return frame(F.CopyFail, cstr(message));
}

/** (F) Terminate */
export function terminate(): Buffer {
  return frame(F.Terminate, Buffer.alloc(0));
}

/** (F) PasswordMessage / SASLResponse ('p' with raw bytes) */
export function passwordMessage(body: Buffer): Buffer {
  return frame(F.Password, body);
}

/** (F) SASLInitialResponse */
export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return frame(F.Password, Buffer.concat([cstr(mechanism), int32(data.length), data]));
}
