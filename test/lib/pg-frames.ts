/**
 * Postgres protocol v3 frames for tests, written from the protocol documentation and independent
 * of the proxy's own codec (data-plane/src/wire), so a test that sends these cannot share a bug
 * with what it tests. Frontend messages are built byte for byte (nothing normalises them: a test
 * may send any order, any name, any parameter format); backend messages are split and the few
 * fields tests compare are decoded.
 */

/** A backend message: its type letter and the whole frame (type byte, length, payload). */
export interface BackendMessage {
  code: string;
  raw: Buffer;
}

function frame(code: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(code, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, "utf8"), Buffer.from([0])]);
const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** A bound parameter: text format (a string), NULL, or raw bytes in binary format. */
export type WireParam = string | null | { binary: Buffer };

export const frontend = {
  query: (sql: string): Buffer => frame("Q", cstr(sql)),
  parse: (name: string, sql: string, paramTypes: readonly number[] = []): Buffer =>
    frame("P", Buffer.concat([cstr(name), cstr(sql), i16(paramTypes.length), ...paramTypes.map(i32)])),
  /** Bind; a parameter's format follows its value (text, or binary for `{ binary }`), one format code per parameter */
  bind: (portal: string, statement: string, params: readonly WireParam[], resultFormats: readonly number[] = []): Buffer => {
    const parts: Buffer[] = [cstr(portal), cstr(statement), i16(params.length)];
    for (const p of params) parts.push(i16(p !== null && typeof p === "object" ? 1 : 0));
    parts.push(i16(params.length));
    for (const p of params) {
      if (p === null) parts.push(i32(-1));
      else {
        const v = typeof p === "string" ? Buffer.from(p, "utf8") : p.binary;
        parts.push(i32(v.length), v);
      }
    }
    parts.push(i16(resultFormats.length), ...resultFormats.map(i16));
    return frame("B", Buffer.concat(parts));
  },
  describe: (kind: "S" | "P", name: string): Buffer => frame("D", Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)])),
  execute: (portal: string, maxRows = 0): Buffer => frame("E", Buffer.concat([cstr(portal), i32(maxRows)])),
  close: (kind: "S" | "P", name: string): Buffer => frame("C", Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)])),
  sync: (): Buffer => frame("S", Buffer.alloc(0)),
  flush: (): Buffer => frame("H", Buffer.alloc(0)),
  terminate: (): Buffer => frame("X", Buffer.alloc(0)),
  copyData: (data: Buffer | string): Buffer => frame("d", Buffer.isBuffer(data) ? data : Buffer.from(data, "utf8")),
  copyDone: (): Buffer => frame("c", Buffer.alloc(0)),
  copyFail: (message: string): Buffer => frame("f", cstr(message)),
  password: (password: string): Buffer => frame("p", cstr(password)),
  sslRequest: (): Buffer => Buffer.concat([i32(8), i32(80877103)]),
  startup: (params: Readonly<Record<string, string>>): Buffer => {
    const body = Buffer.concat([i32(196608), ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from([0])]);
    return Buffer.concat([i32(body.length + 4), body]);
  },
};

const message = (code: string, body: Buffer = Buffer.alloc(0)): BackendMessage => ({ code, raw: frame(code, body) });
const fields = (f: Readonly<Record<string, string>>): Buffer =>
  Buffer.concat([...Object.entries(f).map(([k, v]) => Buffer.concat([Buffer.from(k, "latin1"), cstr(v)])), Buffer.from([0])]);

