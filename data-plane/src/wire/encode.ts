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

/** (B) ErrorResponse */
export function errorResponse(f: ErrorFields): Buffer {
  return fields(B.ErrorResponse, f);
}

/** (B) NoticeResponse */
export function noticeResponse(f: Omit<ErrorFields, "severity"> & { severity?: Severity }): Buffer {
  return fields(B.NoticeResponse, { severity: "NOTICE", ...f });
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

/** (F) Parse with no parameter types */
export function parse(name: string, sql: string): Buffer {
  return frame(F.Parse, Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]));
}

/** (F) Sync */
/** Describe (F) of a prepared statement ('S') or portal ('P'). */
export function describe(kind: "S" | "P", name: string): Buffer {
  return frame(F.Describe, Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)]));
}

/** Execute (F) of a portal with no row limit. */
export function execute(portal: string): Buffer {
  return frame(F.Execute, Buffer.concat([cstr(portal), int32(0)]));
}

export function sync(): Buffer {
  return frame(F.Sync, Buffer.alloc(0));
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
