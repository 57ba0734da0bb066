/**
 * The PostgreSQL parser (libpg-query's WASM build) behind a seam the classifier uses, with
 * instances of our own that are replaced after any failure.
 *
 * WHY NOT libpg-query's module-level functions: they share one WASM instance per process. A parse
 * that overflows the stack inside the WASM (a left-deep chain of a few thousand operators, casts,
 * UNIONs or JOINs: `SELECT 1+1+…`) throws a RangeError out of the middle of the C code, which
 * leaves the instance's own stack pointer and allocator half-updated; a few dozen of those and
 * every later parse of every session fails ("memory access out of bounds", "null function").
 * Here a failure that is not the parser's own error report (a syntax error) retires the instance:
 * the next call runs on a spare instance made in the background (an instance of the compiled
 * module takes a few milliseconds), so one client's input never outlives its own statement.
 * Until a spare is ready calls fail with ParserUnavailable (a deny, never a pass).
 *
 * The C side's entry points and result layouts are libpg-query's (wasm_parse_query_raw returns
 * { tree, stderr, error* }, error = { message, funcname, filename, lineno, cursorpos }).
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import type { J } from "./ast-util.js";

export interface ScanToken {
  /** byte offsets into the UTF-8 text */
  start: number;
  end: number;
  text: string;
  tokenName: string;
}

/** What the classifier needs from a parser. Every method throws on bad input (a deny). */
export interface SqlParser {
  /** the raw parse tree ({ stmts: [{ stmt, stmt_location, stmt_len }] }); SqlSyntaxError on a syntax error */
  parse(sql: string): J;
  /** libpg-query's dump of the compiled PL/pgSQL function of a CREATE FUNCTION text */
  parsePlpgsql(sql: string): J;
  scan(sql: string): ScanToken[];
  fingerprint(sql: string): string;
}

/** The parser reported the input as invalid (a syntax error and where). The instance is fine. */
export class SqlSyntaxError extends Error {
  constructor(message: string, readonly cursorPosition?: number) {
    super(message);
    this.name = "SqlSyntaxError";
  }
}

/** The parser failed in itself (e.g. its stack overflowed); the instance was retired. */
export class ParserFailure extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ParserFailure";
  }
}

/** No healthy instance right now (the spare is still being made). */
export class ParserUnavailable extends Error {
  constructor() {
    super("the SQL parser is restarting after a failure; try again");
    this.name = "ParserUnavailable";
  }
}

/** The emscripten module object: the exports and helpers libpg-query's glue provides. */
interface PgQueryModule {
  _malloc(n: number): number;
  _free(p: number): void;
  _wasm_parse_query_raw(p: number): number;
  _wasm_free_parse_result(p: number): void;
  _wasm_parse_plpgsql(p: number): number;
  _wasm_fingerprint(p: number): number;
  _wasm_normalize_query(p: number): number;
  _wasm_scan(p: number): number;
  _wasm_free_string(p: number): void;
  getValue(p: number, type: "i32"): number;
  UTF8ToString(p: number): string;
  stringToUTF8(s: string, p: number, max: number): void;
  lengthBytesUTF8(s: string): number;
}
/** The part of the WebAssembly API used here (the project's TypeScript libs do not declare it). */
type WasmModule = object;
interface WasmInstance {
  exports: object;
}
interface WasmApi {
  compile(bytes: Uint8Array): Promise<WasmModule>;
  Instance: new (module: WasmModule, imports: object) => WasmInstance;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

type ModuleFactory = (o: { instantiateWasm: (imports: object, receive: (i: WasmInstance, m: WasmModule) => void) => object }) => Promise<PgQueryModule>;

const require = createRequire(import.meta.url);

let compiled: { factory: ModuleFactory; module: WasmModule } | undefined;
/** a module compiled by another thread of the process (a classifier worker is given its parent's) */
let given: WasmModule | undefined;

async function compile(): Promise<{ factory: ModuleFactory; module: WasmModule }> {
  if (compiled) return compiled;
  // libpg-query's emscripten glue, used as a factory of independent instances of one compiled module
  const gluePath = require.resolve("libpg-query/wasm/libpg-query.js");
  const factory = require(gluePath) as ModuleFactory;
  const module = given ?? (await wasm.compile(readFileSync(gluePath.replace(/\.js$/, ".wasm"))));
  compiled = { factory, module };
  return compiled;
}

/**
 * The compiled parser module, to hand to a worker thread (a WebAssembly.Module is shared between
 * the threads of a process when posted): compiling libpg-query's wasm is most of what a worker's
 * start costs, and every worker would compile the same bytes again.
 */
export async function compiledParserModule(): Promise<object> {
  return (await compile()).module;
}

/** Makes this thread's parser instances of `module` (compiledParserModule's, from another thread) instead of compiling its own. */
export function useCompiledParserModule(module: object): void {
  if (!compiled) given = module;
}

function instantiate(c: { factory: ModuleFactory; module: WasmModule }): Promise<PgQueryModule> {
  return c.factory({
    instantiateWasm(imports, receive) {
      const instance = new wasm.Instance(c.module, imports);
      receive(instance, c.module);
      return instance.exports;
    },
  });
}

/** What a result-string entry point reports as an error instead of a result. */
const ERROR_RESULT = /^(syntax error|deparse error|ERROR)/;

/**
 * One process's parser: an active instance and a spare. Calls are synchronous; replacing an
 * instance is not, so it happens in the background after a failure.
 */
export class WasmParser implements SqlParser {
  private active: PgQueryModule | undefined;
  private spare: PgQueryModule | undefined;
  private making: Promise<void> | undefined;
  /** instances retired after a failure, for the tests and the node's metrics */
  failures = 0;

