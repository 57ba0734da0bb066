/**
 * Reads back what a private cluster started with `logStatements` (pg-cluster.ts) says it ran: its
 * JSON log followed by offset, turned into the statements each backend executed, in order, with
 * their bound parameters and the error each one ended with, and which backend is which (the
 * application_name it connected with).
 *
 * What the server logs, and so what "executed" means here (PG 15, log_statement = all):
 *  - a simple Query after it parsed: `statement: <the whole message>`; a string that does not parse
 *    is never logged as a statement (only as an ERROR with its text);
 *  - an extended-protocol Execute, before it runs: `execute <stmt>[/<portal>]: <source text>`, or
 *    `execute fetch from …` for a portal resumed after PortalSuspended, with DETAIL `parameters: $1 =
 *    '…', …`; Parse, Bind and Describe are not logged;
 *  - for `EXECUTE name` as SQL, DETAIL `prepare: <source text of the prepared statement>` when the
 *    name exists at that moment (the first EXECUTE of the message only).
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";

/** One line of the jsonlog (only the members the readers use). */
export interface LogRecord {
  pid: number;
  error_severity: string;
  message: string;
  detail?: string;
  statement?: string;
  state_code?: string;
  user?: string;
  dbname?: string;
  application_name?: string;
  backend_type?: string;
}

export interface ExecutedStatement {
  /** `simple`: a Query message; `execute`: an extended-protocol Execute */
  kind: "simple" | "execute";
  /** the text the server ran: the Query string, or the prepared statement's source text */
  text: string;
  /** execute: the statement and portal names as the server knows them ("" = unnamed) */
  statement?: string;
  portal?: string;
  /** execute: a resumed portal (after PortalSuspended) */
  fetch?: boolean;
  /** execute: bound parameters as the server rendered them (text; null = NULL) */
  params?: Array<string | null>;
  /** simple `EXECUTE name`: the source text of the prepared statement the server found */
  prepareDetail?: string;
  /**
   * an ERROR the server reported after it, naming its text, before its next logged statement: its
   * own error, or (rarely) that of a later unlogged Bind of the same text
   */
  error?: { code: string; message: string };
}

/** Follows the JSON log file; `read()` returns the complete lines written since the last call. */
export class StatementLog {
  private offset = 0;
  private tail = "";
  readonly records: LogRecord[] = [];

  constructor(readonly file: string) {}

  /** skips everything written so far */
  skipToEnd(): void {
    this.read();
    this.records.length = 0;
  }