/** Backend messages built by hand, for tests of what reads them (the walker, the oracles). */
export const backend = {
  message,
  parseComplete: () => message("1"),
  bindComplete: () => message("2"),
  closeComplete: () => message("3"),
  noData: () => message("n"),
  portalSuspended: () => message("s"),
  emptyQuery: () => message("I"),
  parameterDescription: (oids: readonly number[] = []) => message("t", Buffer.concat([i16(oids.length), ...oids.map(i32)])),
  ready: (status: "I" | "T" | "E" = "I") => message("Z", Buffer.from(status, "latin1")),
  commandComplete: (tag: string) => message("C", cstr(tag)),
  /** an ErrorResponse (severity ERROR unless told) with SQLSTATE, message and any other fields by code */
  error: (sqlstate: string, msg: string, more: Readonly<Record<string, string>> = {}) =>
    message("E", fields({ S: more.V ?? "ERROR", V: "ERROR", C: sqlstate, M: msg, ...more })),
  notice: (sqlstate: string, msg: string) => message("N", fields({ S: "NOTICE", V: "NOTICE", C: sqlstate, M: msg })),
  parameterStatus: (name: string, value: string) => message("S", Buffer.concat([cstr(name), cstr(value)])),
  /** RowDescription: text format and type text unless told */
  rowDescription: (cols: ReadonlyArray<string | { name: string; typeOid?: number; format?: number }>) =>
    message("T", Buffer.concat([i16(cols.length), ...cols.map((c) => {
      const f = typeof c === "string" ? { name: c } : c;
      return Buffer.concat([cstr(f.name), i32(0), i16(0), i32(f.typeOid ?? 25), i16(-1), i32(-1), i16(f.format ?? 0)]);
    })])),
  dataRow: (values: ReadonlyArray<string | Buffer | null>) =>
    message("D", Buffer.concat([i16(values.length), ...values.map((v) => {
      if (v === null) return i32(-1);
      const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
      return Buffer.concat([i32(b.length), b]);
    })])),
  copyOutResponse: (columns: number) => message("H", Buffer.concat([Buffer.from([0]), i16(columns), ...Array.from({ length: columns }, () => i16(0))])),
  copyInResponse: (columns: number) => message("G", Buffer.concat([Buffer.from([0]), i16(columns), ...Array.from({ length: columns }, () => i16(0))])),
  copyData: (data: string | Buffer) => message("d", Buffer.isBuffer(data) ? data : Buffer.from(data, "utf8")),
  copyDone: () => message("c"),
};

/** Splits backend bytes into messages; returns them and the unconsumed tail. */
export function splitBackend(buf: Buffer): { messages: BackendMessage[]; rest: Buffer } {
  const messages: BackendMessage[] = [];
  let off = 0;
  while (buf.length - off >= 5) {
    const len = buf.readInt32BE(off + 1);
    if (len < 4) throw new Error(`backend frame with length ${len}`);
    if (buf.length - off < 1 + len) break;
    messages.push({ code: String.fromCharCode(buf[off]!), raw: buf.subarray(off, off + 1 + len) });
    off += 1 + len;
  }
  return { messages, rest: buf.subarray(off) };
}

const payload = (m: BackendMessage): Buffer => m.raw.subarray(5);

function readCstr(b: Buffer, off: number): [string, number] {
  const z = b.indexOf(0, off);
  const end = z < 0 ? b.length : z;
  return [b.toString("utf8", off, end), end + 1];
}

/** ErrorResponse / NoticeResponse fields by their one-letter code (C = SQLSTATE, M = message, D = detail, …). */
export function errorFields(m: BackendMessage): Record<string, string> {
  const b = payload(m);
  const out: Record<string, string> = {};
  let off = 0;
  while (off < b.length && b[off] !== 0) {
    const k = String.fromCharCode(b[off]!);
    const [v, next] = readCstr(b, off + 1);
    out[k] = v;
    off = next;
  }
  return out;
}

export const commandTag = (m: BackendMessage): string => readCstr(payload(m), 0)[0];
export const readyStatus = (m: BackendMessage): string => String.fromCharCode(payload(m)[0]!);

export interface FieldInfo {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  format: number;
}

export function rowDescription(m: BackendMessage): FieldInfo[] {
  const b = payload(m);
  const n = b.readInt16BE(0);
  let off = 2;
  const out: FieldInfo[] = [];
  for (let i = 0; i < n; i++) {
    const [name, next] = readCstr(b, off);
    off = next;
    out.push({ name, tableOid: b.readInt32BE(off), column: b.readInt16BE(off + 4), typeOid: b.readInt32BE(off + 6), format: b.readInt16BE(off + 16) });
    off += 18;
  }
  return out;
}

/** DataRow values (null for SQL NULL), as raw bytes. */
export function dataRow(m: BackendMessage): Array<Buffer | null> {
  const b = payload(m);
  const n = b.readInt16BE(0);
  let off = 2;
  const out: Array<Buffer | null> = [];
  for (let i = 0; i < n; i++) {
    const len = b.readInt32BE(off);
    off += 4;
    if (len < 0) out.push(null);
    else {
      out.push(b.subarray(off, off + len));
      off += len;
    }
  }
  return out;
}

/** ParameterStatus name and value. */
export function parameterStatus(m: BackendMessage): [string, string] {
  const b = payload(m);
  const [k, next] = readCstr(b, 0);
  return [k, readCstr(b, next)[0]];
}

/** Authentication request code (0 ok, 3 cleartext, 5 md5, 10 SASL, …). */
export const authCode = (m: BackendMessage): number => payload(m).readInt32BE(0);