  private constructor(private readonly c: { factory: ModuleFactory; module: WasmModule }) {}

  static async create(): Promise<WasmParser> {
    const p = new WasmParser(await compile());
    p.active = await instantiate(p.c);
    await p.ensureSpare();
    return p;
  }

  /** Resolves once a spare instance is ready (tests wait on it after provoking a failure). */
  ensureSpare(): Promise<void> {
    if (this.spare && this.active) return Promise.resolve();
    this.making ??= instantiate(this.c).then(
      (m) => {
        this.making = undefined;
        if (!this.active) this.active = m;
        else this.spare = m;
        if (!this.spare) return this.ensureSpare();
      },
      () => {
        this.making = undefined; // a failed instantiation is retried at the next failure
      },
    );
    return this.making;
  }

  /** Runs `fn` on the active instance; anything but a parser-reported error retires the instance. */
  private run<T>(fn: (m: PgQueryModule) => T): T {
    const m = this.active;
    if (!m) {
      void this.ensureSpare();
      throw new ParserUnavailable();
    }
    try {
      return fn(m);
    } catch (e) {
      if (e instanceof SqlSyntaxError) throw e;
      this.failures++;
      this.active = this.spare;
      this.spare = undefined;
      void this.ensureSpare();
      throw new ParserFailure(`the SQL parser failed on this statement (${(e as Error).message ?? String(e)})`, { cause: e });
    }
  }

  private withString<T>(m: PgQueryModule, s: string, fn: (p: number) => T): T {
    const len = m.lengthBytesUTF8(s) + 1;
    const p = m._malloc(len);
    if (!p) throw new Error("out of memory");
    try {
      m.stringToUTF8(s, p, len);
      return fn(p);
    } finally {
      m._free(p);
    }
  }

  /** The entry points that return one C string: a result, or an error message. */
  private stringResult(m: PgQueryModule, fn: (p: number) => number, sql: string): string {
    return this.withString(m, sql, (p) => {
      const r = fn(p);
      try {
        return m.UTF8ToString(r);
      } finally {
        if (r) m._wasm_free_string(r);
      }
    });
  }

  parse(sql: string): J {
    if (sql === "") return { stmts: [] };
    return this.run((m) =>
      this.withString(m, sql, (p) => {
        const r = m._wasm_parse_query_raw(p);
        if (!r) throw new Error("parse result allocation failed");
        try {
          const tree = m.getValue(r, "i32");
          const err = m.getValue(r + 8, "i32");
          if (err) {
            const msg = m.getValue(err, "i32");
            const cursor = m.getValue(err + 16, "i32");
            throw new SqlSyntaxError(msg ? m.UTF8ToString(msg) : "syntax error", cursor > 0 ? cursor - 1 : undefined);
          }
          if (!tree) throw new Error("no parse tree");
          return JSON.parse(m.UTF8ToString(tree));
        } finally {
          m._wasm_free_parse_result(r);
        }
      }),
    );
  }

  parsePlpgsql(sql: string): J {
    return this.run((m) => {
      const out = this.stringResult(m, (p) => m._wasm_parse_plpgsql(p), sql);
      if (!out.startsWith("{")) throw new SqlSyntaxError(out);
      return JSON.parse(out);
    });
  }

  scan(sql: string): ScanToken[] {
    return this.run((m) => {
      const out = this.stringResult(m, (p) => m._wasm_scan(p), sql);
      // the tokens are a JSON object; anything else is the scanner's own report ("unterminated
      // quoted string …" for a client's unfinished literal), never a reason to retire the instance
      if (!out.startsWith("{")) throw new SqlSyntaxError(out);
      return (JSON.parse(out) as { tokens: ScanToken[] }).tokens;
    });
  }

  fingerprint(sql: string): string {
    return this.run((m) => {
      const out = this.stringResult(m, (p) => m._wasm_fingerprint(p), sql);
      if (ERROR_RESULT.test(out)) throw new SqlSyntaxError(out);
      return out;
    });
  }

  /** libpg-query's normalize: the text with each constant the parser found replaced by `$n` (literal-shape.ts) */
  normalize(sql: string): string {
    return this.run((m) => {
      const out = this.stringResult(m, (p) => m._wasm_normalize_query(p), sql);
      if (ERROR_RESULT.test(out)) throw new SqlSyntaxError(out);
      return out;
    });
  }
}

let shared: Promise<WasmParser> | undefined;
let sharedReady: WasmParser | undefined;

/** The process's parser (made once). */
export function loadParser(): Promise<WasmParser> {
  shared ??= WasmParser.create().then((p) => (sharedReady = p));
  return shared;
}

/** The process's parser, once loadParser() has resolved. */
export function loadedParser(): WasmParser | undefined {
  return sharedReady;
}

/** Parses with the process's guarded parser (for other rooms that read ASTs: masking lineage, the catalog). */
export function parseSql(sql: string): J {
  if (!sharedReady) throw new Error("parseSql: call loadParser() first");
  return sharedReady.parse(sql);
}