  read(): LogRecord[] {
    let size: number;
    try {
      size = statSync(this.file).size;
    } catch {
      return [];
    }
    if (size <= this.offset) return [];
    const fd = openSync(this.file, "r");
    const buf = Buffer.alloc(size - this.offset);
    try {
      readSync(fd, buf, 0, buf.length, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset = size;
    const text = this.tail + buf.toString("utf8");
    const lines = text.split("\n");
    this.tail = lines.pop() ?? "";
    const out: LogRecord[] = [];
    for (const l of lines) if (l.trim()) out.push(JSON.parse(l) as LogRecord);
    this.records.push(...out);
    return out;
  }

  /**
   * Waits until the server logged a statement containing `token`, issued by `mark(token)` after
   * everything of interest happened. The logging collector writes each backend's messages in the
   * order they were sent to it, and a backend logs a statement before it answers it, so once the
   * marker (sent after the client saw its last answer) is in the file, so is everything before it.
   */
  async sync(mark: (token: string) => Promise<unknown>, timeoutMs = 10_000): Promise<void> {
    const token = `fz_log_mark_${process.hrtime.bigint()}`;
    await mark(token);
    const until = Date.now() + timeoutMs;
    for (;;) {
      this.read();
      if (this.records.some((r) => r.message.includes(token))) return;
      if (Date.now() > until) throw new Error(`statement log: marker ${token} not written within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** pid → the application_name each backend connected with (from `connection authorized` lines). */
export function backendsByApplication(records: readonly LogRecord[]): Map<number, string> {
  const m = new Map<number, string>();
  for (const r of records) {
    const x = /^connection authorized: user=\S+ database=\S+ application_name=(.*?)(?: SSL enabled .*)?$/.exec(r.message);
    if (x) m.set(r.pid, x[1]!);
  }
  return m;
}

/** Parses the DETAIL `parameters: $1 = 'a''b', $2 = NULL`. */
export function parseParameterDetail(detail: string): Array<string | null> | undefined {
  if (!detail.startsWith("parameters: ")) return undefined;
  const s = detail.slice("parameters: ".length);
  const out: Array<string | null> = [];
  let i = 0;
  while (i < s.length) {
    const m = /^\$(\d+) = /.exec(s.slice(i));
    if (!m) throw new Error(`unparsable parameter detail at ${i}: ${JSON.stringify(detail)}`);
    i += m[0].length;
    if (s.startsWith("NULL", i)) {
      out.push(null);
      i += 4;
    } else if (s[i] === "'") {
      let v = "";
      i++;
      for (;;) {
        if (i >= s.length) throw new Error(`unterminated parameter in ${JSON.stringify(detail)}`);
        if (s[i] === "'") {
          if (s[i + 1] === "'") {
            v += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += s[i++];
      }
      out.push(v);
    } else {
      throw new Error(`unexpected parameter value at ${i}: ${JSON.stringify(detail)}`);
    }
    if (s.startsWith(", ", i)) i += 2;
    else if (i < s.length) throw new Error(`unexpected text after parameter at ${i}: ${JSON.stringify(detail)}`);
  }
  return out;
}

const EXECUTE_RE = /^execute (fetch from )?(.*?): ([\s\S]*)$/;

/** The statements backend `pid` executed, in order, each with the error it ended with. */
export function executedStatements(records: readonly LogRecord[], pid: number): ExecutedStatement[] {
  const out: ExecutedStatement[] = [];
  for (const r of records) {
    if (r.pid !== pid) continue;
    if (r.error_severity === "LOG") {
      if (r.message.startsWith("statement: ")) {
        const st: ExecutedStatement = { kind: "simple", text: r.message.slice("statement: ".length) };
        if (r.detail?.startsWith("prepare: ")) st.prepareDetail = r.detail.slice("prepare: ".length);
        out.push(st);
        continue;
      }
      const x = EXECUTE_RE.exec(r.message);
      if (x) {
        // names never contain "/" here: the server prints "<stmt>/<portal>" when the portal is named
        const names = x[2]!;
        const slash = names.indexOf("/");
        const statement = slash < 0 ? names : names.slice(0, slash);
        const st: ExecutedStatement = {
          kind: "execute",
          text: x[3]!,
          statement: statement === "<unnamed>" ? "" : statement,
          portal: slash < 0 ? "" : names.slice(slash + 1),
          fetch: x[1] !== undefined,
          params: r.detail ? parseParameterDetail(r.detail) ?? [] : [],
        };
        out.push(st);
      }
      continue;
    }
    if ((r.error_severity === "ERROR" || r.error_severity === "FATAL") && out.length) {
      // an error naming another text is a Parse or Query that never ran (not logged as a statement)
      const last = out[out.length - 1]!;
      if (r.statement === undefined || r.statement === last.text) last.error ??= { code: r.state_code ?? "", message: r.message };
    }
  }
  return out;
}

/** A relation an executor plan touched: read (scanned) or written (a ModifyTable node's target). */
export interface PlanRelation {
  schema?: string;
  name: string;
  /** Insert, Update, Delete or Merge when written */
  write?: string;
}

export interface ExecutedPlan {
  /** the source text auto_explain names (the whole message, or a function's statement) */
  queryText: string;
  relations: PlanRelation[];
}

function planRelations(node: unknown, out: PlanRelation[]): void {
  if (Array.isArray(node)) {
    for (const n of node) planRelations(n, out);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const o = node as Record<string, unknown>;
  if (typeof o["Relation Name"] === "string") {
    const r: PlanRelation = { name: o["Relation Name"] as string };
    if (typeof o.Schema === "string") r.schema = o.Schema as string;
    if (o["Node Type"] === "ModifyTable" && typeof o.Operation === "string") r.write = o.Operation as string;
    out.push(r);
  }
  for (const v of Object.values(o)) if (typeof v === "object") planRelations(v, out);
}

/**
 * The plans backend `pid` finished executing (a cluster started with `logPlans`), in order: the
 * executor's own account of what ran, nested statements included, with every relation it scanned
 * or modified. A statement that failed before its executor finished is not here (its effects were
 * rolled back).
 */
export function executedPlans(records: readonly LogRecord[], pid: number): ExecutedPlan[] {
  const out: ExecutedPlan[] = [];
  for (const r of records) {
    if (r.pid !== pid || r.error_severity !== "LOG") continue;
    const x = /^duration: [\d.]+ ms {2}plan:\n([\s\S]*)$/.exec(r.message);
    if (!x) continue;
    const plan = JSON.parse(x[1]!) as { "Query Text"?: string; Plan?: unknown };
    const relations: PlanRelation[] = [];
    planRelations(plan.Plan, relations);
    out.push({ queryText: plan["Query Text"] ?? "", relations });
  }
  return out;
}
