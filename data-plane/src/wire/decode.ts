/**
 * Decoders for the few frames the proxy must read. Each takes a whole frame (code + length + body)
 * and throws WireError when the body does not match its declared layout. Pure.
 */
import type { TxStatus } from "./codes.js";
import { WireError } from "./frame-scanner.js";

const BODY = 5;

function cstrAt(f: Buffer, i: number, end: number): [string, number] {
  const z = f.indexOf(0, i);
  if (z < 0 || z >= end) throw new WireError("unterminated string in message");
  return [f.toString("utf8", i, z), z + 1];
}

function need(f: Buffer, i: number, n: number): void {
  if (i + n > f.length) throw new WireError("message is shorter than its contents");
}

/** (F) Query → the SQL string */
export function decodeQuery(f: Buffer): string {
  return cstrAt(f, BODY, f.length)[0];
}

export interface ParseMessage {
  name: string;
  sql: string;
  paramTypes: number[];
}

/** (F) Parse */
export function decodeParse(f: Buffer): ParseMessage {
  let [name, i] = cstrAt(f, BODY, f.length);
  let sql: string;
  [sql, i] = cstrAt(f, i, f.length);
  need(f, i, 2);
  const n = f.readInt16BE(i);
  i += 2;
  need(f, i, 4 * n);
  const paramTypes: number[] = [];
  for (let k = 0; k < n; k++) paramTypes.push(f.readUInt32BE(i + 4 * k));
  return { name, sql, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** per parameter: 0 text, 1 binary */
  paramFormats: number[];
  /** raw values; null is SQL NULL (views into the frame) */
  params: (Buffer | null)[];
  resultFormats: number[];
}

/** (F) Bind */
export function decodeBind(f: Buffer): BindMessage {
  let [portal, i] = cstrAt(f, BODY, f.length);
  let statement: string;
  [statement, i] = cstrAt(f, i, f.length);
  need(f, i, 2);
  const nf = f.readInt16BE(i);
  i += 2;
  need(f, i, 2 * nf);
  const formats: number[] = [];
  for (let k = 0; k < nf; k++) formats.push(f.readInt16BE(i + 2 * k));
  i += 2 * nf;
  need(f, i, 2);
  const np = f.readInt16BE(i);
  i += 2;
  if (nf > 1 && nf !== np) throw new WireError(`bind message has ${nf} parameter formats but ${np} parameters`);
  const params: (Buffer | null)[] = [];
  const paramFormats: number[] = [];
  for (let k = 0; k < np; k++) {
    need(f, i, 4);
    const len = f.readInt32BE(i);
    i += 4;
    if (len === -1) params.push(null);
    else {
      if (len < 0) throw new WireError("invalid parameter length in bind message");
      need(f, i, len);
      params.push(f.subarray(i, i + len));
      i += len;
    }
    paramFormats.push(nf === 0 ? 0 : nf === 1 ? formats[0]! : formats[k]!);
  }
  need(f, i, 2);
  const nr = f.readInt16BE(i);
  i += 2;
  need(f, i, 2 * nr);
  const resultFormats: number[] = [];
  for (let k = 0; k < nr; k++) resultFormats.push(f.readInt16BE(i + 2 * k));
  return { portal, statement, paramFormats, params, resultFormats };
}

/** (F) Bind: whether it asks for any result column in binary format (walks past the parameters, decodes nothing) */
export function bindAsksBinary(f: Buffer): boolean {
  let i = f.indexOf(0, BODY);
  if (i < 0) throw new WireError("unterminated string in message");
  i = f.indexOf(0, i + 1);
  if (i < 0) throw new WireError("unterminated string in message");
  i++;
  need(f, i, 2);
  const nf = f.readInt16BE(i);
  i += 2 + 2 * Math.max(0, nf);
  need(f, i, 2);
  const np = f.readInt16BE(i);
  i += 2;
  for (let k = 0; k < np; k++) {
    need(f, i, 4);
    const len = f.readInt32BE(i);
    i += 4 + Math.max(0, len);
  }
  need(f, i, 2);
  const nr = f.readInt16BE(i);
  i += 2;
  need(f, i, 2 * Math.max(0, nr));
  for (let k = 0; k < nr; k++) if (f.readInt16BE(i + 2 * k) !== 0) return true;
  return false;
}

/** (F) Describe / Close: 'S' statement or 'P' portal, and the name */
export function decodeTarget(f: Buffer): { kind: "S" | "P"; name: string } {
  need(f, BODY, 1);
  const k = String.fromCharCode(f[BODY]!);
  if (k !== "S" && k !== "P") throw new WireError(`invalid describe/close target '${k}'`);
  return { kind: k, name: cstrAt(f, BODY + 1, f.length)[0] };
}

/** (F) Execute */
export function decodeExecute(f: Buffer): { portal: string; maxRows: number } {
  const [portal, i] = cstrAt(f, BODY, f.length);
  need(f, i, 4);
  return { portal, maxRows: f.readInt32BE(i) };
}

/** (F) PasswordMessage → the password (cleartext) */
export function decodePassword(f: Buffer): string {
  return cstrAt(f, BODY, f.length)[0];
}

export interface FieldDescription {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeMod: number;
  format: number;
}

/** (B) RowDescription */
export function decodeRowDescription(f: Buffer): FieldDescription[] {
  need(f, BODY, 2);
  const n = f.readInt16BE(BODY);
  let i = BODY + 2;
  const out: FieldDescription[] = [];
  for (let k = 0; k < n; k++) {
    let name: string;
    [name, i] = cstrAt(f, i, f.length);
    need(f, i, 18);
    out.push({
      name,
      tableOid: f.readUInt32BE(i),
      columnAttr: f.readInt16BE(i + 4),
      typeOid: f.readUInt32BE(i + 6),
      typeSize: f.readInt16BE(i + 10),
      typeMod: f.readInt32BE(i + 12),
      format: f.readInt16BE(i + 16),
    });
    i += 18;
  }
  return out;
}

/**
 * (B) DataRow → column values as views into the frame (null = SQL NULL). Strict: the frame's length
 * must be its size, every field must fit and nothing may follow the last one. The one DataRow
 * codec of the data plane (encodeDataRow in encode.ts; masking/data-row.ts rewrites in place).
 */
export function decodeDataRow(f: Buffer): (Buffer | null)[] {
  if (f[0] !== 0x44) throw new WireError("not a DataRow frame");
  need(f, BODY, 2);
  if (f.readInt32BE(1) + 1 !== f.length) throw new WireError(`DataRow length ${f.readInt32BE(1)} does not match a frame of ${f.length} bytes`);
  const n = f.readInt16BE(BODY);
  let i = BODY + 2;
  const out: (Buffer | null)[] = [];
  for (let k = 0; k < n; k++) {
    need(f, i, 4);
    const len = f.readInt32BE(i);
    i += 4;
    if (len < 0) out.push(null);
    else {
      need(f, i, len);
      out.push(f.subarray(i, i + len));
      i += len;
    }
  }
  if (i !== f.length) throw new WireError("DataRow has trailing bytes");
  return out;
}

/** (B) CommandComplete → the tag */
export function decodeCommandComplete(f: Buffer): string {
  return cstrAt(f, BODY, f.length)[0];
}

/** Rows affected/returned from a command tag (`SELECT 5`, `INSERT 0 3`, `COPY 100`). */
export function rowsFromTag(tag: string): number {
  const sp = tag.lastIndexOf(" ");
  if (sp < 0) return 0;
  const n = Number(tag.slice(sp + 1));
  return Number.isFinite(n) ? n : 0;
}

/** (B) ErrorResponse / NoticeResponse → fields by their one-letter code */
export function decodeErrorFields(f: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = BODY;
  while (i < f.length && f[i] !== 0) {
    const code = String.fromCharCode(f[i]!);
    let v: string;
    [v, i] = cstrAt(f, i + 1, f.length);
    out[code] = v;
  }
  return out;
}

/** (B) ParameterStatus → the setting's name and value */
export function decodeParameterStatus(f: Buffer): { name: string; value: string } {
  const [name, i] = cstrAt(f, BODY, f.length);
  return { name, value: cstrAt(f, i, f.length)[0] };
}

/** (B) ReadyForQuery → transaction status */
export function decodeReadyForQuery(f: Buffer): TxStatus {
  need(f, BODY, 1);
  const s = String.fromCharCode(f[BODY]!);
  if (s !== "I" && s !== "T" && s !== "E") throw new WireError(`invalid transaction status '${s}'`);
  return s;
}

/** (B) Authentication → subtype and the rest of the body */
export function decodeAuthentication(f: Buffer): { type: number; data: Buffer } {
  need(f, BODY, 4);
  return { type: f.readInt32BE(BODY), data: f.subarray(BODY + 4) };
}

/** (B) BackendKeyData */
export function decodeBackendKeyData(f: Buffer): { pid: number; secret: number } {
  need(f, BODY, 8);
  return { pid: f.readInt32BE(BODY), secret: f.readInt32BE(BODY + 4) };
}
